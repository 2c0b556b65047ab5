"""The image encoder of generation: one CLIP forward gives the scorer's patch tokens and, for
square images, unCLIP's conditioning embeddings too."""

from __future__ import annotations

import torch
from PIL import Image

from .._compat import clip_post_layernorm


class ClipTokenEncoder:
    """Patch tokens (after ``post_layernorm``, CLS dropped) and image embeddings.

    Wraps a ``CLIPVisionModel(WithProjection)`` and its ``CLIPImageProcessor``: the unCLIP
    generator's own image encoder, so the scorer and the generator share its forward pass. The two
    read different crops of a non-square image:

    - the tokens (and so the stored masks) cover the image's whole field of view, resized to the
      encoder's square input without a crop;
    - the conditioning embeddings are computed on what the pipeline itself would encode, the
      processor's own resize and centre crop: the official GenView and GenView++ scripts pass the
      PIL image to ``StableUnCLIPImg2ImgPipeline``, whose ``_encode_image`` runs
      ``feature_extractor(images=image)``. A square image gives the same pixels both ways and
      one forward serves both; the others get a second forward for their embeddings.
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

    def conditioning_pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, 3, S, S): the processor's own preprocessing (CLIP: shortest edge to S, centre crop),
        what the unCLIP pipeline encodes when it is given the image."""
        return self.processor(images=images, return_tensors="pt").pixel_values

    @torch.no_grad()
    def __call__(
        self, images: list[Image.Image], embeddings: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> patch tokens (B, T, D) float32, and unCLIP's conditioning embeddings (B, E) in the
        model's dtype (None for a ``CLIPVisionModel`` without projection, or ``embeddings=False``)."""
        pixels = self.pixel_values(images)
        out = self.model(pixel_values=pixels.to(self.device, self.dtype))
        tokens = clip_post_layernorm(self.model)(out.last_hidden_state[:, 1:])  # (B, T, D), CLS dropped
        embeds = getattr(out, "image_embeds", None)
        if embeds is None or not embeddings:
            return tokens.float(), None
        conditioning = self.conditioning_pixel_values(images)  # (B, 3, S, S)
        if conditioning.shape != pixels.shape:
            cropped = list(range(len(images)))
        else:
            cropped = [i for i in range(len(images)) if not torch.equal(conditioning[i], pixels[i])]
        if cropped:
            embeds = embeds.clone()
            embeds[cropped] = self.model(
                pixel_values=conditioning[cropped].to(self.device, self.dtype)
            ).image_embeds
        return tokens.float(), embeds
