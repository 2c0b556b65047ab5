"""The quality modes: their names (``QualityMode``, ``QUALITY_MODES``), the weight containers
(``QualityWeights``, ``TokenMaps``), the stored mode, and where the token maps and foreground maps of
the weights come from.

``quality_weights(mode, ...)`` is the one function that turns a batch into quality weights,
one branch per mode of ``GenViewTrainingArguments.quality_mode``:

- ``off``: no weights, every pair counts the same (the baseline).
- ``frozen`` (the papers' setting): the token maps of a frozen vision model
  (``training.frozen_quality.FrozenQualityModel``),
  fed each view re-normalised with its own processor's statistics; the foreground of each view
  is its tokens projected on one fixed foreground direction (given, or fitted once on the
  training set at the start of the run: ``frozen_quality.run_direction``), min-max normalised.
- ``stored`` (our approximation, no extra forward): the training model's own detached patch
  tokens, with the foreground masks stored by generation, cropped with each view. A crop can
  hold no background (or no foreground) at all; q would then lose one of its two terms, so a
  weight that involves such a view is set to 1 and the others are renormalised to mean 1
  (``DEGENERATE_MASS``, :func:`neutralize`).

Options of the frozen mode for GenView pairs (ours; the papers' setting is each one off; see
docs/efficacy.md):

- stored masks for the foreground (``quality_foreground="masks"``): the batch's cropped stored
  masks (``masks_*``, the collator adds them when the run asks) replace the projection on the
  direction, as in ``stored`` mode, but pool the frozen model's tokens;
- geometric views (``quality_views="geometric"``): the frozen model sees each view's crop and flip
  without its colour operations (``quality_pixel_values_*``, from ``data.collators.GeometricViewsCollator``),
  so that a pair is judged on its content, not on two independent colour jitters;
- centred cosines (``quality_center``, also for ``stored``): :func:`genview_hf.quality.pair_quality`'s
  ``center``.

How the pairs' qualities become weights (``quality_weighting``, both modes, GenView pairs): the
papers' softmax by default, or a rule that can reach zero (:data:`genview_hf.quality.WEIGHTINGS`),
held with its state by :class:`PairWeighting`; ``row_memory`` reads each row's dataset index, which
``data.collators.RowIndexCollator`` adds to the batch.

LeOCLR (``original_pairs=True``) weights the pairs its loss contrasts: (original, crop 1) and
(original, crop 2), ``QualityWeights.original_pairs``.

Both give a ``TokenMaps``; the formulas of ``genview_hf.quality`` then make GenView's pair
weights (SSL methods, SLIP's SSL pair) or GenView++'s image-text and image-image weights
(multi-positive batches). Shapes: N samples, V views, T tokens of C channels, E embedding size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from ..data.collators import ROW_INDICES, VIEW_MASKS
from ..distributed import gather_no_grad
from ..modeling.features import masks_to_tokens, principal_direction
from ..quality import (
    WEIGHTINGS,
    RowQualityMemory,
    image_text_quality_weights,
    multi_view_quality_weights,
    pair_quality,
    pair_weights,
)

logger = logging.getLogger(__name__)

QualityMode = Literal["frozen", "stored", "off"]
# What each quality mode does, in a phrase (the model card quotes it; quality_weights computes it).
QUALITY_MODES: dict[str, str] = {
    "frozen": "pair weights from foreground maps of a frozen encoder, computed during training",
    "stored": "pair weights from the foreground masks stored in the views dataset",
    "off": "every positive pair weighted equally (the plain method)",
}
assert tuple(QUALITY_MODES) == get_args(QualityMode)
# A stored crop mask with less than half a token of foreground, or of background, is degenerate.
DEGENERATE_MASS = 0.5


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
                    "build the collator with data.collators.build_collator(row_indices=True)"
                )
            # every process folds in every process's rows: one memory, the same on each, one checkpoint file
            self.memory.update(gather_no_grad(rows.to(q.device)), gather_no_grad(q.detach()))
            smoothed = self.memory.read(rows, like=q)
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
            self.views[:, a],
            self.views[:, b],
            self.direction,
            masks1=None if masks is None else masks[:, a],
            masks2=None if masks is None else masks[:, b],
            center=center,
        )
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
            self.image_embeds,
            self.text_embeds,
            self.views,
            self.real,
            self.direction,
            gamma,
            view_masks=self.view_masks,
            real_masks=self.real_masks,
        )
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
    frozen: Any,
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
