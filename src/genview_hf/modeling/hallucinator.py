"""Hallucinator: feature-space hard positives (Wu et al., "Hallucination Improves the Performance
of Unsupervised Visual Representation Learning", ICCV 2023).

For a query embedding q and a key k (both (N, d)), the module extrapolates
``e = q + lam * (q - k)`` with one ``lam ~ U(0, lam_max)`` drawn per forward (``lam_max`` 0.1),
and maps ``[q, e]`` (concatenated features, 2d) through an MLP 2d -> 2d -> 2d -> d with ReLU
to a hallucinated positive h (official ``models/generator.py`` ``Generator``). The online batch
becomes ``[q; h]`` against ``[k; k]``: h is an extra query with q's positive. The module is
trained only through the SSL loss and is off in evaluation mode (no extra rows), so a trained
encoder never depends on it.

The official losses average over the 2N rows of ``[q; h]`` (one cross-entropy or one mean
cosine over the extended batch), i.e. ``0.5 * (L(q) + L(h))``: ``GenViewTrainer``'s ``_term``
computes that. Which k the query is extrapolated away from is the model's choice
(``GenViewModel._hallucinate``): the L2-normalised momentum key (MoCo), the other view's
predictor output (SimSiam).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Hallucinator"]


class Hallucinator(nn.Module):
    """Feature-space hallucination of extra positives.

    Args:
        dim: embedding size d of q and k.
        lam_max: upper bound of the extrapolation factor lam ~ U(0, lam_max) (paper: 0.1).
    """

    def __init__(self, dim: int, lam_max: float = 0.1) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if lam_max < 0:
            raise ValueError(f"lam_max must be >= 0, got {lam_max}")
        self.dim = dim
        self.lam_max = lam_max
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim),
            nn.ReLU(inplace=True),
            nn.Linear(2 * dim, 2 * dim),
            nn.ReLU(inplace=True),
            nn.Linear(2 * dim, dim),
        )

    def _check(self, q: torch.Tensor, k: torch.Tensor) -> None:
        if q.dim() != 2 or q.shape[1] != self.dim:
            raise ValueError(f"q must have shape (N, {self.dim}), got shape {tuple(q.shape)}")
        if q.shape != k.shape:
            raise ValueError(
                f"q has shape {tuple(q.shape)} but k has shape {tuple(k.shape)}: they must match"
            )

    def extrapolate(
        self, q: torch.Tensor, k: torch.Tensor, lam: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """e = q + lam (q - k); lam drawn from U(0, lam_max) when not given."""
        if lam is None:
            lam = torch.rand((), device=q.device, dtype=q.dtype) * self.lam_max
        return q + lam * (q - k)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, lam: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hallucinated positives h (N, d) for queries q and keys k; (0, d) in evaluation mode.

        ``k`` is used as given (momentum keys carry no gradient; pass ``k.detach()`` otherwise
        if the key branch should not learn from h). ``lam`` fixes the factor (tests).
        """
        self._check(q, k)
        if not self.training:
            return q.new_zeros((0, self.dim))
        e = self.extrapolate(q, k, lam)
        return self.mlp(torch.cat([q, e], dim=-1))

    def extend(
        self, q: torch.Tensor, k: torch.Tensor, lam: float | torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The extended batch: queries ``[q; h]`` (2N, d) against keys ``[k; k]`` (2N, d).

        In evaluation mode returns ``(q, k)`` unchanged (identity: no hallucinated rows).
        """
        h = self(q, k, lam)
        if h.shape[0] == 0:
            return q, k
        return torch.cat([q, h], dim=0), torch.cat([k, k], dim=0)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, lam_max={self.lam_max}"
