"""Tolerances derived from a dtype and the size of a reduction.

Two code paths that compute the same float sum in another order (another thread count, another
CPU's vector width, a stacked batch against its parts) differ by rounding only. Reordering a sum of
``n`` terms changes it by at most about ``n * eps * sum(|terms|)``: each partial sum rounds once, to
a relative ``eps``. So a test that compares such paths states the dtype, the number of terms each
compared value sums (through every layer that feeds it, roughly) and their scale, and asserts
within that bound, not within a constant that happened to pass on one machine.
"""

from __future__ import annotations

import torch


def reduction_tolerance(
    dtype: torch.dtype, terms: int, scale: float | torch.Tensor = 1.0, ulps: float = 2.0
) -> dict[str, float]:
    """``rtol`` and ``atol`` for ``torch.testing.assert_close`` when each compared value sums
    ``terms`` values of ``dtype`` of magnitude up to ``scale`` in an order the test does not fix;
    ``ulps`` covers the few roundings around the sum (a scale, a normalisation, an activation)."""
    rtol = ulps * torch.finfo(dtype).eps * terms
    return {"rtol": rtol, "atol": rtol * abs(float(torch.as_tensor(scale).detach()))}
