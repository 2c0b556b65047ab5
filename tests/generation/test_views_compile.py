"""``torch.compile`` of the generation UNet (genview_hf.generation.views, ``ViewGenerator.compile_mode``)
on the CPU makes the views eager makes. Inductor takes about a minute on two CPU cores: marked slow
(``pytest -m slow``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch._inductor.config

from genview_hf.generation import ForegroundScorer, ViewGenerationConfig, ViewGenerator, load_components
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes

pytestmark = pytest.mark.slow


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
