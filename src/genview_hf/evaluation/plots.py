"""Pictures of a run, saved as PNG: quality-weight histograms over training, the highest- and
lowest-weighted pairs, and the kNN curve. matplotlib with the Agg backend (no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Log-history key under which per-step quality weights (a list of floats) may be logged.
WEIGHTS_LOG_KEY = "quality_weights"
KNN_LOG_KEY = "knn_top1"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor, on any device, in any dtype
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def weights_per_step(
    weights: Sequence[Any] | Mapping[int, Any],
    steps: Sequence[int] | None = None,
    *,
    key: str = WEIGHTS_LOG_KEY,
) -> tuple[list[int], list[np.ndarray]]:
    """(steps, weight arrays) from a list of per-step tensors/arrays, a ``{step: weights}`` mapping,
    or a Trainer ``log_history`` (dicts holding ``key`` and ``step``)."""
    if isinstance(weights, Mapping):
        steps, arrays = list(weights), [_as_array(value) for value in weights.values()]
    elif len(weights) and isinstance(weights[0], Mapping):
        entries = [entry for entry in weights if key in entry]
        if not entries:
            raise ValueError(f"no log entry holds {key!r}: log per-step quality weights under that key")
        steps = [int(entry.get("step", index)) for index, entry in enumerate(entries)]
        arrays = [_as_array(entry[key]) for entry in entries]
    else:
        arrays = [_as_array(value) for value in weights]
        steps = list(steps) if steps is not None else list(range(len(arrays)))
    if not arrays:
        raise ValueError("no quality weights to plot")
    if len(steps) != len(arrays):
        raise ValueError(f"{len(steps)} steps for {len(arrays)} weight arrays")
    empty = [step for step, array in zip(steps, arrays) if array.size == 0]
    if empty:
        raise ValueError(f"empty weight array at step {empty[0]}")
    return list(steps), arrays


def plot_weight_histograms(
    weights: Sequence[Any] | Mapping[int, Any],
    path: str | os.PathLike,
    *,
    steps: Sequence[int] | None = None,
    bins: int = 30,
    key: str = WEIGHTS_LOG_KEY,
) -> Path:
    """Quality-weight distribution over training: a step x weight heat map (with the mean) and the
    first and last histograms overlaid. Weights have mean 1 by construction (N * softmax).

    A Trainer ``log_history`` without raw weights under ``key`` but with the trainer's quantile
    summaries (``weight_q10``, ``weight_q50``, ...) is drawn by :func:`plot_weight_quantiles`.
    """
    is_log = not isinstance(weights, Mapping) and len(weights) and isinstance(weights[0], Mapping)
    if is_log and not any(key in entry for entry in weights) and any("weight_q50" in e for e in weights):
        return plot_weight_quantiles(weights, path)
    steps, arrays = weights_per_step(weights, steps, key=key)
    everything = np.concatenate(arrays)
    low, high = float(everything.min()), float(everything.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    density = np.stack([np.histogram(array, bins=edges)[0] / array.size for array in arrays], axis=1)

    plt = _pyplot()
    figure, (heat, overlay) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    image = heat.imshow(
        density,
        origin="lower",
        aspect="auto",
        cmap="viridis",
        extent=[-0.5, len(steps) - 0.5, low, high],
    )
    heat.plot(range(len(steps)), [array.mean() for array in arrays], color="white", lw=1, label="mean")
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int))
    heat.set_xticks(ticks, [str(steps[i]) for i in ticks])
    heat.set_xlabel("step")
    heat.set_ylabel("quality weight")
    heat.set_title("Quality-weight distribution over training")
    heat.legend(loc="upper right")
    figure.colorbar(image, ax=heat, label="share of pairs")
    for index, label in ((0, "first"), (len(arrays) - 1, "last")):
        overlay.hist(arrays[index], bins=edges, alpha=0.6, label=f"{label} (step {steps[index]})")
    overlay.set_xlabel("quality weight")
    overlay.set_ylabel("pairs")
    overlay.legend()
    return _save(figure, path)


def plot_weight_quantiles(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Fan chart of the logged weight distribution: min-max and 10-90% bands, median and mean per step."""
    entries = [entry for entry in log_history if "weight_q50" in entry and "step" in entry]
    if not entries:
        raise ValueError("no log entry holds weight quantiles (weight_q10, weight_q50, weight_q90)")
    steps = [entry["step"] for entry in entries]

    def series(name: str) -> list[float] | None:
        return [float(entry[name]) for entry in entries] if all(name in entry for entry in entries) else None

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    low, high = series("weight_min"), series("weight_max")
    if low and high:
        axis.fill_between(steps, low, high, alpha=0.2, color="C0", label="min-max")
    q10, q90 = series("weight_q10"), series("weight_q90")
    if q10 and q90:
        axis.fill_between(steps, q10, q90, alpha=0.4, color="C0", label="10-90%")
    axis.plot(steps, series("weight_q50"), color="C0", label="median")
    mean = series("weight_mean")
    if mean:
        axis.plot(steps, mean, color="C1", ls="--", label="mean")
    axis.set_xlabel("step")
    axis.set_ylabel("quality weight")
    axis.set_title("Quality-weight distribution over training")
    axis.legend()
    return _save(figure, path)


