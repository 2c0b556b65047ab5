"""Which images make a training pair, and the checks a views dataset passes before training.

GenView's rule: per sample, with probability ``generated_view_prob`` (paper: 1.0) one side of the
pair comes from a generated column (``view_ic`` / ``view_tc`` / ``view_itc``, one chosen at random
among those present) and the other from the original ``image``; which side is which is random.
A dataset without generated columns gives the baseline: both sides from the original.

Images arrive as PIL images (the ``datasets`` ``Image`` feature decodes them) or undecoded
(``{"bytes": ..., "path": ...}``, after ``cast_column(col, Image(decode=False))``); both go through
the one decode of ``data.images`` (the pixels generation scored), and a file that does not decode
is reported with its row and column.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..methods import get_method
from . import schema
from .images import MIN_TRAINING_SIDE, decode_image

ROW_ID_COLUMNS = ("id", "image_id", "key", "__key__", "idx", "index")
# A row's index in its dataset, carried into the collator: it names the row in errors and, with the
# run seed and the epoch, fixes the row's augmentation (``data.collators``).
ROW_INDEX = "__index__"

logger = logging.getLogger(__name__)


def describe_row(row: Mapping[str, Any], position: int) -> str:
    """``row 90 (batch item 3, id=...)``: how an error names a row of a batch; the dataset row when
    the row carries its index (``ROW_INDEX``), else its position in the batch."""
    ids = [f"{column}={row[column]!r}" for column in ROW_ID_COLUMNS if isinstance(row.get(column), str | int)]
    if ROW_INDEX in row:
        return f"row {row[ROW_INDEX]} ({', '.join([f'batch item {position}', *ids[:1]])})"
    return f"batch item {position}" + (f" ({ids[0]})" if ids else "")


def load_image(value: Any, where: str, mode: str = "RGB") -> Image.Image:
    """A training image (``mode`` RGB, at least ``MIN_TRAINING_SIDE`` px a side) or mask (``mode`` L)."""
    return decode_image(value, where, mode=mode, min_side=MIN_TRAINING_SIDE if mode == "RGB" else 1)


def check_mask_shape(mask_size: tuple[int, int], image_size: tuple[int, int], where: str) -> None:
    """A mask (token grid or full size) must have the image's aspect ratio, to within one token.

    Masks are resized to their image, so any resolution covering the same field of view works; a
    different aspect ratio means the mask describes another crop of the image (say a centre crop).
    """
    (mask_w, mask_h), (width, height) = mask_size, image_size
    if abs(mask_w - mask_h * width / height) < 1 or abs(mask_h - mask_w * height / width) < 1:
        return
    raise ValueError(
        f"{where}: the mask is {mask_w}x{mask_h} but its image is {width}x{height}: a foreground mask must cover "
        "the image's whole field of view (same aspect ratio, any resolution)"
    )


def to_contract_columns(dataset: Any, image_column: str = schema.IMAGE, caption_column: str = schema.CAPTION):
    """``dataset`` with its source image and caption columns under the contract's names.

    Generation keeps the source's names (CC3M's ``jpg`` / ``txt``) beside the columns it adds
    (``mask``, ``view_<mode>``, ...); training and evaluation read ``image`` / ``caption``. The one
    rule: ``image_column`` / ``caption_column`` name the source columns everywhere, and are renamed
    here. A column that is absent is left alone (the dataset check names what a method lacks),
    unless the contract's column is there: a mistyped ``image_column`` would silently read ``image``.
    """
    names = list(dataset.column_names)
    for setting, source, target in (
        ("image_column", image_column, schema.IMAGE),
        ("caption_column", caption_column, schema.CAPTION),
    ):
        if source != target and source not in names and target in names:
            raise ValueError(
                f"{setting} {source!r} is not a column of the dataset (columns: {', '.join(names)}); "
                f"its {target!r} column would be read instead: give {setting} {target!r} or the right name"
            )
    renames = {
        source: target
        for source, target in ((image_column, schema.IMAGE), (caption_column, schema.CAPTION))
        if source != target and source in names
    }
    for source, target in renames.items():
        if target in names:
            raise ValueError(
                f"cannot use column {source!r} as the {target}: the dataset already has a column {target!r}"
            )
    return dataset.rename_columns(renames) if renames else dataset


def mask_column_for(column: str) -> str:
    """The mask column of an image column: ``image`` -> ``mask``, ``view_ic`` -> ``mask_ic``."""
    if column == schema.IMAGE:
        return schema.MASK
    return schema.mask_column(column.removeprefix("view_"))


def generated_columns(column_names: Iterable[str], view_columns: Sequence[str] | None = None) -> list[str]:
    """The generated-view columns to draw from: ``view_columns`` if given (each must exist), else all present."""
    names = list(column_names)
    if view_columns is None:
        return [schema.view_column(mode) for mode in schema.view_modes(names)]
    valid = [schema.view_column(mode) for mode in schema.MODES]
    for column in view_columns:
        if column not in valid:
            raise ValueError(f"unknown view column {column!r}: expected some of {', '.join(valid)}")
        if column not in names:
            raise ValueError(f"view column {column!r} is not in the dataset (columns: {', '.join(names)})")
    return list(view_columns)


def mask_columns_present(column_names: Iterable[str], image_columns: Sequence[str]) -> bool:
    names = set(column_names)
    return all(mask_column_for(column) in names for column in image_columns)


def pick_generated(
    columns: Sequence[str], generated_view_prob: float, generator: torch.Generator | None
) -> str | None:
    """With probability ``generated_view_prob`` one of ``columns`` uniformly, else None (the original).

    Two draws every call, whatever the outcome, so the random stream has a fixed length per row.
    """
    use, which = torch.rand(2, generator=generator).tolist()
    if not columns or use >= generated_view_prob:
        return None
    return columns[min(int(which * len(columns)), len(columns) - 1)]


def choose_pair(
    columns: Sequence[str], generated_view_prob: float, generator: torch.Generator | None = None
) -> tuple[str, str]:
    """The source columns of a pair's two sides: the original twice, or the original and a generated
    view in random order."""
    generated = pick_generated(columns, generated_view_prob, generator)
    swap = bool(torch.rand((), generator=generator) < 0.5)
    if generated is None:
        return schema.IMAGE, schema.IMAGE
    return (generated, schema.IMAGE) if swap else (schema.IMAGE, generated)


def check_probability(generated_view_prob: float) -> float:
    if not 0.0 <= generated_view_prob <= 1.0:
        raise ValueError(f"generated_view_prob must be in [0, 1], got {generated_view_prob}")
    return float(generated_view_prob)


def check_caption(caption: Any, where: str) -> str:
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"{where}: the caption is empty or not text ({caption!r})")
    return caption


@dataclass(frozen=True)
class ViewsDatasetInfo:
    """What training will use from a dataset: row count, generated columns, whether masks are on."""

    num_rows: int | None
    view_columns: tuple[str, ...]
    has_masks: bool
    checked_rows: int


def _column_names(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is not None:
        return list(names)
    first = next(iter(dataset), None)
    return list(first) if first is not None else []


def undecoded_images(dataset: Any, columns: Sequence[str]) -> Any:
    """``dataset`` with its image columns among ``columns`` read as stored bytes
    (``Image(decode=False)``, a change of metadata only) when it is a ``datasets`` dataset: the
    one decode of ``data.images`` then opens them and names the row of a file that does not
    decode. Other sequences of dicts are returned as they are."""
    if not hasattr(dataset, "cast_column") or getattr(dataset, "features", None) is None:
        return dataset
    from datasets import Image as ImageFeature

    for column in columns:
        feature = dataset.features[column]
        if isinstance(feature, ImageFeature) and feature.decode:
            dataset = dataset.cast_column(column, ImageFeature(decode=False))
    return dataset


def _undecoded(dataset: Any, columns: list[str]) -> Any:
    """The dataset restricted to ``columns``, its images undecoded (see :func:`undecoded_images`)."""
    if hasattr(dataset, "select_columns") and getattr(dataset, "features", None) is not None:
        dataset = dataset.select_columns(columns)
    return undecoded_images(dataset, columns)


def incomplete_rows(dataset: Any, columns: Sequence[str]) -> list[int]:
    """The indices of the rows with a null in any of ``columns`` (a view, mask or image that
    generation recorded as failed). A ``datasets`` dataset is read as Arrow, nothing decoded."""
    if hasattr(dataset, "with_format") and hasattr(dataset, "select_columns"):
        import numpy as np
        import pyarrow.compute as pc

        missing, offset = [], 0
        for table in dataset.select_columns(list(columns)).with_format("arrow").iter(batch_size=65536):
            nulls = np.zeros(table.num_rows, dtype=bool)
            for column in columns:
                nulls |= pc.is_null(table[column]).to_numpy(zero_copy_only=False)
            missing.extend((offset + np.flatnonzero(nulls)).tolist())
            offset += table.num_rows
        return missing
    return [index for index, row in enumerate(dataset) if any(row.get(c) is None for c in columns)]


def _first_rows(dataset: Any, count: int | None) -> Iterable[Mapping[str, Any]]:
    if count is None:
        return iter(dataset)
    if hasattr(dataset, "select") and hasattr(dataset, "__len__"):
        return iter(dataset.select(range(min(count, len(dataset)))))
    if hasattr(dataset, "take"):
        return iter(dataset.take(count))
    return iter(list(dataset)[:count])


def validate_views_dataset(
    dataset: Any,
    method: str,
    *,
    multi_positive: bool = False,
    view_columns: Sequence[str] | None = None,
    masks: bool | None = None,
    max_rows: int | None = 1000,
) -> ViewsDatasetInfo:
    """Check a (views) dataset before training, with errors that name the column or the row.

    ``method``: a name of ``genview_hf.methods.METHODS``; image-text methods need a ``caption`` column,
    ``multi_positive`` (GenView++) needs at least one generated column. ``masks``: True requires
    ``mask`` and the ``mask_<mode>`` of every generated column used, False ignores them, None uses
    them when all are present. The first ``max_rows`` rows (None: all) are decoded: unreadable or
    tiny images, masks whose aspect ratio differs from their image, and (for image-text methods)
    empty captions are reported by row index (the dataset's, ``ROW_INDEX``, when the rows carry it:
    rows left out before the check do not shift the numbers). Captions are checked on every row.
    """
    started = time.perf_counter()
    needs_caption = get_method(method).is_image_text or multi_positive
    num_rows = len(dataset) if hasattr(dataset, "__len__") else None
    if num_rows == 0:
        raise ValueError("the dataset is empty: nothing to train on")
    names = _column_names(dataset)
    if not names:
        raise ValueError("the dataset is empty: nothing to train on")
    required = [schema.IMAGE] + ([schema.CAPTION] if needs_caption else [])
    missing = [column for column in required if column not in names]
    if missing:
        raise ValueError(
            f"method {method!r} needs the column(s) {', '.join(missing)}; the dataset has {', '.join(names)}"
        )
    features = getattr(dataset, "features", None)
    if needs_caption and features is not None:
        caption_feature = features[schema.CAPTION]
        if getattr(caption_feature, "dtype", None) not in ("string", "large_string"):
            raise TypeError(
                f"the caption column {schema.CAPTION!r} must hold text, it holds {caption_feature}"
            )
    views = generated_columns(names, view_columns)
    if multi_positive and not views:
        raise ValueError(
            "multi-positive (GenView++) training needs at least one generated column "
            f"({', '.join(schema.view_column(mode) for mode in schema.MODES)}); the dataset has {', '.join(names)}"
        )
    image_columns = [schema.IMAGE, *views]
    mask_columns = [mask_column_for(column) for column in image_columns]
    if masks is None:
        masks = mask_columns_present(names, image_columns)
    elif masks:
        absent = [column for column in mask_columns if column not in names]
        if absent:
            raise ValueError(f"masks were requested but the dataset has no column(s) {', '.join(absent)}")

    if needs_caption and hasattr(dataset, "select_columns") and hasattr(dataset, "__len__"):
        from datasets.utils.logging import is_progress_bar_enabled
        from tqdm.auto import tqdm

        offset, show = 0, is_progress_bar_enabled()
        with tqdm(total=num_rows, desc="checking captions", unit="row", disable=not show) as bar:
            with_index = [ROW_INDEX] if ROW_INDEX in names else []
            for batch in dataset.select_columns([schema.CAPTION, *with_index]).iter(batch_size=4096):
                rows = (
                    batch[ROW_INDEX]
                    if ROW_INDEX in batch
                    else range(offset, offset + len(batch[schema.CAPTION]))
                )
                for row, caption in zip(rows, batch[schema.CAPTION]):
                    check_caption(caption, f"row {row}, column {schema.CAPTION!r}")
                offset += len(batch[schema.CAPTION])
                bar.update(len(batch[schema.CAPTION]))

    columns = image_columns + (mask_columns if masks else []) + ([schema.CAPTION] if needs_caption else [])
    columns += [ROW_INDEX] if ROW_INDEX in names else []  # errors name the dataset's row, not the kept one's
    checked = 0
    for position, row in enumerate(_first_rows(_undecoded(dataset, columns), max_rows)):
        index = row.get(ROW_INDEX, position)
        sizes = {}
        for column in image_columns:
            sizes[column] = load_image(row[column], f"row {index}, column {column!r}").size
        if masks:
            for column in image_columns:
                mask_column = mask_column_for(column)
                where = f"row {index}, column {mask_column!r}"
                check_mask_shape(load_image(row[mask_column], where, mode="L").size, sizes[column], where)
        if needs_caption:
            check_caption(row[schema.CAPTION], f"row {index}, column {schema.CAPTION!r}")
        checked += 1
    if checked == 0:
        raise ValueError("the dataset is empty: nothing to train on")
    logger.info(
        "views dataset checked in %.1f s: %d of %s rows decoded%s",
        time.perf_counter() - started,
        checked,
        num_rows if num_rows is not None else "?",
        ", captions of every row" if needs_caption else "",
    )
    return ViewsDatasetInfo(
        num_rows=num_rows, view_columns=tuple(views), has_masks=bool(masks), checked_rows=checked
    )
