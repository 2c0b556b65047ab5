"""``genview evaluate`` / ``recipes/evaluate_encoder.py``: run chosen protocols on a checkpoint.

    genview evaluate --checkpoint outputs/mocov3-genview --dataset sample:digits --protocols knn linear
    genview evaluate --config recipes/configs/eval_clip.yaml --checkpoint user/clip-genview

Writes ``eval_results.json`` to ``--output_dir``, prints the results, and with ``--update_card``
adds them to the checkpoint folder's ``README.md`` (model-index metadata and a table).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import parse_config
from .card import add_eval_results_to_card, write_results
from .knn import KNN_K, KNN_TEMPERATURE
from .linear import LINEAR_EPOCHS, LINEAR_LRS
from .protocols import PROTOCOLS, check_protocols, evaluate_encoder


@dataclass
class EvaluateArguments:
    checkpoint: str = field(
        metadata={"help": "Encoder folder (a training output root) or Hub id, loadable with AutoModel"}
    )
    dataset: str = field(
        default="sample:digits",
        metadata={
            "help": "load_dataset path or Hub id, a folder (save_to_disk or data files), or sample:NAME"
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "load_dataset configuration name"})
    train_split: str = field(
        default="train", metadata={"help": "Split for the kNN bank and the linear probe"}
    )
    test_split: str = field(default="test", metadata={"help": "Split that is scored"})
    protocols: list[str] = field(
        default_factory=lambda: ["knn", "linear"], metadata={"help": f"Any of {', '.join(PROTOCOLS)}"}
    )
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where eval_results.json goes"})
    image_column: str = "image"
    label_column: str = "label"
    caption_column: str = "caption"
    templates: list[str] | None = field(
        default=None,
        metadata={"help": "Zero-shot prompt templates with {} for the class (default: CLIP's 7)"},
    )
    k: int = field(default=KNN_K, metadata={"help": "kNN neighbours (InstDisc/DINO: 20)"})
    temperature: float = field(
        default=KNN_TEMPERATURE, metadata={"help": "kNN vote temperature (InstDisc/DINO: 0.07)"}
    )
    linear_lrs: list[float] = field(
        default_factory=lambda: list(LINEAR_LRS), metadata={"help": "Linear-probe sweep"}
    )
    linear_epochs: int = field(default=LINEAR_EPOCHS, metadata={"help": "Linear-probe epochs (DINO: 100)"})
    pooling: str = field(
        default="auto", metadata={"help": "auto, cls or mean (see genview_hf.evaluation.features)"}
    )
    batch_size: int = 64
    num_workers: int = 0
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N train rows"})
    max_test_samples: int | None = field(default=None, metadata={"help": "Keep the first N test rows"})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Feature cache (default: OUTPUT_DIR/feature_cache)"}
    )
    no_cache: bool = field(default=False, metadata={"help": "Do not read or write cached features"})
    update_card: bool = field(default=False, metadata={"help": "Add the results to CHECKPOINT/README.md"})
    device: str | None = field(
        default=None, metadata={"help": "cuda, cpu, ... (default: cuda when available)"}
    )
    seed: int = 0


def load_split(name: str, split: str, config: str | None = None, max_samples: int | None = None):
    """One split of ``sample:NAME``, a ``save_to_disk`` folder, a data folder or a Hub dataset."""
    if name.startswith("sample:"):
        from ..data.samples import load_sample

        dataset = load_sample(name.split(":", 1)[1], split=split)
    elif Path(name).is_dir() and (
        (Path(name) / "dataset_dict.json").exists() or (Path(name) / "state.json").exists()
    ):
        from datasets import DatasetDict, load_from_disk

        dataset = load_from_disk(name)
        if isinstance(dataset, DatasetDict):
            if split not in dataset:
                raise KeyError(f"{name} has no split {split!r} (splits: {', '.join(dataset)})")
            dataset = dataset[split]
    else:
        from datasets import get_dataset_split_names, load_dataset

        try:
            dataset = load_dataset(name, config, split=split)
        except ValueError as error:
            if "split" not in str(error).lower():
                raise
            splits = get_dataset_split_names(name, config)
            raise KeyError(f"{name} has no split {split!r} (splits: {', '.join(splits)})") from error
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_config((EvaluateArguments,), argv)
    protocols = check_protocols(args.protocols)
    needs_train = any(name in ("knn", "linear") for name in protocols)
    train = (
        load_split(args.dataset, args.train_split, args.dataset_config, args.max_train_samples)
        if needs_train
        else None
    )
    test = load_split(args.dataset, args.test_split, args.dataset_config, args.max_test_samples)
    cache_dir = None if args.no_cache else (args.cache_dir or os.path.join(args.output_dir, "feature_cache"))
    options = {"templates": args.templates} if args.templates else {}
    results = evaluate_encoder(
        args.checkpoint,
        test,
        train_dataset=train,
        protocols=protocols,
        image_column=args.image_column,
        label_column=args.label_column,
        caption_column=args.caption_column,
        k=args.k,
        temperature=args.temperature,
        linear_lrs=args.linear_lrs,
        linear_epochs=args.linear_epochs,
        pooling=args.pooling,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cache_dir=cache_dir,
        device=args.device,
        seed=args.seed,
        **options,
    )
    path = write_results(
        results,
        args.output_dir,
        checkpoint=args.checkpoint,
        dataset=args.dataset,
        test_split=args.test_split,
        train_split=args.train_split if needs_train else None,
        protocols=protocols,
    )
    print(json.dumps(results, indent=2, sort_keys=True))
    print(f"results written to {path}")
    if args.update_card:
        card = add_eval_results_to_card(
            args.checkpoint,
            results,
            dataset_name=args.dataset,
            dataset_config=args.dataset_config,
            dataset_split=args.test_split,
        )
        print(f"model card updated: {len(card.data.eval_results)} results in {args.checkpoint}/README.md")
    return 0
