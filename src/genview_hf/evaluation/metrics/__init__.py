"""``evaluate`` modules shipped with genview_hf, loaded by local path (works offline)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

METRICS_DIR = Path(__file__).parent
METRIC_NAMES = ("classification", "retrieval")


@cache
def load_metric(name: str):
    """``evaluate.load`` of ``metrics/<name>/<name>.py``; a Hub metric name would fail offline."""
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; genview_hf ships {', '.join(METRIC_NAMES)}")
    return evaluate.load(str(METRICS_DIR / name / f"{name}.py"))


def compute(name: str, **inputs) -> dict[str, float]:
    """Run the shipped metric ``name`` on ``inputs`` (``predictions=...``, ``references=...``)."""
    return load_metric(name).compute(**inputs)
