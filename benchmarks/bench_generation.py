"""View-generation throughput: full pipeline calls per noise level, the official one-call-per-image
loop, and the UNet / VAE levers, side by side in one run.

Scheduling (CPU, the tiny offline components on the embedded shapes set, image-conditioned mode):
  shard     : ``ViewGenerator`` on a whole shard (what the driver does): rows scored first, then
              ordered by (noise level, guidance) and generated in calls of ``batch_size``
  per_batch : the former grouping, ``ViewGenerator`` on map batches of ``batch_size``
  official  : per image an encoder call for the foreground score, one pipeline call given the
              image (which encodes it again), an encoder call for the view mask
Mean images per pipeline call and median rows/s, plus the images per call the two schedules make at
the shapes set's real noise-level distribution (its true masks through the noise policy).

Levers (``--device cuda``: the Stable Diffusion 2.1 unCLIP architecture with random weights, 768 px,
20 steps, guidance 10, bf16; ``--device cpu``: the tiny pipeline, a rehearsal of the same code):
the stock pipeline one image per call (the official loop), then batched calls with SDPA or classic
attention, channels_last, fused QKV projections, a float32 VAE decode, a larger batch and
``torch.compile`` of the UNet. Each reports images/s, the UNet's share of the chip's measured bf16
matrix rate (an 8192^3 product in the same run) over the UNet alone and over the whole pipeline,
and peak memory.

    python benchmarks/bench_generation.py                         # CPU: scheduling + lever rehearsal
    python benchmarks/bench_generation.py --device cuda           # GPU: levers at real size
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genview_hf.benchmarks.hardware import hardware_name, matmul_tflops, median_seconds, peak_memory_gib  # noqa: E402


class CountingPipeline:
    """A pipeline that counts its calls and the images they make."""

    def __init__(self, pipe) -> None:
        self.pipe, self.calls, self.images = pipe, 0, 0

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        prompt = kwargs["prompt"]
        self.calls += 1
        self.images += 1 if isinstance(prompt, str) else len(prompt)
        return self.pipe(**kwargs)


# -- scheduling: shard vs per-batch vs the official loop ------------------------------------------
def tiny_components(device: str = "cpu"):
    from genview_hf.generation import ViewGenerationConfig, load_components
    from genview_hf.testing import tiny_path

    config = ViewGenerationConfig(
        unclip_model=str(tiny_path("unclip-img2img")), modes=["ic"], mixed_precision="no"
    )
    return load_components(config, device)


def bench_scheduling(rows: int, batch_size: int, steps: int, size: int, repeats: int) -> dict:
    from genview_hf.generation import ForegroundScorer, NoisePolicy, ViewGenerator
    from genview_hf.testing.samples import shapes

    components = tiny_components()
    encoder, pipe = components.encoder, CountingPipeline(components.unclip)
    images = list(shapes(num_rows=rows, image_size=64)["image"])
    scorer = ForegroundScorer.fit(
        lambda b: encoder(b)[0], lambda: iter([images]), encoder.grid, fg_share=0.4
    )  # fitted on the benchmark rows
    generator = ViewGenerator(
        encoder=encoder, scorer=scorer, unclip=pipe, num_inference_steps=steps, height=size, width=size,
        batch_size=batch_size,
    )  # fmt: skip
    policy = NoisePolicy()

    def shard():
        generator.row_offset = 0
        return generator({"image": images}, list(range(rows)))

    def per_batch():
        for start in range(0, rows, batch_size):
            generator.row_offset = start
            chunk = images[start : start + batch_size]
            generator({"image": chunk}, list(range(len(chunk))))

    def official():
        for row, image in enumerate(images):
            tokens, _ = encoder([image])
            ratio = scorer.fg_ratio(scorer.token_masks(tokens))[0]
            view = pipe(
                image=image, prompt="", noise_level=policy(ratio), num_inference_steps=steps, guidance_scale=10.0,
                height=size, width=size, generator=torch.Generator().manual_seed(row),
            ).images[0]  # fmt: skip
            scorer.token_masks(encoder([view])[0])

    result = {
        "setting": f"tiny unCLIP, {hardware_name('cpu')}, {rows} rows, {size} px, {steps} steps, "
        f"batch {batch_size}, median of {repeats}, {time.strftime('%Y-%m-%d')}",
    }
    rates = {}
    for name, fn in (("shard", shard), ("per_batch", per_batch), ("official", official)):
        pipe.calls = pipe.images = 0
        seconds = median_seconds(fn, repeats, "cpu")
        runs = repeats + 1  # the warm-up call counts too
        rates[name] = rows / seconds
        result[name] = {
            "rows_per_s": round(rates[name], 2),
            "pipeline_calls": pipe.calls // runs,
            "images_per_call": round(pipe.images / pipe.calls, 2),
        }
    result["shard_vs_per_batch"] = round(rates["shard"] / rates["per_batch"], 2)
    result["shard_vs_official"] = round(rates["shard"] / rates["official"], 2)
    result["per_batch_vs_official"] = round(rates["per_batch"] / rates["official"], 2)
    return result


def real_distribution_calls(rows: int, batch_size: int, shard_size: int) -> dict:
    """Images per pipeline call of the two schedules when the noise levels follow the shapes set's
    true foreground ratios (its masks) through the default noise policy: no model involved."""
    from genview_hf.generation import NoisePolicy
    from genview_hf.generation.views import pipeline_batches
    from genview_hf.testing.samples import shapes

    policy = NoisePolicy()
    masks = shapes(num_rows=rows, image_size=64)["mask"]
    levels = [policy(float((np.asarray(mask) > 127).mean())) for mask in masks]

    def calls(block: int) -> int:
        return sum(
            len(pipeline_batches({i: (levels[i], 10.0) for i in range(s, min(s + block, rows))}, batch_size))
            for s in range(0, rows, block)
        )

    histogram = {str(level): levels.count(level) for level in sorted(set(levels))}
    per_batch, shard = calls(batch_size), calls(shard_size)
    return {
        "setting": f"shapes set, {rows} rows, true masks -> noise levels {histogram}, batch {batch_size}, "
        f"shard {shard_size}",
        "per_batch_images_per_call": round(rows / per_batch, 2),
        "shard_images_per_call": round(rows / shard, 2),
    }


# -- levers ------------------------------------------------------------------------------------------
@dataclass
class Sizes:
    size: int  # view side, px
    steps: int
    batch_size: int
    repeats: int
    official_images: int  # images of the one-per-call loop
    gemm: int  # side of the matrix product that measures the chip


SIZES = {
    "cuda": Sizes(size=768, steps=20, batch_size=8, repeats=2, official_images=4, gemm=8192),
    "cpu": Sizes(size=32, steps=2, batch_size=4, repeats=2, official_images=2, gemm=512),
}


def sd21_unclip_random(device: str, dtype: torch.dtype):
    """StableUnCLIPImg2ImgPipeline with the sd2-community/stable-diffusion-2-1-unclip architecture."""
    from diffusers import AutoencoderKL, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    from genview_hf.testing import tiny_clip_tokenizer
    from genview_hf.testing.tiny_diffusion import sd21_unclip_schedulers

    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=96,
            in_channels=4,
            out_channels=4,
            down_block_types=(
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            attention_head_dim=(5, 10, 20, 20),
            cross_attention_dim=1024,
            use_linear_projection=True,
            upcast_attention=True,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=2048,  # noised image embedding (1024) + noise-level embedding
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=768,
        )
        tokenizer = tiny_clip_tokenizer()  # byte-level stand-in: same 77-token sequences reach the encoder
        text_encoder = CLIPTextModel(  # OpenCLIP ViT-H/14 text tower
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=23,
                num_attention_heads=16,
                max_position_embeddings=77,
                hidden_act="gelu",
                projection_dim=1024,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        image_encoder = CLIPVisionModelWithProjection(  # OpenCLIP ViT-H/14 image tower
            CLIPVisionConfig(
                hidden_size=1280,
                intermediate_size=5120,
                num_hidden_layers=32,
                num_attention_heads=16,
                image_size=224,
                patch_size=14,
                projection_dim=1024,
                hidden_act="gelu",
            )
        )
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(
            size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
        ),
        image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=1024),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        vae=vae,
        **sd21_unclip_schedulers(),
    )
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unet_inputs(pipe, batch: int, size: int) -> dict:
    """One denoising step's UNet inputs at ``batch`` images (classifier-free guidance doubles it)."""
    unet, side = pipe.unet, size // pipe.vae_scale_factor
    like = {"device": pipe.device, "dtype": unet.dtype}
    return {
        "sample": torch.randn(2 * batch, unet.config.in_channels, side, side, **like),
        "timestep": torch.tensor(500, device=pipe.device),
        "encoder_hidden_states": torch.randn(2 * batch, 77, unet.config.cross_attention_dim, **like),
        "class_labels": torch.randn(2 * batch, unet.config.projection_class_embeddings_input_dim, **like),
    }


