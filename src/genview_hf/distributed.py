"""Cross-process gathers for contrastive losses.

Two gathers, both the identity when ``torch.distributed`` is not initialised (or runs one
process), so the same loss code runs in a notebook, in tests and under ``accelerate launch``:

- :func:`gather_with_grad`: all-gather whose backward all-reduces (sums) the incoming gradient
  and returns this process's slice of it. This is the "local loss" pattern that open_clip uses
  at scale: each process computes the loss of its *own* rows against the *global* candidates;
  the summed gradient reaches every process's embeddings, and DDP's gradient averaging then
  gives exactly the gradient of the single-process loss on the concatenated batch.
- :func:`gather_no_grad`: plain all-gather for tensors that carry no gradient (momentum keys
  for MoCo's in-batch negatives and queue updates).

Processes may hold different numbers of rows (a last, smaller batch): sizes are exchanged
first and the gathered tensor holds every process's rows in rank order, without padding.
:func:`gather_with_offset` also returns where this process's rows start in the result, which
is what a loss needs to build its labels.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "gather_no_grad",
    "gather_with_grad",
    "gather_with_offset",
    "get_rank",
    "get_world_size",
    "is_distributed",
]


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def _sizes(tensor: torch.Tensor) -> list[int]:
    """Number of rows (first dimension) that each process holds, in rank order."""
    local = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def _all_gather_rows(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All-gather along dim 0, padding to the largest size and trimming back."""
    tensor = tensor.contiguous()
    largest = max(sizes)
    if tensor.shape[0] < largest:
        pad = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad], dim=0)
    else:
        padded = tensor
    buffers = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(buffers, padded)
    return torch.cat([buffer[:size] for buffer, size in zip(buffers, sizes)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward = this process's slice of the gradient summed over processes."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _all_gather_rows(tensor, sizes)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None, None


def gather_with_offset(tensor: torch.Tensor, with_grad: bool) -> tuple[torch.Tensor, int]:
    """Gather ``tensor`` (rows on dim 0) from every process; return it and this process's row offset.

    ``with_grad=True`` keeps the graph (see the module docstring); ``with_grad=False`` returns a
    tensor without gradient. Not distributed: returns ``(tensor, 0)`` unchanged (same object).
    """
    if not is_distributed():
        return tensor, 0
    rank = dist.get_rank()
    sizes = _sizes(tensor)
    offset = sum(sizes[:rank])
    if with_grad:
        return _GatherWithGrad.apply(tensor, sizes, rank), offset
    with torch.no_grad():
        return _all_gather_rows(tensor.detach(), sizes), offset


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather rows from every process, differentiable (local-loss style); identity if not distributed."""
    return gather_with_offset(tensor, with_grad=True)[0]


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather rows from every process without gradient (momentum keys); identity if not distributed."""
    return gather_with_offset(tensor, with_grad=False)[0]
