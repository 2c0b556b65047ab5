"""Tests of genview_hf.evaluation.plots: the run's pictures (weight histograms from tensors, arrays
and logs; the pair grid; the kNN curve) are written as PNG files."""

import pytest
import torch
from PIL import Image as PILImage

from _evaluation_fixtures import stripes
from genview_hf.evaluation import plot_knn_curve, plot_pair_grid, plot_weight_histograms


def assert_png(path):
    assert path.exists() and path.stat().st_size > 1000
    with PILImage.open(path) as image:
        assert image.format == "PNG" and image.width > 100


def test_weight_histograms_from_tensors_arrays_and_logs(tmp_path):
    generator = torch.Generator().manual_seed(0)
    per_step = [
        torch.softmax(torch.randn(32, generator=generator) * (1 + step), 0) * 32 for step in range(10)
    ]
    assert_png(plot_weight_histograms(per_step, tmp_path / "from_tensors.png", steps=range(0, 100, 10)))
    arrays = {step: weights.numpy() for step, weights in zip(range(0, 100, 10), per_step)}
    assert_png(plot_weight_histograms(arrays, tmp_path / "from_mapping.png"))
    log = [
        {"step": step, "quality_weights": weights.tolist(), "loss": 1.0} for step, weights in arrays.items()
    ]
    assert_png(plot_weight_histograms(log + [{"step": 200, "loss": 0.5}], tmp_path / "from_log.png"))
    # GenViewTrainer's own log keys: quantile summaries per logging step.
    summaries = [
        {
            "step": s,
            "weight_min": 0.2,
            "weight_q10": 0.5,
            "weight_q50": 1.0,
            "weight_q90": 1.6,
            "weight_max": 3.0,
        }
        for s in (10, 20, 30)
    ]
    assert_png(plot_weight_histograms(summaries, tmp_path / "from_quantiles.png"))
    with pytest.raises(ValueError, match="no quality weights"):
        plot_weight_histograms([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="3 steps for 10"):
        plot_weight_histograms(per_step, tmp_path / "bad.png", steps=[1, 2, 3])
    with pytest.raises(ValueError, match="empty weight array at step 1"):
        plot_weight_histograms([torch.ones(3), torch.ones(0)], tmp_path / "bad.png")


def test_pair_grid_and_knn_curve(tmp_path):
    first = [stripes(index % 2, index) for index in range(8)]
    second = [torch.rand(3, 32, 32) for _ in range(8)]  # tensors (CHW, [0, 1]) work as well as PIL images
    weights = torch.linspace(0.2, 1.8, 8)
    assert_png(plot_pair_grid(first, second, weights, tmp_path / "pairs.png", n=3))
    with pytest.raises(ValueError, match="8 first views, 7 second views, 8 weights"):
        plot_pair_grid(first, second[:7], weights, tmp_path / "bad.png")
    log = [{"step": 10, "knn_top1": 0.2}, {"step": 10, "loss": 1.0}, {"step": 20, "knn_top1": 0.4}]
    assert_png(plot_knn_curve(log, tmp_path / "knn_from_log.png"))
    assert_png(plot_knn_curve([(10, 0.2), (20, 0.4)], tmp_path / "knn_from_history.png"))
    with pytest.raises(ValueError, match="no kNN values"):
        plot_knn_curve([{"step": 1, "loss": 1.0}], tmp_path / "bad.png")
