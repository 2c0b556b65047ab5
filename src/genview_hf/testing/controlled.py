"""A views dataset with a known share of false positives, built from the ``shapes`` drawing code.

Each row is one coloured object (a ``shapes`` shape, colour and texture) on a cluttered textured
background, with its ground-truth mask, and one generated view in ``view_ic`` / ``mask_ic``:

- a **clean** view: the same object (same shape, colour and texture; new position, rotation and
  size within 10%) on another background, of another kind;
- a **false positive**: the original's own background, pixel for pixel, with another object
  pasted on (another shape and another colour) and the original object gone.

``is_false_positive`` says which (exactly ``round(rate * num_rows)`` rows, drawn with the seed).
A contrastive pair (original, false view) shares only its background, so it teaches the encoder
the background: the shortcut quality-driven weighting is meant to catch. ``label`` is the
object's colour (the downstream task), ``shape`` its shape. ``view_ic`` is the column name
generation gives image-conditioned views, so every training path reads the set as it reads a
generated one. Row ``i`` of a split depends only on ``(seed, split, i)``, and the false rows only
on ``(seed, rate, num_rows)``.
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image as PILImage

from ..data import schema
from ..hub import size_category
from .samples import (
    BACKGROUNDS,
    COLOURS,
    SAMPLE_LICENSES,
    SHADE,
    SHAPE_NAMES,
    TEXTURES,
    _background,
    _draw_object,
    _png,
)

FALSE_POSITIVE = "is_false_positive"
VIEW, VIEW_MASK = schema.view_column("ic"), schema.mask_column("ic")
SPLIT_STREAMS = {
    "train": 0,
    "test": 1,
    "pretrain": 2,
}  # disjoint rows: a row depends on (seed, stream, index)
RADIUS = (0.24, 0.32)  # object radius as a share of the side: big enough to survive most crops


def controlled_views(
    num_rows: int = 512,
    false_positive_rate: float = 0.5,
    image_size: int = 32,
    seed: int = 0,
    split: str = "train",
    object_radius: tuple[float, float] = RADIUS,
) -> Dataset:
    """``num_rows`` rows (``image``, ``mask``, ``fg_ratio``, ``view_ic``, ``mask_ic``, ``label``,
    ``shape``, ``is_false_positive``); colours and shapes cycle, so every 36 rows hold every pair."""
    if num_rows < 1:
        raise ValueError(f"controlled_views: num_rows must be at least 1, got {num_rows}")
    if not 0.0 <= false_positive_rate <= 1.0:
        raise ValueError(
            f"controlled_views: false_positive_rate must be in [0, 1], got {false_positive_rate}"
        )
    if image_size < 16:
        raise ValueError(f"controlled_views: image_size must be at least 16 pixels, got {image_size}")
    if split not in SPLIT_STREAMS:
        raise ValueError(
            f"controlled_views: unknown split {split!r}: expected one of {', '.join(SPLIT_STREAMS)}"
        )
    false_rows = np.zeros(num_rows, dtype=bool)
    order = np.random.default_rng([seed, SPLIT_STREAMS[split], num_rows]).permutation(num_rows)
    false_rows[order[: round(false_positive_rate * num_rows)]] = True
    rows = [
        _row(seed, SPLIT_STREAMS[split], index, image_size, bool(false_rows[index]), object_radius)
        for index in range(num_rows)
    ]
    features = Features(
        {
            schema.IMAGE: Image(),
            schema.MASK: Image(),
            schema.FG_RATIO: Value("float32"),
            VIEW: Image(),
            VIEW_MASK: Image(),
            "label": ClassLabel(names=list(COLOURS)),
            "shape": ClassLabel(names=list(SHAPE_NAMES)),
            FALSE_POSITIVE: Value("bool"),
        }
    )
    dataset = Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)
    dataset.info.license = SAMPLE_LICENSES["shapes"]  # drawn with the shapes code
    return dataset


def controlled_card(splits: DatasetDict) -> DatasetCard:
    """The ``README.md`` of a controlled set saved with ``save_to_disk``: Hub metadata, and a
    ``configs`` block over the saved Arrow files, so ``load_dataset(folder)`` reads it too."""
    rows = {name: len(split) for name, split in splits.items()}
    false = {name: sum(split[FALSE_POSITIVE]) for name, split in splits.items()}
    data = DatasetCardData(
        pretty_name="GenView controlled false-positive views",
        license=splits["train"].info.license,
        task_categories=["image-feature-extraction", "image-classification"],
        size_categories=[size_category(sum(rows.values()))],
        source_datasets=["original"],
        tags=["genview", "synthetic", "contrastive-learning", "image"],
    )
    files = [{"split": name, "path": f"{name}/*.arrow"} for name in splits]
    MetadataConfigs({"default": {"data_files": files}}).to_dataset_card_data(data)
    counts = "\n".join(f"| {name} | {rows[name]} | {false[name]} |" for name in splits)
    text = f"""
