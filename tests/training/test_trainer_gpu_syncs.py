"""On CUDA, genview_hf.training.trainer's step between two guard checks makes no device sync of
ours (``torch.cuda.set_sync_debug_mode('error')`` raises at any sync)."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from training_helpers import make_args, make_trainer

pytestmark = pytest.mark.gpu


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
