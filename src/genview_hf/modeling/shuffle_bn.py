"""Shuffling batch norm for the momentum encoder of the queue methods (MoCo v2, LeOCLR).

Keys computed in train-mode batch norm on the same batch as their queries share that batch's
statistics with them, a signal the queue's negatives (older batches) lack: the model can find its
positive through the statistics instead of the image (He et al. 2020, MoCo, Sec. 3.3). MoCo
shuffles the key batch before the key encoder so that a query and its positive key are
normalised with statistics of different samples, and unshuffles the keys afterwards
(``facebookresearch/moco`` ``moco/builder.py``: ``_batch_shuffle_ddp``, ``_batch_unshuffle_ddp``).

:func:`shuffled_keys` does the same:

- across processes, as MoCo does: the key images of every process are gathered, one random
  permutation (drawn on rank 0, broadcast) deals each process a random slice of the global
  batch, each process encodes its slice with its own batch norm, and the keys are gathered and
  handed back to the process that holds their images;
- within one process (MoCo's code runs only under DDP): a random permutation split into
  ``groups`` sub-batches, each encoded with its own statistics, then put back in order.

Without batch norm in the encoder both give exactly the unshuffled keys. SyncBatchNorm on the key
encoder would pool the statistics again: keep it off for these methods.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from .. import distributed

Encoded = tuple[torch.Tensor, torch.Tensor | None]


@torch.no_grad()
def shuffled_keys(
    encode: Callable[[torch.Tensor], Encoded], pixel_values: torch.Tensor, groups: int = 2
) -> Encoded:
    """``encode(pixel_values)`` with the rows passed through the encoder in shuffled sub-batches.

    ``encode`` maps images (n, 3, H, W) to (keys (n, D), tokens (n, T, C) or None) without
    gradient; the result is in the order of ``pixel_values``. ``groups``: sub-batches within a
    single process (ignored across processes, where each process's slice is one sub-batch).
    """
    if distributed.is_distributed():
        return _across_processes(encode, pixel_values)
    n = pixel_values.shape[0]
    order = torch.randperm(n, device=pixel_values.device)
    parts = [encode(pixel_values[chunk]) for chunk in order.chunk(min(groups, n))]
    restore = torch.argsort(order)
    keys = torch.cat([keys for keys, _ in parts])[restore]
    tokens = None if parts[0][1] is None else torch.cat([tokens for _, tokens in parts])[restore]
    return keys, tokens


def _across_processes(encode: Callable[[torch.Tensor], Encoded], pixel_values: torch.Tensor) -> Encoded:
    all_pixels, offset = distributed.gather_with_offset(pixel_values, with_grad=False)  # (world n, 3, H, W)
    n = pixel_values.shape[0]
    order = torch.randperm(all_pixels.shape[0], device=pixel_values.device)
    dist.broadcast(order, src=0)  # one permutation for every process
    keys, tokens = encode(all_pixels[order[offset : offset + n]])  # this process's random slice
    # Gathered keys follow the permutation: the key of global row i sits at argsort(order)[i].
    mine = torch.argsort(order)[offset : offset + n]
    keys = distributed.gather_no_grad(keys)[mine]
    if tokens is not None:
        tokens = distributed.gather_no_grad(tokens)[mine]
    return keys, tokens
