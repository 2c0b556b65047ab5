"""Weighted kNN classification on L2-normalised features (InstDisc / DINO protocol).

Each test feature takes its ``k`` nearest training features by cosine similarity; neighbour
``j`` votes for its label with weight ``exp(s_j / T)``. Defaults k=20, T=0.07 (Wu et al. 2018;
Caron et al. 2021, ``eval_knn.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metrics import compute

KNN_K = 20  # InstDisc / DINO
KNN_TEMPERATURE = 0.07  # InstDisc / DINO


def _check_features(features: torch.Tensor, labels: torch.Tensor | None, name: str) -> None:
    if labels is None:
        raise ValueError(f"{name}: labels are missing (kNN and linear probes need a labelled dataset)")
    if features.ndim != 2:
        raise ValueError(f"{name}: features must be (N, D); got shape {tuple(features.shape)}")
    if len(features) != len(labels):
        raise ValueError(f"{name}: {len(features)} features but {len(labels)} labels")
    if len(features) == 0:
        raise ValueError(f"{name}: no examples")


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    top: int = 5,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """``(N_test, min(top, C))`` predicted labels, best first."""
    _check_features(train_features, train_labels, "kNN train set")
    if test_features.ndim != 2 or test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"kNN: test features {tuple(test_features.shape)} do not match train features {tuple(train_features.shape)}"
        )
    train_labels = torch.as_tensor(train_labels, dtype=torch.long, device=train_features.device)
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    train = F.normalize(train_features.float(), dim=1)
    predictions = []
    for start in range(0, len(test_features), chunk_size):
        test = F.normalize(test_features[start : start + chunk_size].float().to(train.device), dim=1)
        similarity, index = (test @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(test), num_classes, device=train.device)
        votes.scatter_add_(1, train_labels[index], (similarity / temperature).exp())
        predictions.append(votes.topk(min(top, num_classes), dim=1).indices.cpu())
    return torch.cat(predictions)


def knn_evaluate(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    prefix: str = "knn_",
) -> dict[str, float]:
    """``{knn_top1, knn_top5, knn_mean_per_class_accuracy}`` (fractions; top5 when there are >= 5 classes)."""
    _check_features(train_features, train_labels, "kNN train set")
    _check_features(test_features, test_labels, "kNN test set")
    test_labels = torch.as_tensor(test_labels, dtype=torch.long)
    num_classes = int(max(int(torch.as_tensor(train_labels).max()), int(test_labels.max()))) + 1
    ranked = knn_predict(
        train_features, train_labels, test_features, k=k, temperature=temperature, num_classes=num_classes
    )
    scores = compute("classification", predictions=ranked.tolist(), references=test_labels.tolist())
    return {f"{prefix}{name}": value for name, value in scores.items()}
