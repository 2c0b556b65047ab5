"""Shared pieces of the trainer tests: tiny arguments, models and trainers on hand-made batches."""

from __future__ import annotations

import socket

import torch

from genview_hf.testing import tiny_path
from genview_hf.testing.training_data import SyntheticViews
from genview_hf.training import GenViewTrainer, GenViewTrainingArguments, ModelArguments, builders


def make_args(output_dir, method: str = "mocov3", **overrides) -> GenViewTrainingArguments:
    settings = dict(
        output_dir=str(output_dir),
        method=method,
        quality_mode="off",
        quality_model=str(tiny_path("clip")),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-2,
        weight_decay=0.0,
        warmup_steps=0,
        lr_scheduler_type="constant",
        momentum=0.9,
        momentum_schedule="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
        image_size=32,
        training_figures=False,
    )
    settings.update(overrides)
    return GenViewTrainingArguments(**settings)


def make_model_args(method: str = "mocov3", **overrides) -> ModelArguments:
    """A tiny encoder (ViT, or CLIP for the image-text methods) with narrow heads and a short queue."""
    settings = dict(
        model_name_or_path=str(tiny_path("clip" if method in ("clip", "slip") else "vit")),
        proj_hidden_dim=32,
        proj_dim=16,
        pred_hidden_dim=32,
        queue_size=32,
    )
    settings.update(overrides)
    return ModelArguments(**settings)


def build_model(args: GenViewTrainingArguments, **model_overrides):
    """The wrapper and processor the recipe builds for ``args``; ``model_overrides``: ``ModelArguments``."""
    return builders.train_model(make_model_args(args.method, **model_overrides), args.method)


def make_trainer(
    args: GenViewTrainingArguments,
    length: int = 16,
    callbacks=None,
    trainer_class=GenViewTrainer,
    model=None,
    **model_overrides,
):
    """A trainer on ``SyntheticViews``; ``model_overrides``: ``ModelArguments`` of the built model."""
    torch.manual_seed(args.seed)
    built, processor = build_model(args, **model_overrides)
    kind = "ssl" if not args.is_image_text else ("multi" if args.multi_positive else args.method)
    quality_model, direction = builders.quality_model(args)
    return trainer_class(
        model if model is not None else built,
        args,
        train_dataset=SyntheticViews(length=length, kind=kind),
        eval_dataset=SyntheticViews(length=8, kind=kind),
        processing_class=processor,
        quality_model=quality_model,
        quality_direction=direction,
        callbacks=callbacks,
    )


def batch_loss(trainer: GenViewTrainer, batch: dict, weights=None) -> torch.Tensor:
    """The trainer's objective on one batch with the given ``QualityWeights`` (None: unweighted)."""
    model_inputs = {key: value for key, value in batch.items() if not key.startswith("masks")}
    return trainer.objective(trainer.model(**model_inputs), weights)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


class NaNRow(SyntheticViews):
    """SyntheticViews whose row 5 holds a NaN pixel (as a broken source or a bad normalisation would)."""

    def __getitem__(self, index):
        row = super().__getitem__(index)
        if index == 5:
            for key in ("pixel_values_1", "pixel_values_2", "pixel_values_orig"):
                row[key][0, 0, 0] = float("nan")
        return row


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, for a process group's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
