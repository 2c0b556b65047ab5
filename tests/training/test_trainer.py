"""Tests of genview_hf.training.trainer (``GenViewTrainer``) on tiny backbones and hand-made
batches: every parameter trained, momentum, quality weights reaching the loss, settings refused before
training, the saved root and the Hub pushes."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import torch
import transformers.trainer
from huggingface_hub import ModelCard
from transformers import AutoModel, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from genview_hf.data.collators import SSLCollator
from genview_hf.methods import SSL_METHODS
from genview_hf.training import (
    GenViewTrainer,
    QualityWeights,
    momentum_at,
)
from tolerances import reduction_tolerance
from training_helpers import NaNRow, build_model, full_state, make_args, make_trainer, trainable_state

SSL = list(SSL_METHODS)  # every SSL row of the method table


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


class OnesTrainer(GenViewTrainer):
    def quality_weights(self, inputs, outputs):
        return QualityWeights(pairs=torch.ones(inputs["pixel_values_1"].shape[0]))


def _train(tmp_path, name, trainer_class=GenViewTrainer, **overrides):
    trainer = make_trainer(make_args(tmp_path / name, "mocov3", **overrides), trainer_class=trainer_class)
    trainer.train()
    return trainer, full_state(trainer.model)


class FakeApi:
    """Records the Hub calls; its uploads snapshot the folder's root config at call time."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, **kwargs):
        config = Path(kwargs["folder_path"]) / "config.json"
        model_type = json.loads(config.read_text()).get("model_type") if config.exists() else None
        self.calls.append(("upload_folder", dict(kwargs, model_type=model_type)))
        if kwargs.get("run_as_future"):
            done = Future()
            done.set_result("https://hub/commit/1")
            return done
        return "https://hub/commit/1"

    def uploads(self):
        return [call[1] for call in self.calls if call[0] == "upload_folder"]


@pytest.fixture
def fake_hub(monkeypatch):
    api = FakeApi()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: api)
    return api


class CountPushes(TrainerCallback):
    def __init__(self):
        self.pushes = 0

    def on_push_begin(self, args, state, control, **kwargs):
        self.pushes += 1


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
    trainer = make_trainer(make_args(tmp_path, "mocov3"), use_hallucinator=True)
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


def test_quality_weights_reach_the_loss_and_all_ones_equal_off(tmp_path):
    off, state_off = _train(tmp_path, "off", quality_mode="off")
    _, state_frozen = _train(tmp_path, "frozen", quality_mode="frozen")
    _, state_stored = _train(tmp_path, "stored", quality_mode="stored")
    _, state_ones = _train(tmp_path, "ones", trainer_class=OnesTrainer, quality_mode="frozen")
    key = next(k for k in state_off if k.startswith("backbone.layers") and k.endswith("weight"))
    assert not torch.allclose(state_off[key], state_frozen[key])
    assert not torch.allclose(state_off[key], state_stored[key])
    # three steps from losses that may reduce in another order (weighted mean vs mean): float32
    # rounding of ~1,000-term sums, carried through the optimizer
    for name, value in state_off.items():
        within = reduction_tolerance(torch.float32, 1_000, value.abs().max() if value.numel() else 1.0)
        torch.testing.assert_close(state_ones[name], value, **within)
    logs = [entry for entry in off.state.log_history if "loss" in entry]
    assert all("weight_mean" not in entry for entry in logs)


def test_weight_statistics_are_logged(tmp_path):
    trainer, _ = _train(tmp_path, "stored", quality_mode="stored")
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(entry["weight_min"] <= entry["weight_mean"] <= entry["weight_max"] for entry in logs)
    assert all(abs(entry["weight_mean"] - 1) < 1e-5 and "momentum" in entry for entry in logs)


def test_a_training_set_smaller_than_one_batch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="3 rows, fewer than one batch of 4"):
        make_trainer(make_args(tmp_path, "mocov3"), length=3)


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


