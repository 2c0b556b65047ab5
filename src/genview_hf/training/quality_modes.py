"""The quality modes: where the token maps and foreground maps of the weights come from.

``quality_weights(mode, ...)`` is the one function that turns a batch into quality weights,
one branch per mode of ``GenViewTrainingArguments.quality_mode``:

- ``off``: no weights, every pair counts the same (the baseline).
- ``frozen`` (the papers' setting): the token maps of a frozen vision model (``FrozenQualityModel``),
  fed each view re-normalised with its own processor's statistics; the foreground of each view
  is its tokens projected on one fixed foreground direction (given, or fitted once on the
  training set at the start of the run: :func:`run_direction`), min-max normalised.
- ``stored`` (our approximation, no extra forward): the training model's own detached patch
  tokens, with the foreground masks stored by generation, cropped with each view. A crop can
  hold no background (or no foreground) at all; q would then lose one of its two terms, so a
  weight that involves such a view is set to 1 and the others are renormalised to mean 1
  (``DEGENERATE_MASS``, :func:`neutralize`).

Options of the frozen mode for GenView pairs (ours; the papers' setting is each one off, measured
on a controlled false-positive benchmark in docs/efficacy.md):

- stored masks for the foreground (``quality_foreground="masks"``): the batch's cropped stored
  masks (``masks_*``, the collator adds them when the run asks) replace the projection on the
  direction, as in ``stored`` mode, but pool the frozen model's tokens;
- geometric views (``quality_views="geometric"``): the frozen model sees each view's crop and flip
  without its colour operations (``quality_pixel_values_*``, from :class:`GeometricViewsCollator`),
  so that a pair is judged on its content, not on two independent colour jitters;
- centred cosines (``quality_center``, also for ``stored``): :func:`genview_hf.quality.pair_quality`'s
  ``center``.

How the pairs' qualities become weights (``quality_weighting``, both modes, GenView pairs): the
papers' softmax by default, or a rule that can reach zero (:data:`genview_hf.quality.WEIGHTINGS`),
held with its state by :class:`PairWeighting`; ``row_memory`` reads each row's dataset index, which
:class:`RowIndexCollator` adds to the batch.

LeOCLR (``original_pairs=True``) weights the pairs its loss contrasts: (original, crop 1) and
(original, crop 2), ``QualityWeights.original_pairs``.

Both give a ``TokenMaps``; the formulas of ``genview_hf.quality`` then make GenView's pair
weights (SSL methods, SLIP's SSL pair) or GenView++'s image-text and image-image weights
(multi-positive batches). Shapes: N samples, V views, T tokens of C channels, E embedding size.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoImageProcessor, CLIPModel

from ..data import schema
from ..data.augment import MethodAugmentations
from ..data.collators import CollatorWrapper
from ..data.images import decode_image
from ..data.views import ROW_INDEX
from ..foreground import ForegroundScorer, grid_from_tokens
from ..modeling.features import (
    backbone_feature_dim,
    masks_to_tokens,
    principal_direction,
    token_map,
    vision_tower,
)
from ..quality import (
    WEIGHTINGS,
    RowQualityMemory,
    image_text_quality_weights,
    multi_view_quality_weights,
    pair_quality,
    pair_weights,
)

logger = logging.getLogger(__name__)

# A stored crop mask with less than half a token of foreground, or of background, is degenerate.
DEGENERATE_MASS = 0.5
# The frozen mode's foreground direction: quality_direction="batch" re-fits it on every batch;
# by default it is fitted once on DIRECTION_SAMPLES training images (the paper's sample size) and
# saved in output_dir/DIRECTION_FOLDER.
BATCH_DIRECTION = "batch"
DIRECTION_FOLDER = "quality_direction"
DIRECTION_SAMPLES = 10_000
# Rows that are already tensors (no image column): the view the direction is fitted on, first found.
SAMPLE_PIXEL_KEYS = ("pixel_values_real", "pixel_values_orig", "pixel_values_1", "pixel_values")
# Batch keys QUALITY_INPUTS + "pixel_values_*": a view as the frozen quality model sees it (not the
# training model: the trainer keeps them, like the masks, out of the model's inputs).
QUALITY_INPUTS = "quality_"
# The SSL views, and the stored mask cropped with each.
VIEW_MASKS = {"pixel_values_1": "masks_1", "pixel_values_2": "masks_2", "pixel_values_orig": "masks_orig"}
# (N,) long batch key: each row's dataset index, for quality_weighting="row_memory" (RowIndexCollator).
ROW_INDICES = QUALITY_INPUTS + "row_index"


class PairWeighting:
    """How a run turns its GenView pairs' qualities q into weights: the ``quality_weighting`` rule
    (:func:`genview_hf.quality.pair_weights`) and, for ``row_memory``, the rows' memory it carries
    across steps (:class:`genview_hf.quality.RowQualityMemory`)."""

    def __init__(self, name: str = "softmax") -> None:
        if name not in WEIGHTINGS:
            raise ValueError(f"unknown quality_weighting {name!r}: expected one of {', '.join(WEIGHTINGS)}")
        self.name = name
        self.memory = RowQualityMemory() if name == "row_memory" else None

    def __call__(
        self, q: torch.Tensor, gamma: float, rows: torch.Tensor | None = None, progress: float = 0.0
    ) -> torch.Tensor:
        """Weights (N,) of the qualities ``q`` (N,) of the dataset rows ``rows`` (N,), at ``progress``
        in [0, 1] of training."""
        smoothed = None
        if self.memory is not None:
            if rows is None:
                raise ValueError(
                    f"quality_weighting='row_memory' needs each row's dataset index in the batch ({ROW_INDICES}): "
                    "build the collator with training.builders.collator, or wrap it in RowIndexCollator"
                )
            smoothed = self.memory.update(rows, q)
        return pair_weights(q, self.name, gamma, progress, smoothed)


@dataclass
class QualityWeights:
    """Detached weights of one batch: ``pairs`` (N,) for a GenView pair (SSL methods, SLIP's SSL
    term); ``original_pairs`` (N, 2) for LeOCLR's (original, crop j) pairs; ``image_text`` (N, V)
    and ``image_image`` (N, V, V) for a GenView++ batch."""

    pairs: torch.Tensor | None = None
    original_pairs: torch.Tensor | None = None
    image_text: torch.Tensor | None = None
    image_image: torch.Tensor | None = None

    def logged(self) -> torch.Tensor:
        """The weights the trainer logs: the pair weights, else LeOCLR's, else the image-text ones."""
        for weights in (self.pairs, self.original_pairs):
            if weights is not None:
                return weights
        return self.image_text

    def figure_pairs(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The weighted pairs of ``batch`` for the pair figure: (first images (M, 3, H, W), second
        images (M, 3, H, W), weights (M,)). GenView pairs: (view 1, view 2); LeOCLR: (original,
        crop 1) then (original, crop 2); GenView++: (unaugmented real image, view v) with the view's
        image-text weight. None when the batch lacks those pixels."""
        if self.pairs is not None and "pixel_values_1" in batch:
            return batch["pixel_values_1"], batch["pixel_values_2"], self.pairs
        if self.original_pairs is not None and "pixel_values_orig" in batch:
            original = batch["pixel_values_orig"]
            crops = torch.cat([batch["pixel_values_1"], batch["pixel_values_2"]])
            return torch.cat([original, original]), crops, self.original_pairs.T.reshape(-1)
        views = batch.get("pixel_values")
        if self.image_text is not None and views is not None and views.dim() == 5:  # (N, V, 3, H, W)
            real = batch.get("pixel_values_real", views[:, 0])
            return real.repeat_interleave(views.shape[1], 0), views.flatten(0, 1), self.image_text.flatten()
        return None


@dataclass
class TokenMaps:
    """What a quality mode hands to the weight formulas.

    ``views`` (N, V, T, C): token maps of the V views of each sample (V = 2 for a pair; LeOCLR:
    V = 3, the original then its two crops, ``anchored``); ``view_masks`` (N, V, T) in [0, 1]:
    their foreground, or None to project on ``direction`` (C,). GenView++ also reads ``real``
    (N, T, C) / ``real_masks`` (N, T), the unaugmented real image, and the image (N, V, E) and
    caption (N, E) embeddings. Stored masks also give ``degenerate`` (N, V) / ``real_degenerate``
    (N,): masks without foreground or without background (:func:`degenerate_masks`).
    """

    views: torch.Tensor
    view_masks: torch.Tensor | None = None
    direction: torch.Tensor | None = None
    real: torch.Tensor | None = None
    real_masks: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    anchored: bool = False
    degenerate: torch.Tensor | None = None
    real_degenerate: torch.Tensor | None = None

    def _pair(
        self, a: int, b: int, gamma: float, center: bool, weighting: PairWeighting, **state: Any
    ) -> torch.Tensor:
        """GenView's weights (N,) of the pairs (view a, view b) under ``weighting`` (``state``: its rows and
        progress); neutral where either mask is degenerate."""
        masks = self.view_masks
        q = pair_quality(
            self.views[:, a], self.views[:, b], self.direction,
            masks1=None if masks is None else masks[:, a], masks2=None if masks is None else masks[:, b],
            center=center,
        )  # fmt: skip
        weights = weighting(q, gamma, **state)
        if self.degenerate is None:
            return weights
        return neutralize(weights, self.degenerate[:, a] | self.degenerate[:, b])

    def weights(
        self,
        gamma: float,
        multi_positive: bool,
        center: bool = False,
        weighting: PairWeighting | None = None,
        rows: torch.Tensor | None = None,
        progress: float = 0.0,
    ) -> QualityWeights:
        """The batch's weights; ``center``: GenView pairs' centred cosines (``quality.pair_quality``);
        ``weighting``: how their q become weights (None: the papers' softmax), for the dataset rows
        ``rows`` (N,) at ``progress`` in [0, 1] of training."""
        if not multi_positive:
            weighting = weighting or PairWeighting()
            state = dict(rows=rows, progress=progress)
            if self.anchored:  # LeOCLR: (original, crop 1) and (original, crop 2)
                pairs = [self._pair(0, b, gamma, center, weighting, **state) for b in (1, 2)]
                return QualityWeights(original_pairs=torch.stack(pairs, 1))
            return QualityWeights(pairs=self._pair(0, 1, gamma, center, weighting, **state))
        image_image = multi_view_quality_weights(
            self.views, self.direction, gamma, view_masks=self.view_masks
        )
        image_text = image_text_quality_weights(
            self.image_embeds, self.text_embeds, self.views, self.real, self.direction, gamma,
            view_masks=self.view_masks, real_masks=self.real_masks,
        )  # fmt: skip
        if self.degenerate is not None:
            v = self.views.shape[1]
            off_diagonal = ~torch.eye(v, dtype=torch.bool, device=image_image.device)
            pairs_involved = self.degenerate[:, :, None] | self.degenerate[:, None, :]  # (N, V, V)
            image_image = neutralize(image_image, pairs_involved, counted=off_diagonal.expand_as(image_image))
            text_involved = self.degenerate
            if self.real_degenerate is not None:  # the background term reads the real image's mask too
                text_involved = text_involved | self.real_degenerate[:, None]
            image_text = neutralize(image_text, text_involved)
        return QualityWeights(image_text=image_text, image_image=image_image)


def degenerate_masks(masks: torch.Tensor) -> torch.Tensor:
    """(..., T) token masks in [0, 1] -> (...) bool: less than ``DEGENERATE_MASS`` tokens' worth of
    foreground, or of background. Pooling such a view gives no background (or foreground)
    feature, so its q would lose a term."""
    foreground = masks.sum(-1)
    return (foreground < DEGENERATE_MASS) | (foreground > masks.shape[-1] - DEGENERATE_MASS)


def neutralize(
    weights: torch.Tensor, involved: torch.Tensor, counted: torch.Tensor | None = None
) -> torch.Tensor:
    """Weights (mean 1 over the ``counted`` entries) with every ``involved`` entry set to 1 and the
    others rescaled to mean 1 among themselves, so the mean over ``counted`` stays 1. For GenView's
    ``N * softmax(gamma q)`` the rescaled entries are exactly the softmax over the other pairs."""
    counted = torch.ones_like(involved) if counted is None else counted
    kept = counted & ~involved
    kept_mean = (weights * kept).sum() / kept.sum().clamp(min=1)  # no host sync
    out = torch.where(kept, weights / kept_mean.clamp(min=1e-12), weights)
    return torch.where(involved & counted, torch.ones_like(weights), out)


@torch.no_grad()
def quality_weights(
    mode: str,
    batch: dict[str, Any],
    outputs: Any,
    *,
    frozen: FrozenQualityModel | None,
    gamma: float,
    multi_positive: bool,
    original_pairs: bool = False,
    center: bool = False,
    foreground: str = "direction",
    weighting: PairWeighting | None = None,
    progress: float = 0.0,
) -> QualityWeights | None:
    """The quality weights of one batch (``None`` in mode ``off``); ``outputs`` is the training
    model's forward on the batch (``GenViewSSLOutput`` / ``GenViewCLIPOutput``);
    ``original_pairs``: LeOCLR's (original, crop j) pairs instead of the (view 1, view 2) pair;
    ``center``: centred cosines for GenView pairs (``quality_center``); ``foreground``: the frozen
    mode's foreground, ``direction`` (the papers) or ``masks`` (``quality_foreground``);
    ``weighting``: GenView pairs' weighting rule and its state (``quality_weighting``; None: the
    papers' softmax), at ``progress`` in [0, 1] of training."""
    if mode == "off":
        return None
    if mode == "stored":
        maps = stored_token_maps(batch, outputs, multi_positive, original_pairs)
    elif mode == "frozen":
        if frozen is None:
            raise ValueError("quality_mode='frozen' needs a quality_model")
        maps = frozen.token_maps(batch, multi_positive, original_pairs, foreground)
    else:
        raise ValueError(f"unknown quality_mode {mode!r}: expected frozen, stored or off")
    return maps.weights(gamma, multi_positive, center, weighting, batch.get(ROW_INDICES), progress)


def stored_token_maps(
    batch: dict[str, Any], outputs: Any, multi_positive: bool, original_pairs: bool = False
) -> TokenMaps:
    """``stored`` mode: the training model's detached tokens, the batch's cropped stored masks."""
    if multi_positive:
        masks = _require(batch, "masks")  # (N, V, H, W)
        views = outputs.view_tokens.float()  # (N, V, T, C)
        n, v, t = views.shape[:3]
        real = outputs.real_tokens.float()  # (N, T', C)
        real_masks = batch.get("masks_real")
        if real_masks is not None:
            real_masks = masks_to_tokens(real_masks, real.shape[1])  # (N, T')
        view_masks = masks_to_tokens(masks.flatten(0, 1), t).view(n, v, t)
        return TokenMaps(
            views=views,
            view_masks=view_masks,
            # Without the real image's mask its foreground comes from the batch's principal direction.
            direction=principal_direction(real) if real_masks is None else None,
            real=real,
            real_masks=real_masks,
            image_embeds=outputs.image_embeds.detach(),
            text_embeds=outputs.text_embeds.detach(),
            degenerate=degenerate_masks(view_masks),
            real_degenerate=None if real_masks is None else degenerate_masks(real_masks),
        )
    keys = ["pixel_values_1", "pixel_values_2"]
    tokens = [outputs.tokens_1, outputs.tokens_2]
    if original_pairs:  # LeOCLR: the original (query encoder) first
        keys, tokens = ["pixel_values_orig", *keys], [outputs.tokens_orig, *tokens]
    views = torch.stack([t.float() for t in tokens], 1)  # (N, V, T, C)
    return masked_pair_maps(batch, keys, views, original_pairs)


def masked_pair_maps(
    batch: Mapping[str, Any], keys: Sequence[str], views: torch.Tensor, anchored: bool
) -> TokenMaps:
    """GenView pairs' token maps whose foreground is the batch's stored masks cropped with each view
    (``VIEW_MASKS[key]``, (N, H, W) each) on the token grid of ``views`` (N, V, T, C)."""
    masks = [_require(batch, VIEW_MASKS[key]) for key in keys]  # (N, H, W) each
    if any(m.shape[0] != views.shape[0] for m in masks):
        raise ValueError(
            f"masks batch {'/'.join(str(m.shape[0]) for m in masks)} does not match the views batch {views.shape[0]}"
        )
    view_masks = torch.stack([masks_to_tokens(m, views.shape[2]) for m in masks], 1)  # (N, V, T)
    return TokenMaps(
        views=views, view_masks=view_masks, anchored=anchored, degenerate=degenerate_masks(view_masks)
    )


def _require(batch: dict[str, Any], key: str) -> torch.Tensor:
    value = batch.get(key)
    if value is None:
        raise ValueError(
            f"reading the stored masks (quality_mode='stored' or quality_foreground='masks') needs {key} in the "
            "batch: the dataset has no mask columns (use quality_mode='frozen' with quality_foreground='direction', "
            "or 'off')"
        )
    return value


class GeometricViewsCollator(CollatorWrapper):
    """An SSL collator whose batches also carry each view as the frozen quality model should see it
    (``quality_views="geometric"``): ``quality_pixel_values_1``, ``_2`` (and LeOCLR's ``_orig``),
    (N, 3, H, W), the same crop and flip as ``pixel_values_*`` without the colour jitter, grayscale,
    blur and solarize, which the method draws independently for the two views of a pair.

    A row's augmentation is a pure function of (seed, epoch, row index) (``data.collators``), so a
    copy of the collator with the geometric part of each preset, run on the same rows, draws the
    same crops and flips.
    """

    def __init__(self, collator: Any) -> None:
        presets = getattr(collator, "augmentations", None)
        if not isinstance(presets, MethodAugmentations):
            raise ValueError(
                f"quality_views='geometric' needs an SSL pair collator (SSLCollator, SLIPCollator), got "
                f"{type(collator).__name__}"
            )
        super().__init__(collator)
        geometric = {item.name: getattr(presets, item.name) for item in fields(presets)}
        self.__dict__["geometric_augmentations"] = replace(
            presets, **{name: view.geometry_only() for name, view in geometric.items() if view is not None}
        )

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        collator = self.collator
        if collator.seed is None or not all(ROW_INDEX in row for row in rows):
            raise ValueError(
                "quality_views='geometric' replays each row's own augmentation: the rows need their index "
                f"({ROW_INDEX}) and the collator a seed, as GenViewTrainer arranges"
            )
        batch = collator(rows)
        geometric = copy.copy(collator)  # the wrapped one's current seed and epoch
        geometric.augmentations = self.geometric_augmentations
        views = geometric(rows)
        for key in VIEW_MASKS:
            if key in views:
                batch[QUALITY_INPUTS + key] = views[key]
        return batch


class RowIndexCollator(CollatorWrapper):
    """A collator whose batches also carry each row's dataset index (``ROW_INDICES``, (N,) long), which
    ``GenViewTrainer`` gives every row (``__index__``); for ``quality_weighting="row_memory"``."""

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not all(ROW_INDEX in row for row in rows):
            raise ValueError(
                f"quality_weighting='row_memory' remembers each row by its dataset index: the rows need it "
                f"({ROW_INDEX}), as GenViewTrainer arranges"
            )
        batch = self.collator(rows)
        batch[ROW_INDICES] = torch.tensor([int(row[ROW_INDEX]) for row in rows], dtype=torch.long)
        return batch


def quality_tokens(vision: nn.Module, outputs: Any) -> torch.Tensor:
    """Patch tokens (N, T, C) of a vision model's ``outputs``, in the space the foreground
    direction lives in, for the frozen mode and the generation scorer alike: a CLIP vision
    tower's tokens after its ``post_layernorm`` (CLS dropped), as ``ClipTokenEncoder`` reads them;
    any other model's last hidden state as :func:`token_map` reads it (ConvNeXt: the stage-4 map
    before the head norm, the official GenView tokens; ViT: after its final layer norm)."""
    tokens = token_map(outputs.last_hidden_state)
    if getattr(vision.config, "model_type", None) == "clip_vision_model":
        # transformers 5: CLIPVisionModel holds the layers itself, ...WithProjection in .vision_model
        tokens = getattr(vision, "vision_model", vision).post_layernorm(tokens)
    return tokens


class FrozenQualityModel:
    """The frozen vision model of the ``frozen`` mode: eval mode, no gradient, bf16 on GPU.

    ``model``: any HF vision model (a ``CLIPModel`` contributes its vision tower); GenView++
    (multi-positive) needs a whole ``CLIPModel`` for its image and text embeddings. Its tokens
    are read as :func:`quality_tokens` reads them; ``width`` is their channel count C.

    ``direction`` (C,): the fixed foreground direction of those tokens (:func:`run_direction`: a
    given one, or one fitted once on the training set by :meth:`fit_direction`); None: the first
    principal component of each batch's tokens (``quality_direction="batch"``: a row's weight
    then depends on the other rows of its batch).

    ``processor``: the model's image processor (its pixel statistics, the preprocessing of the
    fit); None: loaded from the folder or Hub id the model was loaded from, as ``pipeline`` does.
    ``input_mean`` / ``input_std``: the statistics the batches' pixels are normalised with (the
    training collator's): each view is re-normalised with the processor's statistics and resized
    to the model's ``image_size``. None: the pixels already use the frozen model's statistics.
    """

    def __init__(
        self,
        model: nn.Module,
        direction: torch.Tensor | None = None,
        *,
        processor: Any = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        multi_positive: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if multi_positive and not isinstance(model, CLIPModel):
            raise ValueError(
                f"GenView++ image-text weights need a frozen CLIPModel (image and text towers), got {type(model).__name__}"
            )
        self.clip = model if multi_positive else None
        self.vision = vision_tower(model)
        self.width = backbone_feature_dim(self.vision.config)
        self.processor = _image_processor(model, processor)
        self._renormalization = self._input_to_own(input_mean, input_std)
        device = torch.device(device)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        (model if multi_positive else self.vision).eval().requires_grad_(False).to(device, dtype)
        self.direction = direction

    @property
    def direction(self) -> torch.Tensor | None:
        return self._fixed_direction

    @direction.setter
    def direction(self, value: torch.Tensor | None) -> None:
        self._fixed_direction = None if value is None else checked_direction(value, self.width)

    def _input_to_own(
        self, mean: Sequence[float] | None, std: Sequence[float] | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(scale, shift), each (3, 1, 1), with ``own = input * scale + shift``: the input
        normalisation undone, the processor's applied. None when the inputs already use the latter."""
        if mean is None and std is None:
            return None
        own_mean, own_std = (getattr(self.processor, name, None) for name in ("image_mean", "image_std"))
        if mean is None or std is None or own_mean is None or own_std is None:
            raise ValueError(
                "cannot re-normalise the views for the frozen quality model: it needs input_mean and input_std "
                "and the model's own image processor (image_mean, image_std); load the model with "
                "from_pretrained from a folder or Hub id that has a preprocessor_config.json, or pass processor="
            )
        mean, std, own_mean, own_std = (
            torch.tensor(list(values), dtype=torch.float32).view(-1, 1, 1)
            for values in (mean, std, own_mean, own_std)
        )
        # input = (x - mean) / std and own = (x - own_mean) / own_std for the same [0, 1] pixels x
        return std / own_std, (mean - own_mean) / own_std

    def _pixels(self, pixels: torch.Tensor, renormalize: bool = True) -> torch.Tensor:
        """Views (N, 3, h, w) as the frozen model reads them: re-normalised with its statistics
        (``renormalize``), resized to its ``image_size`` (when it has one), in its device and dtype.
        Both steps are per-channel affine, so their order does not matter."""
        parameter = next(self.vision.parameters())
        pixels = pixels.to(parameter.device, torch.float32)
        if renormalize and self._renormalization is not None:
            scale, shift = (t.to(pixels.device) for t in self._renormalization)
            pixels = pixels * scale + shift
        size = getattr(self.vision.config, "image_size", None)
        if isinstance(size, int) and pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
        return pixels.to(parameter.dtype)

    def _encode(self, pixels: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The vision model's outputs on prepared pixels, and their tokens (N, T, C) in float32."""
        outputs = self.vision(pixel_values=pixels)
        return outputs, quality_tokens(self.vision, outputs).float()

    def _direction(self, tokens: torch.Tensor) -> torch.Tensor:
        direction = principal_direction(tokens) if self.direction is None else self.direction
        return direction.to(tokens.device)

    def token_maps(
        self,
        batch: dict[str, Any],
        multi_positive: bool,
        original_pairs: bool = False,
        foreground: str = "direction",
    ) -> TokenMaps:
        """The frozen model's token maps of the batch's views; their foreground from ``direction`` or,
        with ``foreground="masks"`` (GenView pairs), from the batch's cropped stored masks."""
        if foreground not in ("direction", "masks"):
            raise ValueError(f"unknown quality_foreground {foreground!r}: expected direction or masks")
        if multi_positive:
            if foreground == "masks":
                raise ValueError("quality_foreground='masks' is for GenView pairs, not GenView++ batches")
            return self._multi_positive_maps(batch)
        # Every view in one pass (eval mode: no batch statistics); LeOCLR's original first. A view's
        # geometric version (quality_views="geometric") replaces it when the batch has one.
        keys = ["pixel_values_1", "pixel_values_2"]
        if original_pairs:
            keys = ["pixel_values_orig", *keys]
        pixels = [batch.get(QUALITY_INPUTS + key, batch[key]) for key in keys]
        n = pixels[0].shape[0]
        _, tokens = self._encode(self._pixels(torch.cat(pixels)))  # (V N, T, C)
        views = tokens.reshape(len(keys), n, *tokens.shape[1:]).transpose(0, 1)  # (N, V, T, C)
        if foreground == "masks":  # the batch's cropped stored masks, not the direction
            return masked_pair_maps(batch, keys, views, original_pairs)
        return TokenMaps(views=views, direction=self._direction(tokens), anchored=original_pairs)

    def _multi_positive_maps(self, batch: dict[str, Any]) -> TokenMaps:
        pixels = batch["pixel_values"]
        n, v = pixels.shape[:2]
        outputs, tokens = self._encode(self._pixels(pixels.flatten(0, 1)))
        views = tokens.reshape(n, v, *tokens.shape[1:])  # (N, V, T, C)
        _, real_tokens = self._encode(self._pixels(batch["pixel_values_real"]))  # (N, T, C)
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

    @torch.no_grad()
    def fit_direction(
        self,
        dataset: Any,
        num_samples: int = DIRECTION_SAMPLES,
        batch_size: int = 64,
        seed: int = 0,
        progress: bool = False,
    ) -> ForegroundScorer:
        """The generation scorer's fit (:meth:`ForegroundScorer.fit`: the top eigenvector of the
        tokens' mean-centred covariance, signed so the centre of the grid projects above its
        border) on this model's tokens of ``num_samples`` rows of ``dataset``, drawn with ``seed``
        (every row when it has fewer). Each row's ``image`` is read unaugmented, through the
        processor (resize, centre crop, its statistics), as the official fit reads its sample;
        rows that are already tensors give their first view (``SAMPLE_PIXEL_KEYS``), normalised
        as the training batches are."""
        if num_samples < 1:
            raise ValueError(f"quality_direction_samples must be at least 1, got {num_samples}")
        if dataset is None or not hasattr(dataset, "__len__") or len(dataset) == 0:
            raise ValueError(
                "quality_mode='frozen' fits its foreground direction on the training set, which is missing, "
                "empty or has no length (a streamed dataset): give quality_direction"
            )
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        indices = order[:num_samples].sort().values.tolist()
        if schema.IMAGE in (getattr(dataset, "column_names", None) or []):
            dataset = dataset.select_columns([schema.IMAGE])  # decode the images only
        chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
        logger.info("quality direction: fitting it on %d training images (two passes)", len(indices))

        def batches():
            return tqdm(chunks, desc="quality direction", disable=not progress)

        def encode(chunk: list[int]) -> torch.Tensor:
            return self._encode(self._sample_pixels(dataset, chunk))[1]

        grid = grid_from_tokens(encode(chunks[0][:1]).shape[1])
        return ForegroundScorer.fit(encode, batches, grid)

    def _sample_pixels(self, dataset: Any, indices: list[int]) -> torch.Tensor:
        """The prepared pixels (B, 3, S, S) of the rows ``indices`` of a fit sample."""
        rows = [dataset[index] for index in indices]
        if schema.IMAGE in rows[0]:
            if self.processor is None:
                raise ValueError(
                    "fitting the quality direction on images needs the frozen model's image processor: load the "
                    "model with from_pretrained from a folder or Hub id that has one, or pass processor="
                )
            images = [
                decode_image(row[schema.IMAGE], f"row {index}, column {schema.IMAGE}")
                for index, row in zip(indices, rows)
            ]
            pixels = self.processor(images=images, return_tensors="pt").pixel_values
            return self._pixels(pixels, renormalize=False)
        first = rows[0]
        keys = [k for k in SAMPLE_PIXEL_KEYS if torch.is_tensor(first.get(k)) and first[k].dim() == 3]
        if not keys:
            raise ValueError(
                f"cannot fit the quality direction: the training rows have no {schema.IMAGE} column and no "
                f"pixel tensor ({', '.join(SAMPLE_PIXEL_KEYS)}); give quality_direction"
            )
        return self._pixels(torch.stack([row[keys[0]] for row in rows]))


def _image_processor(model: nn.Module, processor: Any) -> Any:
    """``processor``'s image processor, else the one saved with ``model``; None when there is none
    (the steps that need it say so)."""
    if processor is None:
        source = getattr(model, "name_or_path", "")
        if not source:
            return None
        try:
            processor = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):  # no preprocessor_config.json there
            return None
    return getattr(processor, "image_processor", processor)


def run_direction(frozen: FrozenQualityModel, dataset: Any, args: Any) -> torch.Tensor | None:
    """The foreground direction of a run's frozen mode, from ``args.quality_direction``:

    - a path: that direction (:func:`load_direction`);
    - ``"batch"``: None, each batch's own first principal component;
    - None (the default): fitted once, at the start of training, on ``args.quality_direction_samples``
      rows of the training set (:meth:`FrozenQualityModel.fit_direction`) and saved as
      ``output_dir/quality_direction/``, a scorer folder; a resume, or another run in the same
      ``output_dir``, reads it back. The main process fits; the others wait and read it.
    """
    if args.quality_direction == BATCH_DIRECTION:
        return None
    if args.quality_direction:
        return load_direction(args.quality_direction, frozen.width)
    folder = Path(args.output_dir) / DIRECTION_FOLDER
    with args.main_process_first(local=False, desc="the quality direction"):
        if ForegroundScorer.exists(folder):
            logger.info("quality direction: reusing %s (delete it to fit the direction again)", folder)
            return load_direction(folder, frozen.width)
        scorer = frozen.fit_direction(
            dataset,
            num_samples=args.quality_direction_samples,
            batch_size=args.per_device_train_batch_size,
            seed=args.seed,
            progress=not args.disable_tqdm,
        )
        if args.should_save:
            scorer.save(folder)
            logger.info("quality direction: saved to %s", folder)
        return scorer.direction


def checked_direction(direction: Any, width: int | None, source: str = "quality_direction") -> torch.Tensor:
    """``direction`` as a float32 vector (C,); a ValueError naming ``source`` when it is empty, not
    finite, or its length is not ``width`` (the frozen model's token channels)."""
    value = torch.as_tensor(direction, dtype=torch.float32).flatten()
    if value.numel() == 0 or not torch.isfinite(value).all():
        raise ValueError(f"{source}: the foreground direction is empty or not finite")
    if width is not None and value.numel() != width:
        raise ValueError(
            f"{source}: the foreground direction has {value.numel()} values but the frozen quality model's tokens "
            f"have {width} channels: it was fitted on another model's tokens"
        )
    return value


def load_direction(path: str | Path, width: int | None = None) -> torch.Tensor:
    """A foreground direction (C,): a scorer folder (``genview_hf.foreground``: a views dataset's
    ``foreground/``, a run's ``quality_direction/``), or a .safetensors (key ``direction``) / .pt /
    .npy / .json vector; the official ``pca_vectors.npy`` (1024 x 1) gives its 1024 values, its sign
    as stored. ``width``: the token channels it is used with, checked (:func:`checked_direction`)."""
    path = Path(path)
    if not path.is_dir() and path.suffix not in (".safetensors", ".pt", ".npy", ".json"):
        raise ValueError(
            f"{path}: a foreground direction is a scorer folder or a .safetensors/.pt/.npy/.json file"
        )
    if not path.exists():
        raise FileNotFoundError(f"quality_direction: no file or folder at {path}")
    if path.is_dir():
        value = ForegroundScorer.load(path).direction
    elif path.suffix == ".safetensors":
        tensors = safetensors.torch.load_file(str(path))
        if "direction" not in tensors:
            raise ValueError(f"{path}: no 'direction' tensor (it holds {', '.join(tensors) or 'nothing'})")
        value = tensors["direction"]
    elif path.suffix == ".pt":
        value = torch.load(path, map_location="cpu", weights_only=True)
    elif path.suffix == ".npy":
        value = torch.from_numpy(np.load(path))
    else:  # .json
        value = torch.tensor(json.loads(path.read_text()))
    return checked_direction(value, width, str(path))