def unet_flops(pipe, batch: int, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe.unet(**unet_inputs(pipe, batch, size))
    return counter.get_total_flops()


def set_attention(pipe, kind: str) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    processor = AttnProcessor2_0 if kind == "sdpa" else AttnProcessor
    for module in (pipe.unet, pipe.vae):
        module.set_attn_processor(processor())


def float32_vae_decode(pipe) -> None:
    """The VAE in float32, fed latents of the pipeline's dtype (the stock pipeline decodes in its dtype)."""
    vae = pipe.vae.to(torch.float32)
    decode = type(vae).decode.__get__(vae)
    vae.decode = lambda latents, *args, **kwargs: decode(latents.float(), *args, **kwargs)


def bf16_vae_decode(pipe, dtype: torch.dtype) -> None:
    pipe.vae.__dict__.pop("decode", None)
    pipe.vae.to(dtype)


def bench_levers(
    device: str, sizes: Sizes, compile_mode: str | None, deadline: float, compile_s: float = 90.0
) -> dict:
    """The stock one-image loop, then batched calls under each lever; stops adding levers past
    ``deadline`` (time.monotonic), the compile when less than ``compile_s`` is left, and says
    which were skipped."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        pipe = sd21_unclip_random(device, dtype)
    else:
        pipe = tiny_components().unclip
    peak = matmul_tflops(device, torch.bfloat16, sizes.gemm)
    images = [image.resize((224, 224)) for image in _source_images(sizes.official_images)]
    batch = sizes.batch_size
    embeds = torch.randn(2 * batch, pipe.image_encoder.config.projection_dim, device=device, dtype=dtype)

    def call(n: int):
        return pipe(
            image_embeds=embeds[:n], prompt=[""] * n, noise_level=0, num_inference_steps=sizes.steps,
            guidance_scale=10.0, height=sizes.size, width=sizes.size, output_type="pil",
            generator=[torch.Generator().manual_seed(i) for i in range(n)],
        )  # fmt: skip

    def official():  # the official scripts' loop: the image itself, one call each
        for i, image in enumerate(images):
            pipe(
                image=image, prompt="", noise_level=0, num_inference_steps=sizes.steps, guidance_scale=10.0,
                height=sizes.size, width=sizes.size, generator=torch.Generator().manual_seed(i),
            )  # fmt: skip

    flops_per_image = unet_flops(pipe, 1, sizes.size) * sizes.steps  # both guidance rows, every step
    result = {
        "setting": f"{'SD 2.1 unCLIP architecture (random weights)' if device == 'cuda' else 'tiny unCLIP'}, "
        f"{hardware_name(device)}, {str(dtype).split('.')[-1]}, {sizes.size} px, {sizes.steps} steps, guidance 10, "
        f"median of {sizes.repeats}, {time.strftime('%Y-%m-%d')}",
        "measured_bf16_matmul_tflops": round(peak, 1),
        "unet_tflop_per_image": round(flops_per_image / 1e12, 4),
    }
    official_s = median_seconds(official, sizes.repeats, device)
    result["official_one_per_call_images_per_s"] = round(len(images) / official_s, 3)

    def measure(name: str, n: int = batch) -> None:
        if time.monotonic() > deadline:
            result.setdefault("skipped_past_deadline", []).append(name)
            return
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = median_seconds(lambda: call(n), sizes.repeats, device)
        inputs = unet_inputs(pipe, n, sizes.size)
        with torch.no_grad():
            unet_s = median_seconds(
                lambda: [pipe.unet(**inputs) for _ in range(sizes.steps)], sizes.repeats, device
            )
        flops = flops_per_image * n
        result[name] = {
            "batch": n,
            "images_per_s": round(n / seconds, 3),
            "vs_official": round((n / seconds) / (len(images) / official_s), 2),
            "unet_share_of_measured_peak": round(flops / unet_s / (peak * 1e12), 3),
            "pipeline_share_of_measured_peak": round(flops / seconds / (peak * 1e12), 3),
            "unet_share_of_time": round(unet_s / seconds, 3),
            "peak_memory_gib": peak_memory_gib(device),
        }

    with torch.no_grad():
        measure("batched_sdpa")
        set_attention(pipe, "classic")
        measure("classic_attention")
        set_attention(pipe, "sdpa")
        for module in (pipe.unet, pipe.vae):
            module.to(memory_format=torch.channels_last)
        measure("channels_last")
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
        measure("channels_last_fused_qkv")
        float32_vae_decode(pipe)
        measure("channels_last_fused_qkv_fp32_vae_decode")
        bf16_vae_decode(pipe, dtype)
        measure("channels_last_fused_qkv_batch_x2", 2 * batch)
        if compile_mode is not None and time.monotonic() > deadline - compile_s:
            result.setdefault("skipped_past_deadline", []).append(f"compile_{compile_mode}")
        elif compile_mode is not None:
            pipe.unet.compile(mode=compile_mode, fullgraph=True, dynamic=False)
            start = time.perf_counter()
            call(batch)  # the compile itself, outside the timing
            result["compile_seconds"] = round(time.perf_counter() - start, 1)
            measure(f"channels_last_fused_qkv_compile_{compile_mode}")
    return result


def _source_images(n: int):
    from genview_hf.testing.samples import shapes

    return list(shapes(num_rows=n, image_size=64)["image"])


def run(device: str, compile_mode: str | None = "default", budget_s: float = 240.0) -> dict:
    """Everything this file measures on ``device``, as one dict (the GPU suite's generation part);
    ``budget_s``: the seconds it may take, the compile and its measurement included."""
    sizes = SIZES["cuda" if device == "cuda" else "cpu"]
    compile_s = 90.0 if device == "cuda" else 45.0  # the compile and the compiled run's measurement
    deadline = time.monotonic() + budget_s
    out = {"levers": bench_levers(device, sizes, compile_mode, deadline - compile_s, compile_s)}
    out["real_distribution"] = real_distribution_calls(rows=512, batch_size=8, shard_size=512)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rows", type=int, default=32, help="rows of the CPU scheduling run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="denoising steps of the CPU scheduling run")
    parser.add_argument("--size", type=int, default=32, help="view size of the CPU scheduling run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-mode", default="default", help="UNet torch.compile mode ('none': skip)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steady on a shared machine)")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda needs a GPU")
    compile_mode = None if args.compile_mode == "none" else args.compile_mode
    result = run(args.device, compile_mode)
    if args.device == "cpu":
        result["scheduling"] = bench_scheduling(
            args.rows, args.batch_size, args.steps, args.size, args.repeats
        )
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
