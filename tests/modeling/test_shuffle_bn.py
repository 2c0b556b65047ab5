"""Shuffling BN for the queue methods (MoCo v2, LeOCLR): the key encoder never normalises a key with
the statistics of the unshuffled batch; without batch norm nothing changes. Across two processes
(gloo) the keys of a process come from a random slice of the global batch and return to their owner,
as MoCo's ``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp``."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from genview_hf.distributed import end_distributed
from genview_hf.modeling import GenViewConfig, GenViewModel
from genview_hf.modeling.shuffle_bn import shuffled_keys
from genview_hf.testing import tiny_resnet, tiny_vit
from tolerances import reduction_tolerance
from training_helpers import free_port, make_args, make_trainer

HEADS = dict(proj_hidden_dim=32, proj_dim=16, queue_size=32)


def _batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(n, 3, size, size, generator=g) for key in ("pixel_values_1", "pixel_values_2")}


def _seen_by(module):
    """The pixel batches ``module`` is called with."""
    seen = []
    module.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["pixel_values"]), with_kwargs=True
    )
    return seen


@pytest.mark.parametrize("method", ["mocov2", "leoclr"])
def test_on_by_default_for_the_queue_methods_only(method, tmp_path):
    assert GenViewConfig(method=method).shuffle_bn is True
    assert GenViewConfig(method="mocov3").shuffle_bn is False
    # SyncBN would pool the statistics again: the trainer refuses both (None: off with shuffle_bn)
    with pytest.raises(ValueError, match="sync_batchnorm and shuffle_bn"):
        make_trainer(make_args(tmp_path, method, sync_batchnorm=True))
    with pytest.raises(ValueError, match="shuffle_bn"):
        GenViewConfig(method="simclr", shuffle_bn=True)


def test_key_batch_norm_never_sees_the_unshuffled_batch():
    torch.manual_seed(0)
    model = GenViewModel.from_backbone(
        tiny_resnet()[0], method="mocov2", **HEADS
    ).train()  # BN in the backbone
    online, keys = _seen_by(model.backbone), _seen_by(model.momentum_backbone)
    batch = _batch(n=8)
    out = model(**batch)
    assert len(online) == 1 and torch.equal(online[0], batch["pixel_values_1"])  # queries: the whole batch
    assert len(keys) == 2 and all(seen.shape[0] == 4 for seen in keys)  # keys: two sub-batches
    rows = torch.cat(keys).flatten(1)
    position = [int((rows == row).all(1).nonzero()) for row in batch["pixel_values_2"].flatten(1)]
    assert sorted(position) == list(range(8)) and position != list(range(8))  # a shuffle, not the identity
    # the keys come back in the batch's order, each computed with the statistics of its sub-batch
    sub_batches = list(keys)  # before the checks below call the encoder again
    for index, seen in enumerate(sub_batches):
        with torch.no_grad():
            part = model.momentum_projector(
                model.momentum_backbone(pixel_values=seen).pooler_output.flatten(1)
            )
        owners = [position.index(index * 4 + j) for j in range(4)]
        torch.testing.assert_close(out.targets_2[owners], part)
    # and not what the unshuffled batch would give: its statistics differ
    with torch.no_grad():
        whole = model.momentum_projector(
            model.momentum_backbone(pixel_values=batch["pixel_values_2"]).pooler_output.flatten(1)
        )
    assert not torch.allclose(whole, out.targets_2, atol=1e-4)


def test_without_batch_norm_keys_loss_and_gradients_are_unchanged():
    """An exact claim (with no batch statistic, the shuffle is a permutation that is undone), so it
    is checked in float64: the two paths still encode sub-batches against the whole batch, whose
    sums may add in another order, bounded by float64's eps over the tiny ViT's reductions."""
    torch.manual_seed(0)
    shuffled = GenViewModel.from_backbone(tiny_vit()[0], method="mocov2", **HEADS).train().double()
    plain = GenViewModel.from_backbone(tiny_vit()[0], method="mocov2", shuffle_bn=False, **HEADS)
    plain = plain.train().double()
    plain.load_state_dict(shuffled.state_dict())
    batch = {
        key: value.double() if value.is_floating_point() else value for key, value in _batch(n=6).items()
    }
    a, b = shuffled(**batch), plain(**batch)
    exact = reduction_tolerance(torch.float64, terms=10_000)  # a few layers of 32-wide sums, generously
    torch.testing.assert_close(a.targets_2, b.targets_2, **exact)
    from genview_hf.losses import info_nce_loss

    loss_a = info_nce_loss(a.queries_1, a.targets_2, a.queue)
    loss_b = info_nce_loss(b.queries_1, b.targets_2, b.queue)
    torch.testing.assert_close(loss_a, loss_b, **exact)
    loss_a.backward()
    loss_b.backward()
    # a gradient that cancels to zero (attention's key bias) keeps the rounding of its terms: the
    # scale is the gradients' largest, not that parameter's own
    grads = [q.grad for q in plain.parameters() if q.grad is not None]
    within = reduction_tolerance(torch.float64, 10_000, scale=max(grad.abs().max() for grad in grads))
    for (name, p), q in zip(shuffled.named_parameters(), plain.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, **within, msg=name)


def test_evaluation_mode_encodes_the_batch_in_one_pass():
    model = GenViewModel.from_backbone(tiny_resnet()[0], method="mocov2", **HEADS).eval()
    keys = _seen_by(model.momentum_backbone)
    model(**_batch())
    assert len(keys) == 1 and keys[0].shape[0] == 4


# ----------------------------------------------------------------------------- two processes

WORLD, LOCAL = 2, 3


def _global_rows() -> torch.Tensor:
    return torch.arange(WORLD * LOCAL * 2, dtype=torch.float64).reshape(WORLD * LOCAL, 2)


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    torch.manual_seed(rank)  # each process's own generator; the permutation is rank 0's
    local = _global_rows()[rank * LOCAL : (rank + 1) * LOCAL]
    seen = []

    def encode(x):
        seen.append(x.clone())
        return x - x.mean(0), x * 10  # batch-statistics dependent keys, per-row "tokens"

    keys, tokens = shuffled_keys(encode, local)
    torch.save(
        {"seen": seen, "keys": keys, "tokens": tokens, "local": local}, os.path.join(folder, f"{rank}.pt")
    )
    end_distributed()


def test_across_processes_each_encodes_a_random_slice_and_gets_its_own_keys_back():
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(free_port(), folder), nprocs=WORLD, join=True)
        results = [torch.load(os.path.join(folder, f"{r}.pt"), weights_only=False) for r in range(WORLD)]
    slices = [r["seen"][0] for r in results]
    assert all(
        len(r["seen"]) == 1 and s.shape == (LOCAL, 2) for r, s in zip(results, slices)
    )  # one pass each
    everything = torch.cat(slices)
    assert (
        sorted(everything[:, 0].tolist()) == _global_rows()[:, 0].tolist()
    )  # a partition of the global batch
    assert any(not torch.equal(s.sort(0).values, r["local"]) for s, r in zip(slices, results))  # rows moved
    for r in results:  # each row's key was computed in the slice that held it, and returned to its owner
        for row, key, token in zip(r["local"], r["keys"], r["tokens"]):
            owner = next(s for s in slices if (s == row).all(1).any())
            torch.testing.assert_close(key, row - owner.mean(0))
            torch.testing.assert_close(token, row * 10)
