"""Tests of genview_hf.training.trainer's host reads in a training step (what makes a GPU wait): counted on the CPU with ``HostReads``, and
the non-finite loss guard that reads the host only every ``nan_check_steps`` steps."""

from __future__ import annotations

import pytest
import torch

from host_syncs import HostReads, ReadsPerStep
from training_helpers import NaNRow, make_args, make_trainer


def reads_per_step(trainer) -> list[list[str]]:
    reads = HostReads()
    per_step = ReadsPerStep(reads)
    trainer.add_callback(per_step)
    with reads:
        trainer.train()
    return per_step.steps


def test_the_guard_reads_the_host_once_per_step_by_default_and_every_n_steps_when_asked(tmp_path):
    steps = reads_per_step(make_trainer(make_args(tmp_path, "mocov3", max_steps=4, logging_steps=2)))
    assert [len(step) for step in steps] == [1, 1, 1, 1]  # the guard's: it follows nan_check_steps below

    args = make_args(tmp_path, "mocov3", max_steps=8, logging_steps=4, nan_check_steps=4)
    steps = reads_per_step(make_trainer(args))
    # steps 4 and 8 read once: the check in compute_loss; the log after it has nothing left to read
    assert [len(step) for step in steps] == [0, 0, 0, 1, 0, 0, 0, 1]


def test_stored_masks_are_read_only_where_they_are_host_memory(tmp_path):
    """On the CPU the mask range check reads host memory (no device to wait for); on a GPU the masks
    are device tensors and are not read back (tests/test_quality.py, on CUDA)."""
    settings = dict(max_steps=2, logging_steps=10, nan_check_steps=2)
    stored = reads_per_step(make_trainer(make_args(tmp_path / "stored", quality_mode="stored", **settings)))
    off = reads_per_step(make_trainer(make_args(tmp_path / "off", quality_mode="off", **settings)))
    assert stored[0] and not off[0]  # step 1 has no guard read (nan_check_steps=2): the masks' check


def nan_run(tmp_path, **overrides):
    trainer = make_trainer(make_args(tmp_path, "mocov3", max_steps=8, logging_steps=100, **overrides))
    trainer.train_dataset = NaNRow(length=16)
    with pytest.raises(FloatingPointError) as error:
        trainer.train()
    return trainer, str(error.value)


@pytest.mark.parametrize("nan_check_steps", [3, 8])
def test_a_nan_still_stops_the_run_naming_its_first_step_with_checks_every_n_steps(tmp_path, nan_check_steps):
    _, every_step = nan_run(tmp_path / "every")
    first = int(every_step.split()[1])  # "step K (epoch E): the loss is nan ..."
    trainer, message = nan_run(tmp_path / "every_n", nan_check_steps=nan_check_steps)
    found = trainer.state.global_step + 1  # the step whose compute_loss read the record
    assert found % nan_check_steps == 0 or found == 8
    if found == first:  # the bad step is itself a check: caught before its update, as with checks every step
        assert message.startswith(f"step {first} (epoch 0): the loss is nan")
        assert "The parameters were not updated" in message
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    else:
        epoch = int(trainer.state.epoch)
        assert message.startswith(
            f"step {first}: the loss was not finite (found at step {found}, epoch {epoch}, "
            f"nan_check_steps={nan_check_steps})"
        )
        assert f"took the updates of steps {first} to {found - 1}" in message
        assert f"resume from a checkpoint saved before step {first}" in message


def test_a_nan_is_caught_before_a_checkpoint_between_checks(tmp_path):
    """A save between two checks reads the record first: no checkpoint holds a non-finite step."""
    trainer, message = nan_run(tmp_path, nan_check_steps=100, save_strategy="steps", save_steps=2)
    saved = sorted(int(p.name.split("-")[1]) for p in tmp_path.glob("checkpoint-*"))
    first = int(message.split()[1].rstrip(":"))
    assert "found at step" in message and all(step < first for step in saved)


def test_nan_check_steps_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="nan_check_steps must be >= 1, got 0"):
        make_args(tmp_path, "mocov3", nan_check_steps=0)
