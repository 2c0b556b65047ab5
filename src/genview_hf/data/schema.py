"""Column names of a views dataset (the contract documented in the dataset card).

A views dataset keeps every source column and adds, for each generation mode that ran,
a generated view and its foreground mask, plus the per-row choices that produced them.
"""

from __future__ import annotations

IMAGE = "image"  # source image (kept)
CAPTION = "caption"  # optional source caption
MASK = "mask"  # Image, mode L: the original's foreground map at token resolution, 0-255
FG_RATIO = "fg_ratio"  # float32: share of foreground tokens of the original
NOISE_LEVEL = "noise_level"  # int32: unCLIP image-embedding noise level (ic, itc)
GUIDANCE_SCALE = "guidance_scale"  # float32: classifier-free guidance (tc, itc)
CAPTION_COMPLEXITY = "caption_complexity"  # int8: 1-4, from the caption scorer
SEED = "seed"  # int64: the generator seed of this row, from (global seed, row id)

MODES = ("ic", "tc", "itc")  # image-conditioned, text-conditioned, image+text conditioned


def view_column(mode: str) -> str:
    """``view_<mode>``: the generated image of that mode."""
    _check_mode(mode)
    return f"view_{mode}"


def mask_column(mode: str) -> str:
    """``mask_<mode>``: the generated view's own foreground mask (Image, mode L)."""
    _check_mode(mode)
    return f"mask_{mode}"


def view_modes(column_names: list[str]) -> list[str]:
    """The generation modes present in a dataset, in the order of ``MODES``."""
    return [mode for mode in MODES if f"view_{mode}" in column_names]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown generation mode {mode!r}: expected one of {', '.join(MODES)}")