def _as_image(image: Any) -> np.ndarray:
    """HWC float array in [0, 1] from a PIL image, a CHW/HWC tensor or array (uint8 or float)."""
    if hasattr(image, "convert"):  # PIL
        image = np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array / 255.0
    array = array.astype(np.float64)
    if array.min() < 0 or array.max() > 1:  # normalised pixel values: stretch for display
        array = (array - array.min()) / max(array.max() - array.min(), 1e-8)
    return array


def plot_pair_grid(
    first_views: Sequence[Any],
    second_views: Sequence[Any],
    weights: Any,
    path: str | os.PathLike,
    *,
    n: int = 6,
) -> Path:
    """The ``n`` highest- and ``n`` lowest-weighted positive pairs, each view above its partner."""
    weights = _as_array(weights)
    if not len(first_views) == len(second_views) == len(weights):
        raise ValueError(
            f"pair grid: {len(first_views)} first views, {len(second_views)} second views, {len(weights)} weights"
        )
    if len(weights) == 0:
        raise ValueError("pair grid: no pairs")
    order = np.argsort(-weights, kind="stable")
    n = min(n, len(weights))
    groups = (("highest", order[:n]), ("lowest", order[::-1][:n]))
    plt = _pyplot()
    figure, axes = plt.subplots(4, n, figsize=(1.8 * n, 7.6), squeeze=False)
    for block, (name, indices) in enumerate(groups):
        for column, index in enumerate(indices):
            top, bottom = axes[2 * block, column], axes[2 * block + 1, column]
            top.imshow(_as_image(first_views[index]), cmap="gray")
            bottom.imshow(_as_image(second_views[index]), cmap="gray")
            top.set_title(
                f"{name}\nw={weights[index]:.2f}" if column == 0 else f"w={weights[index]:.2f}", fontsize=9
            )
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("Highest- (top) and lowest-weighted (bottom) positive pairs")
    return _save(figure, path)


def knn_points(history: Sequence[Any], *, key: str = KNN_LOG_KEY) -> tuple[list[int], list[float]]:
    """(steps, values) from ``[(step, value), ...]`` or a Trainer ``log_history``."""
    if history and isinstance(history[0], Mapping):
        pairs = [
            (int(entry["step"]), float(entry[key])) for entry in history if key in entry and "step" in entry
        ]
    else:
        pairs = [(int(step), float(value)) for step, value in history]
    if not pairs:
        raise ValueError(f"no kNN values to plot (looked for {key!r} in the log history)")
    steps, values = zip(*sorted(pairs))
    return list(steps), list(values)


def plot_knn_curve(history: Sequence[Any], path: str | os.PathLike, *, key: str = KNN_LOG_KEY) -> Path:
    """kNN top-1 (percent) against the training step."""
    steps, values = knn_points(history, key=key)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(steps, [100 * value for value in values], marker="o")
    axis.set_xlabel("step")
    axis.set_ylabel("kNN top-1 (%)")
    axis.set_title("kNN monitor")
    axis.grid(alpha=0.3)
    return _save(figure, path)


def _save(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _pyplot().close(figure)
    return path
