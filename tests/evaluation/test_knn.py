"""Tests of genview_hf.evaluation.knn on clusters of known structure: separable clusters are
classified perfectly, shuffled labels fall to chance, the votes are temperature weighted."""

import torch

from _evaluation_fixtures import clusters
from genview_hf.evaluation import (
    knn_evaluate,
)


def test_knn_separable_clusters_are_perfect_and_shuffled_labels_fall_to_chance():
    train_x, train_y, test_x, test_y = clusters()
    scores = knn_evaluate(train_x, train_y, test_x, test_y)
    assert scores["knn_top1"] == 1.0 and scores["knn_mean_per_class_accuracy"] == 1.0
    shuffled = train_y[torch.randperm(len(train_y))]
    control = knn_evaluate(train_x, shuffled, test_x, test_y)
    assert abs(control["knn_top1"] - 0.1) < 0.08  # chance = 1 / 10 classes


def test_knn_votes_are_temperature_weighted():
    # One close neighbour of class 1 against two farther ones of class 0: with k=3 a sharp
    # temperature lets the close neighbour win; a flat one lets the majority win.
    train = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.05]])
    sharp = knn_evaluate(train, labels, query, torch.tensor([1]), k=3, temperature=0.07)
    flat = knn_evaluate(train, labels, query, torch.tensor([1]), k=3, temperature=100.0)
    assert sharp["knn_top1"] == 1.0 and flat["knn_top1"] == 0.0
