"""Counting the calls that would make a GPU wait for the host, on any device.

On a GPU, reading a tensor's value on the host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``)
or an op whose output shape depends on the data (``nonzero``, boolean-mask indexing) blocks until
the device has finished the work queued so far. ``torch.cuda.set_sync_debug_mode`` reports those
on CUDA only; ``HostReads`` counts the same calls on the CPU as well, through a ``TorchFunctionMode``,
so a test can assert how many a training step makes.
"""

from __future__ import annotations

import contextlib
import traceback

import torch
from torch.overrides import TorchFunctionMode
from transformers import TrainerCallback

# Tensor methods and torch functions that read a value on the host or size their output by the data.
READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}
DATA_SHAPED = {"nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "repeat_interleave"}


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


def _bool_index(args) -> bool:
    index = args[1] if len(args) > 1 else None
    indices = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...`` then ``reads.count`` and ``reads.where`` (one line per read:
    the operation and the innermost frame of ``genview_hf`` or transformers that made it)."""

    def __init__(self) -> None:
        super().__init__()
        self.where: list[str] = []

    @property
    def count(self) -> int:
        return len(self.where)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _name(func)
        if (
            name in READS
            or name in DATA_SHAPED
            or (name in ("__getitem__", "__setitem__") and _bool_index(args))
        ):
            self.where.append(f"{name} at {_caller()}")
        return func(*args, **(kwargs or {}))


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if (
            "genview_hf" in frame.filename
            or "transformers" in frame.filename
            or "accelerate" in frame.filename
        ):
            return (
                f"{frame.filename.split('site-packages/')[-1].split('src/')[-1]}:{frame.lineno} {frame.name}"
            )
    return "?"


class ReadsPerStep(TrainerCallback):
    """With a ``HostReads`` active around ``trainer.train()``: the reads of each optimizer step, from
    its start to its end (forward, backward, clipping, optimizer, the step callbacks)."""

    def __init__(self, reads: HostReads) -> None:
        self.reads, self.steps, self._start = reads, [], 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self.reads.count

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(self.reads.where[self._start :])


@contextlib.contextmanager
def syncs_are_errors():
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")
