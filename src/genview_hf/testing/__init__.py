"""Tiny offline components and drawn sample data, shared by the tests, the demo and the benchmarks.

- tiny models and pipelines (``tiny_path(name)``, ``tiny:NAME`` in a config): production code never
  names them; a tiny component reaches a run as the folder it is saved in, like any other local model.
  The diffusion builders import diffusers only when called, so importing this package stays light;
- ``samples``: the embedded sample sets behind ``sample:NAME`` datasets (digits, shapes, photos);
- ``controlled``: the controlled false-positive set of the efficacy benchmark and the demo;
- ``training_data``: synthetic view batches for trainer tests and benchmarks.
"""

from pathlib import Path

from .tiny_diffusion import tiny_text2img, tiny_unclip_img2img
from .tiny_models import (
    tiny_clip,
    tiny_clip_tokenizer,
    tiny_clip_vision_with_projection,
    tiny_resnet,
    tiny_root,
    tiny_vit,
)

# name -> builder; each saves its component under tiny_root() / name on first use
TINY_COMPONENTS = {
    "vit": tiny_vit,
    "resnet": tiny_resnet,
    "clip": tiny_clip,
    "unclip-img2img": tiny_unclip_img2img,
    "text2img": tiny_text2img,
}


def tiny_path(name: str) -> Path:
    """The folder of tiny component ``name`` (built and saved on first use), for ``from_pretrained``."""
    if name not in TINY_COMPONENTS:
        raise ValueError(f"unknown tiny component {name!r}: expected one of {', '.join(TINY_COMPONENTS)}")
    TINY_COMPONENTS[name]()
    return tiny_root() / name


__all__ = [
    "TINY_COMPONENTS",
    "tiny_clip",
    "tiny_clip_tokenizer",
    "tiny_clip_vision_with_projection",
    "tiny_path",
    "tiny_resnet",
    "tiny_root",
    "tiny_text2img",
    "tiny_unclip_img2img",
    "tiny_vit",
]
