"""Evaluation results into a model card: ``model-index`` metadata and a Markdown metrics table.

The trainer renders the card template (``hub_cards/model_card.md``) into ``README.md``; this
module then adds results to that existing card. The table goes between the markers
``<!-- genview-eval:start -->`` and ``<!-- genview-eval:end -->`` when the card has them
(replacing what was there), else in an ``## Evaluation`` section appended at the end. Results
merge with those already in the card: a metric measured again replaces its old value.
Everything goes through ``huggingface_hub.ModelCard``, so the card round-trips through the
Hub's own parser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from ..hub import dataset_identity, markdown_table

TABLE_START = "<!-- genview-eval:start -->"
TABLE_END = "<!-- genview-eval:end -->"
RESULTS_FILE = "eval_results.json"

# protocol prefix -> (task_type, task_name, label prefixed to metric names). The Hub's model-index
# groups results by task type and dataset, keeping one task name per group: the protocol goes
# into the metric name so kNN and linear (or the two retrieval directions) stay apart.
PROTOCOLS = {
    "knn": ("image-classification", "Image classification (frozen features)", "kNN"),
    "linear": ("image-classification", "Image classification (frozen features)", "linear probe"),
    "zero_shot": ("zero-shot-image-classification", "Zero-shot image classification", "zero-shot"),
    "i2t": ("image-text-retrieval", "Image-text retrieval", "image-to-text"),
    "t2i": ("image-text-retrieval", "Image-text retrieval", "text-to-image"),
}
# metric suffix -> (metric_type, metric_name); suffixes not listed stay out of model-index (table only)
METRICS = {
    "top1": ("accuracy", "top-1 accuracy"),
    "top5": ("top_5_accuracy", "top-5 accuracy"),
    "mean_per_class_accuracy": ("mean_per_class_accuracy", "mean per-class accuracy"),
    "R@1": ("recall_at_1", "R@1"),
    "R@5": ("recall_at_5", "R@5"),
    "R@10": ("recall_at_10", "R@10"),
    "mean_rank": ("mean_rank", "mean rank"),
    "median_rank": ("median_rank", "median rank"),
}


def split_key(key: str) -> tuple[str, str] | None:
    """``"zero_shot_top1"`` -> ``("zero_shot", "top1")``; ``None`` for keys of no known protocol."""
    for protocol in sorted(PROTOCOLS, key=len, reverse=True):
        if key.startswith(protocol + "_"):
            return protocol, key[len(protocol) + 1 :]
    return None


def eval_results_from_dict(
    results: dict[str, Any],
    *,
    dataset_name: str,
    dataset_type: str | None = None,
    dataset_config: str | None = None,
    dataset_split: str | None = None,
) -> list[EvalResult]:
    """``EvalResult`` entries for the flat results of :func:`genview_hf.evaluation.evaluate_encoder`
    (the content of ``eval_results.json``, from which the card's model-index is derived).
    ``dataset_type`` defaults to the dataset's id (:func:`genview_hf.hub.dataset_identity`: a Hub id,
    else a bare name, never a local path), and so does the shown name of a local dataset."""
    default_type, shown_name = dataset_identity(dataset_name)
    dataset_type = dataset_type or default_type
    dataset_name = shown_name
    entries = []
    for key, value in results.items():
        parts = split_key(key)
        if parts is None or parts[1] not in METRICS or not isinstance(value, (int, float)):
            continue
        task_type, task_name, label = PROTOCOLS[parts[0]]
        metric_type, metric_name = METRICS[parts[1]]
        metric_name = f"{label} {metric_name}"
        entries.append(
            EvalResult(
                task_type=task_type,
                task_name=task_name,
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_config=dataset_config,
                dataset_split=dataset_split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=float(value),
            )
        )
    return entries


def _identity(result: EvalResult) -> tuple:
    return (
        result.task_type,
        result.task_name,
        result.dataset_type,
        result.dataset_config,
        result.dataset_split,
        result.metric_type,
        result.metric_name,
    )


def _format(metric: str, value: Any) -> str:
    if isinstance(value, float) and metric in METRICS and "rank" not in metric:
        return f"{100 * value:.2f}%"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def results_table(results: list[EvalResult]) -> str:
    """Markdown table: task, dataset, split, metric, value (accuracies and recalls in percent)."""
    rows = []
    for result in results:
        suffix = next((key for key, (kind, _) in METRICS.items() if kind == result.metric_type), "")
        rows.append(
            {
                "task": result.task_name or result.task_type,
                "dataset": result.dataset_name,
                "split": result.dataset_split or "",
                "metric": result.metric_name or result.metric_type,
                "value": _format(suffix, result.metric_value),
            }
        )
    return markdown_table(rows)


def add_eval_results_to_card(
    folder: str | os.PathLike,
    results: dict[str, Any],
    *,
    dataset_name: str,
    dataset_type: str | None = None,
    dataset_config: str | None = None,
    dataset_split: str | None = None,
    model_name: str | None = None,
    figures: list[str] | None = None,
) -> ModelCard:
    """Add ``results`` to ``<folder>/README.md`` (model-index + table + figure links) and save it.

    ``folder`` is a model folder holding a ``README.md`` (or the path of the card itself).
    ``figures`` are paths relative to the folder (PNG files), linked under the table.
    Returns the saved card, as ``ModelCard.load`` reads it back.
    """
    path = Path(folder)
    path = path if path.suffix == ".md" else path / "README.md"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model card to add results to (the trainer writes it first)")
    card = ModelCard.load(path)
    new = eval_results_from_dict(
        results,
        dataset_name=dataset_name,
        dataset_type=dataset_type,
        dataset_config=dataset_config,
        dataset_split=dataset_split,
    )
    if not new:
        raise ValueError(f"no card-worthy metrics among {sorted(results)}")
    merged = {_identity(result): result for result in (card.data.eval_results or [])}
    merged.update({_identity(result): result for result in new})
    card.data.eval_results = list(merged.values())
    card.data.model_name = model_name or card.data.model_name or path.parent.resolve().name

    text = card.text
    has_block = TABLE_START in text and TABLE_END in text
    if has_block:
        head, rest = text.split(TABLE_START, 1)
        old_block, tail = rest.split(TABLE_END, 1)
    links = [f"![{Path(figure).stem.replace('_', ' ')}]({figure})" for figure in figures or []]
    if figures is None and has_block:  # keep the figures linked by an earlier call
        links = [line for line in old_block.splitlines() if line.startswith("![")]
    section = "\n\n".join([results_table(card.data.eval_results), *links])
    block = f"{TABLE_START}\n{section}\n{TABLE_END}"
    text = head + block + tail if has_block else text.rstrip() + f"\n\n## Evaluation\n\n{block}\n"
    card = ModelCard(f"---\n{card.data.to_yaml()}\n---\n{text}")
    card.save(path)
    return ModelCard.load(path)


def write_results(results: dict[str, Any], output_dir: str | os.PathLike, **extra: Any) -> Path:
    """Write ``eval_results.json`` (the flat results plus ``extra`` settings) into ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULTS_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({**extra, **results}, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)
    return path