# GenView controlled false-positive views

Pairs whose share of false positives is known: each row is a coloured object on a cluttered
background (`image`, its `mask`) and one generated view (`view_ic`, `mask_ic`): the same object on
another background, or, where `{FALSE_POSITIVE}` is true, the original's background with another
object. `label` is the object's colour, `shape` its shape. Drawn by
`genview_hf.testing.controlled.controlled_views`; no generator, no source dataset.

| split | rows | false positives |
|---|---|---|
{counts}

```python
from datasets import load_from_disk

splits = load_from_disk("path/to/this/folder")  # or load_dataset("path/to/this/folder")
```
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{text}")


def _row(
    seed: int, stream: int, index: int, size: int, false_positive: bool, radius_range: tuple[float, float]
) -> dict:
    rng = np.random.default_rng([seed, stream, index])
    colour, shape = index % len(COLOURS), (index // len(COLOURS)) % len(SHAPE_NAMES)
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    radius = float(rng.uniform(*radius_range))
    kinds = list(BACKGROUNDS)
    kind = kinds.pop(int(rng.integers(len(kinds))))
    background = _background(rng, kind, size)
    image, mask = _paint(rng, background, shape, colour, texture, radius, size)
    if false_positive:  # the same background, another object
        other_colour = (colour + 1 + int(rng.integers(len(COLOURS) - 1))) % len(COLOURS)
        other_shape = (shape + 1 + int(rng.integers(len(SHAPE_NAMES) - 1))) % len(SHAPE_NAMES)
        other_texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        view, view_mask = _paint(rng, background, other_shape, other_colour, other_texture, radius, size)
    else:  # the same object, another background
        other_background = _background(rng, kinds[int(rng.integers(len(kinds)))], size)
        view_radius = radius * float(rng.uniform(0.9, 1.1))
        view, view_mask = _paint(rng, other_background, shape, colour, texture, view_radius, size)
    return {
        schema.IMAGE: _png(PILImage.fromarray(image, mode="RGB")),
        schema.MASK: _png(PILImage.fromarray(mask.astype(np.uint8) * 255, mode="L")),
        schema.FG_RATIO: float(mask.mean()),
        VIEW: _png(PILImage.fromarray(view, mode="RGB")),
        VIEW_MASK: _png(PILImage.fromarray(view_mask.astype(np.uint8) * 255, mode="L")),
        "label": colour,
        "shape": shape,
        FALSE_POSITIVE: false_positive,
    }


def _paint(
    rng: np.random.Generator,
    background: np.ndarray,
    shape: int,
    colour: int,
    texture: str,
    radius: float,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(image (size, size, 3) uint8, mask (size, size) bool): one object at a random place on a copy
    of ``background``."""
    centre = rng.uniform(radius + 0.02, 1 - radius - 0.02, size=2)
    inside, shaded = _draw_object(rng, SHAPE_NAMES[shape], texture, centre, radius, size)
    image = background.copy()
    rgb = np.asarray(list(COLOURS.values())[colour], dtype=np.float32)
    image[inside] = rgb
    image[inside & shaded] = rgb * SHADE
    return np.clip(image, 0, 255).astype(np.uint8), inside
