"""Tiny diffusers pipelines built offline from configs (Stable unCLIP img2img and text-to-image).

Same recipe as ``tiny_models``: seeded random weights from small configs, saved with
``save_pretrained`` and loaded back with ``from_pretrained`` so the real loading path runs.
The unCLIP image encoder is the tiny CLIP vision tower at 64 px (patch 8: an 8x8 token map),
which is also the foreground scorer's encoder by default.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .tiny_models import (
    _folder,
    save_atomically,
    tiny_clip_text_config,
    tiny_clip_tokenizer,
    tiny_clip_vision_with_projection,
)

TINY_DIFFUSION_IMAGE_SIZE = 64  # encoder input size; generated views default to the same size
TINY_TEXT_HIDDEN = 32  # text encoder width = UNet cross-attention width


def _tiny_unet(class_embed_dim: int | None):
    from diffusers import UNet2DConditionModel

    extra = {}
    if class_embed_dim is not None:
        extra = {"class_embed_type": "projection", "projection_class_embeddings_input_dim": class_embed_dim}
    return UNet2DConditionModel(
        sample_size=TINY_DIFFUSION_IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=(2, 4),
        cross_attention_dim=TINY_TEXT_HIDDEN,
        use_linear_projection=True,
        upcast_attention=True,
        **extra,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=TINY_DIFFUSION_IMAGE_SIZE,
    )


def _tiny_text_encoder():
    from transformers import CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    return tokenizer, CLIPTextModel(tiny_clip_text_config(tokenizer, hidden_size=TINY_TEXT_HIDDEN))


def sd21_unclip_schedulers() -> dict:
    """The two schedulers of ``sd2-community/stable-diffusion-2-1-unclip``, as pipeline keyword arguments.

    ``scheduler``: v-prediction DDIM (scaled-linear betas 0.00085-0.012, no sample clipping);
    ``image_noising_scheduler``: squared-cosine DDPM that noises the image embedding by
    ``noise_level``. Shared by the tiny pipeline and the real-size benchmark.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    return {
        "scheduler": DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
            clip_sample=False,
        ),
        "image_noising_scheduler": DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
    }


def tiny_unclip_img2img(folder: str | os.PathLike | None = None, seed: int = 0):
    """A tiny ``StableUnCLIPImg2ImgPipeline`` (64 px views, v-prediction DDIM, 2-block VAE)."""
    from diffusers import StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )

    folder = _folder("unclip-img2img", folder)
    if not (Path(folder) / "model_index.json").exists():
        image_encoder, feature_extractor = tiny_clip_vision_with_projection(
            image_size=TINY_DIFFUSION_IMAGE_SIZE
        )
        embed_dim = image_encoder.config.projection_dim
        torch.manual_seed(seed)
        tokenizer, text_encoder = _tiny_text_encoder()
        pipe = StableUnCLIPImg2ImgPipeline(
            feature_extractor=feature_extractor,
            image_encoder=image_encoder,
            image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            unet=_tiny_unet(class_embed_dim=2 * embed_dim),
            vae=_tiny_vae(),
            **sd21_unclip_schedulers(),
        )
        save_atomically(folder, pipe)
    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_text2img(folder: str | os.PathLike | None = None, seed: int = 0):
    """A tiny ``StableDiffusionPipeline`` with a DPM-Solver scheduler and no safety checker."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    folder = _folder("text2img", folder)
    if not (Path(folder) / "model_index.json").exists():
        torch.manual_seed(seed)
        tokenizer, text_encoder = _tiny_text_encoder()
        pipe = StableDiffusionPipeline(
            vae=_tiny_vae(),
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=_tiny_unet(class_embed_dim=None),
            scheduler=DPMSolverMultistepScheduler(
                beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
            ),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        save_atomically(folder, pipe)
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
