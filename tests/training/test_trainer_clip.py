"""CLIP / SLIP through GenViewTrainer; the exported root serves transformers' zero-shot pipeline."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import CLIPModel

from genview_hf import losses
from genview_hf.training import QualityWeights
from tolerances import reduction_tolerance
from training_helpers import batch_loss, make_args, make_trainer, trainable_state


@pytest.mark.parametrize("method", ["clip", "slip"])
def test_clip_and_slip_move_every_trainable_parameter_and_log_the_logit_scale(tmp_path, method):
    trainer = make_trainer(make_args(tmp_path, method, max_steps=2, learning_rate=1e-3))
    before = trainable_state(trainer.model)
    trainer.train()
    after = trainable_state(trainer.model)
    assert not [name for name in before if torch.equal(before[name], after[name])]
    if method == "slip":
        assert any(name.startswith("ssl_head") for name in before)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(0 < entry["logit_scale"] <= 100 for entry in logs)


PIPELINE_CHECK = textwrap.dedent(
    """
    import sys
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=sys.argv[1], device="cpu")
    image = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8"))
    result = classifier(image, candidate_labels=["a red circle", "a blue square"])
    assert sorted(r["label"] for r in result) == ["a blue square", "a red circle"], result
    assert abs(sum(r["score"] for r in result) - 1) < 1e-4
    assert not any(name.startswith("genview_hf") for name in sys.modules), "genview_hf was imported"
    print("ok")
    """
)


def test_clip_root_serves_the_zero_shot_pipeline_without_genview_hf(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "slip", max_steps=1))
    trainer.train()
    trainer.save_model()
    root = tmp_path
    config = json.loads((root / "config.json").read_text())
    assert config["model_type"] == "clip" and (root / "model.safetensors").exists()
    assert not list(root.glob("*.bin"))
    assert (root / "processor_config.json").exists() or (root / "preprocessor_config.json").exists()
    loaded = CLIPModel.from_pretrained(root)
    for name, value in trainer.model.clip.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    script = tmp_path / "check.py"
    script.write_text(PIPELINE_CHECK)
    done = subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_lora_on_clip_trains_adapters_and_the_logit_scale_and_saves_merged(tmp_path):
    trainer = make_trainer(
        make_args(tmp_path, "clip", max_steps=2, learning_rate=1e-2), use_peft=True, lora_r=4
    )
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_" in name for name in trainable) and any(
        name.endswith("logit_scale") for name in trainable
    )
    assert not any("q_proj.base_layer" in name for name in trainable)
    before = trainable_state(trainer.model)
    trainer.train()
    after = trainable_state(trainer.model)
    assert not [name for name in before if torch.equal(before[name], after[name])]
    trainer.save_model()
    root = tmp_path
    merged = CLIPModel.from_pretrained(root)
    assert not any("lora" in name for name in merged.state_dict())
    ids = torch.randint(3, 500, (2, 8))
    ids[:, -1] = 1
    pixels = torch.randn(2, 3, 32, 32)
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model.clip(input_ids=ids, pixel_values=pixels).logits_per_image
        got = merged(input_ids=ids, pixel_values=pixels).logits_per_image
    # W x + B A x against (W + B A) x through the tiny CLIP: ~1,000-term float32 sums per logit
    torch.testing.assert_close(
        got, expected, **reduction_tolerance(torch.float32, 1_000, expected.abs().max())
    )


def test_lora_on_a_vit_backbone_keeps_the_momentum_encoder_in_step(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3", max_steps=2), use_peft=True, lora_r=4)
    model = trainer.model
    assert len(list(model.backbone.parameters())) == len(list(model.momentum_backbone.parameters()))
    trainer.train()
    trainer.save_model()
    root = tmp_path
    from transformers import AutoModel

    plain = AutoModel.from_pretrained(root)
    assert type(plain).__name__ == "ViTModel" and not any("lora" in name for name in plain.state_dict())


def _multi_batch(n=4):
    from genview_hf.testing.training_data import SyntheticViews

    data = SyntheticViews(length=n, kind="multi")
    return {key: torch.stack([data[i][key] for i in range(n)]) for key in data[0]}


@pytest.mark.parametrize("method", ["clip", "slip"])
def test_genview_pp_multi_positive_loss_weights_reach_it_and_all_ones_equal_none(tmp_path, method):
    trainer = make_trainer(make_args(tmp_path, method, multi_positive=True, quality_mode="stored"))
    trainer.model.eval()  # batch-norm statistics fixed: the same batch gives the same embeddings
    batch = _multi_batch()
    none = batch_loss(trainer, batch)
    ones = batch_loss(
        trainer, batch, QualityWeights(image_text=torch.ones(4, 3), image_image=torch.ones(4, 3, 3))
    )
    torch.testing.assert_close(ones, none)
    model_inputs = {k: v for k, v in batch.items() if not k.startswith("masks")}
    outputs = trainer.model(**model_inputs, output_tokens=True)
    stored = trainer.quality_weights(batch, outputs)
    assert stored.image_text.shape == (4, 3) and torch.allclose(stored.image_text.mean(), torch.tensor(1.0))
    assert stored.image_image.shape == (4, 3, 3)
    assert not torch.allclose(trainer.objective(outputs, stored), none)


@pytest.mark.parametrize("mode", ["stored", "frozen"])
def test_genview_pp_trains_through_the_trainer(tmp_path, mode):
    args = make_args(
        tmp_path, "slip", max_steps=2, multi_positive=True, quality_mode=mode, learning_rate=1e-3
    )
    trainer = make_trainer(args)
    before = trainable_state(trainer.model)
    trainer.train()
    after = trainable_state(trainer.model)
    assert not [name for name in before if torch.equal(before[name], after[name])]
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(abs(entry["weight_mean"] - 1) < 1e-4 for entry in logs)


def test_quality_modes_that_need_multi_positive_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multi_positive"):
        make_args(tmp_path, "clip", quality_mode="stored")


@pytest.mark.parametrize("mode", ["stored", "frozen"])
def test_slip_weights_its_ssl_pair_in_both_quality_modes(tmp_path, mode):
    from genview_hf.testing.training_data import SyntheticViews

    trainer = make_trainer(make_args(tmp_path, "slip", max_steps=2, quality_mode=mode))
    rows = [SyntheticViews(4, kind="ssl")[i] | SyntheticViews(4, kind="slip")[i] for i in range(4)]
    batch = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
    weights = trainer.quality_weights(
        batch,
        trainer.model(
            **{k: v for k, v in batch.items() if not k.startswith(("masks", "pixel_values_orig"))},
            output_tokens=True,
        ),
    )
    assert weights.pairs.shape == (4,) and torch.allclose(weights.pairs.mean(), torch.tensor(1.0))


def test_the_logit_scale_gets_no_weight_decay(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "clip", weight_decay=0.5))
    decayed = trainer.get_decay_parameter_names(trainer.model)
    assert not any(name.endswith("logit_scale") for name in decayed)
    assert any(name.endswith("visual_projection.weight") for name in decayed)


@pytest.mark.parametrize("start, inside", [(math.log(100.0) + 0.3, math.log(100.0)), (-0.5, 0.0)])
def test_logit_scale_is_clamped_in_place_after_the_optimizer_step(tmp_path, start, inside):
    # open_clip train.py / SLIP main.py: logit_scale.clamp_(0, ln 100) after optimizer.step()
    trainer = make_trainer(make_args(tmp_path, "clip", max_steps=1, learning_rate=1e-6))
    with torch.no_grad():
        trainer.model.clip.logit_scale.fill_(start)
    trainer.train()
    assert trainer.model.clip.logit_scale.item() == pytest.approx(inside, abs=1e-6)


def test_a_scale_above_the_bound_is_trained_back_down(tmp_path):
    """With the clamp in the forward the gradient above ln 100 is 0 and the scale is stuck; unclamped,
    a loss that prefers a lower scale lowers it (and the step's clamp keeps it in range)."""
    trainer = make_trainer(make_args(tmp_path, "clip", max_steps=1, learning_rate=1.0))
    model = trainer.model.train()
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(100.0) + 1.0)
    batch = {
        key: torch.stack([trainer.train_dataset[i][key] for i in range(4)])
        for key in ("input_ids", "pixel_values")
    }
    out = model(**batch)
    # random embeddings: the loss falls as the scale falls, so the gradient on the log-scale is > 0
    losses.clip_loss(out.image_embeds, out.text_embeds, out.logit_scale).backward()
    assert model.clip.logit_scale.grad.item() > 0
