"""Run chosen evaluation protocols on one encoder and get one flat dict of results."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from .features import Encoder, class_names_of, extract_features, labels_of, load_encoder
from .knn import KNN_K, KNN_TEMPERATURE, knn_evaluate
from .linear import LINEAR_EPOCHS, LINEAR_LRS, linear_probe
from .retrieval import retrieval_evaluate
from .zero_shot import DEFAULT_TEMPLATES, require_clip, zero_shot_evaluate

PROTOCOLS = ("knn", "linear", "zero_shot", "retrieval")


def check_protocols(protocols: list[str] | tuple[str, ...]) -> list[str]:
    """Validated protocol names (``"zero-shot"`` is accepted for ``"zero_shot"``)."""
    names = [name.strip().lower().replace("-", "_") for name in protocols]
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown evaluation protocols {unknown}; choose among {', '.join(PROTOCOLS)}")
    if not names:
        raise ValueError(f"no evaluation protocol chosen; choose among {', '.join(PROTOCOLS)}")
    return names


def evaluate_encoder(
    model: str | os.PathLike | nn.Module | Encoder,
    test_dataset,
    *,
    train_dataset=None,
    protocols: list[str] | tuple[str, ...] = ("knn", "linear"),
    processor: Any = None,
    image_column: str = "image",
    label_column: str = "label",
    caption_column: str = "caption",
    class_names: list[str] | None = None,
    templates: list[str] | tuple[str, ...] = DEFAULT_TEMPLATES,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    linear_lrs: list[float] | tuple[float, ...] = LINEAR_LRS,
    linear_epochs: int = LINEAR_EPOCHS,
    pooling: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Flat results of ``protocols`` (``knn``, ``linear``: need ``train_dataset`` and labels;
    ``zero_shot``: CLIP-type model, labels and class names; ``retrieval``: CLIP-type model and captions).

    Every requirement is checked before any feature is computed, so a bad combination fails fast.
    """
    protocols = check_protocols(protocols)
    encoder = load_encoder(model, processor, pooling=pooling, device=device)
    needs_train = [name for name in protocols if name in ("knn", "linear")]
    if needs_train:
        if train_dataset is None:
            raise ValueError(
                f"{' and '.join(needs_train)} need a labelled train_dataset (the memory bank / probe data)"
            )
        train_labels = labels_of(train_dataset, label_column, f"{needs_train[0]} (train split)")
        test_labels = labels_of(test_dataset, label_column, f"{needs_train[0]} (test split)")
    if "zero_shot" in protocols:
        require_clip(encoder, "zero-shot classification")
        labels_of(test_dataset, label_column, "zero-shot classification")
        if not (class_names or class_names_of(test_dataset, label_column)):
            raise ValueError(
                f"zero-shot classification needs class names: column {label_column!r} is not a ClassLabel; "
                "pass class_names"
            )
    if "retrieval" in protocols:
        require_clip(encoder, "retrieval")
        if caption_column not in test_dataset.column_names:
            raise KeyError(
                f"retrieval needs captions: the dataset has no {caption_column!r} column "
                f"(columns: {', '.join(test_dataset.column_names)})"
            )

    shared = dict(
        image_column=image_column, batch_size=batch_size, num_workers=num_workers, cache_dir=cache_dir
    )
    results: dict[str, float] = {}
    if needs_train:
        train_features = extract_features(encoder, train_dataset, progress=progress, **shared)
        test_features = extract_features(encoder, test_dataset, progress=progress, **shared)
        if "knn" in protocols:
            results.update(
                knn_evaluate(
                    train_features, train_labels, test_features, test_labels, k=k, temperature=temperature
                )
            )
        if "linear" in protocols:
            results.update(
                linear_probe(
                    train_features,
                    train_labels,
                    test_features,
                    test_labels,
                    lrs=linear_lrs,
                    epochs=linear_epochs,
                    device=encoder.device,
                    seed=seed,
                )
            )
    if "zero_shot" in protocols:
        results.update(
            zero_shot_evaluate(
                encoder,
                test_dataset,
                class_names=class_names,
                templates=templates,
                label_column=label_column,
                progress=progress,
                **shared,
            )
        )
    if "retrieval" in protocols:
        results.update(
            retrieval_evaluate(
                encoder, test_dataset, caption_column=caption_column, progress=progress, **shared
            )
        )
    return results
