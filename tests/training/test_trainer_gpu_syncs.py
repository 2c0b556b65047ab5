"""On CUDA: a training step between two guard checks makes no device sync of ours, and stored masks on
the device are not read back (``torch.cuda.set_sync_debug_mode("error")`` raises at any sync)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import TrainerCallback

from genview_hf.quality import quality_weights
from training_helpers import make_args, make_trainer

pytestmark = pytest.mark.gpu


@contextlib.contextmanager
def syncs_are_errors():
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


class NoSyncInStep(TrainerCallback):
    """Syncs are errors from a step's start to its end, on the steps the guard does not read."""

    def __init__(self, checked_every: int) -> None:
        self.checked_every, self.steps = checked_every, 0

    def on_step_begin(self, args, state, control, **kwargs):
        if (state.global_step + 1) % self.checked_every and state.global_step + 1 < state.max_steps:
            torch.cuda.set_sync_debug_mode("error")

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.get_sync_debug_mode():
            self.steps += 1
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("quality_mode", ["off", "stored"])
def test_training_steps_between_checks_make_no_device_sync(tmp_path, quality_mode):
    args = make_args(
        tmp_path, "mocov3", quality_mode=quality_mode, use_cpu=False, max_steps=6, logging_steps=100,
        nan_check_steps=3, dataloader_pin_memory=False,
    )  # fmt: skip
    callback = NoSyncInStep(checked_every=3)
    trainer = make_trainer(args, callbacks=[callback])
    trainer.train()
    assert callback.steps == 4  # steps 1, 2, 4, 5 ran with syncs as errors


def test_masks_on_the_device_are_not_read_back_and_bad_ones_make_nan_weights():
    tokens = torch.randn(4, 9, 6, device="cuda")
    good, bad = torch.rand(4, 9, device="cuda"), torch.rand(4, 9, device="cuda") * 255
    with syncs_are_errors():
        weights = quality_weights(tokens, tokens.flip(0), None, masks1=good, masks2=good)
        nan_weights = quality_weights(tokens, tokens.flip(0), None, masks1=bad, masks2=good)
    assert torch.isfinite(weights).all() and torch.isnan(nan_weights).all()
