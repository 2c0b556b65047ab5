"""``torch.compile`` on the CPU: the backbone through the Trainer's own ``torch_compile`` flag (with the
momentum encoder, the Hallucinator, two forward passes per step) and the generation UNet
(``ViewGenerator.compile_mode``), each against eager. Inductor takes about a minute per case on two
CPU cores: marked slow (``pytest -m slow``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch._inductor.config
from accelerate.utils import is_compiled_module

from genview_hf.generation import ForegroundScorer, ViewGenerationConfig, ViewGenerator, load_components
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes
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


def test_a_compiled_unet_makes_the_views_of_eager():
    components = load_components(
        ViewGenerationConfig(
            unclip_model=str(tiny_path("unclip-img2img")), modes=["ic"], mixed_precision="no"
        )
    )
    encoder = components.encoder
    direction = torch.zeros(encoder.model.config.hidden_size)
    direction[0] = 1.0
    generator = ViewGenerator(
        encoder=encoder,
        scorer=ForegroundScorer(direction=direction, threshold=0.0, grid=encoder.grid),
        unclip=components.unclip,
        num_inference_steps=2,
        height=32,
        width=32,
        batch_size=4,
    )
    batch = {"image": list(shapes(num_rows=4, image_size=32)["image"])}
    eager = generator(batch, list(range(4)))  # before: compiling works on the pipeline in place
    torch._dynamo.reset()
    compiled = dataclasses.replace(generator, compile_mode="default")
    assert components.unclip.unet._compiled_call_impl is not None
    out = compiled(batch, list(range(4)))
    assert out["noise_level"] == eager["noise_level"]
    for a, b in zip(eager["view_ic"], out["view_ic"], strict=True):
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 2
