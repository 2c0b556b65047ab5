"""Tests of genview_hf.modeling.modeling_genview_clip: the CLIP / SLIP wrapper's loss equals
transformers' CLIP loss (SLIP adds its SSL term), and the logit scale is the exponential of its
parameter, with a gradient above the bound."""

import pytest
import torch

from genview_hf.modeling import GenViewCLIPModel
from genview_hf.testing import tiny_clip
from training_helpers import batch_loss, make_args, make_trainer


def test_clip_wrapper_loss_equals_transformers_clip_loss_and_slip_adds_ssl(tmp_path):
    clip, _ = tiny_clip()
    ids = torch.randint(3, 500, (4, 8))
    ids[:, -1] = 1
    pixels = torch.randn(4, 3, 32, 32)
    trainer = make_trainer(
        make_args(tmp_path / "clip", "clip"), model=GenViewCLIPModel.from_clip(clip, method="clip")
    )
    ours = batch_loss(trainer, dict(input_ids=ids, pixel_values=pixels))
    reference = clip(input_ids=ids, pixel_values=pixels, return_loss=True).loss
    torch.testing.assert_close(ours, reference)
    slip = GenViewCLIPModel.from_clip(clip, method="slip", ssl_hidden_dim=32, ssl_dim=16)
    with pytest.raises(ValueError, match="pixel_values_1"):
        slip(input_ids=ids, pixel_values=pixels)
    trainer = make_trainer(make_args(tmp_path / "slip", "slip"), model=slip)
    loss = batch_loss(
        trainer,
        dict(input_ids=ids, pixel_values=pixels, pixel_values_1=pixels, pixel_values_2=pixels.flip(-1)),
    )
    assert loss > ours


def test_clip_logit_scale_is_exp_of_the_parameter_with_gradient_above_the_bound():
    import math

    model = GenViewCLIPModel.from_clip(tiny_clip()[0], method="clip")
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(100.0) + 0.5)  # above the bound, e.g. after a large step
    ids = torch.randint(3, 500, (4, 8))
    out = model(input_ids=ids, pixel_values=torch.randn(4, 3, 32, 32))
    assert out.logit_scale.item() == pytest.approx(math.exp(math.log(100.0) + 0.5), rel=1e-5)
    (out.logit_scale * (out.image_embeds * out.text_embeds).sum()).backward()
    assert model.clip.logit_scale.grad is not None and model.clip.logit_scale.grad.abs().item() > 0
    model.clamp_logit_scale()
    assert model.clip.logit_scale.item() == pytest.approx(math.log(100.0))
    with torch.no_grad():
        model.clip.logit_scale.fill_(-1.0)
    model.clamp_logit_scale()
    assert model.clip.logit_scale.item() == 0.0
