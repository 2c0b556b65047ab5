"""Statistics of paired-seed experiments (the false-positive benchmark, ``benchmarks/bench_efficacy.py``):
ROC AUC of weights against clean/false flags, medians, t and bootstrap intervals, gains paired by
seed, the share of the false positives' cost a weighting recovers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 10_000


def roc_auc(scores: Any, positives: Any) -> float:
    """ROC AUC of ``scores`` for the ``positives``: the chance that a random positive scores above a
    random negative, ties counting half (the Mann-Whitney U over the product of the class sizes).
    NaN when one class is empty (a batch with no false pair, say)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.asarray(positives, dtype=bool).ravel()
    if scores.shape != positives.shape:
        raise ValueError(f"roc_auc: {scores.size} scores for {positives.size} labels")
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)  # ties share their mean rank
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean, standard error and the Student-t interval of the mean of ``values`` (NaN-free)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        raise ValueError("t_interval: no values")
    mean = float(values.mean())
    if n == 1:
        return {"mean": mean, "se": float("nan"), "low": float("nan"), "high": float("nan"), "n": 1}
    se = float(values.std(ddof=1) / np.sqrt(n))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return {"mean": mean, "se": se, "low": mean - half, "high": mean + half, "n": n}


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.median,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values`` (resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        raise ValueError("bootstrap_interval: no values")
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    estimates = np.apply_along_axis(statistic, 1, values[draws])
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)


def paired(
    scores: Mapping[str, Mapping[int, float]], arm: str, reference: str
) -> tuple[list[int], np.ndarray]:
    """The seeds both arms ran and ``arm - reference`` on each of them."""
    seeds = sorted(set(scores.get(arm, {})) & set(scores.get(reference, {})))
    return seeds, np.array([scores[arm][seed] - scores[reference][seed] for seed in seeds], dtype=np.float64)


def share_recovered(
    gains: Sequence[float],
    costs: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """The share of the false positives' cost a weighting recovers: mean gain over ``off`` divided by
    the mean cost (the clean-only ceiling minus ``off``), both per seed; its interval resamples the
    seeds with their (gain, cost) pairs together (percentile bootstrap)."""
    gains, costs = np.asarray(gains, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    if gains.shape != costs.shape or len(gains) == 0:
        raise ValueError(f"share_recovered: {gains.size} gains for {costs.size} costs")
    share = float(gains.mean() / costs.mean()) if costs.mean() != 0 else float("nan")
    draws = np.random.default_rng(seed).integers(0, len(gains), size=(resamples, len(gains)))
    cost_means = costs[draws].mean(1)
    ratios = np.where(
        cost_means != 0, gains[draws].mean(1) / np.where(cost_means != 0, cost_means, 1), np.nan
    )
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(ratios, [tail, 1 - tail])
    return {"share": share, "low": float(low), "high": float(high)}


def binned_curve(points: Sequence[tuple[int, float]], bin_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, mean value per bin) of (step, value) points, NaN values left out."""
    if bin_steps < 1:
        raise ValueError(f"binned_curve: bin_steps must be >= 1, got {bin_steps}")
    steps = np.array([step for step, value in points if np.isfinite(value)], dtype=np.float64)
    values = np.array([value for _, value in points if np.isfinite(value)], dtype=np.float64)
    if len(steps) == 0:
        return np.array([]), np.array([])
    bins = (steps // bin_steps).astype(int)
    kept = np.unique(bins)
    return (kept + 0.5) * bin_steps, np.array([values[bins == b].mean() for b in kept])
