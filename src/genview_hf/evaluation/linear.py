"""Linear probe on frozen features, with a learning-rate sweep picked on a held-out split.

Features are standardised with the training mean and standard deviation (a BatchNorm without
affine parameters before the linear layer, as in MAE's linear probe). One linear classifier per
learning rate trains at once (SGD, momentum 0.9, cosine schedule, no weight decay, batch 256,
as in MoCo v3 / DINO linear evaluation); the learning rate with the best top-1 on a held-out
share of the training set (10% by default, or a given validation set) wins, and is then
retrained on the whole training set and scored on the test set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .knn import _check_features
from .metrics import compute

# SGD learning rates swept (DINO eval_linear sweeps a similar log grid).
LINEAR_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
LINEAR_EPOCHS = 100  # DINO: 100; MoCo v3: 90
LINEAR_BATCH_SIZE = 256
LINEAR_MOMENTUM = 0.9
HELD_OUT_FRACTION = 0.1


def train_linear_heads(
    features: torch.Tensor,
    labels: torch.Tensor,
    lrs: tuple[float, ...] | list[float],
    *,
    num_classes: int,
    epochs: int = LINEAR_EPOCHS,
    batch_size: int = LINEAR_BATCH_SIZE,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``len(lrs)`` linear heads at once on standardised ``features``; returns (W, b): (L, D, C), (L, C)."""
    device = features.device
    generator = torch.Generator().manual_seed(seed)
    n, dim = features.shape
    heads = len(lrs)
    lr = torch.tensor(list(lrs), dtype=torch.float32, device=device)
    weight = torch.zeros(heads, dim, num_classes, device=device)
    bias = torch.zeros(heads, num_classes, device=device)
    velocity_w, velocity_b = torch.zeros_like(weight), torch.zeros_like(bias)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            x, y = features[index], labels[index]
            weight.requires_grad_(True)
            bias.requires_grad_(True)
            logits = torch.einsum("nd,ldc->lnc", x, weight) + bias[:, None, :]
            # Summing the heads' mean losses gives each head exactly its own gradient.
            loss = F.cross_entropy(logits.reshape(-1, num_classes), y.repeat(heads), reduction="sum") / len(
                index
            )
            grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
            with torch.no_grad():
                weight, bias = weight.detach(), bias.detach()
                scale = lr * 0.5 * (1 + math.cos(math.pi * step / total))  # cosine schedule
                velocity_w.mul_(LINEAR_MOMENTUM).add_(grad_w + weight_decay * weight)
                velocity_b.mul_(LINEAR_MOMENTUM).add_(grad_b)
                weight -= scale[:, None, None] * velocity_w
                bias -= scale[:, None] * velocity_b
            step += 1
    return weight.detach(), bias.detach()


@torch.no_grad()
def _ranked(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, top: int) -> torch.Tensor:
    logits = features @ weight + bias
    return logits.topk(min(top, logits.shape[1]), dim=1).indices.cpu()


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    lrs: tuple[float, ...] | list[float] = LINEAR_LRS,
    epochs: int = LINEAR_EPOCHS,
    batch_size: int = LINEAR_BATCH_SIZE,
    weight_decay: float = 0.0,
    held_out_fraction: float = HELD_OUT_FRACTION,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    prefix: str = "linear_",
) -> dict[str, float]:
    """``{linear_top1, linear_top5, linear_mean_per_class_accuracy, linear_best_lr, linear_held_out_top1}``."""
    _check_features(train_features, train_labels, "linear probe train set")
    _check_features(test_features, test_labels, "linear probe test set")
    if not lrs:
        raise ValueError("linear probe: lrs is empty")
    device = torch.device(device) if device is not None else train_features.device
    train_x = train_features.float().to(device)
    train_y = torch.as_tensor(train_labels, dtype=torch.long).to(device)
    test_y = torch.as_tensor(test_labels, dtype=torch.long)
    num_classes = int(max(int(train_y.max()), int(test_y.max()))) + 1

    if val_features is None:
        if not 0 < held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1); got {held_out_fraction}")
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed)).to(device)
        n_held = max(1, int(round(held_out_fraction * len(train_x))))
        if n_held >= len(train_x):
            raise ValueError(f"linear probe: {len(train_x)} training examples are too few to hold some out")
        fit_x, fit_y = train_x[order[n_held:]], train_y[order[n_held:]]
        val_x, val_y = train_x[order[:n_held]], train_y[order[:n_held]]
    else:
        _check_features(val_features, val_labels, "linear probe validation set")
        fit_x, fit_y = train_x, train_y
        val_x = val_features.float().to(device)
        val_y = torch.as_tensor(val_labels, dtype=torch.long).to(device)

    def standardise(reference: torch.Tensor):
        mean, std = reference.mean(0), reference.std(0, unbiased=False).clamp_min(1e-6)
        return lambda x: (x - mean) / std

    norm = standardise(fit_x)
    options = dict(
        num_classes=num_classes, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay, seed=seed
    )
    weights, biases = train_linear_heads(norm(fit_x), fit_y, list(lrs), **options)
    val_n = norm(val_x)
    held_out = [
        float((_ranked(val_n, w, b, 1)[:, 0] == val_y.cpu()).float().mean()) for w, b in zip(weights, biases)
    ]
    best = max(range(len(lrs)), key=lambda i: (held_out[i], -i))  # ties: the smaller learning rate

    if val_features is None:  # refit on the whole training set with the chosen learning rate
        norm = standardise(train_x)
        weights, biases = train_linear_heads(norm(train_x), train_y, [lrs[best]], **options)
        weight, bias = weights[0], biases[0]
    else:
        weight, bias = weights[best], biases[best]
    ranked = _ranked(norm(test_features.float().to(device)), weight, bias, 5)
    scores = compute("classification", predictions=ranked.tolist(), references=test_y.tolist())
    scores.update(best_lr=float(lrs[best]), held_out_top1=held_out[best])
    return {f"{prefix}{name}": value for name, value in scores.items()}
