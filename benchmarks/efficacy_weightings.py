"""What each weighting does to the false pairs, without training: the frozen mode's pair qualities q
over a run's batches, then every weighting of ``genview_hf.quality.WEIGHTINGS`` applied to them.

    python benchmarks/efficacy_weightings.py                          # seed 100, 400 steps, both encoders
    python benchmarks/efficacy_weightings.py --report benchmarks/efficacy_results/weightings

In the frozen mode q depends on the frozen encoder and on the views, not on the model being
trained, so the batches of a run (the benchmark's collator, seed and epochs: each row's
augmentation is a pure function of (seed, epoch, row index)) give the q every step of that run
computes; the SSL model is not trained. Per weighting and encoder (the benchmark's random init, or
its pretrained one: ``efficacy_runs.pretrained_encoder``): the false pairs' share of the weight
mass (0.5 without weights, 0 for the oracle), the weights' ROC AUC against the clean flags, and the
effective number of pairs a batch trains on, ``(sum w)^2 / sum w^2`` (32 for equal weights).
Writes ``qualities-<encoder>.json`` (every step's q and rows) and ``weightings.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genview_hf.benchmarks import efficacy_runs  # noqa: E402
from genview_hf.evaluation.statistics import roc_auc  # noqa: E402
from genview_hf.quality import WEIGHTINGS, RowQualityMemory, pair_weights  # noqa: E402

ENCODERS = ("random", "pretrained")


def qualities(seed: int, steps: int, encoder: str, cache_dir: Path) -> list[dict[str, list]]:
    """Every step's q (N,) and dataset rows (N,) of the benchmark's ``ours`` arm (the frozen mode with
    stored masks, geometric views and centred cosines) over ``steps`` batches of ``seed``'s run."""
    from genview_hf.data.collators import RowIndexed
    from genview_hf.training import builders
    from genview_hf.training.frozen_quality import FrozenQualityModel
    from genview_hf.training.quality_modes import PairWeighting, quality_weights

    size = efficacy_runs.Size(steps=steps)
    train, _ = efficacy_runs.data(seed, size)
    with tempfile.TemporaryDirectory(prefix="genview-weightings-") as work_dir:
        model_path = efficacy_runs.efficacy_encoder(Path(work_dir) / "encoder")
        frozen_path = efficacy_runs.pretrained_encoder(cache_dir) if encoder == "pretrained" else model_path
        arm = efficacy_runs.WEIGHTINGS["ours_row_memory"]  # its collator carries the rows' indices
        args = efficacy_runs.training_arguments(
            arm, seed, size, Path(work_dir) / "run", model_path, frozen_path
        )
        dataset = builders.views_dataset(train, args)
        _, processor = builders.load_model(str(model_path), from_scratch=True)
        collator = builders.collator(args, processor, dataset)
        collator.seed = seed
        frozen = FrozenQualityModel(
            builders.quality_model(args)[0], input_mean=collator.mean, input_std=collator.std
        )

    class Recorder(PairWeighting):
        def __call__(self, q, gamma, rows=None, progress=0.0):
            records.append({"q": q.tolist(), "rows": rows.tolist()})
            return pair_weights(q)

    records: list[dict[str, list]] = []
    rows = RowIndexed(dataset)
    order = torch.Generator().manual_seed(seed)
    batch_size, epoch = size.batch_size, 0
    while len(records) < steps:
        collator.set_epoch(epoch)
        permutation = torch.randperm(len(rows), generator=order).tolist()
        for start in range(0, len(permutation) - batch_size + 1, batch_size):
            if len(records) == steps:
                break
            batch = collator([rows[index] for index in permutation[start : start + batch_size]])
            quality_weights(  # the arm's own settings (efficacy.WEIGHTED)
                args.quality_mode,
                batch,
                None,
                frozen=frozen,
                gamma=args.gamma,
                multi_positive=False,
                center=args.quality_center,
                foreground=args.quality_foreground,
                weighting=Recorder(),
            )
        epoch += 1
    return records


