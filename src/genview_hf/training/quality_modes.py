"""The quality modes: where the token maps and foreground maps of the weights come from.

``quality_weights(mode, ...)`` is the one function that turns a batch into quality weights,
one branch per mode of ``GenViewTrainingArguments.quality_mode``:

- ``off``: no weights, every pair counts the same (the baseline).
- ``frozen`` (the papers' setting): the token maps of a frozen vision model (``FrozenQualityModel``);
  the foreground of each view is its tokens projected on a foreground direction (a fitted
  one, else the first principal component of the batch's tokens), min-max normalised.
- ``stored`` (our approximation, no extra forward): the training model's own detached patch
  tokens, with the foreground masks stored by generation, cropped with each view.

Both give a ``TokenMaps``; the formulas of ``genview_hf.quality`` then make GenView's pair
weights (SSL methods, SLIP's SSL pair) or GenView++'s image-text and image-image weights
(multi-positive batches). Shapes: N samples, V views, T tokens of C channels, E embedding size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

from ..modeling.features import encode_image, masks_to_tokens, principal_direction, token_map, vision_tower
from ..quality import image_text_quality_weights, multi_view_quality_weights
from ..quality import quality_weights as pair_weights


@dataclass
class QualityWeights:
    """Detached weights of one batch: ``pairs`` (N,) for a GenView pair (SSL methods, SLIP's SSL
    term); ``image_text`` (N, V) and ``image_image`` (N, V, V) for a GenView++ batch."""

    pairs: torch.Tensor | None = None
    image_text: torch.Tensor | None = None
    image_image: torch.Tensor | None = None

    def logged(self) -> torch.Tensor:
        """The weights the trainer logs and plots: the pair weights, else the image-text ones."""
        return self.pairs if self.pairs is not None else self.image_text


@dataclass
class TokenMaps:
    """What a quality mode hands to the weight formulas.

    ``views`` (N, V, T, C): token maps of the V views of each sample (V = 2 for a pair);
    ``view_masks`` (N, V, T) in [0, 1]: their foreground, or None to project on ``direction`` (C,).
    GenView++ also reads ``real`` (N, T, C) / ``real_masks`` (N, T), the unaugmented real image,
    and the image (N, V, E) and caption (N, E) embeddings.
    """

    views: torch.Tensor
    view_masks: torch.Tensor | None = None
    direction: torch.Tensor | None = None
    real: torch.Tensor | None = None
    real_masks: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None

    def weights(self, gamma: float, multi_positive: bool) -> QualityWeights:
        if not multi_positive:
            return QualityWeights(
                pairs=pair_weights(
                    self.views[:, 0],
                    self.views[:, 1],
                    self.direction,
                    gamma=gamma,
                    masks1=None if self.view_masks is None else self.view_masks[:, 0],
                    masks2=None if self.view_masks is None else self.view_masks[:, 1],
                )
            )
        image_image = multi_view_quality_weights(
            self.views, self.direction, gamma, view_masks=self.view_masks
        )
        image_text = image_text_quality_weights(
            self.image_embeds, self.text_embeds, self.views, self.real, self.direction, gamma,
            view_masks=self.view_masks, real_masks=self.real_masks,
        )  # fmt: skip
        return QualityWeights(image_text=image_text, image_image=image_image)


@torch.no_grad()
def quality_weights(
    mode: str,
    batch: dict[str, Any],
    outputs: Any,
    *,
    frozen: FrozenQualityModel | None,
    gamma: float,
    multi_positive: bool,
) -> QualityWeights | None:
    """The quality weights of one batch (``None`` in mode ``off``); ``outputs`` is the training
    model's forward on the batch (``GenViewSSLOutput`` / ``GenViewCLIPOutput``)."""
    if mode == "off":
        return None
    if mode == "stored":
        maps = stored_token_maps(batch, outputs, multi_positive)
    elif mode == "frozen":
        if frozen is None:
            raise ValueError("quality_mode='frozen' needs a quality_model")
        maps = frozen.token_maps(batch, multi_positive)
    else:
        raise ValueError(f"unknown quality_mode {mode!r}: expected frozen, stored or off")
    return maps.weights(gamma, multi_positive)


def stored_token_maps(batch: dict[str, Any], outputs: Any, multi_positive: bool) -> TokenMaps:
    """``stored`` mode: the training model's detached tokens, the batch's cropped stored masks."""
    if multi_positive:
        masks = _require(batch, "masks")  # (N, V, H, W)
        views = outputs.view_tokens.float()  # (N, V, T, C)
        n, v, t = views.shape[:3]
        real = outputs.real_tokens.float()  # (N, T', C)
        real_masks = batch.get("masks_real")
        return TokenMaps(
            views=views,
            view_masks=masks_to_tokens(masks.flatten(0, 1), t).view(n, v, t),
            # Without the real image's mask its foreground comes from the batch's principal direction.
            direction=principal_direction(real) if real_masks is None else None,
            real=real,
            real_masks=None if real_masks is None else masks_to_tokens(real_masks, real.shape[1]),
            image_embeds=outputs.image_embeds.detach(),
            text_embeds=outputs.text_embeds.detach(),
        )
    masks_1, masks_2 = _require(batch, "masks_1"), _require(batch, "masks_2")
    tokens_1, tokens_2 = outputs.tokens_1.float(), outputs.tokens_2.float()  # (N, T, C) each
    if masks_1.shape[0] != tokens_1.shape[0] or masks_2.shape[0] != tokens_2.shape[0]:
        raise ValueError(
            f"masks batch {masks_1.shape[0]}/{masks_2.shape[0]} does not match the views batch {tokens_1.shape[0]}"
        )
    view_masks = torch.stack(
        [masks_to_tokens(masks_1, tokens_1.shape[1]), masks_to_tokens(masks_2, tokens_2.shape[1])], 1
    )
    return TokenMaps(views=torch.stack([tokens_1, tokens_2], 1), view_masks=view_masks)


