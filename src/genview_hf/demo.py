"""``genview demo``: the main job on the embedded default, offline, on the CPU in a few minutes.

The demo is a list of steps (``STEPS``) run in order on one ``DemoRun``; each step reads what
earlier ones left there, adds its own results and returns one summary line:

1. ``load_data``: the embedded sample set (default ``shapes``), its fixed train/test split;
2. ``write_preview``: ``samples.png``, samples beside their ground-truth masks;
3. ``generate``: a views dataset of the train split (``views/``: parquet shards, card,
   ``preview.png``) with the generation package and the tiny Stable unCLIP / Stable Diffusion
   pipelines of ``genview_hf.testing``;
4. ``train``: MoCo v3 on a tiny ViT with quality-driven weights through ``GenViewTrainer``
   (``model/``: a plain ``AutoModel`` root, its card and ``checkpoint-*``);
5. ``train_clip``: a short GenView++ run (tiny CLIP, multi-positive batches: the real image and
   every generated view of a caption, quality weights from the stored masks) into ``clip/``;
6. ``evaluate``: kNN and linear probe of the trained encoder against its untrained start,
   zero-shot and retrieval of the CLIP run against its start, on the set's test split
   (``eval_results.json``, results added to both model cards).

Then a summary table. Every component has random weights and the data is tiny: the demo
shows that the whole job runs and what it writes, its accuracies are not results.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import shutil
import textwrap
import time
from collections import Counter
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
IMAGE_SIZE = 32  # generated views and training crops: the tiny models' input size
SSL_ENCODER = "vit"  # genview_hf.testing's 2-layer ViT (32 px, patch 8)
CLIP_MODEL = "clip"  # genview_hf.testing's 2-layer CLIP


@dataclass
class DemoArguments:
    output_dir: str = field(
        default="outputs/demo",
        metadata={"help": "where the demo writes (its views/, model/ and clip/ are replaced on each run)"},
    )
    sample: str = field(
        default="shapes", metadata={"help": "embedded sample set to run on", "choices": list(SAMPLE_NAMES)}
    )
    max_rows: int | None = field(
        default=None, metadata={"help": "generate and train on the first N rows of the train split only"}
    )
    modes: list[str] = field(
        default_factory=lambda: ["ic", "tc", "itc"],
        metadata={"help": "generation modes (any of ic, tc, itc)"},
    )
    max_steps: int = field(default=300, metadata={"help": "MoCo v3 training steps"})
    clip_steps: int = field(default=60, metadata={"help": "GenView++ CLIP training steps (0: no CLIP run)"})
    batch_size: int = field(default=32, metadata={"help": "training batch size"})
    quality_mode: str = field(
        default="stored",
        metadata={
            "help": "MoCo v3 quality weights: stored (the views' masks, no extra forward), frozen (a frozen "
            "tiny CLIP's token map) or off"
        },
    )
    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads (0: torch's default). The tiny models gain nothing from more, and "
            "on a busy machine extra threads make every small op wait for the others."
        },
    )


@dataclass
class DemoRun:
    """What the steps share: the settings, then each step's results."""

    args: DemoArguments
    output_dir: Path
    dataset: Any = None  # datasets.Dataset: the train split (generation, training, kNN bank)
    test: Any = None  # the test split (scored)
    views_dir: Path | None = None  # from generate
    views: Any = None  # the views dataset, read back with datasets.load_dataset
    trainers: dict[str, Any] = field(default_factory=dict)  # "mocov3" / "clip" -> GenViewTrainer, trained
    results: dict[str, dict[str, float]] = field(default_factory=dict)  # evaluation name -> metrics
    outputs: list[Path] = field(default_factory=list)  # files and folders written


