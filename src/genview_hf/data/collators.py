"""Collators: a list of dataset rows (dicts with PIL images) in, a dict of tensors out.

Batch contract (what the trainer reads):

* ``SSLCollator``: ``pixel_values_1``, ``pixel_values_2`` (N, 3, H, W) normalised float32;
  ``masks_1``, ``masks_2`` (N, H, W) in [0, 1], cropped and flipped with their view, when masks
  are on; for ``leoclr`` also ``pixel_values_orig`` (N, 3, H, W), the uncropped original resized
  (and ``masks_orig`` when masks are on).
* ``CLIPCollator``: ``input_ids``, ``attention_mask`` (N, L); ``pixel_values`` (N, 3, H, W), one
  image per caption: a generated view with probability ``generated_view_prob``, else the real image.
* ``SLIPCollator``: the CLIP keys plus ``pixel_values_1``, ``pixel_values_2`` (SimCLR views of a
  GenView pair: the original and, with probability ``generated_view_prob``, a generated view),
  and ``masks_1``, ``masks_2`` when masks are on.
* ``MultiPositiveCollator`` (GenView++): ``pixel_values`` (N, V, 3, H, W), index 0 the augmented
  real image, 1..V-1 the generated views (V = 1 + number of view columns); ``masks`` (N, V, H, W)
  and ``masks_real`` (N, H, W) when masks are on; ``pixel_values_real`` (N, 3, H, W) the
  unaugmented real image resized; ``input_ids``, ``attention_mask``.

Randomness. Rows that carry their dataset index (``__index__``: ``RowIndexed`` adds it, as
``GenViewTrainer`` does) are augmented with a generator of their own, seeded from (``seed``, the
epoch set by :meth:`set_epoch`, the index): a row's views are a pure function of those three, the
same whatever the batch it lands in, the DataLoader workers or the processes, and the same again
after a resume (the Trainer fetches the first batch after a resume before restoring torch's RNG
state, so nothing that must resume exactly may draw from the global generator). Rows without an
index (plain lists) share one stream: with ``seed=None`` torch's global generator; with an
integer ``seed`` the collator's own, re-derived in each DataLoader worker from (seed, the worker's
seed), so workers never repeat each other's augmentations.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..methods import IMAGE_TEXT_METHODS, SSL_METHODS, get_method
from . import schema
from .augment import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MethodAugmentations,
    ViewAugmentation,
    augment_views,
)
from .images import image_tensor
from .views import (
    ROW_INDEX,
    check_caption,
    check_mask_shape,
    check_probability,
    choose_pair,
    describe_row,
    generated_columns,
    load_image,
    mask_column_for,
    mask_columns_present,
    pick_generated,
)

# Batch keys QUALITY_INPUTS + "pixel_values_*": a view as the frozen quality model sees it (not the
# training model: the trainer keeps them, like the masks, out of the model's inputs).
QUALITY_INPUTS = "quality_"
# The SSL views, and the stored mask cropped with each.
VIEW_MASKS = {"pixel_values_1": "masks_1", "pixel_values_2": "masks_2", "pixel_values_orig": "masks_orig"}
# (N,) long batch key: each row's dataset index, for quality_weighting="row_memory" (RowIndexCollator).
ROW_INDICES = QUALITY_INPUTS + "row_index"
# What the collators read from a row besides the model's inputs: a views dataset's images, views,
# masks and captions, the row's index; rows of pre-made tensors: their stored masks.
READ_COLUMNS = (
    schema.IMAGE,
    schema.CAPTION,
    schema.MASK,
    *(schema.view_column(mode) for mode in schema.MODES),
    *(schema.mask_column(mode) for mode in schema.MODES),
    ROW_INDEX,
    *VIEW_MASKS.values(),
    "masks",
    "masks_real",
)

RESIZE_ONLY = ViewAugmentation(crop="resize", flip_prob=0.0)


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The generator seed of one row's augmentation in one epoch: a hash of (seed, epoch, index)."""
    seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF  # SeedSequence takes no negative entropy
    words = [seed & 0xFFFF_FFFF, seed >> 32, int(epoch), int(index)]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class RowIndexed(Dataset):
    """A map-style dataset whose rows also carry their position, under ``__index__`` (a row that
    already has one, say its index in the source views dataset, keeps it)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {ROW_INDEX: int(index), **self.dataset[index]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        # datasets.Dataset reads a batch of rows in one call; other datasets row by row.
        fetch = getattr(self.dataset, "__getitems__", None)
        rows = fetch(indices) if fetch is not None else [self.dataset[index] for index in indices]
        return [{ROW_INDEX: int(index), **row} for index, row in zip(indices, rows, strict=True)]


class CollatorWrapper:
    """A collator around another one that adds to its batches (subclasses define ``__call__``).
    Attribute reads and writes go to the wrapped ``collator``: the trainer seeds it and sets its
    epoch through the wrapper."""

    def __init__(self, collator: Any) -> None:
        self.__dict__["collator"] = collator

    def __getattr__(self, name: str) -> Any:
        if name == "collator":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.collator, name, value)


class _Collator:
    """Shared plumbing: seeding, column resolution, decoding rows into uint8 tensors."""

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        generated_view_prob: float,
        view_columns: Sequence[str] | None,
        masks: bool | None,
        seed: int | None,
        device: str | torch.device,
    ) -> None:
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 px, got {image_size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0), got mean={mean}, std={std}")
        self.image_size = int(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.generated_view_prob = check_probability(generated_view_prob)
        self.view_columns = None if view_columns is None else tuple(view_columns)
        self.masks = masks
        self.seed = seed
        self.epoch = 0
        self.device = torch.device(device)
        self._generator: torch.Generator | None = None
        self._generator_key: object = None
        self._resolved: tuple[tuple[str, ...], bool] | None = None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers started with spawn pickle the collator
        state = dict(self.__dict__)
        state["_generator"], state["_generator_key"] = None, None
        return state

    def set_epoch(self, epoch: int) -> None:
        """The epoch that, with ``seed`` and each row's ``__index__``, fixes the row's augmentation."""
        self.epoch = int(epoch)

    def row_generators(self, rows: Sequence[Mapping[str, Any]]) -> list[torch.Generator | None]:
        """One generator per row: its own, from (seed, epoch, index), when every row carries its
        index and the collator has a seed; else the shared stream (see the module docstring)."""
        if self.seed is not None and all(ROW_INDEX in row for row in rows):
            return [
                torch.Generator().manual_seed(augmentation_seed(self.seed, self.epoch, row[ROW_INDEX]))
                for row in rows
            ]
        return [self.generator()] * len(rows)

    def generator(self) -> torch.Generator | None:
        """The shared stream of rows without an index (None: torch's global generator)."""
        if self.seed is None:
            return None
        info = get_worker_info()
        key = ("worker", info.seed) if info is not None else ("main",)
        if self._generator is None or key != self._generator_key:
            seed = self.seed if info is None else hash((self.seed, info.seed)) & 0x7FFF_FFFF_FFFF_FFFF
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_key = key
        return self._generator

    def resolve_columns(self, row: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
        """(generated columns, masks on): fixed from the first batch, so V and the keys never vary."""
        if self._resolved is None:
            names = list(row)
            views = tuple(generated_columns(names, self.view_columns))
            image_columns = [schema.IMAGE, *views]
            present = mask_columns_present(names, image_columns)
            if self.masks and not present:
                absent = [mask_column_for(c) for c in image_columns if mask_column_for(c) not in names]
                raise ValueError(f"masks=True but the rows have no column(s) {', '.join(absent)}")
            self._resolved = (views, present if self.masks is None else bool(self.masks))
        return self._resolved

    def decode(self, row: Mapping[str, Any], column: str, where: str, with_mask: bool):
        """(image (3, H, W) uint8, mask (H_m, W_m) uint8 or None) of one cell, on the collator's device."""
        image = load_image(row.get(column), f"{where}, column {column!r}")
        mask = None
        if with_mask:
            mask_column = mask_column_for(column)
            mask_where = f"{where}, column {mask_column!r}"
            mask_image = load_image(row.get(mask_column), mask_where, mode="L")
            check_mask_shape(mask_image.size, image.size, mask_where)
            mask = image_tensor(mask_image).to(self.device)
        return image_tensor(image).to(self.device), mask

    def augment(self, images, masks, aug: ViewAugmentation, generators):
        """(pixels (N, 3, H, W) normalised, masks (N, H, W) in [0, 1] or None) of one view; image i
        draws from ``generators[i]``."""
        pixels, out_masks = [], []
        for index, (image, generator) in enumerate(zip(images, generators, strict=True)):
            one_pixels, one_mask = augment_views(
                [image],
                aug,
                self.image_size,
                masks=None if masks is None else [masks[index]],
                mean=self.mean,
                std=self.std,
                generator=generator,
            )
            pixels.append(one_pixels)
            out_masks.append(one_mask)
        return torch.cat(pixels), (torch.cat(out_masks) if masks is not None else None)

    def pairs(self, rows: Sequence[Mapping[str, Any]], generators, with_mask: bool, views: Sequence[str]):
        """Decode every row's GenView pair: images_1, masks_1, images_2, masks_2, and the originals'
        images and masks (one side of a pair is always the original, decoded once)."""
        sides: list[list] = [[], [], [], [], [], []]
        for position, row in enumerate(rows):
            where = describe_row(row, position)
            first, second = choose_pair(views, self.generated_view_prob, generators[position])
            decoded = {column: self.decode(row, column, where, with_mask) for column in {first, second}}
            for offset, column in ((0, first), (2, second), (4, schema.IMAGE)):
                sides[offset].append(decoded[column][0])
                sides[offset + 1].append(decoded[column][1])
        return sides

    def augment_pair(
        self, batch: dict[str, torch.Tensor], sides, augmentations, with_mask: bool, generators
    ) -> None:
        """Add the two views of a GenView pair to ``batch``: ``pixel_values_1``, ``pixel_values_2``
        (N, 3, H, W) and, with masks, ``masks_1``, ``masks_2`` (N, H, W). ``sides`` is
        (images_1, masks_1, images_2, masks_2), as from :meth:`pairs`."""
        images_1, masks_1, images_2, masks_2 = sides
        batch["pixel_values_1"], out_1 = self.augment(
            images_1, masks_1 if with_mask else None, augmentations.view_1, generators
        )
        batch["pixel_values_2"], out_2 = self.augment(
            images_2, masks_2 if with_mask else None, augmentations.view_2, generators
        )
        if with_mask:
            batch["masks_1"], batch["masks_2"] = out_1, out_2


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    if len(rows) == 0:
        raise ValueError("cannot collate an empty batch")


def _split_processor(tokenizer: Any, mean, std) -> tuple[Any, Sequence[float], Sequence[float]]:
    """Accept a tokenizer or a processor (``CLIPProcessor``): take its tokenizer and, unless given,
    its image mean/std (else OpenAI CLIP's)."""
    if tokenizer is None:
        raise ValueError("a tokenizer (or a processor with one) is needed to collate captions")
    image_processor = getattr(tokenizer, "image_processor", None)
    if hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer
    if mean is None:
        mean = getattr(image_processor, "image_mean", None) or CLIP_MEAN
    if std is None:
        std = getattr(image_processor, "image_std", None) or CLIP_STD
    return tokenizer, mean, std


class SSLCollator(_Collator):
    """Two views per row for mocov2 | mocov3 | simsiam | byol | simclr | leoclr (GenView pairs)."""

    def __init__(
        self,
        method: str,
        image_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        *,
        generated_view_prob: float = 1.0,  # GenView: one side of every pair is generated
        view_columns: Sequence[str] | None = None,
        masks: bool | None = None,
        crop_scale: tuple[float, float] | None = None,
        query_center_box: bool = False,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if get_method(method).is_image_text:
            raise ValueError(f"SSLCollator takes an SSL method ({', '.join(SSL_METHODS)}), got {method!r}")
        super().__init__(image_size, mean, std, generated_view_prob, view_columns, masks, seed, device)
        self.method = method
        self.augmentations = get_method(method).augmentations.adjusted(crop_scale, query_center_box)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        _check_rows(rows)
        views, with_mask = self.resolve_columns(rows[0])
        generators = self.row_generators(rows)
        sides = self.pairs(rows, generators, with_mask, views)
        originals, original_masks = sides[4:]
        aug = self.augmentations
        batch: dict[str, torch.Tensor] = {}
        self.augment_pair(batch, sides[:4], aug, with_mask, generators)
        if aug.original is not None:  # LeOCLR: the uncropped original for the query encoder
            pixels, out = self.augment(
                originals, original_masks if with_mask else None, aug.original, generators
            )
            batch["pixel_values_orig"] = pixels
            if with_mask:
                batch["masks_orig"] = out
        return batch


class CLIPCollator(_Collator):
    """Caption + one image per row: a generated view with probability ``generated_view_prob``, else the real one.

    ``crop``: ``random_resized`` (scale (0.5, 1), SLIP's CLIP recipe) or ``center`` (resize and
    centre crop, OpenAI CLIP's). Captions longer than the tokenizer's limit are truncated.
    """

    def __init__(
        self,
        tokenizer: Any,
        image_size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        *,
        generated_view_prob: float = 1.0,
        view_columns: Sequence[str] | None = None,
        crop: str = "random_resized",
        max_length: int | None = None,
        padding: str = "longest",
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        tokenizer, mean, std = _split_processor(tokenizer, mean, std)
        super().__init__(image_size, mean, std, generated_view_prob, view_columns, False, seed, device)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding = padding
        image_aug = get_method("clip").augmentations.image
        if crop == "center":
            image_aug = ViewAugmentation(crop="center", flip_prob=0.0)
        elif crop != "random_resized":
            raise ValueError(f"unknown crop {crop!r}: expected random_resized or center")
        self.image_augmentation = image_aug

    def tokenize(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        captions = [
            check_caption(row.get(schema.CAPTION), f"{describe_row(row, i)}, column 'caption'")
            for i, row in enumerate(rows)
        ]
        tokens = self.tokenizer(
            captions, padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def clip_images(
        self, rows: Sequence[Mapping[str, Any]], views: Sequence[str], generators
    ) -> torch.Tensor:
        images = []
        for position, row in enumerate(rows):
            column = pick_generated(views, self.generated_view_prob, generators[position]) or schema.IMAGE
            images.append(self.decode(row, column, describe_row(row, position), False)[0])
        return self.augment(images, None, self.image_augmentation, generators)[0]

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        _check_rows(rows)
        views, _ = self.resolve_columns(rows[0])
        batch = self.tokenize(rows)
        batch["pixel_values"] = self.clip_images(rows, views, self.row_generators(rows))
        return batch


class SLIPCollator(CLIPCollator):
    """CLIP's batch plus two SimCLR views (SLIP's SSL branch) of each row's GenView pair."""

    def __init__(
        self,
        tokenizer: Any,
        image_size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        *,
        generated_view_prob: float = 1.0,
        view_columns: Sequence[str] | None = None,
        masks: bool | None = None,
        crop: str = "random_resized",
        max_length: int | None = None,
        padding: str = "longest",
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            tokenizer,
            image_size,
            mean,
            std,
            generated_view_prob=generated_view_prob,
            view_columns=view_columns,
            crop=crop,
            max_length=max_length,
            padding=padding,
            seed=seed,
            device=device,
        )
        self.masks = masks
        self.augmentations = get_method("slip").augmentations

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        _check_rows(rows)
        views, with_mask = self.resolve_columns(rows[0])
        generators = self.row_generators(rows)
        batch = self.tokenize(rows)
        batch["pixel_values"] = self.clip_images(rows, views, generators)
        sides = self.pairs(rows, generators, with_mask, views)
        self.augment_pair(batch, sides[:4], self.augmentations, with_mask, generators)
        return batch


class MultiPositiveCollator(CLIPCollator):
    """GenView++: the real image and every generated view of a row, all positives of its caption.

    Views are augmented with the method's image-text view (``clip``: crop scale (0.5, 1);
    ``slip``: SLIP's SimCLR view, as its image-image loss runs between them).
    """

    def __init__(
        self,
        tokenizer: Any,
        method: str = "clip",
        image_size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        *,
        view_columns: Sequence[str] | None = None,
        masks: bool | None = None,
        max_length: int | None = None,
        padding: str = "longest",
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if not get_method(method).is_image_text:
            raise ValueError(f"MultiPositiveCollator takes {' or '.join(IMAGE_TEXT_METHODS)}, got {method!r}")
        super().__init__(
            tokenizer,
            image_size,
            mean,
            std,
            generated_view_prob=1.0,
            view_columns=view_columns,
            max_length=max_length,
            padding=padding,
            seed=seed,
            device=device,
        )
        self.method = method
        self.masks = masks
        augmentations = get_method(method).augmentations
        self.view_augmentation = augmentations.view_1 if method == "slip" else augmentations.image

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        _check_rows(rows)
        views, with_mask = self.resolve_columns(rows[0])
        if not views:
            raise ValueError(
                "multi-positive batches need at least one generated column "
                f"({', '.join(schema.view_column(mode) for mode in schema.MODES)}); the rows have {', '.join(rows[0])}"
            )
        generators = self.row_generators(rows)
        batch = self.tokenize(rows)
        columns = [schema.IMAGE, *views]
        decoded = [
            [self.decode(row, column, describe_row(row, position), with_mask) for column in columns]
            for position, row in enumerate(rows)
        ]
        pixels, masks = [], []
        for slot in range(len(columns)):
            slot_pixels, slot_masks = self.augment(
                [cells[slot][0] for cells in decoded],
                [cells[slot][1] for cells in decoded] if with_mask else None,
                self.view_augmentation,
                generators,
            )
            pixels.append(slot_pixels)
            masks.append(slot_masks)
        batch["pixel_values"] = torch.stack(pixels, 1)
        real, real_masks = self.augment(
            [cells[0][0] for cells in decoded],
            [cells[0][1] for cells in decoded] if with_mask else None,
            RESIZE_ONLY,
            generators,
        )
        batch["pixel_values_real"] = real
        if with_mask:
            batch["masks"] = torch.stack(masks, 1)
            batch["masks_real"] = real_masks
        return batch


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
        self.__dict__["geometric_augmentations"] = presets.geometry_only()

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


def build_collator(
    method: str,
    *,
    tokenizer: Any = None,
    multi_positive: bool = False,
    geometric_views: bool = False,
    row_indices: bool = False,
    masks: bool | None = None,
    crop_scale: tuple[float, float] | None = None,
    query_center_box: bool = False,
    **kwargs: Any,
) -> Any:
    """The collator for ``method``, the one dispatch: GenView++ batches (``multi_positive``, clip or
    slip; every generated view is used, so ``generated_view_prob`` does not apply), CLIP, SLIP, or an
    SSL pair with its crop settings; ``masks``: the stored masks cropped with each view (not for plain
    CLIP, whose quality mode is off); ``geometric_views``: wrapped to add each view's crop and flip
    (``GeometricViewsCollator``); ``row_indices``: wrapped to add each row's dataset index
    (``RowIndexCollator``, for ``quality_weighting="row_memory"``). ``kwargs``: the collator's own
    (image_size, mean, std, view_columns ...)."""
    get_method(method)
    if multi_positive:
        kwargs.pop("generated_view_prob", None)
        collator = MultiPositiveCollator(tokenizer, method, masks=masks, **kwargs)
    elif method == "clip":
        collator = CLIPCollator(tokenizer, **kwargs)
    elif method == "slip":
        collator = SLIPCollator(tokenizer, masks=masks, **kwargs)
    else:
        collator = SSLCollator(
            method, masks=masks, crop_scale=crop_scale, query_center_box=query_center_box, **kwargs
        )
    collator = GeometricViewsCollator(collator) if geometric_views else collator
    return RowIndexCollator(collator) if row_indices else collator
