"""View-generation throughput: our batched, grouped map function against a naive per-image loop.

CPU (default): the tiny offline components on the embedded shapes set, image-conditioned mode.
  ours  : ``ViewGenerator`` on batches (one encoder forward gives tokens + embeddings, one
          pipeline call per noise-level group, view masks batched)
  naive : what the official scripts do: per image, an encoder call for the foreground score,
          one pipeline call (which encodes the image again), an encoder call for the view mask
Median rows/s over several runs after a warm-up, and the ratio.

GPU (``--device cuda --real-size``): the Stable Diffusion 2.1 unCLIP architecture built from its
config with random weights (no network), 768 px, 20 steps, guidance 10, bf16 + SDPA: images/s
batched vs one image per call, and the share of the GPU's bf16 peak that the UNet's FLOPs reach.

    python benchmarks/bench_generation.py                       # CPU, tiny
    python benchmarks/bench_generation.py --device cuda --real-size
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# Dense bf16 tensor-core peaks from the vendor data sheets (FLOP/s).
BF16_PEAK = {
    "H100 SXM": 989.4e12,
    "H100 PCIe": 756.5e12,
    "H100 NVL": 835.5e12,
    "H200": 989.4e12,
    "A100": 312e12,
}


def gpu_peak(name: str) -> float | None:
    if "H200" in name:
        return BF16_PEAK["H200"]
    if "H100" in name:
        if "PCIe" in name:
            return BF16_PEAK["H100 PCIe"]
        return BF16_PEAK["H100 NVL"] if "NVL" in name else BF16_PEAK["H100 SXM"]
    return BF16_PEAK["A100"] if "A100" in name else None


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# -- CPU: tiny components, ours vs naive -------------------------------------------------------
def bench_tiny(rows: int, batch_size: int, steps: int, size: int, repeats: int) -> dict:
    from genview_hf.data.samples import shapes
    from genview_hf.generation import (
        ForegroundScorer,
        NoisePolicy,
        ViewGenerationConfig,
        ViewGenerator,
        load_components,
    )
    from genview_hf.testing import tiny_path

    config = ViewGenerationConfig(
        unclip_model=str(tiny_path("unclip-img2img")), modes=["ic"], mixed_precision="no"
    )
    components = load_components(config)
    encoder, pipe = components.encoder, components.unclip
    images = list(shapes(num_rows=rows, image_size=64)["image"])
    scorer = ForegroundScorer.fit(
        lambda b: encoder(b)[0], lambda: iter([images]), encoder.grid, fg_share=0.4
    )  # fitted on the benchmark rows
    generator = ViewGenerator(
        encoder=encoder, scorer=scorer, unclip=pipe, num_inference_steps=steps, height=size, width=size
    )
    policy = NoisePolicy()

    def ours():
        for start in range(0, rows, batch_size):
            chunk = images[start : start + batch_size]
            generator({"image": chunk}, list(range(start, start + len(chunk))))

    def naive():
        for row, image in enumerate(images):
            tokens, _ = encoder([image])
            ratio = scorer.fg_ratio(scorer.token_masks(tokens))[0]
            view = pipe(
                image=image,
                prompt="",
                noise_level=policy(ratio),
                num_inference_steps=steps,
                guidance_scale=10.0,
                height=size,
                width=size,
                generator=torch.Generator().manual_seed(row),
            ).images[0]
            scorer.token_masks(encoder([view])[0])

    results = {}
    for name, fn in (("ours", ours), ("naive", naive)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        results[name] = rows / statistics.median(times)
    return {
        "setting": f"tiny unCLIP, CPU ({torch.get_num_threads()} threads), {rows} rows, {size} px, "
        f"{steps} steps, batch {batch_size}, median of {repeats}",
        "ours_rows_per_s": round(results["ours"], 2),
        "naive_rows_per_s": round(results["naive"], 2),
        "ratio": round(results["ours"] / results["naive"], 2),
    }


# -- GPU: real-size SD 2.1 unCLIP with random weights --------------------------------------
def sd21_unclip_random(device: str, dtype: torch.dtype):
    """StableUnCLIPImg2ImgPipeline with the stabilityai/stable-diffusion-2-1-unclip architecture."""
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


def bench_real(batch_size: int, steps: int, repeats: int, naive_images: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    device, dtype = "cuda", torch.bfloat16
    torch.backends.cuda.matmul.allow_tf32 = True
    pipe = sd21_unclip_random(device, dtype)
    embeds = torch.randn(batch_size, 1024, device=device, dtype=dtype)

    def call(n):
        return pipe(
            image_embeds=embeds[:n],
            prompt=[""] * n,
            noise_level=100,
            num_inference_steps=steps,
            guidance_scale=10.0,
            height=768,
            width=768,
            generator=[torch.Generator().manual_seed(i) for i in range(n)],
            output_type="np",
        )

    def timed(fn):
        fn()
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    batched = timed(lambda: call(batch_size))
    naive = timed(lambda: [call(1) for _ in range(naive_images)])

    # UNet FLOPs of one denoising step at this batch (classifier-free guidance doubles the batch).
    latents = torch.randn(2 * batch_size, 4, 96, 96, device=device, dtype=dtype)
    text = torch.randn(2 * batch_size, 77, 1024, device=device, dtype=dtype)
    classes = torch.randn(2 * batch_size, 2048, device=device, dtype=dtype)
    timestep = torch.tensor(500, device=device)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            pipe.unet(latents, timestep, encoder_hidden_states=text, class_labels=classes)
        unet_flops = counter.get_total_flops()
        unet_time = timed(
            lambda: [
                pipe.unet(latents, timestep, encoder_hidden_states=text, class_labels=classes)
                for _ in range(steps)
            ]
        )
    name = torch.cuda.get_device_name()
    peak = gpu_peak(name)
    step_flops_total = unet_flops * steps
    result = {
        "setting": f"SD 2.1 unCLIP architecture (random weights), {name}, bf16, SDPA, 768 px, {steps} steps, "
        f"guidance 10, batch {batch_size}, median of {repeats}, {time.strftime('%Y-%m-%d')}",
        "batched_images_per_s": round(batch_size / batched, 3),
        "one_per_call_images_per_s": round(naive_images / naive, 3),
        "ratio": round((batch_size / batched) / (naive_images / naive), 2),
        "unet_tflop_per_image": round(step_flops_total / batch_size / 1e12, 2),
        "unet_share_of_pipeline_time": round(unet_time / batched, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }
    if peak:
        result["bf16_peak_tflops"] = peak / 1e12
        result["unet_mfu_unet_only"] = round(step_flops_total / unet_time / peak, 3)
        result["unet_mfu_whole_pipeline"] = round(step_flops_total / batched / peak, 3)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="SD 2.1 unCLIP architecture, 768 px (GPU)")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="default: 2 tiny, 20 real size")
    parser.add_argument("--size", type=int, default=64, help="view size for the tiny run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--naive-images", type=int, default=4, help="images of the one-per-call loop (real size)"
    )
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.real_size:
        if args.device != "cuda" or not torch.cuda.is_available():
            raise SystemExit("--real-size needs --device cuda and a GPU")
        result = bench_real(args.batch_size, args.steps or 20, args.repeats, args.naive_images)
    else:
        result = bench_tiny(args.rows, args.batch_size, args.steps or 2, args.size, args.repeats)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
