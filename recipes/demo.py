"""``genview demo`` (or ``python recipes/demo.py``): the main job on the embedded default, offline,
on the CPU in a few minutes. An application of the library, so it sits with the other recipes.

The demo is a list of steps (``STEPS``) run in order on one ``DemoRun``; each step reads what
earlier ones left there, adds its own results and returns one summary line:

1. ``load_data``: the embedded sample set (default ``shapes``), its fixed train/test split;
2. ``write_preview``: ``samples.png``, samples beside their ground-truth masks;
3. ``generate``: a views dataset of the train split (``views/``: parquet shards, card,
   ``preview.png``) with the generation package and the tiny Stable unCLIP / Stable Diffusion
   pipelines of ``genview_hf.testing`` (random weights: their views are noise);
4. ``build_controlled``: the controlled false-positive set (``genview_hf.testing.controlled``,
   ``controlled/``): each object's generated view is the same object on another background or,
   for half of the rows, a false positive (the original's background with another object), the
   stand-in for a real generator's views that lets the encoder learn and the weights be checked;
5. ``train``: MoCo v3 on a small ResNet from scratch with the best quality weighting of
   ``benchmarks/bench_efficacy.py`` (frozen tokens + stored masks + geometric views + centred
   cosines + row memory) through the training recipe (``model/``: a plain ``AutoModel`` root, its card,
   figures and ``checkpoint-*``);
6. ``compare_weighting``: the same run with ``quality_mode=off`` (``model_off/``), same seed;
7. ``train_clip``: a short GenView++ run (tiny CLIP, multi-positive batches: the real image and
   every generated view of a caption, quality weights from the stored masks) into ``clip/``;
8. ``evaluate``: kNN and linear probe of both MoCo v3 encoders and of their untrained start on the
   controlled test split; zero-shot and retrieval of the CLIP run against its start on the sample
   set's test split (``eval_results.json``, results added to the model cards).

Then a summary table: the encoder's learning (untrained -> trained) and the weighting's effect
(off vs weighted), one seed each, beside the benchmark's mean and standard error over ten paired
seeds. The CLIP run's components and data are
tiny and random: its accuracies are a check that the stage runs, not results.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import shutil
import sys
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

# The controlled run's settings are the efficacy benchmark's: the demo quotes its figures.
from genview_hf.benchmarks.efficacy_settings import CONTROLLED_RUN, IMAGE_SIZE, RECOMMENDED, efficacy_encoder  # noqa: E402
from genview_hf.config import parse_config  # noqa: E402
from genview_hf.testing.samples import SAMPLE_NAMES, load_sample  # noqa: E402

PREVIEW_ROWS = 8
PREVIEW_TILE = 128  # pixels per image in the preview grid
PREVIEW_COLUMNS = 4  # samples per grid row
CLIP_MODEL = "clip"  # genview_hf.testing's 2-layer CLIP
CONTROLLED_TEST_ROWS = 300
# What benchmarks/bench_efficacy.py measured of the demo's run (docs/efficacy.md; ten paired seeds,
# 1000 test rows, 2026-12-07), quoted for the spread over seeds that one demo run cannot show.
BENCHMARK = {
    "learning": "benchmark, 10 seeds: untrained -> weighted +8.5 ± 1.7 kNN, +7.3 ± 1.1 linear (mean ± SE)",
    "weighting": "benchmark, 10 seeds: +4.9 ± 1.4 kNN over off at 200 steps (10 of 10 seeds better; the "
    "oracle +5.5 ± 1.6), +8.5 ± 2.3 at 400; on the objects' shape +1.7 ± 0.6, +3.6 ± 1.1 and +4.8 ± 1.0 at "
    "200, 400 and 800 steps (the oracle +3.5, +4.7, +4.2)",
}


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
    max_steps: int = field(default=200, metadata={"help": "MoCo v3 training steps (each of the two runs)"})
    clip_steps: int = field(default=60, metadata={"help": "GenView++ CLIP training steps (0: no CLIP run)"})
    batch_size: int = field(default=32, metadata={"help": "training batch size"})
    controlled_rows: int = field(
        default=512, metadata={"help": "rows of the controlled set's train split (its test split: 300)"}
    )
    false_positive_rate: float = field(
        default=0.5,
        metadata={"help": "share of the controlled set's generated views that are false positives"},
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
    dataset: Any = None  # datasets.Dataset: the sample set's train split (generation, CLIP)
    test: Any = None  # its test split (CLIP scored)
    views_dir: Path | None = None  # from generate
    views: Any = None  # the views dataset, read back with datasets.load_dataset
    controlled_dir: Path | None = None  # from build_controlled: train / test of the controlled set
    controlled: Any = None  # datasets.DatasetDict read back from controlled_dir
    trainers: dict[str, Any] = field(default_factory=dict)  # "mocov3" / "mocov3_off" / "clip" -> trained
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

    from genview_hf.generation import ViewGenerationConfig, generate_views
    from genview_hf.testing import tiny_path

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


def build_controlled(run: DemoRun) -> str:
    """The controlled false-positive set (train and test splits), saved where the recipe loads it."""
    from datasets import DatasetDict, load_from_disk

    from genview_hf.testing.controlled import FALSE_POSITIVE, controlled_card, controlled_views

    args = run.args
    splits = DatasetDict(
        train=controlled_views(args.controlled_rows, args.false_positive_rate, IMAGE_SIZE, seed=0),
        test=controlled_views(CONTROLLED_TEST_ROWS, 0.0, IMAGE_SIZE, seed=0, split="test"),
    )
    run.controlled_dir = _fresh(run.output_dir / "controlled")
    splits.save_to_disk(str(run.controlled_dir))
    controlled_card(splits).save(run.controlled_dir / "README.md")
    run.controlled = load_from_disk(str(run.controlled_dir))
    run.outputs.append(run.controlled_dir)
    false = sum(run.controlled["train"][FALSE_POSITIVE])
    return (
        f"{len(splits['train'])} train rows ({false} false positives: the original's background, another object) "
        f"+ {len(splits['test'])} test rows in {run.controlled_dir}; label: the object's colour"
    )


def train(run: DemoRun) -> str:
    """MoCo v3 on the small ResNet with our quality weighting, through the training recipe."""
    trainer = _train_controlled(run, "model", save_steps=run.args.max_steps, **RECOMMENDED)
    run.trainers["mocov3"] = trainer
    return f"{_train_summary(trainer)}; encoder root {trainer.args.output_dir} (AutoModel)"


def compare_weighting(run: DemoRun) -> str:
    """The same run without quality weights (same seed, data and augmentation)."""
    trainer = _train_controlled(run, "model_off", quality_mode="off")
    run.trainers["mocov3_off"] = trainer
    return f"{_train_summary(trainer)}; encoder root {trainer.args.output_dir}"


def _train_controlled(run: DemoRun, folder: str, save_steps: int | None = None, **quality: Any) -> Any:
    """One MoCo v3 run on the controlled set, with the kNN monitor on its test split."""
    from genview_hf.evaluation import KNNMonitorCallback

    steps = run.args.max_steps
    monitor = KNNMonitorCallback(
        run.controlled["train"], run.controlled["test"], every_n_steps=max(1, steps // 5)
    )
    encoder = efficacy_encoder(run.output_dir / "encoder")
    return _train(
        run,
        folder,
        run.controlled_dir,
        steps,
        [monitor],
        **CONTROLLED_RUN,
        model_name_or_path=str(encoder),
        quality_model=str(encoder),  # the frozen quality model: the same ResNet at its fixed random init
        generated_view_prob=1.0,  # GenView: one view of every pair is generated
        save_strategy="no" if save_steps is None else "steps",
        save_steps=save_steps or steps,  # one checkpoint-*, at the end: the exact-resume state
        **quality,
    )


def train_clip(run: DemoRun) -> str:
    """GenView++: tiny CLIP on multi-positive batches with quality weights from the stored masks."""
    from genview_hf.testing import tiny_path

    if run.args.clip_steps <= 0:
        return "skipped (--clip_steps 0)"
    trainer = _train(
        run,
        "clip",
        run.views_dir,
        run.args.clip_steps,
        [],
        method="clip",
        model_name_or_path=str(tiny_path(CLIP_MODEL)),
        multi_positive=True,  # GenView++: the real image and every generated view of each caption
        temperature=0.1,
        quality_mode="stored",
        gamma=2.0,  # GenView++: 2
        learning_rate=1e-3,
        save_strategy="no",
    )
    run.trainers["clip"] = trainer
    return f"{_train_summary(trainer)}; CLIPModel root {trainer.args.output_dir} (zero-shot pipeline)"


def evaluate(run: DemoRun) -> str:
    """Trained encoders against their untrained starting points, on the test splits."""
    from transformers import set_seed

    from genview_hf.evaluation import add_eval_results_to_card, evaluate_encoder, write_results
    from genview_hf.testing import tiny_path
    from genview_hf.training.builders import load_model

    controlled = run.controlled
    shared = dict(train_dataset=controlled["train"], protocols=["knn", "linear"], progress=False, seed=0)
    mocov3 = run.trainers["mocov3"]
    set_seed(mocov3.args.seed)  # the recipe's seeding: this is the weights training started from
    start, start_processor = load_model(mocov3.model.config._name_or_path, from_scratch=True)
    run.results["mocov3_untrained"] = evaluate_encoder(
        start, controlled["test"], processor=start_processor, **shared
    )
    for name in ("mocov3", "mocov3_off"):
        run.results[name] = evaluate_encoder(run.trainers[name].args.output_dir, controlled["test"], **shared)
    cards = {"mocov3": mocov3.args.output_dir, "mocov3_off": run.trainers["mocov3_off"].args.output_dir}
    if "clip" in run.trainers and "label" in run.test.column_names:
        clip = run.trainers["clip"]
        start, start_processor = load_model(str(tiny_path(CLIP_MODEL)))
        protocols = ["zero_shot", "retrieval"]
        run.results["clip_untrained"] = evaluate_encoder(
            start, run.test, processor=start_processor, protocols=protocols, progress=False
        )
        run.results["clip"] = evaluate_encoder(
            clip.args.output_dir, run.test, protocols=protocols, progress=False
        )
        cards["clip"] = clip.args.output_dir

    # eval_results.json: the weighted MoCo v3 encoder's results at the top level (as `genview
    # evaluate` writes them), the untrained start, the unweighted run and the CLIP run beside them.
    path = write_results(
        run.results["mocov3"],
        run.output_dir,
        model_name_or_path=mocov3.args.output_dir,
        dataset_name=str(run.controlled_dir),
        dataset_train_split="train",
        dataset_test_split="test",
        **{name: values for name, values in run.results.items() if name != "mocov3"},
    )
    for name, folder in cards.items():
        figures = sorted(path.name for path in Path(folder).glob("*.png"))  # the training figures
        dataset = f"sample:{run.args.sample}" if name == "clip" else str(run.controlled_dir)
        add_eval_results_to_card(
            folder, run.results[name], dataset_name=dataset, dataset_split="test", figures=figures
        )
    run.outputs.append(path)
    return (
        f"{len(controlled['test'])} controlled test rows ({len(run.test)} {run.args.sample} test rows for CLIP), "
        f"{len(run.results)} evaluations -> {path}; results added to the model cards"
    )


# The demo, in order. Each step fills the DemoRun and returns its summary line.
STEPS: tuple[Callable[[DemoRun], str], ...] = (
    load_data,
    write_preview,
    generate,
    build_controlled,
    train,
    compare_weighting,
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
                f"{len(run.views)} ({', '.join(run.args.modes)}; {IMAGE_SIZE} px, 2 denoising steps, random weights)",
            ),
            ("mean fg_ratio", f"{np.nanmean(ratio):.3f} (the scorer's threshold keeps ~40% of tokens)"),
            *_mask_agreement(run.views),
            ("noise levels", _noise_summary(run.views)),
        ]
    for name, label in (
        ("mocov3", "MoCo v3 ResNet, weighted"),
        ("mocov3_off", "MoCo v3 ResNet, off"),
        ("clip", "GenView++ tiny CLIP"),
    ):
        if name in run.trainers:
            rows.append((label, _train_summary(run.trainers[name])))
    if "mocov3" in run.trainers:
        monitor = [e for e in run.trainers["mocov3"].state.log_history if "knn_top1" in e]
        if monitor:
            rows.append(("kNN monitor", ", ".join(f"step {e['step']}: {e['knn_top1']:.3f}" for e in monitor)))
    results = run.results
    if "mocov3" in results:
        tested, chance = len(run.controlled["test"]), 1 / _num_classes(run.controlled["test"])
        untrained, weighted, off = results["mocov3_untrained"], results["mocov3"], results["mocov3_off"]
        for key, label in (("knn_top1", "kNN top-1"), ("linear_top1", "linear top-1")):
            rows.append(
                (
                    f"learning, {label}",
                    f"untrained {untrained[key]:.3f} -> trained {weighted[key]:.3f} "
                    f"({weighted[key] - untrained[key]:+.3f}; colour of {tested} test objects, chance {chance:.3f})",
                )
            )
        rows.append(("  benchmark", BENCHMARK["learning"]))
        rows.append(
            (
                "weighting, kNN top-1",
                f"off {off['knn_top1']:.3f} -> weighted {weighted['knn_top1']:.3f} "
                f"({weighted['knn_top1'] - off['knn_top1']:+.3f}, this seed)",
            )
        )
        rows.append(("  benchmark", BENCHMARK["weighting"]))
    if "clip" in results:
        for key, label, chance in (
            ("zero_shot_top1", "CLIP zero-shot top-1", 1 / _num_classes(run.test)),
            ("i2t_R@1", "CLIP image->text R@1", 1 / len(run.test)),
        ):
            before, after = results["clip_untrained"][key], results["clip"][key]
            rows.append(
                (
                    label,
                    f"untrained {before:.3f} -> trained {after:.3f} (chance {chance:.3f}; tiny random CLIP)",
                )
            )
    rows += [(f"output {path.name}", str(path)) for path in run.outputs]
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    rows.append(
        ("time", f"{wall:.1f} s wall, {cpu.ru_utime:.1f} s user CPU, {cpu.ru_stime:.1f} s system CPU")
    )
    width = max(len(name) for name, _ in rows)
    lines = [
        "genview demo summary (MoCo v3: a small ResNet from scratch on the controlled false-positive set;",
        "generation and GenView++ CLIP: tiny random-weight components, a check that those stages run)",
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


def _train(run: DemoRun, folder: str, dataset: Path, steps: int, callbacks: list, **arguments: Any) -> Any:
    """One run of the training recipe on ``dataset`` into a fresh ``<output_dir>/<folder>``.

    ``arguments``: the method's own ``GenViewTrainingArguments``; every run shares the rest: tiny
    crops, a short schedule of ``steps``, no reporting, seed 0. The recipe writes the encoder root,
    its card and the training figures.
    """
    from genview_hf.config import ScriptArguments
    from genview_hf.recipes.train_genview import main
    from genview_hf.training import GenViewTrainingArguments, ModelArguments
    from genview_hf.training.arguments import split_settings

    model_settings, arguments = split_settings(arguments)
    args = GenViewTrainingArguments(
        output_dir=str(_fresh(run.output_dir / folder)),
        **arguments,
        image_size=IMAGE_SIZE,
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
        trainer = main(
            ScriptArguments(dataset_name=str(dataset)),
            args,
            ModelArguments(**model_settings),
            callbacks=callbacks,
        )
    run.outputs.append(Path(trainer.args.output_dir))
    return trainer


def _mask_agreement(views: Any) -> list[tuple[str, str]]:
    """The scorer's token masks against the set's ground-truth masks (shapes), at token resolution."""
    from genview_hf.generation.driver import SOURCE_PREFIX

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


if __name__ == "__main__":
    sys.exit(cli())
