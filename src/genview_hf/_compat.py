"""Where genview_hf depends on how transformers lays out a model's modules: one helper per such
place, named for the release it follows, so that a transformers release that moves them changes
this file only (as TRL's ``_compat.py``)."""

from __future__ import annotations

from torch import nn


def clip_post_layernorm(vision: nn.Module) -> nn.Module:
    """The final layer norm of a CLIP vision tower. transformers 5: ``CLIPVisionModel`` holds the
    transformer's layers itself, ``CLIPVisionModelWithProjection`` under ``vision_model``."""
    return getattr(vision, "vision_model", vision).post_layernorm
