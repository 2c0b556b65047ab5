"""One run of the false-positive benchmark (``bench_efficacy.py``): train one arm with one seed on
the controlled set (``genview_hf.testing.controlled``) through ``GenViewTrainer``, log how well each
step's quality weights separate the clean pairs from the false ones, score the encoder with
``genview_hf.evaluation``.

The library's behaviour is not changed for anyone else: the per-pair clean/false flags reach the
trainer through a collator wrapper (:class:`FlagPassingCollator`: the rows' ``is_false_positive``
as a batch tensor) and a trainer subclass (:class:`FlagLoggingTrainer`) that takes them out of
the batch before the model sees it and records the ROC AUC of each step's weights against them.
The run is the recipe's (``recipes/train_genview.py``) with that collator and trainer.

Each encoder is scored on two labels of the test split: the object's shape (``shape``: the
untrained encoder reads it poorly, so it measures what training taught) and its colour (``colour``).
The frozen arms judge the pairs with the small ResNet at its random init or, ``pretrained``, with
the same ResNet trained by MoCo v3 on a disjoint clean controlled set (:func:`pretrained_encoder`,
built once and cached): the papers' kind of frozen encoder, one that has learned the image domain.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, set_seed

from genview_hf.benchmarks.efficacy_settings import (
    CONTROLLED_RUN,
    IMAGE_SIZE,
    WEIGHTED,
    efficacy_encoder,
)
from genview_hf.data.collators import CollatorWrapper
from genview_hf.evaluation import evaluate_encoder
from genview_hf.evaluation.statistics import roc_auc
from genview_hf.testing.controlled import FALSE_POSITIVE, controlled_views
from genview_hf.testing.tiny_models import save_atomically
from genview_hf.training import (
    GenViewTrainer,
    GenViewTrainingArguments,
    ModelArguments,
    QualityWeights,
    builders,
)
from genview_hf.training.arguments import split_settings

FLAGS = "pair_is_false"  # (N,) bool batch key: the row's generated view is a false positive
LABELS = {"shape": "shape", "colour": "label"}  # the scores' label -> the controlled set's column
# The pretrained frozen encoder: MoCo v3 from the random init on clean rows of the controlled set's
# "pretrain" split (disjoint from every arm's train and test rows), 1024 rows, 800 steps.
PRETRAIN = dict(rows=1024, steps=800, seed=0)


@dataclass(frozen=True)
class Arm:
    """One arm: the quality settings it trains with (``GenViewTrainingArguments`` fields), or a
    reference: the clean-only ceiling, no generated views, the oracle weighting."""

    label: str
    settings: dict[str, Any] = field(default_factory=dict)  # quality_mode, gamma, quality_* options
    clean_rows_only: bool = False  # the ceiling: the false rows left out
    oracle: bool = False  # weights from the true flags: false pairs 0, clean pairs the rest
    reference: str = "off"  # the arm its gain is measured against
    pretrained: bool = False  # the frozen quality model: the pretrained ResNet, not the random init


# The default arms: the quality modes, ours, the references. ``frozen`` is the papers' setting: a
# frozen encoder's tokens, its fitted foreground direction, the augmented views, gamma 1; judged with
# the benchmark's ResNet at a fixed random init (no pretraining that could leak the task) and with
# the ResNet pretrained on clean controlled images (``frozen_pretrained``: the papers' kind).
ARMS: dict[str, Arm] = {
    "off": Arm("off: no weights"),
    "stored": Arm("stored (our approximation)", {"quality_mode": "stored"}),
    "frozen": Arm("frozen (the papers' setting), random encoder", {"quality_mode": "frozen"}),
    "frozen_pretrained": Arm(
        "frozen (the papers' setting), pretrained encoder", {"quality_mode": "frozen"}, pretrained=True
    ),
    "ours": Arm("frozen + masks + geometric views + centred (ours)", WEIGHTED),
    "oracle": Arm("oracle weights (true flags)", oracle=True),
    "clean_only": Arm("clean rows only (ceiling)", clean_rows_only=True),
    "no_generated": Arm("no generated views (baseline)", {"generated_view_prob": 0.0}),
}
# The levers, one at a time and together (``--arms levers``), and the weights' sharpness.
LEVERS: dict[str, Arm] = {
    "frozen_masks": Arm("frozen + masks", {"quality_mode": "frozen", "quality_foreground": "masks"}),
    "frozen_geometric": Arm(
        "frozen + geometric views", {"quality_mode": "frozen", "quality_views": "geometric"}
    ),
    "frozen_masks_center": Arm(
        "frozen + masks + centred",
        {"quality_mode": "frozen", "quality_foreground": "masks", "quality_center": True},
    ),
    "frozen_masks_geometric": Arm(
        "frozen + masks + geometric views",
        {"quality_mode": "frozen", "quality_foreground": "masks", "quality_views": "geometric"},
    ),
    "stored_center": Arm("stored + centred", {"quality_mode": "stored", "quality_center": True}),
    **{
        f"ours_gamma{gamma}": Arm(f"ours, gamma {gamma}", {**WEIGHTED, "gamma": float(gamma)})
        for gamma in (2, 3, 5)
    },
}
# The weightings that can reach zero (``quality_weighting``), on ours and on the pretrained encoder.
WEIGHTINGS: dict[str, Arm] = {
    **{
        f"ours_{name}": Arm(f"ours + {name.replace('_', ' ')}", {**WEIGHTED, "quality_weighting": name})
        for name in ("threshold", "rank_cut", "sigmoid", "annealed", "row_memory")
    },
    "ours_pretrained": Arm("ours, pretrained encoder", WEIGHTED, pretrained=True),
    **{
        f"ours_{name}_pretrained": Arm(
            f"ours + {name.replace('_', ' ')}, pretrained encoder",
            {**WEIGHTED, "quality_weighting": name},
            pretrained=True,
        )
        for name in ("threshold", "row_memory")
    },
}
ALL_ARMS = {**ARMS, **LEVERS, **WEIGHTINGS}


@dataclass(frozen=True)
class Size:
    """How big one run is; the default fits a 2-core CPU (bench_efficacy.py's default size)."""

    rows: int = 512
    test_rows: int = 1000
    false_positive_rate: float = 0.5
    steps: int = 200
    batch_size: int = 32


class FlagPassingCollator(CollatorWrapper):
    """The run's collator, its batches also carrying each row's clean/false flag under ``FLAGS``."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(rows)
        batch[FLAGS] = torch.tensor([bool(row[FALSE_POSITIVE]) for row in rows])
        return batch


class FlagLoggingTrainer(GenViewTrainer):
    """``GenViewTrainer`` that records the ROC AUC of each training step's pair weights against the
    clean flags (a clean pair should weigh more) in ``weight_aucs`` [(step, AUC)]; with ``oracle``
    the weights are the flags themselves (false pairs 0, the clean ones sharing the batch's mass)."""

    def __init__(self, *args: Any, oracle: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.oracle = oracle
        self.weight_aucs: list[tuple[int, float]] = []
        self.false_shares: list[tuple[int, float]] = []  # (step, the false pairs' share of the weight mass)
        self._flags: torch.Tensor | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._flags = inputs.pop(FLAGS)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def quality_weights(self, inputs: dict[str, Any], outputs: Any) -> QualityWeights | None:
        if self.oracle:
            clean = (~self._flags).float().to(inputs["pixel_values_1"].device)
            weights = QualityWeights(pairs=clean * len(clean) / clean.sum().clamp(min=1))
        else:
            weights = super().quality_weights(inputs, outputs)
        if weights is not None and weights.pairs is not None and self.model.training:
            clean, pairs = (~self._flags).cpu().numpy(), weights.pairs.cpu().numpy()
            step = self.state.global_step + 1
            self.weight_aucs.append((step, roc_auc(pairs, clean)))
            self.false_shares.append((step, float(pairs[~clean].sum() / max(pairs.sum(), 1e-12))))
        return weights


def data(seed: int, size: Size) -> tuple[Any, Any]:
    """(train, test) of one seed: the controlled set's train rows (their originals are also the kNN
    bank and the probe's training data) and a test split of originals."""
    train = controlled_views(size.rows, size.false_positive_rate, IMAGE_SIZE, seed=seed)
    test = controlled_views(size.test_rows, 0.0, IMAGE_SIZE, seed=seed, split="test")
    return train, test


def training_arguments(
    arm: Arm, seed: int, size: Size, output_dir: Path, encoder: Path, quality_model: Path | None = None
) -> GenViewTrainingArguments:
    """The arguments of one run: MoCo v3 on the small ResNet from scratch (``CONTROLLED_RUN``), the
    arm's settings; ``quality_model``: the frozen arms' encoder (default: ``encoder``, the same
    architecture at its fixed random init)."""
    settings = {"quality_mode": "off", **arm.settings}
    return GenViewTrainingArguments(
        output_dir=str(output_dir),
        **split_settings(CONTROLLED_RUN)[1],
        quality_model=str(quality_model or encoder),
        image_size=IMAGE_SIZE,
        per_device_train_batch_size=size.batch_size,
        max_steps=size.steps,
        weight_decay=0.1,
        warmup_steps=max(1, size.steps // 10),
        logging_steps=max(1, size.steps // 5),
        save_strategy="no",
        report_to="none",
        training_figures=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,  # FlagPassingCollator reads the rows' flag column
        seed=seed,
        **settings,
    )


def model_arguments(encoder: Path) -> ModelArguments:
    """The small ResNet ``encoder`` with ``CONTROLLED_RUN``'s heads."""
    return ModelArguments(str(encoder), **split_settings(CONTROLLED_RUN)[0])


def scores(encoder: Any, processor: Any, train: Any, test: Any, seed: int) -> dict[str, float]:
    """kNN and linear-probe top-1 on the objects' shape and colour (the test split; the train
    originals as bank): ``knn_shape``, ``linear_shape``, ``knn_colour``, ``linear_colour``."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="genview-efficacy-features-") as features:  # computed once
        for label, column in LABELS.items():
            found = evaluate_encoder(
                encoder,
                test,
                train_dataset=train,
                processor=processor,
                protocols=["knn", "linear"],
                label_column=column,
                cache_dir=features,
                progress=False,
                seed=seed,
            )
            results.update({f"knn_{label}": found["knn_top1"], f"linear_{label}": found["linear_top1"]})
    return results


def pretrained_encoder(cache_dir: Path) -> Path:
    """The small ResNet trained by MoCo v3 (``CONTROLLED_RUN``, no quality weights) from its random
    init on ``PRETRAIN["rows"]`` clean rows of the controlled set's ``pretrain`` split, saved with its
    processor in ``cache_dir`` once (a later call reads it back)."""
    folder = Path(cache_dir) / "pretrained-encoder-{rows}rows-{steps}steps-seed{seed}".format(**PRETRAIN)
    if (folder / "config.json").is_file():
        return folder
    rows = controlled_views(PRETRAIN["rows"], 0.0, IMAGE_SIZE, seed=PRETRAIN["seed"], split="pretrain")
    size = Size(rows=PRETRAIN["rows"], steps=PRETRAIN["steps"])
    encoder = efficacy_encoder(Path(cache_dir) / "encoder")
    args = training_arguments(ARMS["off"], PRETRAIN["seed"], size, Path(cache_dir) / "pretraining", encoder)
    dataset = builders.views_dataset(rows, args)
    set_seed(PRETRAIN["seed"])
    model, processor = builders.ssl_model(model_arguments(encoder), args.method)
    trainer = GenViewTrainer(
        model,
        args,
        train_dataset=dataset,
        data_collator=builders.collator(args, processor, dataset),
        processing_class=processor,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    exported = trainer.unwrapped().export_encoder()
    save_atomically(folder, exported, processor)
    return folder


def run(
    name: str, arm: Arm, seed: int, size: Size, work_dir: Path, cache_dir: Path | None = None
) -> dict[str, Any]:
    """Train one arm with one seed; its scores, its weights' AUC over training and its wall time.
    ``cache_dir``: where the pretrained frozen encoder is kept (the ``pretrained`` arms)."""
    started = time.perf_counter()
    train, test = data(seed, size)
    rows = train.filter(lambda row: not row[FALSE_POSITIVE]) if arm.clean_rows_only else train
    encoder = efficacy_encoder(work_dir / "encoder")
    if arm.pretrained and cache_dir is None:
        raise ValueError(f"arm {name!r} judges the pairs with the pretrained encoder: give a cache_dir")
    quality_model = pretrained_encoder(cache_dir) if arm.pretrained else None
    args = training_arguments(arm, seed, size, work_dir / f"{name}-seed{seed}", encoder, quality_model)
    dataset = builders.views_dataset(rows, args)
    set_seed(seed)  # as the recipe: the backbone and heads are initialised here
    model, processor = builders.ssl_model(model_arguments(encoder), args.method)
    quality_model, direction = builders.quality_model(args)
    trainer = FlagLoggingTrainer(
        model,
        args,
        train_dataset=dataset,
        data_collator=FlagPassingCollator(builders.collator(args, processor, dataset)),
        processing_class=processor,
        quality_model=quality_model,
        quality_direction=direction,
        oracle=arm.oracle,
    )
    trainer.remove_callback(PrinterCallback)  # the benchmark prints one line per run
    trainer.train()
    return {
        "arm": name,
        "seed": seed,
        **scores(trainer.unwrapped().export_encoder(), processor, train, test, seed),
        "weight_auc": trainer.weight_aucs,
        "false_share": trainer.false_shares,
        "loss": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        "seconds": time.perf_counter() - started,
    }


def untrained(seed: int, size: Size, work_dir: Path) -> dict[str, Any]:
    """The scores of the random init the arms of ``seed`` start from."""
    started = time.perf_counter()
    train, test = data(seed, size)
    set_seed(seed)  # then the backbone is built first, as in every arm's run
    model, processor = builders.load_model(str(efficacy_encoder(work_dir / "encoder")), from_scratch=True)
    return {
        "arm": "untrained",
        "seed": seed,
        **scores(model, processor, train, test, seed),
        "seconds": time.perf_counter() - started,
    }
