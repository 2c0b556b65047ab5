"""Tiny offline components shared by the tests, the demo and the benchmarks.

The diffusion builders import diffusers only when called, so importing this package stays light.
"""

from .tiny_diffusion import tiny_text2img, tiny_unclip_img2img
from .tiny_models import (
    tiny_clip,
    tiny_clip_tokenizer,
    tiny_clip_vision_with_projection,
    tiny_resnet,
    tiny_root,
    tiny_vit,
)

__all__ = [
    "tiny_clip",
    "tiny_clip_tokenizer",
    "tiny_clip_vision_with_projection",
    "tiny_resnet",
    "tiny_root",
    "tiny_text2img",
    "tiny_unclip_img2img",
    "tiny_vit",
]
