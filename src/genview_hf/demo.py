"""``genview demo``: the main job on the embedded default, offline, on the CPU in seconds.

The demo is a list of steps (``STEPS``) run in order on one ``DemoRun``; each step reads what
earlier ones left there, adds its own results and returns one summary line. Today it loads a
sample set, builds the tiny components and writes a preview of the samples beside their
ground-truth masks; generation, training and evaluation join ``STEPS`` as they land.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# No network in the demo: huggingface_hub reads this when first imported (through datasets and
# transformers below), so it is set before those imports.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .config import parse_config  # noqa: E402
from .data.samples import SAMPLE_NAMES, load_sample  # noqa: E402

PREVIEW_ROWS = 8
PREVIEW_TILE = 128  # pixels per image in the preview grid
PREVIEW_COLUMNS = 4  # samples per grid row
PIPELINE = ("generate", "train", "evaluate")  # the full demo, once each step exists


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "where the demo writes its outputs"})
    sample: str = field(
        default="shapes", metadata={"help": "embedded sample set to run on", "choices": list(SAMPLE_NAMES)}
    )


@dataclass
class DemoRun:
    """What the steps share: the settings, then each step's results."""

    args: DemoArguments
    output_dir: Path
    dataset: Any = None  # datasets.Dataset, from load_data
    components: dict[str, Any] = field(
        default_factory=dict
    )  # name -> model or pipeline, from build_components
    outputs: list[Path] = field(default_factory=list)  # files written


def load_data(run: DemoRun) -> str:
    run.dataset = load_sample(run.args.sample)
    columns = ", ".join(run.dataset.column_names)
    return f"loaded the embedded {run.args.sample!r} sample set: {len(run.dataset)} rows ({columns})"


def build_components(run: DemoRun) -> str:
    """The tiny offline models, built from configs and loaded back through ``from_pretrained``."""
    import torch

    from .testing import (
        tiny_clip,
        tiny_clip_vision_with_projection,
        tiny_resnet,
        tiny_root,
        tiny_text2img,
        tiny_unclip_img2img,
        tiny_vit,
    )

    clip, processor = tiny_clip()
    run.components = {
        "clip": clip,
        "clip_vision": tiny_clip_vision_with_projection()[0],
        "vit": tiny_vit()[0],
        "resnet": tiny_resnet()[0],
        "unclip_img2img": tiny_unclip_img2img(),
        "text2img": tiny_text2img(),
    }
    sizes = ", ".join(f"{name} {_parameters(model):,}" for name, model in run.components.items())
    # One forward pass of the tiny CLIP over a few sample rows: the wiring works end to end.
    rows = run.dataset.select(range(min(4, len(run.dataset))))
    captions = list(rows["caption"]) if "caption" in rows.column_names else [""] * len(rows)
    inputs = processor(
        images=[image.convert("RGB") for image in rows["image"]],
        text=captions,
        return_tensors="pt",
        padding=True,
        truncation=True,
    )
    with torch.no_grad():
        outputs = clip(**inputs)
    return (
        f"built tiny components in {tiny_root()} (parameters: {sizes}); the tiny CLIP embedded "
        f"{outputs.image_embeds.shape[0]} sample images and captions into {outputs.image_embeds.shape[1]} "
        "dimensions (random weights: a wiring check, not a result)"
    )


def write_preview(run: DemoRun) -> str:
    """A PNG grid: each sample beside its ground-truth mask (when the set has one), captioned."""
    dataset = run.dataset
    indices = np.linspace(0, min(len(dataset), 6 * PREVIEW_ROWS) - 1, min(PREVIEW_ROWS, len(dataset))).astype(
        int
    )
    rows = dataset.select(indices.tolist())
    has_mask = "mask" in rows.column_names
    images = list(rows["image"])
    masks = list(rows["mask"]) if has_mask else [None] * len(images)
    captions = list(rows["caption"]) if "caption" in rows.column_names else [""] * len(images)

    font = ImageFont.load_default(size=11)
    cell_width = PREVIEW_TILE * (2 if has_mask else 1)
    text_height = 56  # four lines of caption
    columns = min(PREVIEW_COLUMNS, len(images))
    grid_rows = -(-len(images) // columns)
    gap = 6
    grid = Image.new(
        "RGB",
        (columns * (cell_width + gap) + gap, grid_rows * (PREVIEW_TILE + text_height + gap) + gap),
        "white",
    )
    draw = ImageDraw.Draw(grid)
    wrap = max(10, cell_width // 6)
    for index, (image, mask, caption) in enumerate(zip(images, masks, captions)):
        left = gap + (index % columns) * (cell_width + gap)
        top = gap + (index // columns) * (PREVIEW_TILE + text_height + gap)
        grid.paste(_tile(image.convert("RGB")), (left, top))
        if mask is not None:
            grid.paste(_tile(mask.convert("RGB")), (left + PREVIEW_TILE, top))
        lines = textwrap.wrap(caption, wrap, max_lines=4, placeholder=" ...")
        draw.multiline_text(
            (left, top + PREVIEW_TILE + 2), "\n".join(lines), fill="black", font=font, spacing=1
        )

    run.output_dir.mkdir(parents=True, exist_ok=True)
    path = run.output_dir / "samples.png"
    grid.save(path)
    run.outputs.append(path)
    what = "beside their ground-truth masks" if has_mask else "(this set has no ground-truth masks)"
    return f"wrote {path}: {len(images)} samples {what}"


# The demo, in order. Each step fills the DemoRun and returns its summary line.
# generate -> train -> evaluate go after load_data and build_components as they land.
STEPS: tuple[Callable[[DemoRun], str], ...] = (load_data, build_components, write_preview)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_config((DemoArguments,), argv)
    _quiet_libraries()
    run = DemoRun(args=args, output_dir=Path(args.output_dir))
    start = time.perf_counter()
    for number, step in enumerate(STEPS, start=1):
        step_start = time.perf_counter()
        line = step(run)
        print(f"[{number}/{len(STEPS)}] {step.__name__}: {line} ({time.perf_counter() - step_start:.1f} s)")
    ran = {step.__name__ for step in STEPS}
    missing = [name for name in PIPELINE if name not in ran]
    print(f"genview demo: done in {time.perf_counter() - start:.1f} s; outputs in {run.output_dir}")
    if missing:
        print(f"not in the demo yet: {', '.join(missing)} (the demo only prepares data and models so far)")
    return 0


def _quiet_libraries() -> None:
    """The demo prints its own summary: no progress bars or info chatter from the libraries."""
    import datasets
    import diffusers
    import transformers

    datasets.disable_progress_bars()
    diffusers.logging.set_verbosity_error()
    diffusers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _tile(image: Image.Image) -> Image.Image:
    """``image`` fitted into a PREVIEW_TILE square (aspect kept, grey margins, nearest for small images)."""
    scale = PREVIEW_TILE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    tile = Image.new("RGB", (PREVIEW_TILE, PREVIEW_TILE), (200, 200, 200))
    tile.paste(image.resize(size, resample), ((PREVIEW_TILE - size[0]) // 2, (PREVIEW_TILE - size[1]) // 2))
    return tile


def _parameters(model: Any) -> int:
    """Parameters of a model, or of all the models of a diffusers pipeline."""
    import torch

    parts = model.components.values() if hasattr(model, "components") else [model]
    modules = [part for part in parts if isinstance(part, torch.nn.Module)]
    return sum(parameter.numel() for module in modules for parameter in module.parameters())
