"""Does quality-driven weighting work? A controlled false-positive benchmark.

    python benchmarks/bench_efficacy.py                  # default size: 7 arms x 5 seeds, 2-core CPU
    python benchmarks/bench_efficacy.py --full           # 10 seeds, 400 steps
    python benchmarks/bench_efficacy.py --arms levers --first-seed 0 --docs levers   # the lever study
    python benchmarks/bench_efficacy.py --docs results   # also rewrite docs/efficacy.md's table and plot
    python benchmarks/bench_efficacy.py --report outputs/efficacy --docs results   # re-report saved runs

The data (``genview_hf.testing.controlled``): coloured objects on textured backgrounds, each with one
generated view that is either clean (the same object on another background) or a false positive
(the original's background with another object), at a known rate (``--false-positive-rate``,
default half). Every arm trains MoCo v3 on a small stock ResNet from scratch through
``GenViewTrainer`` (``efficacy_runs.py``) with the same seeds, so arms are compared seed by seed:
the data, the initialisation and the augmentation of seed s are the same in every arm.

Per arm: kNN and linear-probe top-1 on the objects' colour (``genview_hf.evaluation``), the gain
over ``off`` paired by seed (mean, standard error, t interval), the share of the false positives'
cost (clean-only ceiling minus ``off``) it recovers (bootstrap interval over seeds), and the ROC
AUC of each training step's weights against the true clean/false flags, over training. Writes
``runs.jsonl``, ``summary.json``, ``table.md`` and ``efficacy.png`` into ``--output-dir``;
``--docs BLOCK`` also writes the table into the ``BLOCK`` section of docs/efficacy.md and the plot
to docs/efficacy.png (``results``) or docs/efficacy-BLOCK.png.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402

from genview_hf.benchmarks.efficacy_runs import (  # noqa: E402
    ALL_ARMS,
    ARMS,
    LEVERS,
    WEIGHTINGS,
    Size,
    pretrained_encoder,
)
from genview_hf.benchmarks.efficacy_settings import CONTROLLED_RUN  # noqa: E402
from genview_hf.evaluation.statistics import (  # noqa: E402
    binned_curve,
    bootstrap_interval,
    paired,
    share_recovered,
    t_interval,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
FULL = Size(steps=400)
AUC_BIN_STEPS = 20
GROUPS = {
    "default": list(ARMS),
    "levers": ["off", "clean_only", "oracle", *LEVERS, "ours"],
    "weightings": ["off", "oracle", "ours", *WEIGHTINGS],
    "all": list(ALL_ARMS),
}
# The labels the encoders are scored on: the table's gains are on one (``--label``; by default the
# first that every run scored), the other's kNN gain is its second column. Shape comes first: the
# untrained encoder reads it near chance (24%, chance 17%) and a false pair's other object teaches
# the wrong one; colour the untrained encoder already reads (86%), and the augmentation's colour
# jitter pulls every arm's colour score about, the oracle's too (72-100% over seeds at 800 steps;
# docs/efficacy.md). Runs from before the shape label scored the colour only, as knn_top1 / linear_top1.
LABELS = ("shape", "colour")


# ---------------------------------------------------------------------------------- running
def _job(job: tuple[str, int, dict[str, Any], str]) -> dict[str, Any]:
    """One (arm, seed); in a worker process with one torch thread and quiet libraries."""
    import multiprocessing

    name, seed, size, work_dir, cache_dir = job
    if multiprocessing.parent_process() is not None:
        import datasets
        import torch
        import transformers

        torch.set_num_threads(1)
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    from genview_hf.benchmarks.efficacy_runs import run, untrained

    size, work_dir = Size(**size), Path(work_dir)
    if name == "untrained":
        return untrained(seed, size, work_dir)
    return run(name, ALL_ARMS[name], seed, size, work_dir, Path(cache_dir))


def read_runs(log: Path) -> list[dict[str, Any]]:
    """The runs of a ``runs.jsonl``; a line that is not a whole JSON record (a run cut off while
    writing) is named and skipped."""
    results = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"  {log}: line {number} is not a whole run record, skipped (it is run again)", flush=True)
    return results


def run_all(
    arms: list[str],
    seeds: list[int],
    size: Size,
    workers: int,
    log: Path,
    cache_dir: Path,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Every (arm, seed) run and each seed's untrained scores, ``workers`` processes at a time (1: in
    this process); each result is appended to ``log`` as it comes. ``resume``: the runs ``log``
    already holds are kept and not run again."""
    import multiprocessing

    done = read_runs(log) if resume and log.is_file() else []
    if done:  # the whole records only: a line cut off while writing is dropped, and run again
        log.write_text("".join(json.dumps(result) + "\n" for result in done))
    if any(ALL_ARMS[name].pretrained for name in arms):  # built once, before the workers share it
        pretrained_encoder(cache_dir)
    with (
        tempfile.TemporaryDirectory(prefix="genview-efficacy-") as work_dir,
        log.open("a" if resume else "w") as out,
    ):
        finished = {(result["arm"], result["seed"]) for result in done}
        jobs = [
            (name, seed, asdict(size), work_dir, str(cache_dir))
            for seed in seeds
            for name in ["untrained", *arms]
            if (name, seed) not in finished
        ]
        if done:
            print(f"  resuming: {len(finished)} runs already in {log}, {len(jobs)} to go", flush=True)
        results = list(done)
        pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
        with pool or contextlib.nullcontext():
            for result in pool.imap_unordered(_job, jobs) if pool else map(_job, jobs):
                results.append(result)
                out.write(json.dumps(result) + "\n")
                out.flush()
                print(
                    f"  {result['arm']:<30} seed {result['seed']}: kNN shape {result['knn_shape']:.3f}, "
                    f"colour {result['knn_colour']:.3f}; linear shape {result['linear_shape']:.3f} "
                    f"({result['seconds']:.0f} s)",
                    flush=True,
                )
    return results


