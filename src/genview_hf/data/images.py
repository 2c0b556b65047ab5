"""The one image decode: every stored image value becomes the same RGB (or L) pixels everywhere.

Generation, training and evaluation all read images through :func:`decode_image`, so the
foreground mask stored at generation time describes exactly the pixels training crops:

- values: a PIL image, a ``{"bytes", "path"}`` dict (``datasets.Image(decode=False)``), raw
  bytes, or a local path;
- transparency (RGBA, LA, PA, palette with a transparent index) is composited over white;
- high bit depths are scaled, not clipped: ``I;16`` (16-bit) by 255/65535; ``I`` (32-bit
  integers, which PIL uses for 16-bit PNGs) and ``F`` (floats) by their range: ``F`` in [0, 1]
  is multiplied by 255, any other range is read as 16-bit (``I``) or stretched from
  [min, max] (``F``);
- CMYK, YCbCr, greyscale ... are converted by PIL.

Errors are ``ValueError``s that start with ``where`` (the row and column) and say why.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

MIN_TRAINING_SIDE = 8  # px: smaller images cannot be cropped into a meaningful training view
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def open_image(value: Any, where: str) -> Image.Image:
    """The stored value as a loaded PIL image, any mode; a ValueError naming ``where`` otherwise."""
    if value is None:
        raise ValueError(f"{where}: the image is missing (null)")
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is None and not path:
            raise ValueError(f"{where}: the image cell has neither bytes nor a path")
        source: Any = data if data is not None else path
    elif isinstance(value, bytes | bytearray | str):
        source = value
    else:
        raise ValueError(
            f"{where}: expected a PIL image, {{'bytes', 'path'}}, bytes or a path, got {type(value).__name__}"
        )
    if isinstance(source, bytes | bytearray):
        if len(source) == 0:
            raise ValueError(f"{where}: the image file is empty (0 bytes)")
        source = io.BytesIO(source)
    try:
        image = Image.open(source)
        image.load()
    except FileNotFoundError:
        raise ValueError(f"{where}: no image file at {source!r}") from None
    except Exception as error:  # PIL raises many types for a corrupt file
        raise ValueError(f"{where}: cannot decode the image ({type(error).__name__}: {error})") from None
    return image


def to_8bit(image: Image.Image) -> Image.Image:
    """A mode-L image with the values of a 16-bit, 32-bit integer or float image scaled to 0-255."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = array * (255.0 / 65535.0)
    elif image.mode == "I":
        scaled = array * (255.0 / 65535.0) if array.max(initial=0) > 255 else array
    else:  # F
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if 0.0 <= low and high <= 1.0:
            scaled = array * 255.0
        else:
            scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def decode_image(value: Any, where: str, *, mode: str = "RGB", min_side: int = 1) -> Image.Image:
    """Decode one image cell to ``mode`` (``RGB`` for images, ``L`` for masks).

    ``min_side``: the smallest width or height accepted (training views need
    ``MIN_TRAINING_SIDE``; generation takes any size, its encoder's processor resizes).
    """
    image = open_image(value, where)
    if image.width < 1 or image.height < 1:
        raise ValueError(f"{where}: the image has no pixels ({image.width}x{image.height})")
    if min(image.size) < min_side:
        raise ValueError(
            f"{where}: the image is {image.width}x{image.height} px, smaller than {min_side} px a side"
        )
    if image.mode in _HIGH_DEPTH_MODES:
        image = to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image if image.mode == mode else image.convert(mode)


def image_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8 from an RGB image, or (H, W) uint8 from a mode-L mask."""
    array = torch.from_numpy(np.array(image, dtype=np.uint8))
    return array.permute(2, 0, 1) if array.dim() == 3 else array