def test_saved_root_is_a_plain_transformers_encoder_and_checkpoints_load_with_automodel(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3", save_strategy="steps", save_steps=3))
    trainer.train()
    trainer.save_model()
    trainer.create_model_card(dataset_name="me/views")
    root = tmp_path
    files = {p.name for p in root.iterdir() if p.is_file()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = json.loads((root / "config.json").read_text())
    assert config["model_type"] == "vit" and "genview" not in json.dumps(config.get("architectures"))
    loaded = AutoModel.from_pretrained(root)
    for name, value in trainer.model.backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    card = ModelCard.load(root / "README.md")
    assert card.data.library_name == "transformers" and card.data.datasets == ["me/views"]
    assert "mocov3" in card.data.tags and card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.base_model is None  # trained from scratch
    # The checkpoint holds the training wrapper: AutoModel gives it back (genview_hf is imported).
    checkpoint = AutoModel.from_pretrained(root / "checkpoint-3")
    assert type(checkpoint).__name__ == "GenViewModel" and checkpoint.config.method == "mocov3"
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(checkpoint.state_dict()[name], value), name


@pytest.mark.parametrize("strategy", ["every_save", "checkpoint"])
def test_hub_strategies_push_the_plain_encoder_root_and_the_checkpoint(tmp_path, fake_hub, strategy):
    args = make_args(
        tmp_path,
        "byol",
        push_to_hub=True,
        hub_model_id="me/byol-genview",
        hub_strategy=strategy,
        save_strategy="steps",
        save_steps=2,
        max_steps=4,
    )
    pushes = CountPushes()
    trainer = make_trainer(args, callbacks=[pushes])
    trainer.train()
    assert pushes.pushes == 2  # the callbacks hear of each checkpoint's push, as with the stock Trainer
    assert fake_hub.calls[0] == ("create_repo", "me/byol-genview")
    roots = [up for up in fake_hub.uploads() if up["folder_path"] == str(tmp_path)]
    assert roots and all(up["model_type"] == "vit" for up in roots)  # never the training wrapper
    assert all(f"{PREFIX_CHECKPOINT_DIR}-*" in up["ignore_patterns"] for up in roots)
    checkpoints = [up for up in fake_hub.uploads() if up.get("path_in_repo") == "last-checkpoint"]
    assert bool(checkpoints) == (strategy == "checkpoint")
    assert all(up["model_type"] == "genview" for up in checkpoints)


def test_an_epoch_push_says_its_epoch(tmp_path, fake_hub):
    args = make_args(
        tmp_path,
        "byol",
        push_to_hub=True,
        hub_model_id="me/byol-genview",
        save_strategy="epoch",
        max_steps=-1,
        num_train_epochs=1,
    )  # 16 rows in batches of 4: one epoch of 4 steps
    make_trainer(args).train()
    messages = [up["commit_message"] for up in fake_hub.uploads()]
    assert "Training in progress, epoch 1" in messages


# ------------------------------------------------------------------ why three private methods are overridden
# Each test below asserts the stock behaviour that its override exists for: when one fails, upstream
# changed and the override may be dropped (or must follow).
def test_stock_push_from_checkpoint_would_publish_the_training_wrapper_at_the_root(tmp_path, fake_hub):
    args = make_args(
        tmp_path, "byol", push_to_hub=True, hub_model_id="me/byol", save_strategy="steps", save_steps=2
    )
    trainer = make_trainer(args)
    trainer.train()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vit"
    transformers.Trainer._push_from_checkpoint(trainer, str(tmp_path / f"{PREFIX_CHECKPOINT_DIR}-2"))
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "genview"


def test_stock_save_writes_other_names_than_the_modules_and_stock_resume_skips_them(tmp_path):
    """``_save``: the stock one writes ViT in transformers' legacy layout; ``_load_from_checkpoint``: the
    stock one loads it without complaint, leaving the backbone as it was."""
    trainer = make_trainer(make_args(tmp_path, "mocov3", max_steps=1))
    transformers.Trainer._save(trainer, str(tmp_path / "stock"))
    saved = safetensors.torch.load_file(str(tmp_path / "stock" / "model.safetensors"))
    assert set(saved) != set(trainer.model.state_dict())
    before = full_state(trainer.model)
    saved = {name: torch.zeros_like(value) for name, value in saved.items()}  # another model's weights
    safetensors.torch.save_file(
        saved, str(tmp_path / "stock" / "model.safetensors"), metadata={"format": "pt"}
    )
    transformers.Trainer._load_from_checkpoint(trainer, str(tmp_path / "stock"))
    after = full_state(trainer.model)
    skipped = [name for name, value in after.items() if torch.equal(value, before[name]) and value.any()]
    assert any(name.startswith("backbone.layers.") for name in skipped)  # attention: left as it was, silently


def test_push_to_hub_uploads_the_root_with_its_card_and_not_the_checkpoints(tmp_path, fake_hub):
    args = make_args(
        tmp_path,
        "byol",
        push_to_hub=True,
        hub_model_id="me/byol-genview",
        save_strategy="steps",
        save_steps=3,
    )
    trainer = make_trainer(args)
    trainer.train()
    trainer.push_to_hub(dataset_name="me/imagenet-genview")
    upload = fake_hub.uploads()[-1]
    assert upload["repo_id"] == "me/byol-genview" and upload["model_type"] == "vit"
    assert f"{PREFIX_CHECKPOINT_DIR}-*" in upload["ignore_patterns"]
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.datasets == ["me/imagenet-genview"] and (tmp_path / "checkpoint-3").is_dir()


def test_batch_direction_points_to_the_centre_and_a_scorer_folder_gives_the_fitted_one(tmp_path):
    from genview_hf.foreground import ForegroundScorer
    from genview_hf.modeling.features import principal_direction
    from genview_hf.training import load_direction

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


def test_persistent_workers_are_refused():
    """They would keep the first epoch's collator, repeating its augmentations every epoch."""
    args = make_args("unused", dataloader_num_workers=2, dataloader_persistent_workers=True)
    model, processor = build_model(args)
    with pytest.raises(ValueError, match="dataloader_persistent_workers"):
        GenViewTrainer(model, args, train_dataset=[{}] * 4, data_collator=SSLCollator("mocov3", 32))


# ------------------------------------------------------------------ NaN
@pytest.mark.parametrize("quality_mode", ["off", "frozen"])
def test_a_nan_loss_stops_training_naming_the_step_before_any_parameter_is_hit(tmp_path, quality_mode):
    trainer = make_trainer(make_args(tmp_path, "mocov3", quality_mode=quality_mode, max_steps=8))
    trainer.train_dataset = NaNRow(length=16)
    with pytest.raises(FloatingPointError, match=r"step \d+ \(epoch \d\): the loss is nan") as error:
        trainer.train()
    assert "embeddings (queries_1" in str(error.value)
    if quality_mode == "frozen":  # the frozen model's token map is NaN too: the weights are named
        assert "the quality weights (pairs)" in str(error.value)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class _LearningRates(TrainerCallback):
    def __init__(self):
        self.seen = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append([(group.get("fixed_lr", False), group["lr"]) for group in optimizer.param_groups])


def test_simsiam_predictor_keeps_the_base_learning_rate(tmp_path):
    # main_simsiam.py adjust_learning_rate: fix_lr groups at init_lr, the others on the cosine
    args = make_args(tmp_path, "simsiam", max_steps=4, lr_scheduler_type="cosine", learning_rate=0.05)
    assert args.fixed_predictor_lr is True  # the method's default
    recorder = _LearningRates()
    trainer = make_trainer(args, callbacks=[recorder])
    trainer.train()
    predictor = {id(p) for p in trainer.model.predictor.parameters()}
    fixed = [g for g in trainer.optimizer.param_groups if g.get("fixed_lr")]
    assert {id(p) for g in fixed for p in g["params"]} == predictor
    for step in recorder.seen:
        assert all(lr == 0.05 for is_fixed, lr in step if is_fixed)
    last = [lr for is_fixed, lr in recorder.seen[-1] if not is_fixed]
    assert last and all(lr < 0.05 for lr in last)  # the encoder follows the schedule
    off = make_args(tmp_path / "off", "simsiam", fixed_predictor_lr=False)
    assert off.fixed_predictor_lr is False
    with pytest.raises(ValueError, match="no predictor"):
        make_args(tmp_path, "mocov2", fixed_predictor_lr=True)


def test_frozen_patch_projection_does_not_move_in_training(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3", max_steps=2))
    projection = trainer.model.backbone.embeddings.patch_embeddings.projection
    before = projection.weight.detach().clone()
    trainer.train()
    assert torch.equal(projection.weight, before)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(projection.weight) not in optimized


def test_unweighted_objective_is_unchanged_by_the_weight_machinery(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "mocov3"))
    batch = {
        key: torch.stack([trainer.train_dataset[i][key] for i in range(4)])
        for key in ("pixel_values_1", "pixel_values_2")
    }
    out = trainer.model(**batch)
    ones = trainer.objective(out, QualityWeights(pairs=torch.ones(4)))
    torch.testing.assert_close(trainer.objective(out, None), ones)
