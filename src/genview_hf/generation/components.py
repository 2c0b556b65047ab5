"""Load the generation components named by a config: stock diffusers pipelines, no subclassing.

``"tiny"`` as a model id selects ``genview_hf.testing``'s offline tiny components; anything else
goes through the ordinary ``from_pretrained`` (Hub id or local folder).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import TINY, ViewGenerationConfig
from .encoder import ClipTokenEncoder


@dataclass
class Components:
    encoder: ClipTokenEncoder
    unclip: object = None
    text2img: object = None


def run_dtype(mixed_precision: str, device: torch.device) -> torch.dtype:
    """fp16/bf16 on GPU; the CPU path always runs float32."""
    if device.type != "cuda" or mixed_precision == "no":
        return torch.float32
    return torch.float16 if mixed_precision == "fp16" else torch.bfloat16


def load_components(config: ViewGenerationConfig, device: torch.device | str = "cpu") -> Components:
    device = torch.device(device)
    dtype = run_dtype(config.mixed_precision, device)
    unclip = text2img = None
    if "ic" in config.modes or "itc" in config.modes:
        unclip = _load_unclip(config.unclip_model, dtype, config.model_revision)
    if "tc" in config.modes:
        text2img = _load_text2img(config.text2img_model, dtype, config.model_revision)
    if config.scorer_model is None and unclip is not None:
        encoder = ClipTokenEncoder(unclip.image_encoder, unclip.feature_extractor)
    else:
        encoder = _load_encoder(config.scorer_model or config.unclip_model, dtype, config.model_revision)
    for pipe in (unclip, text2img):
        if pipe is not None:
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
    encoder.model.to(device)
    return Components(encoder=encoder, unclip=unclip, text2img=text2img)


def _load_unclip(name: str, dtype: torch.dtype, revision: str | None):
    from diffusers import StableUnCLIPImg2ImgPipeline

    if name == TINY:
        from ..testing import tiny_unclip_img2img

        return tiny_unclip_img2img().to(dtype=dtype)
    return StableUnCLIPImg2ImgPipeline.from_pretrained(name, torch_dtype=dtype, revision=revision)


def _load_text2img(name: str, dtype: torch.dtype, revision: str | None):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    if name == TINY:
        from ..testing import tiny_text2img

        return tiny_text2img().to(dtype=dtype)
    pipe = StableDiffusionPipeline.from_pretrained(
        name, torch_dtype=dtype, revision=revision, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # GenView++: DPM-Solver
    return pipe


def _load_encoder(name: str, dtype: torch.dtype, revision: str | None) -> ClipTokenEncoder:
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    if name == TINY:
        from ..testing import tiny_clip_vision_with_projection
        from ..testing.tiny_diffusion import TINY_DIFFUSION_IMAGE_SIZE

        model, processor = tiny_clip_vision_with_projection(image_size=TINY_DIFFUSION_IMAGE_SIZE)
        return ClipTokenEncoder(model.to(dtype), processor)
    try:  # a diffusers unCLIP repo keeps its encoder in subfolders
        model = CLIPVisionModelWithProjection.from_pretrained(
            name, subfolder="image_encoder", torch_dtype=dtype, revision=revision
        )
        processor = CLIPImageProcessor.from_pretrained(name, subfolder="feature_extractor", revision=revision)
    except OSError:
        model = CLIPVisionModelWithProjection.from_pretrained(name, torch_dtype=dtype, revision=revision)
        processor = CLIPImageProcessor.from_pretrained(name, revision=revision)
    return ClipTokenEncoder(model, processor)
