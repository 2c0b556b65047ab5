"""Tests of genview_hf.evaluation.linear on clusters of known structure: the probe separates
separable clusters, falls to chance on shuffled labels and picks its learning rate on held-out data."""

import torch

from _evaluation_fixtures import clusters
from genview_hf.evaluation import (
    linear_probe,
)


def test_linear_probe_separable_clusters_and_shuffled_control():
    train_x, train_y, test_x, test_y = clusters(dim=16)
    scores = linear_probe(train_x, train_y, test_x, test_y, epochs=20)
    assert scores["linear_top1"] == 1.0 and scores["linear_mean_per_class_accuracy"] == 1.0
    assert scores["linear_best_lr"] in (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
    shuffled = train_y[torch.randperm(len(train_y))]
    control = linear_probe(train_x, shuffled, test_x, test_y, epochs=20)
    assert abs(control["linear_top1"] - 0.1) < 0.08


def test_linear_probe_picks_the_learning_rate_on_held_out_data():
    # Only a large learning rate gets anywhere in 2 epochs on this overlapping problem.
    train_x, train_y, test_x, test_y = clusters(n_classes=4, spread=3.0, dim=8)
    scores = linear_probe(train_x, train_y, test_x, test_y, lrs=[1e-6, 1.0], epochs=2)
    assert scores["linear_best_lr"] == 1.0
    assert 0.3 < scores["linear_held_out_top1"] <= 1.0
