"""The image encoder of generation: one CLIP forward gives the scorer's patch tokens and unCLIP's
conditioning embeddings."""

from __future__ import annotations

import torch
from PIL import Image


class ClipTokenEncoder:
    """Patch tokens (after ``post_layernorm``, CLS dropped) and image embeddings in one forward.

    Wraps a ``CLIPVisionModel(WithProjection)`` and its ``CLIPImageProcessor``: the unCLIP
    generator's own image encoder, so the scorer and the generator share a single forward pass.
    """

    def __init__(self, model, processor):
        self.model = model.eval()
        self.processor = processor
        config = model.config
        side = config.image_size // config.patch_size
        self.grid = (side, side)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, 3, S, S): each whole image resized to the encoder's input, not centre-cropped, so
        the token grid (and the stored mask) covers the image's whole field of view."""
        side = self.model.config.image_size
        return self.processor(
            images=images, do_center_crop=False, size={"height": side, "width": side}, return_tensors="pt"
        ).pixel_values

    @torch.no_grad()
    def __call__(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> patch tokens (B, T, D) float32, and image embeddings (B, E) in the model's dtype
        (None for a ``CLIPVisionModel`` without projection)."""
        pixels = self.pixel_values(images).to(self.device, self.dtype)
        out = self.model(pixel_values=pixels)
        # transformers 5: CLIPVisionModel holds the layers itself, ...WithProjection in .vision_model
        post_layernorm = getattr(self.model, "vision_model", self.model).post_layernorm
        tokens = post_layernorm(out.last_hidden_state[:, 1:])  # (B, T, D), CLS dropped
        return tokens.float(), getattr(out, "image_embeds", None)