def _require(batch: dict[str, Any], key: str) -> torch.Tensor:
    value = batch.get(key)
    if value is None:
        raise ValueError(
            f"quality_mode='stored' needs {key} in the batch: the dataset has no mask columns "
            "(use quality_mode='frozen' or 'off')"
        )
    return value


class FrozenQualityModel:
    """The frozen vision model of the ``frozen`` mode: eval mode, no gradient, bf16 on GPU.

    ``model``: any HF vision model (a ``CLIPModel`` contributes its vision tower); GenView++
    (multi-positive) needs a whole ``CLIPModel`` for its image and text embeddings.
    ``direction`` (C,): the fixed foreground direction of its tokens; None: the first principal
    component of each batch's tokens.
    """

    def __init__(
        self,
        model: nn.Module,
        direction: torch.Tensor | None = None,
        *,
        multi_positive: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if multi_positive and not isinstance(model, CLIPModel):
            raise ValueError(
                f"GenView++ image-text weights need a frozen CLIPModel (image and text towers), got {type(model).__name__}"
            )
        self.clip = model if multi_positive else None
        self.vision = vision_tower(model)
        device = torch.device(device)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model.eval().requires_grad_(False).to(device, dtype)
        self.direction = direction

    def _fit(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels resized to the frozen model's ``image_size`` (when it has one), in its dtype."""
        parameter = next(self.vision.parameters())
        size = getattr(self.vision.config, "image_size", None)
        if isinstance(size, int) and pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels.float(), size=(size, size), mode="bilinear", align_corners=False)
        return pixels.to(parameter.device, parameter.dtype)

    def _direction(self, tokens: torch.Tensor) -> torch.Tensor:
        direction = principal_direction(tokens) if self.direction is None else self.direction
        return direction.to(tokens.device)

    def token_maps(self, batch: dict[str, Any], multi_positive: bool) -> TokenMaps:
        if multi_positive:
            return self._multi_positive_maps(batch)
        # Both views in one pass (eval mode: no batch statistics).
        n = batch["pixel_values_1"].shape[0]
        pixels = self._fit(torch.cat([batch["pixel_values_1"], batch["pixel_values_2"]]))  # (2N, 3, h, w)
        _, tokens = encode_image(self.vision, pixels, with_tokens=True)
        tokens = tokens.float()  # (2N, T, C)
        return TokenMaps(views=torch.stack([tokens[:n], tokens[n:]], 1), direction=self._direction(tokens))

    def _multi_positive_maps(self, batch: dict[str, Any]) -> TokenMaps:
        pixels = batch["pixel_values"]
        n, v = pixels.shape[:2]
        outputs = self.vision(pixel_values=self._fit(pixels.flatten(0, 1)))
        tokens = token_map(outputs.last_hidden_state).float()
        views = tokens.reshape(n, v, *tokens.shape[1:])  # (N, V, T, C)
        real = self.vision(pixel_values=self._fit(batch["pixel_values_real"])).last_hidden_state
        real_tokens = token_map(real).float()  # (N, T, C)
        text = self.clip.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")
        ).pooler_output
        return TokenMaps(
            views=views,
            direction=self._direction(torch.cat([tokens, real_tokens])),
            real=real_tokens,
            image_embeds=self.clip.visual_projection(outputs.pooler_output).float().reshape(n, v, -1),
            text_embeds=text.float(),
        )


def load_direction(path: str | Path) -> torch.Tensor:
    """A foreground direction: the scorer folder a views dataset was generated with
    (``genview_hf.foreground``), or a .safetensors / .pt / .npy / .json vector."""
    path = Path(path)
    if path.is_dir():
        from ..foreground import ForegroundScorer

        value = ForegroundScorer.load(path).direction
    elif path.suffix == ".safetensors":
        value = safetensors.torch.load_file(str(path))["direction"]
    elif path.suffix == ".pt":
        value = torch.load(path, map_location="cpu", weights_only=True)
    elif path.suffix == ".npy":
        import numpy as np

        value = torch.from_numpy(np.load(path))
    elif path.suffix == ".json":
        value = torch.tensor(json.loads(path.read_text()))
    else:
        raise ValueError(
            f"{path}: a foreground direction is a scorer folder or a .safetensors/.pt/.npy/.json file"
        )
    value = torch.as_tensor(value, dtype=torch.float32).flatten()
    if value.numel() == 0 or not torch.isfinite(value).all():
        raise ValueError(f"{path}: the foreground direction is empty or not finite")
    return value