def measure(records: list[dict[str, list]], false_rows: np.ndarray) -> dict[str, dict[str, float]]:
    """Per weighting (and the oracle): the false pairs' share of the weight mass, the AUC and the
    effective number of pairs, each the mean over the steps (and over their second half)."""
    out = {}
    for name in [*WEIGHTINGS, "oracle"]:
        memory = RowQualityMemory()
        shares, aucs, effective, averaged = [], [], [], []
        for step, record in enumerate(records):
            q = torch.tensor(record["q"], dtype=torch.float64)
            rows = torch.tensor(record["rows"])
            false = false_rows[rows.numpy()]
            if name == "oracle":
                weights = torch.tensor(~false, dtype=torch.float64)
                weights = weights * len(weights) / weights.sum()
            else:
                smoothed = memory.update(rows, q) if name == "row_memory" else None
                weights = pair_weights(q, name, 1.0, step / len(records), smoothed)
                if smoothed is not None:  # how well the rows' averages themselves rank the pairs
                    averaged.append(roc_auc(smoothed.numpy(), ~false))
            w = weights.numpy()
            shares.append(w[false].sum() / w.sum())
            aucs.append(roc_auc(w, ~false))
            effective.append(w.sum() ** 2 / (w**2).sum())
        half = len(records) // 2
        out[name] = {
            "false_share": float(np.mean(shares)),
            "false_share_second_half": float(np.mean(shares[half:])),
            "auc": float(np.nanmean(aucs)),
            "effective_pairs": float(np.mean(effective)),
            "effective_pairs_second_half": float(np.mean(effective[half:])),
        }
        if averaged:
            out[name]["auc_of_row_averages"] = float(np.nanmean(averaged))
    return out


def separation(records: list[dict[str, list]], false_rows: np.ndarray) -> dict[str, float]:
    """q of the clean and of the false pairs: means, standard deviations, the share above 0."""
    q = np.array([value for record in records for value in record["q"]])
    false = np.array([false_rows[row] for record in records for row in record["rows"]])
    return {
        f"{kind}_{stat}": float(fn(q[mask]))
        for kind, mask in (("clean", ~false), ("false", false))
        for stat, fn in (("mean", np.mean), ("std", np.std), ("above_0", lambda x: (x > 0).mean()))
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| weighting | encoder | false pairs' share of the weights (second half) | AUC vs the clean flags | "
        "effective pairs per batch of 32 (second half) |",
        "|---|---|---|---|---|",
    ]
    for name in [*WEIGHTINGS, "oracle"]:
        for encoder, found in results["encoders"].items():
            m = found["weightings"][name]
            lines.append(
                f"| `{name}` | {encoder} | {m['false_share']:.3f} ({m['false_share_second_half']:.3f}) | "
                f"{m['auc']:.3f} | {m['effective_pairs']:.1f} ({m['effective_pairs_second_half']:.1f}) |"
            )
    for encoder, found in results["encoders"].items():
        s, memory = found["separation"], found["weightings"]["row_memory"]
        lines.append(
            f"\n{encoder} encoder: q of the clean pairs {s['clean_mean']:.2f} ± {s['clean_std']:.2f} "
            f"({s['clean_above_0']:.0%} above 0), of the false pairs {s['false_mean']:.2f} ± {s['false_std']:.2f} "
            f"({s['false_above_0']:.0%} above 0); AUC of q {found['weightings']['softmax']['auc']:.3f} per step, "
            f"of the rows' averages {memory['auc_of_row_averages']:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--encoders", nargs="+", choices=ENCODERS, default=list(ENCODERS))
    parser.add_argument("--output-dir", default="outputs/efficacy-weightings")
    parser.add_argument(
        "--cache-dir", default="outputs/efficacy-cache", help="the pretrained encoder's cache"
    )
    parser.add_argument(
        "--report", default=None, help="no collation: re-measure the qualities saved in this folder"
    )
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    source = Path(options.report) if options.report else None
    output_dir = Path(options.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if source:
        settings = json.loads((source / "weightings.json").read_text())["settings"]
    else:
        settings = {"seed": options.seed, "steps": options.steps, "encoders": options.encoders}
    train, _ = efficacy_runs.data(settings["seed"], efficacy_runs.Size(steps=settings["steps"]))
    false_rows = np.array(train[efficacy_runs.FALSE_POSITIVE])
    results: dict[str, Any] = {"settings": settings, "encoders": {}}
    for encoder in settings["encoders"]:
        path = f"qualities-{encoder}.json"
        if source:
            records = json.loads((source / path).read_text())
        else:
            records = qualities(settings["seed"], settings["steps"], encoder, Path(options.cache_dir))
            (output_dir / path).write_text(json.dumps(records))
        results["encoders"][encoder] = {
            "weightings": measure(records, false_rows),
            "separation": separation(records, false_rows),
        }
    (output_dir / "weightings.json").write_text(json.dumps(results, indent=1))
    text = (
        f"seed {settings['seed']}, {settings['steps']} steps of the `ours` arm's batches (frozen mode, stored "
        f"masks, geometric views, centred cosines)\n\n{table(results)}"
    )
    (output_dir / "weightings.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