# ------------------------------------------------------------------------------ steps
def load_data(run: DemoRun) -> str:
    name = run.args.sample
    run.dataset = load_sample(name, split="train")
    run.test = load_sample(name, split="test")
    columns = ", ".join(run.dataset.column_names)
    return (
        f"loaded the embedded {name!r} sample set: {len(run.dataset)} train + {len(run.test)} test rows "
        f"({columns})"
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


def generate(run: DemoRun) -> str:
    """The views dataset of the train split, with the tiny offline diffusion pipelines."""
    from datasets import load_dataset

    from .generation import ViewGenerationConfig, generate_views
    from .testing import tiny_path

    rows = len(run.dataset) if run.args.max_rows is None else min(run.args.max_rows, len(run.dataset))
    config = ViewGenerationConfig(
        output_dir=str(_fresh(run.output_dir / "views")),
        modes=list(run.args.modes),
        unclip_model=str(tiny_path("unclip-img2img")),
        text2img_model=str(tiny_path("text2img")),
        num_inference_steps=2,  # paper: 20; the tiny pipelines make noise either way
        height=IMAGE_SIZE,
        width=IMAGE_SIZE,
        max_rows=rows,
        fg_sample_size=rows,  # fit the foreground direction on every row
        batch_size=32,
        shard_size=64,
        mixed_precision="no",
        seed=0,
    )
    run.views_dir = generate_views(run.dataset, config, dataset_name=f"sample:{run.args.sample}")
    run.views = load_dataset(str(run.views_dir), split="train")  # the plain reader, as a user would
    run.outputs.append(run.views_dir)
    failures = (run.views_dir / "failures.jsonl").read_text().count("\n")
    return (
        f"{len(run.views)} rows x {len(config.modes)} modes ({', '.join(config.modes)}) in {run.views_dir} "
        f"(parquet shards, README.md card, preview.png); {failures} failed rows; "
        f"noise levels {_noise_summary(run.views)}"
    )


def train(run: DemoRun) -> str:
    """MoCo v3 on the tiny ViT with quality-driven weights, through the training recipe."""
    from .testing import tiny_path

    steps = run.args.max_steps
    callbacks = []
    if "label" in run.test.column_names:  # kNN top-1 on the test split, five times during training
        from .evaluation import KNNMonitorCallback

        callbacks.append(KNNMonitorCallback(run.dataset, run.test, every_n_steps=max(1, steps // 5)))
    trainer = _train(
        run,
        "model",
        steps,
        callbacks,
        method="mocov3",
        model_name_or_path=SSL_ENCODER,
        generated_view_prob=1.0,  # GenView: one view of every pair is generated
        proj_hidden_dim=64,
        proj_dim=32,
        pred_hidden_dim=64,
        temperature=0.2,  # MoCo v3 ViT: 0.2
        quality_mode=run.args.quality_mode,
        quality_model=str(tiny_path(CLIP_MODEL)),  # frozen mode: a frozen tiny CLIP's token map
        gamma=1.0,  # GenView: 1
        save_strategy="steps",
        save_steps=steps,  # one checkpoint-*, at the end: the exact-resume state
    )
    run.trainers["mocov3"] = trainer
    return f"{_train_summary(trainer)}; encoder root {trainer.args.output_dir} (AutoModel)"


def train_clip(run: DemoRun) -> str:
    """GenView++: tiny CLIP on multi-positive batches with quality weights from the stored masks."""
    if run.args.clip_steps <= 0:
        return "skipped (--clip_steps 0)"
    trainer = _train(
        run,
        "clip",
        run.args.clip_steps,
        [],
        method="clip",
        model_name_or_path=CLIP_MODEL,
        multi_positive=True,  # GenView++: the real image and every generated view of each caption
        temperature=0.1,
        quality_mode="stored",
        gamma=2.0,  # GenView++: 2
        save_strategy="no",
    )
    run.trainers["clip"] = trainer
    return f"{_train_summary(trainer)}; CLIPModel root {trainer.args.output_dir} (zero-shot pipeline)"


def evaluate(run: DemoRun) -> str:
    """Trained encoders against their untrained starting points, on the test split."""
    from .evaluation import add_eval_results_to_card, evaluate_encoder, write_results
    from .testing import tiny_path
    from .training.builders import load_model

    if "label" not in run.test.column_names:
        return f"skipped: the {run.args.sample!r} set has no labels"
    shared = dict(train_dataset=run.dataset, progress=False, seed=0)
    mocov3 = run.trainers["mocov3"]
    start, start_processor = load_model(str(tiny_path(SSL_ENCODER)))  # what training started from
    protocols = ["knn", "linear"]
    run.results["mocov3_untrained"] = evaluate_encoder(
        start, run.test, processor=start_processor, protocols=protocols, **shared
    )
    run.results["mocov3"] = evaluate_encoder(mocov3.args.output_dir, run.test, protocols=protocols, **shared)
    cards = [mocov3.args.output_dir]
    if "clip" in run.trainers:
        clip = run.trainers["clip"]
        start, start_processor = load_model(str(tiny_path(CLIP_MODEL)))
        protocols = ["zero_shot", "retrieval"]
        run.results["clip_untrained"] = evaluate_encoder(
            start, run.test, processor=start_processor, protocols=protocols, progress=False
        )
        run.results["clip"] = evaluate_encoder(
            clip.args.output_dir, run.test, protocols=protocols, progress=False
        )
        cards.append(clip.args.output_dir)

    dataset = f"sample:{run.args.sample}"
    # eval_results.json: the trained MoCo v3 encoder's results at the top level (as `genview
    # evaluate` writes them), the untrained starting points and the CLIP run beside them.
    path = write_results(
        run.results["mocov3"],
        run.output_dir,
        model_name_or_path=mocov3.args.output_dir,
        dataset_name=dataset,
        dataset_train_split="train",
        dataset_test_split="test",
        **{name: values for name, values in run.results.items() if name != "mocov3"},
    )
    for folder, name in zip(cards, ("mocov3", "clip")):
        figures = sorted(path.name for path in Path(folder).glob("*.png"))  # the training figures
        add_eval_results_to_card(
            folder, run.results[name], dataset_name=dataset, dataset_split="test", figures=figures
        )
    run.outputs.append(path)
    return f"{len(run.test)} test rows, {len(run.results)} evaluations -> {path}; results added to the model cards"


# The demo, in order. Each step fills the DemoRun and returns its summary line.
STEPS: tuple[Callable[[DemoRun], str], ...] = (
    load_data,
    write_preview,
    generate,
    train,
    train_clip,
    evaluate,
)


def cli(argv: list[str] | None = None) -> int:
    (args,) = parse_config((DemoArguments,), argv)
    _quiet_libraries()
    run = DemoRun(args=args, output_dir=Path(args.output_dir))
    start = time.perf_counter()
    with _torch_threads(args.threads):
        for number, step in enumerate(STEPS, start=1):
            step_start = time.perf_counter()
            line = step(run)
            print(
                f"[{number}/{len(STEPS)}] {step.__name__}: {line} ({time.perf_counter() - step_start:.1f} s)"
            )
    print()
    print(summary(run, time.perf_counter() - start))
    return 0


# ------------------------------------------------------------------------------ summary
def summary(run: DemoRun, wall: float) -> str:
    """The compact table printed at the end."""
    rows: list[tuple[str, str]] = []
    if run.views is not None:
        ratio = np.asarray(run.views["fg_ratio"], dtype=float)
        rows += [
            (
                "rows generated",
                f"{len(run.views)} ({', '.join(run.args.modes)}; {IMAGE_SIZE} px, 2 denoising steps)",
            ),
            ("mean fg_ratio", f"{np.nanmean(ratio):.3f} (the scorer's threshold keeps ~40% of tokens)"),
            *_mask_agreement(run.views),
            ("noise levels", _noise_summary(run.views)),
        ]
    for name, label in (("mocov3", "MoCo v3 tiny ViT"), ("clip", "GenView++ tiny CLIP")):
        if name in run.trainers:
            rows.append((label, _train_summary(run.trainers[name])))
    if "mocov3" in run.trainers:
        monitor = [e for e in run.trainers["mocov3"].state.log_history if "knn_top1" in e]
        if monitor:
            rows.append(("kNN monitor", ", ".join(f"step {e['step']}: {e['knn_top1']:.3f}" for e in monitor)))
    results, tested = run.results, len(run.test)
    classes = _num_classes(run.test) if results else 1
    for key, label, chance in (
        ("knn_top1", "kNN top-1", 1 / classes),
        ("linear_top1", "linear top-1", 1 / classes),
        ("zero_shot_top1", "zero-shot top-1", 1 / classes),
        ("i2t_R@1", "image->text R@1", 1 / tested),
    ):
        kind = "clip" if key in results.get("clip", {}) else "mocov3"
        if key in results.get(kind, {}):
            before, after = results[f"{kind}_untrained"][key], results[kind][key]
            rows.append(
                (
                    label,
                    f"untrained {before:.3f} -> trained {after:.3f} (chance {chance:.3f}, {tested} test rows)",
                )
            )
    rows += [(f"output {path.name}", str(path)) for path in run.outputs]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    rows.append(
        ("time", f"{wall:.1f} s wall, {cpu.ru_utime:.1f} s user CPU, {cpu.ru_stime:.1f} s system CPU")
    )
    width = max(len(name) for name, _ in rows)
    lines = [
        "genview demo summary (tiny random-weight components and a tiny data set: a check that the whole",
        "job runs end to end, not a result; accuracies near chance are expected)",
    ]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def _train_summary(trainer: Any) -> str:
    """Steps, batch, loss first -> last logged, mean quality weight, wall time per step."""
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    runtime = next(
        (e["train_runtime"] for e in trainer.state.log_history if "train_runtime" in e), float("nan")
    )
    steps = trainer.state.global_step
    text = f"{steps} steps x {trainer.args.per_device_train_batch_size}"
    if logs:
        text += f", loss {logs[0]['loss']:.3f} (step {logs[0]['step']}) -> {logs[-1]['loss']:.3f}"
    weights = [entry["weight_mean"] for entry in logs if "weight_mean" in entry]
    if weights:
        low = min(entry["weight_min"] for entry in logs if "weight_min" in entry)
        high = max(entry["weight_max"] for entry in logs if "weight_max" in entry)
        text += f", weight mean {np.mean(weights):.2f} (min {low:.2f}, max {high:.2f}; {trainer.args.quality_mode})"
    else:
        text += f", no quality weights ({trainer.args.quality_mode})"
    return text + f", {1000 * runtime / max(1, steps):.0f} ms/step"


def _train(run: DemoRun, folder: str, steps: int, callbacks: list, **arguments: Any) -> Any:
    """One run of the training recipe on the views dataset into a fresh ``<output_dir>/<folder>``.

    ``arguments``: the method's own ``GenViewTrainingArguments`` (``model_name_or_path`` names a
    tiny component); both runs share the rest: tiny crops, a short schedule of ``steps``, no
    reporting, seeded. The recipe writes the encoder root, its card and the training figures.
    """
    from .config import ScriptArguments
    from .recipes.train_genview import main
    from .testing import tiny_path
    from .training import GenViewTrainingArguments

    arguments["model_name_or_path"] = str(tiny_path(arguments["model_name_or_path"]))
    args = GenViewTrainingArguments(
        output_dir=str(_fresh(run.output_dir / folder)),
        **arguments,
        image_size=IMAGE_SIZE,
        learning_rate=1e-3,
        weight_decay=0.1,
        warmup_steps=max(1, steps // 10),
        per_device_train_batch_size=run.args.batch_size,
        max_steps=steps,
        logging_steps=max(1, steps // 10),
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=0,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the recipe prints its metrics; the demo sums them up
        trainer = main(ScriptArguments(dataset_name=str(run.views_dir)), args, callbacks=callbacks)
    run.outputs.append(Path(trainer.args.output_dir))
    return trainer


def _mask_agreement(views: Any) -> list[tuple[str, str]]:
    """The scorer's token masks against the set's ground-truth masks (shapes), at token resolution."""
    from .generation.driver import SOURCE_PREFIX

    truth_column = SOURCE_PREFIX + "mask"  # the source's own `mask`, renamed by the generation
    if truth_column not in views.column_names:
        return []
    shares, ious = [], []
    for row in views.select_columns(["mask", truth_column]):
        if row["mask"] is None or row[truth_column] is None:
            continue
        scored = np.asarray(row["mask"].convert("L")) > 127
        truth = (
            np.asarray(row[truth_column].convert("L").resize(row["mask"].size, Image.Resampling.BOX)) > 127
        )
        shares.append(truth.mean())
        ious.append((scored & truth).sum() / max(1, (scored | truth).sum()))
    return [("ground truth", f"foreground share {np.mean(shares):.3f}; scorer mask IoU {np.mean(ious):.3f}")]


def _noise_summary(views: Any) -> str:
    counts = Counter(views["noise_level"])
    return ", ".join(f"{level}: {counts[level]}" for level in sorted(counts, key=lambda x: (x is None, x)))


def _num_classes(dataset: Any) -> int:
    feature = dataset.features.get("label")
    return getattr(feature, "num_classes", None) or len(set(dataset["label"]))


@contextlib.contextmanager
def _torch_threads(threads: int):
    """torch's CPU thread count set to ``threads`` (0: left alone) for the run, then restored."""
    import torch

    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fresh(folder: Path) -> Path:
    """An empty ``folder``: each demo run starts its outputs anew (a rerun is timed honestly)."""
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def _quiet_libraries() -> None:
    """The demo prints its own summary: no progress bars or info chatter from the libraries."""
    import logging

    import datasets
    import diffusers
    import transformers

    datasets.disable_progress_bars()
    diffusers.logging.set_verbosity_error()
    diffusers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    # the generation package notes that shapes' own `mask` column becomes `source_mask`
    logging.getLogger("genview_hf.generation").setLevel(logging.ERROR)


def _tile(image: Image.Image) -> Image.Image:
    """``image`` fitted into a PREVIEW_TILE square (aspect kept, grey margins, nearest for small images)."""
    scale = PREVIEW_TILE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    tile = Image.new("RGB", (PREVIEW_TILE, PREVIEW_TILE), (200, 200, 200))
    tile.paste(image.resize(size, resample), ((PREVIEW_TILE - size[0]) // 2, (PREVIEW_TILE - size[1]) // 2))
    return tile
