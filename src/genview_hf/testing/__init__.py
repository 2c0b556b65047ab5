"""Tiny offline components shared by the tests, the demo and the benchmarks."""

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
    "tiny_vit",
]
