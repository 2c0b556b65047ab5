"""GenViewTrainer on tiny backbones and hand-made batches: parameters, momentum, weights, resume, export."""

import json

import pytest
import torch
from transformers import AutoModel, TrainerCallback

from genview_hf.training import GenViewTrainer, momentum_at
from training_helpers import full_state, make_args, make_trainer, trainable_state

SSL = ["mocov2", "mocov3", "simsiam", "byol", "simclr", "leoclr"]


class RecordEMA(TrainerCallback):
    """Before the momentum callback of each step: the online weights and the momentum weights."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append(
            (
                [p.detach().clone() for p in model.backbone.parameters()],
                [p.detach().clone() for p in model.momentum_backbone.parameters()],
            )
        )


@pytest.mark.parametrize("method", SSL)
def test_every_trainable_parameter_moves_and_the_momentum_encoder_is_a_moving_average(tmp_path, method):
    recorder = RecordEMA()
    args = make_args(tmp_path, method, momentum=0.9, momentum_end=1.0, momentum_schedule="cosine")
    trainer = make_trainer(
        args, callbacks=[recorder] if method in ("mocov2", "mocov3", "byol", "leoclr") else None
    )
    before = trainable_state(trainer.model)
    trainer.train()
    after = trainable_state(trainer.model)
    still = [name for name in before if torch.equal(before[name], after[name])]
    assert not still, f"{method}: parameters that did not move: {still}"
    assert not any("momentum" in name for name in before), "the momentum encoder must not be trainable"
    if recorder.steps:
        assert len(recorder.steps) == 3
        model = trainer.model
        for step, (online, target) in enumerate(recorder.steps):
            m = momentum_at(step, 3, 0.9, 1.0, "cosine")
            expected = [m * t + (1 - m) * o for o, t in zip(online, target)]
            nxt = recorder.steps[step + 1][1] if step + 1 < 3 else list(model.momentum_backbone.parameters())
            for e, n in zip(expected, nxt):
                torch.testing.assert_close(n, e)


def test_hallucinator_is_trained_through_the_loss(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3", use_hallucinator=True))
    before = trainable_state(trainer.model)
    trainer.train()
    after = trainable_state(trainer.model)
    moved = [n for n in before if n.startswith("hallucinator") and not torch.equal(before[n], after[n])]
    assert len(moved) == len([n for n in before if n.startswith("hallucinator")]) > 0


def test_momentum_schedule_cosine_from_base_to_end():
    assert momentum_at(0, 100, 0.99) == pytest.approx(0.99)
    assert momentum_at(50, 100, 0.99) == pytest.approx(0.995)
    assert momentum_at(100, 100, 0.99) == pytest.approx(1.0)
    assert momentum_at(30, 100, 0.999, schedule="constant") == 0.999


def test_momentum_updates_once_per_optimizer_step_under_gradient_accumulation(tmp_path):
    calls = []
    trainer = make_trainer(
        make_args(tmp_path, "byol", per_device_train_batch_size=2, gradient_accumulation_steps=2)
    )
    update = trainer.model.momentum_update
    trainer.model.momentum_update = lambda m: (calls.append(m), update(m))
    trainer.train()
    assert len(calls) == trainer.state.global_step == 3


class OnesTrainer(GenViewTrainer):
    def frozen_quality_weights(self, pixel_values_1, pixel_values_2):
        return torch.ones(pixel_values_1.shape[0])


def _train(tmp_path, name, trainer_class=GenViewTrainer, **overrides):
    trainer = make_trainer(make_args(tmp_path / name, "mocov3", **overrides), trainer_class=trainer_class)
    trainer.train()
    return trainer, full_state(trainer.model)


def test_quality_weights_reach_the_loss_and_all_ones_equal_off(tmp_path):
    off, state_off = _train(tmp_path, "off", quality_mode="off")
    _, state_frozen = _train(tmp_path, "frozen", quality_mode="frozen")
    _, state_stored = _train(tmp_path, "stored", quality_mode="stored")
    _, state_ones = _train(tmp_path, "ones", trainer_class=OnesTrainer, quality_mode="frozen")
    key = next(k for k in state_off if k.startswith("backbone.layers") and k.endswith("weight"))
    assert not torch.allclose(state_off[key], state_frozen[key])
    assert not torch.allclose(state_off[key], state_stored[key])
    for name, value in state_off.items():
        torch.testing.assert_close(state_ones[name], value, rtol=1e-5, atol=1e-6)
    logs = [entry for entry in off.state.log_history if "loss" in entry]
    assert all("weight_mean" not in entry for entry in logs)


def test_weight_statistics_are_logged(tmp_path):
    trainer, _ = _train(tmp_path, "stored", quality_mode="stored")
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(entry["weight_min"] <= entry["weight_mean"] <= entry["weight_max"] for entry in logs)
    assert all(abs(entry["weight_mean"] - 1) < 1e-5 and "momentum" in entry for entry in logs)


def test_eval_loss_without_labels(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "simsiam"))
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and torch.isfinite(torch.tensor(metrics["eval_loss"]))


def test_bad_settings_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown quality_mode"):
        make_args(tmp_path, "mocov3", quality_mode="sometimes")
    with pytest.raises(ValueError, match="unknown method"):
        make_args(tmp_path, "moco")
    with pytest.raises(ValueError, match="at least|>= 2"):
        make_trainer(make_args(tmp_path, "mocov3", per_device_train_batch_size=1))
    with pytest.raises(ValueError, match="quality_model"):
        GenViewTrainer(
            make_trainer(make_args(tmp_path, "mocov3")).model,
            make_args(tmp_path, "mocov3", quality_mode="frozen"),
        )


@pytest.mark.parametrize("method", ["mocov2", "byol"])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, method):
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2, use_hallucinator=method == "byol")
    full = make_trainer(make_args(tmp_path / "full", method, **settings))
    full.train()
    reference = full_state(full.model)

    interrupted = make_trainer(make_args(tmp_path / "cut", method, **dict(settings, max_steps=4)))

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                control.should_training_stop = True

    interrupted.add_callback(Stop())
    interrupted.train()
    checkpoint = tmp_path / "cut" / "checkpoint-2"
    assert checkpoint.is_dir()
    resumed = make_trainer(make_args(tmp_path / "cut", method, **settings))
    resumed.train(resume_from_checkpoint=str(checkpoint))
    state = full_state(resumed.model)
    assert set(state) == set(reference)
    for name, value in reference.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)


def test_saved_root_is_a_plain_transformers_encoder(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3", save_strategy="steps", save_steps=3))
    trainer.train()
    root = trainer.save_encoder(metrics={"knn_top1": 0.5})
    files = {p.name for p in root.iterdir() if p.is_file()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = json.loads((root / "config.json").read_text())
    assert config["model_type"] == "vit" and "genview" not in json.dumps(config.get("architectures"))
    loaded = AutoModel.from_pretrained(root)
    for name, value in trainer.model.backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    card = (root / "README.md").read_text()
    assert "mocov3" in card and "knn_top1" in card and "$" not in card.split("---")[1]


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id))

    def create_branch(self, *args, **kwargs):
        self.calls.append(("create_branch", args))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "https://hub/commit/1"


def test_push_uploads_the_root_with_its_card_and_not_the_checkpoints(tmp_path):
    args = make_args(
        tmp_path,
        "byol",
        push_to_hub=True,
        hub_model_id="me/byol-genview",
        save_strategy="steps",
        save_steps=3,
    )
    trainer = make_trainer(args)  # no network: the repository is made when the finished root is pushed
    trainer.train()
    trainer.save_encoder()
    api = FakeApi()
    assert trainer.push_to_hub(api=api) == "https://hub/commit/1"
    assert api.calls[0] == ("create_repo", "me/byol-genview")
    upload = api.calls[-1][1]
    assert upload["repo_id"] == "me/byol-genview" and "checkpoint-*" in upload["ignore_patterns"]
    assert (tmp_path / "checkpoint-3").is_dir() and (tmp_path / "README.md").exists()


def test_batch_direction_points_to_the_centre_and_a_scorer_folder_gives_the_fitted_one(tmp_path):
    from genview_hf.foreground import ForegroundScorer
    from genview_hf.modeling.features import principal_direction
    from genview_hf.training.trainer import load_direction

    axis = torch.nn.functional.normalize(torch.randn(8), dim=0)
    weight = torch.full((4, 4), 0.5)
    weight[1:3, 1:3] = 3.0  # strong "foreground" in the centre of a 4x4 grid
    tokens = weight.flatten()[None, :, None] * axis + 0.01 * torch.randn(2, 16, 8)
    for sign in (1.0, -1.0):
        direction = principal_direction(sign * tokens)
        projections = (sign * tokens) @ direction
        assert (projections[:, 5] > projections[:, 0]).all()  # centre token above the corner
    scorer = ForegroundScorer(direction=axis, threshold=0.0, fg_share=0.4, grid=(4, 4))
    scorer.save(tmp_path / "scorer")
    torch.testing.assert_close(load_direction(tmp_path / "scorer"), axis)
    with pytest.raises(ValueError, match="foreground direction"):
        load_direction(tmp_path / "direction.txt")
