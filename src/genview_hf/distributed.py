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

Processes may hold different numbers of rows (a last, smaller batch): the row counts are
exchanged first and the gathered tensor holds every process's rows in rank order, without
padding. :func:`gather_with_offset` also returns where this process's rows start in the result,
which is what a loss needs to build its labels.

No gather waits for the device: a row count is host metadata (``tensor.shape[0]``), so the counts
travel over a CPU (gloo) process group, never through a device tensor read back with ``.item()``;
the device's queue of kernels stays full. Equal counts, the case of every training step (the
Trainer drops the last incomplete batch), take one ``all_gather_single`` (``all_gather_into_tensor``
before torch 2.13) into the result
itself; unequal ones pad to the largest and trim.

A script that ran distributed ends with :func:`end_distributed` (the recipes' ``cli`` do): a process
group still alive when the interpreter exits is torn down during finalization, where gloo can abort
the process (``terminate called without an active exception``, SIGABRT), so the groups and what
holds them are destroyed and collected before.
"""

from __future__ import annotations

import gc
import weakref

import torch
import torch.distributed as dist

__all__ = [
    "end_distributed",
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


# torch 2.13 renamed all_gather_into_tensor (the old name warns); earlier versions have only that one.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

# (the default group, its gloo twin that carries the row counts), held weakly: torch's registry owns
# both, so destroy_process_group() frees them instead of leaving them to the interpreter's exit.
_CPU_GROUP: tuple[weakref.ref, weakref.ref] | None = None


def _cpu_group():
    """The process group that exchanges row counts on the host: the default group when it is gloo,
    else a gloo group over the same processes, made once per default group (every process reaches
    its first gather together, as collectives require)."""
    global _CPU_GROUP
    if dist.get_backend() == dist.Backend.GLOO:
        return None
    world = dist.group.WORLD
    twin = _CPU_GROUP[1]() if _CPU_GROUP is not None and _CPU_GROUP[0]() is world else None
    if twin is None:
        twin = dist.new_group(backend=dist.Backend.GLOO)
        _CPU_GROUP = (weakref.ref(world), weakref.ref(twin))
    return twin


def end_distributed() -> None:
    """End this process's part of a distributed run: wait for every process, destroy the process
    groups and free the objects that still hold them (a Trainer's DDP wrapper sits in reference
    cycles), so that none is left for the interpreter's exit. Does nothing when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()


def _sizes(tensor: torch.Tensor) -> list[int]:
    """Number of rows (first dimension) that each process holds, in rank order, exchanged on the
    host: reading them back costs no device sync."""
    local = torch.tensor([tensor.shape[0]], dtype=torch.long)  # (1,) on the CPU
    sizes = torch.empty(dist.get_world_size(), dtype=torch.long)
    _all_gather_single(sizes, local, group=_cpu_group())
    return sizes.tolist()


def _all_gather_rows(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All-gather along dim 0: straight into the result when every process holds the same number of
    rows, else padded to the largest count and trimmed back."""
    tensor = tensor.contiguous()
    if min(sizes) == max(sizes):
        out = tensor.new_empty((sum(sizes), *tensor.shape[1:]))  # (world N, ...)
        _all_gather_single(out, tensor)
        return out
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
