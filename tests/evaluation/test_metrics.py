"""Tests of genview_hf.evaluation.metrics: the metric modules load offline, by path."""

import pytest

from genview_hf.evaluation.metrics import compute


def test_metric_modules_load_offline_by_path():
    scores = compute(
        "classification",
        predictions=[[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 1, 0, 3, 4]],
        references=[0, 0, 2],
    )
    assert scores["top1"] == pytest.approx(2 / 3)
    assert scores["top5"] == 1.0
    assert scores["mean_per_class_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    ranks = compute("retrieval", predictions=[1, 1, 3, 20])
    assert ranks == {"R@1": 0.5, "R@5": 0.75, "R@10": 0.75, "mean_rank": 6.25, "median_rank": 2.0}
    with pytest.raises(ValueError, match="unknown metric"):
        compute("accuracy", predictions=[0], references=[0])