def with_label_keys(result: dict[str, Any]) -> dict[str, Any]:
    """A run record with its scores under ``knn_<label>`` / ``linear_<label>``: a record from before
    the shape label (``knn_top1``, ``linear_top1``: the colour) gets ``knn_colour`` / ``linear_colour``."""
    if "knn_top1" in result and "knn_colour" not in result:
        return {**result, "knn_colour": result["knn_top1"], "linear_colour": result["linear_top1"]}
    return result


def scored_labels(results: list[dict[str, Any]]) -> list[str]:
    """The labels every run was scored on, in ``LABELS`` order (records as :func:`with_label_keys` reads them)."""
    return [label for label in LABELS if all(f"knn_{label}" in result for result in results)]


# ---------------------------------------------------------------------------------- summary
def by_arm(results: list[dict[str, Any]], metric: str) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for result in results:
        table.setdefault(result["arm"], {})[result["seed"]] = float(result[metric])
    return table


def run_auc(result: dict[str, Any]) -> float:
    """A run's in-training AUC: the mean over its training steps (NaN without weights)."""
    values = [auc for _, auc in result.get("weight_auc", []) if np.isfinite(auc)]
    return float(np.mean(values)) if values else float("nan")


def run_false_share(result: dict[str, Any]) -> float:
    """A run's false pairs' share of the weight mass, over its training steps (NaN without the record)."""
    values = [share for _, share in result.get("false_share", []) if np.isfinite(share)]
    return float(np.mean(values)) if values else float("nan")


# What a weighting's gain over off is a share of: the false positives' cost (the clean-only ceiling's
# gain) when the runs have the ceiling, else what the true flags recover (the oracle's gain).
SHARE_REFERENCES = {"clean_only": "the cost", "oracle": "the oracle's gain"}


