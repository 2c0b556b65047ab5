"""Tests of genview_hf.distributed's cross-process gathers (with the losses that use them): 2 CPU processes (gloo) match the single-process loss on the whole batch.

Each process computes the loss of its own rows against the gathered candidates ("local loss").
With equal local batches, the mean of the per-process losses is the single-process loss on the
concatenated batch, and each process's input gradient is world_size times the single-process
gradient of its rows (DDP divides by world_size when it averages parameter gradients).
"""

from __future__ import annotations

import os
import tempfile
import weakref
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from genview_hf import distributed
from genview_hf.distributed import (
    end_distributed,
    gather_no_grad,
    gather_with_grad,
    gather_with_offset,
    is_distributed,
)
from genview_hf.losses import (
    clip_loss,
    info_nce_loss,
    multi_positive_clip_loss,
    multi_positive_loss,
    nt_xent_loss,
)
from host_syncs import HostReads
from training_helpers import free_port

WORLD = 2
N, V, D = 4, 3, 8  # global batch of N; each process holds N // WORLD rows


def _global_inputs():
    g = torch.Generator().manual_seed(1234)
    return {
        "a": torch.randn(N, D, generator=g, dtype=torch.float64),
        "b": torch.randn(N, D, generator=g, dtype=torch.float64),
        "views": torch.randn(N, V, D, generator=g, dtype=torch.float64),
        "w": torch.rand(N, generator=g, dtype=torch.float64) + 0.5,
        "wv": torch.rand(N, V, V, generator=g, dtype=torch.float64) + 0.5,
        "wi": torch.rand(N, V, generator=g, dtype=torch.float64) + 0.5,
        "scale": torch.tensor(12.0, dtype=torch.float64),
    }


def _cases(x, rows):
    """(name, function of leaf tensors -> loss, names of the leaves) evaluated on `rows` of the inputs."""
    s = rows
    return {
        "clip": (lambda a, b, scale: clip_loss(a, b, scale), (x["a"][s], x["b"][s], x["scale"])),
        "clip_weighted": (
            lambda a, b, scale: clip_loss(a, b, scale, x["w"][s]),
            (x["a"][s], x["b"][s], x["scale"]),
        ),
        "moco_v3": (lambda a: info_nce_loss(a, x["b"][s], temperature=0.2), (x["a"][s],)),
        "moco_v3_weighted": (lambda a: info_nce_loss(a, x["b"][s], weights=x["w"][s]), (x["a"][s],)),
        "nt_xent": (lambda a, b: nt_xent_loss(a, b, 0.5, x["w"][s]), (x["a"][s], x["b"][s])),
        "multi_positive": (lambda v: multi_positive_loss(v, 0.1, x["wv"][s]), (x["views"][s],)),
        "multi_positive_clip": (
            lambda v, b, scale: multi_positive_clip_loss(v, b, scale, x["wi"][s]),
            (x["views"][s], x["b"][s], x["scale"]),
        ),
    }


