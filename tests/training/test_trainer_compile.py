"""``torch.compile`` through genview_hf.training.trainer on the CPU: the Trainer's own
``torch_compile`` flag compiles the wrapper (momentum encoder, Hallucinator, two forward passes per
step) and trains as eager does. Inductor takes about a minute per case on two CPU cores: marked slow
(``pytest -m slow``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch._inductor.config
from accelerate.utils import is_compiled_module

from training_helpers import make_args, make_trainer

pytestmark = pytest.mark.slow


def trained(tmp_path, method: str, compiled: bool, **overrides):
    args = make_args(
        tmp_path / ("compiled" if compiled else "eager"), method, max_steps=2, logging_steps=1,
        learning_rate=1e-3, torch_compile=compiled,
    )  # fmt: skip
    trainer = make_trainer(args, **overrides)  # ModelArguments overrides
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    return trainer, losses


@pytest.mark.parametrize(
    ("method", "overrides"),
    [("mocov3", {}), ("mocov2", {"use_hallucinator": True})],
    ids=["mocov3-momentum-encoder", "mocov2-hallucinator-queue"],
)
def test_the_trainer_compiles_the_wrapper_and_matches_eager(tmp_path, method, overrides):
    torch._dynamo.reset()
    eager, eager_losses = trained(tmp_path, method, False, **overrides)
    # Inductor draws random numbers its own way; the eager stream makes the Hallucinator's draws comparable.
    with torch._inductor.config.patch(fallback_random=True):
        compiled, compiled_losses = trained(tmp_path, method, True, **overrides)
    assert is_compiled_module(compiled.model_wrapped) and not is_compiled_module(eager.model_wrapped)
    # the second loss follows the first update (optimizer, momentum encoder, queue): equal within float noise
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=1e-3)
    for (name, a), b in zip(
        eager.unwrapped().state_dict().items(), compiled.unwrapped().state_dict().values()
    ):
        if a.is_floating_point():  # one AdamW step moves each weight by at most about the learning rate
            assert (a - b).abs().max() <= 2e-3, name