def summarize(
    results: list[dict[str, Any]], arms: list[str], label: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per arm: medians and intervals over seeds, the paired gain over ``off`` on ``label`` (None: the
    first of ``LABELS`` every run scored) and the kNN gain on the other label, the share of the cost
    recovered (of ``SHARE_REFERENCES``' first arm the runs have, on the seeds both ran), the
    in-training AUC and the false pairs' share of the weights."""
    results = [with_label_keys(result) for result in results]
    labels = scored_labels(results)
    label = label or labels[0]
    if label not in labels:
        raise ValueError(f"the runs were not all scored on {label!r}: they have {', '.join(labels)}")
    second = next((other for other in labels if other != label), None)
    knn, linear = by_arm(results, f"knn_{label}"), by_arm(results, f"linear_{label}")
    second_knn = by_arm(results, f"knn_{second}") if second else {}
    reference = next((name for name in SHARE_REFERENCES if name in knn), None)
    costs = dict(zip(*paired(knn, reference, "off"))) if reference else {}  # seed -> reference's gain
    summary: dict[str, dict[str, Any]] = {}
    for name in ["untrained", *arms]:
        if name not in knn:
            continue
        seeds = sorted(knn[name])
        values = np.array([knn[name][seed] for seed in seeds])
        entry: dict[str, Any] = {
            "label": "random init (untrained)" if name == "untrained" else ALL_ARMS[name].label,
            "scored_on": label,
            "second_label": second,
            "share_of": reference,
            "seeds": seeds,
            "knn_median": float(np.median(values)),
            "knn_ci": bootstrap_interval(values),
            "linear_median": float(np.median([linear[name][seed] for seed in seeds])),
            "linear_ci": bootstrap_interval([linear[name][seed] for seed in seeds]),
        }
        if name not in ("off", "untrained") and "off" in knn:
            gain_seeds, gains = paired(knn, name, "off")
            entry["gain"] = t_interval(gains)
            entry["gain_median"] = float(np.median(gains))
            entry["gain_over_se"] = (
                entry["gain"]["mean"] / entry["gain"]["se"] if entry["gain"]["se"] else None
            )
            entry["seeds_better"] = int((gains > 0).sum())
            _, linear_gains = paired(linear, name, "off")
            entry["linear_gain"] = t_interval(linear_gains)
            if second:
                entry["second_gain"] = t_interval(paired(second_knn, name, "off")[1])
            shared = [index for index, seed in enumerate(gain_seeds) if seed in costs]
            if name != reference and len(shared) >= 2:
                entry["share_recovered"] = share_recovered(
                    gains[shared], [costs[gain_seeds[index]] for index in shared]
                )
        aucs = [run_auc(result) for result in results if result["arm"] == name]
        if any(np.isfinite(aucs)):
            finite = [auc for auc in aucs if np.isfinite(auc)]
            entry["auc_median"] = float(np.median(finite))
            entry["auc_ci"] = bootstrap_interval(finite)
            curves = [result["weight_auc"] for result in results if result["arm"] == name]
            first = [np.nanmean([a for s, a in curve if s <= max(1, len(curve) // 10)]) for curve in curves]
            entry["auc_first_tenth"] = float(np.nanmedian(first))
            shares = [run_false_share(result) for result in results if result["arm"] == name]
            if any(np.isfinite(shares)):
                entry["false_share"] = float(np.nanmedian(shares))
        entry["seconds"] = float(np.mean([r["seconds"] for r in results if r["arm"] == name]))
        summary[name] = entry
    return summary


# ---------------------------------------------------------------------------------- report
def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _interval(low: float, high: float) -> str:
    return f"[{_pct(low)}, {_pct(high)}]"


def _gain_text(gain: dict[str, float] | None, better: int | None = None) -> str:
    """``+m ± se [low, high] (m/se; better/n)`` in points, or a dash."""
    if gain is None:
        return "—"
    ratio = gain["mean"] / gain["se"] if gain["se"] and np.isfinite(gain["se"]) else None
    ratio_text = "—" if ratio is None else f"{ratio:.1f}"
    seeds = "" if better is None else f"; {better}/{gain['n']}"
    return (
        f"{gain['mean'] * 100:+.1f} ± {gain['se'] * 100:.1f} {_interval(gain['low'], gain['high'])} "
        f"({ratio_text}{seeds})"
    )


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The Markdown table: one row per arm, percentages: the scores on the summary's label, the kNN
    gain on the second label beside them (when the runs have one)."""
    first = next(iter(summary.values()))
    label, second = first["scored_on"], first["second_label"]
    share_of = SHARE_REFERENCES.get(first.get("share_of"), "the cost")
    lines = [
        f"| arm | kNN top-1 ({label}), median [95% CI] | linear top-1 ({label}), median | gain over off, kNN "
        f"{label}, mean ± SE [95% t CI] (gain/SE; seeds better) | share of {share_of} recovered [95% CI] | "
        + (f"gain over off, kNN {second}, mean ± SE [95% t CI] (gain/SE) | " if second else "")
        + "in-training AUC, median [95% CI] (first tenth) | false pairs' share of the weights |",
        "|---|---|---|---|---|" + ("---|" if second else "") + "---|---|",
    ]
    for name, entry in summary.items():
        share = entry.get("share_recovered")
        share_text = f"{share['share']:.2f} [{share['low']:.2f}, {share['high']:.2f}]" if share else "—"
        auc_text = "—"
        if "auc_median" in entry:
            low, high = entry["auc_ci"]
            auc_text = f"{entry['auc_median']:.3f} [{low:.3f}, {high:.3f}] ({entry['auc_first_tenth']:.3f})"
        false_text = f"{entry['false_share']:.2f}" if "false_share" in entry else "—"
        lines.append(
            f"| {entry['label']} (`{name}`) | {_pct(entry['knn_median'])} {_interval(*entry['knn_ci'])} | "
            f"{_pct(entry['linear_median'])} | {_gain_text(entry.get('gain'), entry.get('seeds_better'))} | "
            f"{share_text} | "
            + (f"{_gain_text(entry.get('second_gain'))} | " if second else "")
            + f"{auc_text} | {false_text} |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], summary: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Left: kNN top-1 of every seed, the median and its interval, per arm. Right: the in-training AUC
    of the weights (median over seeds, in bins of ``AUC_BIN_STEPS`` steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.42 * len(names) + 2.5))
    label = next(iter(summary.values()))["scored_on"]
    for row, name in enumerate(names):
        entry = summary[name]
        values = [with_label_keys(r)[f"knn_{label}"] * 100 for r in results if r["arm"] == name]
        left.scatter(values, [row] * len(values), color="0.6", s=14, zorder=2)
        low, high = entry["knn_ci"]
        left.errorbar(
            entry["knn_median"] * 100, row, xerr=[[entry["knn_median"] * 100 - low * 100], [high * 100 - entry["knn_median"] * 100]],
            fmt="o", color="C0" if name != "ours" else "C3", capsize=3, zorder=3,
        )  # fmt: skip
    left.set_yticks(range(len(names)), [summary[name]["label"] for name in names], fontsize=8)
    left.invert_yaxis()
    left.set_xlabel(f"kNN top-1 on the object's {label} (%): seeds (grey), median and 95% bootstrap CI")
    left.grid(axis="x", alpha=0.3)
    for name in names:
        curves = [r["weight_auc"] for r in results if r["arm"] == name and r.get("weight_auc")]
        if not curves or name == "oracle":
            continue
        binned = [binned_curve(curve, AUC_BIN_STEPS) for curve in curves]
        steps = binned[0][0]
        values = np.nanmedian(np.stack([values for _, values in binned if len(values) == len(steps)]), 0)
        right.plot(
            steps, values, marker=".", label=summary[name]["label"], color="C3" if name == "ours" else None
        )
    right.axhline(0.5, color="0.5", linestyle="--", linewidth=1)
    right.set_ylim(0.4, 1.0)
    right.set_xlabel("training step")
    right.set_ylabel("ROC AUC of the weights vs the clean flags")
    right.legend(fontsize=7, loc="lower right")
    right.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def machine() -> str:
    cores = os.cpu_count()
    try:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        load = "n/a"
    return f"{platform.processor() or platform.machine()}, {cores} cores, load average at the end {load}"


def write_docs(block: str, text: str, plot_path: Path) -> None:
    """``text`` between the ``<!-- BLOCK:begin -->`` / ``<!-- BLOCK:end -->`` markers of docs/efficacy.md,
    and the plot beside it."""
    doc = DOCS / "efficacy.md"
    content = doc.read_text()
    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    if begin not in content or end not in content:
        raise ValueError(f"{doc} has no {begin} ... {end} section")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
    shutil.copyfile(plot_path, DOCS / ("efficacy.png" if block == "results" else f"efficacy-{block}.png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arms", nargs="+", default=["default"], help=f"arm names or groups {list(GROUPS)}")
    parser.add_argument(
        "--seeds", type=int, default=None, help="number of paired seeds (default 5; --full 10)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=100, help="the seeds are first-seed, first-seed + 1, ..."
    )
    parser.add_argument("--full", action="store_true", help="10 seeds and 400 steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--test-rows", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--false-positive-rate", type=float, default=None)
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--output-dir", default="outputs/efficacy")
    parser.add_argument(
        "--cache-dir",
        default="outputs/efficacy-cache",
        help="where the pretrained frozen encoder is built once and kept (the *_pretrained arms)",
    )
    parser.add_argument(
        "--label",
        choices=LABELS,
        default=None,
        help="the label the table's gains are on (default: shape, else colour: the first that every run scored)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs the output folder's runs.jsonl already holds and run only the others",
    )
    parser.add_argument(
        "--docs", default=None, help="write the table and plot into this docs/efficacy.md section"
    )
    parser.add_argument(
        "--report",
        default=None,
        help="no training: summarise the runs.jsonl and summary.json an earlier run wrote into this folder",
    )
    options = parser.parse_args(argv)
    if options.report:
        return report(Path(options.report), Path(options.output_dir), options.docs, options.label)

    arms = list(dict.fromkeys(name for item in options.arms for name in GROUPS.get(item, [item])))
    unknown = [name for name in arms if name not in ALL_ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}: expected names of {list(ALL_ARMS)} or groups {list(GROUPS)}")
    size = FULL if options.full else Size()
    changes = {
        key: value
        for key, value in (
            ("steps", options.steps),
            ("rows", options.rows),
            ("test_rows", options.test_rows),
            ("batch_size", options.batch_size),
            ("false_positive_rate", options.false_positive_rate),
        )
        if value is not None
    }
    size = replace(size, **changes)
    seeds = list(
        range(options.first_seed, options.first_seed + (options.seeds or (10 if options.full else 5)))
    )
    output_dir = Path(options.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    print(f"{len(arms)} arms x {len(seeds)} seeds ({', '.join(arms)}), {size}", flush=True)
    started = time.perf_counter()
    results = run_all(
        arms, seeds, size, options.workers, output_dir / "runs.jsonl", Path(options.cache_dir), options.resume
    )
    wall = time.perf_counter() - started

    date = datetime.date.today().isoformat()
    header = (
        f"{date}; {machine()}; {options.workers} runs at a time, one torch thread each; "
        f"{seeds_per_arm(results, arms)}; this call {len(arms)} arms x {len(seeds)} seeds in {wall / 60:.1f} min wall; "
        f"{size.rows} rows ({size.false_positive_rate:.0%} false positives), {size.steps} steps x "
        f"{size.batch_size}, lr {CONTROLLED_RUN['learning_rate']:g}, momentum {CONTROLLED_RUN['momentum']:g}"
    )
    write_report(results, arms, header, asdict(size), output_dir, options.docs, options.label)
    return 0


def seeds_per_arm(results: list[dict[str, Any]], arms: list[str]) -> str:
    """``arm, arm: seeds a-b; arm: ...`` of the runs the report reads (with --resume, earlier calls' too)."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in arms:
        seeds = tuple(sorted(result["seed"] for result in results if result["arm"] == name))
        if seeds:
            groups.setdefault(seeds, []).append(name)
    return "; ".join(
        f"{', '.join(names)}: seeds {seeds[0]}-{seeds[-1]} ({len(seeds)})" for seeds, names in groups.items()
    )


def write_report(
    results: list[dict[str, Any]],
    arms: list[str],
    header: str,
    size: dict[str, Any],
    output_dir: Path,
    docs: str | None,
    label: str | None = None,
) -> None:
    """summary.json, table.md and efficacy.png of ``results`` into ``output_dir`` (and the ``docs`` section)."""
    summary = summarize(results, arms, label)
    text = f"{header}\n\n{table(summary)}"
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "summary.json").write_text(
        json.dumps({"header": header, "size": size, "arms": summary}, indent=1)
    )
    (output_dir / "table.md").write_text(text + "\n")
    seeds = sorted({result["seed"] for result in results})
    title = f"{size['false_positive_rate']:.0%} false positives, {size['steps']} steps, seeds {seeds[0]}-{seeds[-1]}"
    figure = plot(results, summary, output_dir / "efficacy.png", title)
    if docs:
        write_docs(docs, text, figure)
    print(text)


def report(folder: Path, output_dir: Path, docs: str | None, label: str | None = None) -> int:
    """The report of an earlier run's ``runs.jsonl``, with its header, size and arms from its summary.json."""
    results = read_runs(folder / "runs.jsonl")
    saved = json.loads((folder / "summary.json").read_text())
    arms = [name for name in saved["arms"] if name != "untrained"]
    write_report(results, arms, saved["header"], saved["size"], output_dir, docs, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