def _evaluate(x, rows):
    results = {}
    for name, (fn, leaves) in _cases(x, rows).items():
        leaves = [leaf.clone().requires_grad_() for leaf in leaves]
        loss = fn(*leaves)
        loss.backward()
        results[name] = (loss.detach(), [leaf.grad for leaf in leaves])
    return results


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    x = _global_inputs()
    per = N // WORLD
    results = {"losses": _evaluate(x, slice(rank * per, (rank + 1) * per))}
    # gather with unequal sizes: rank 0 holds 3 rows, rank 1 holds 1 row
    sizes = [3, 1]
    local = torch.arange(sizes[rank] * 2, dtype=torch.float64).reshape(sizes[rank], 2) + 100 * rank
    local.requires_grad_()
    gathered, offset = gather_with_offset(local, with_grad=True)
    (gathered * torch.arange(1, 9, dtype=torch.float64).reshape(4, 2)).sum().backward()
    results["gather"] = (gathered.detach(), offset, local.grad, gather_no_grad(local).requires_grad)
    results["is_distributed"] = is_distributed()
    # equal row counts: one gather into the result; the counts are the only host read (a CPU tensor)
    equal = torch.full((2, 3), float(rank), requires_grad=True)
    with HostReads() as reads:
        gathered, offset = gather_with_offset(equal, with_grad=True)
    gathered.sum().backward()
    results["equal"] = (gathered.detach(), offset, equal.grad, reads.where)
    # a default group other than gloo (NCCL on GPUs): the counts take a gloo group of their own, made once
    with mock.patch.object(dist, "get_backend", return_value="nccl"):
        own_group = gather_no_grad(torch.full((rank + 1, 2), float(rank)))
        twin = distributed._cpu_group()
        results["own_group"] = (
            own_group,
            twin not in (None, dist.group.WORLD),
            distributed._cpu_group() is twin,
        )
    results["local_only"] = clip_loss(x["a"][:2], x["b"][:2], x["scale"], gather=False).detach()
    # the end of a run leaves no group to the interpreter's exit (where gloo would abort the process)
    groups = [weakref.ref(dist.group.WORLD), weakref.ref(twin)]
    del twin
    end_distributed()
    results["groups_freed"] = [group() is None for group in groups]
    results["initialized_after_end"] = dist.is_initialized()
    torch.save(results, os.path.join(folder, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def two_process_results():
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(free_port(), folder), nprocs=WORLD, join=True)
        return [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


def test_losses_in_two_processes_match_single_process(two_process_results):
    x = _global_inputs()
    single = _evaluate(x, slice(0, N))
    per = N // WORLD
    for name, (loss, grads) in single.items():
        local_losses = [r["losses"][name][0] for r in two_process_results]
        assert torch.allclose(torch.stack(local_losses).mean(), loss, rtol=1e-10), name
        for index, grad in enumerate(grads):
            if grad.dim() == 0:  # the logit scale: not gathered; DDP averages it
                got = torch.stack([r["losses"][name][1][index] for r in two_process_results]).mean()
                assert torch.allclose(got, grad, rtol=1e-9), name
                continue
            for rank, result in enumerate(two_process_results):
                local_grad = result["losses"][name][1][index]
                expected = grad[rank * per : (rank + 1) * per] * WORLD
                assert torch.allclose(local_grad, expected, rtol=1e-9, atol=1e-12), (name, rank)


def test_gather_with_unequal_sizes(two_process_results):
    expected = torch.cat(
        [
            torch.arange(6, dtype=torch.float64).reshape(3, 2),
            torch.arange(2, dtype=torch.float64).reshape(1, 2) + 100,
        ]
    )
    multiplier = torch.arange(1, 9, dtype=torch.float64).reshape(4, 2)
    for rank, result in enumerate(two_process_results):
        gathered, offset, grad, no_grad_requires_grad = result["gather"]
        assert torch.equal(gathered, expected)
        assert offset == [0, 3][rank]
        # each process's loss is sum(gathered * multiplier): the summed gradient is 2 * multiplier
        assert torch.equal(grad, (WORLD * multiplier)[[slice(0, 3), slice(3, 4)][rank]])
        assert no_grad_requires_grad is False
        assert result["is_distributed"] is True


def test_gather_false_stays_local(two_process_results):
    x = _global_inputs()
    expected = clip_loss(x["a"][:2], x["b"][:2], x["scale"])
    for result in two_process_results:
        assert torch.allclose(result["local_only"], expected)


def test_gathers_are_identity_without_torch_distributed():
    assert not is_distributed()
    t = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(t) is t
    assert gather_no_grad(t) is t
    gathered, offset = gather_with_offset(t, with_grad=True)
    assert gathered is t and offset == 0


def test_equal_row_counts_gather_without_a_device_read(two_process_results):
    expected = torch.cat([torch.zeros(2, 3), torch.ones(2, 3)])
    for rank, result in enumerate(two_process_results):
        gathered, offset, grad, reads = result["equal"]
        assert torch.equal(gathered, expected) and offset == 2 * rank
        assert torch.equal(grad, torch.full((2, 3), float(WORLD)))  # summed over both processes' losses
        # the only host read is the (world,) row counts, exchanged as a CPU tensor and read as a list
        assert len(reads) == 1 and reads[0].split()[0] == "tolist", reads


def test_row_counts_take_a_gloo_group_of_their_own_beside_another_backend(two_process_results):
    expected = torch.cat([torch.zeros(1, 2), torch.ones(2, 2)])  # rank 0 holds 1 row, rank 1 holds 2
    for result in two_process_results:
        gathered, made, again = result["own_group"]
        assert torch.equal(gathered, expected) and made and again


def test_end_distributed_frees_the_process_groups(two_process_results):
    for result in two_process_results:
        assert result["groups_freed"] == [True, True]  # the default group and the row counts' twin
        assert result["initialized_after_end"] is False


def test_end_distributed_does_nothing_without_torch_distributed():
    assert not dist.is_initialized()
    end_distributed()
    assert not dist.is_initialized()
