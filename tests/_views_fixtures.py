"""Tiny views datasets built inline (32 px) for the data tests."""

from __future__ import annotations

import io

import numpy as np
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

SIZE = 32


def solid(value: int, size: tuple[int, int] = (SIZE, SIZE), mode: str = "RGB") -> PILImage.Image:
    """A constant image (width, height), converted to ``mode``."""
    return PILImage.new("RGB", size, (value, value, value)).convert(mode)


def noise(seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def token_mask(value: int, grid: tuple[int, int] = (4, 4)) -> PILImage.Image:
    return PILImage.new("L", grid, value)


def views_rows(
    n: int = 6,
    modes: tuple[str, ...] = ("ic", "tc"),
    masks: bool = True,
    captions: bool = True,
) -> list[dict]:
    """Rows whose originals are black (mask 0) and generated views white (mask 255): the source of
    every output is readable from its pixels."""
    rows = []
    for index in range(n):
        row: dict = {"id": f"r{index}", "image": solid(0), "label": index % 3}
        if captions:
            row["caption"] = f"a black square number {index}"
        if masks:
            row["mask"] = token_mask(0)
        for mode in modes:
            row[f"view_{mode}"] = solid(255, (48, 48))
            if masks:
                row[f"mask_{mode}"] = token_mask(255)
        rows.append(row)
    return rows


def views_dataset(rows: list[dict]) -> Dataset:
    features = {}
    for key, value in rows[0].items():
        if isinstance(value, PILImage.Image):
            features[key] = Image()
        elif isinstance(value, int):
            features[key] = Value("int64")
        else:
            features[key] = Value("string")
    return Dataset.from_list(rows, features=Features(features))


def png_bytes(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
