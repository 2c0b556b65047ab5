"""One training run from settings: ``main(argv)`` behind both recipes and ``genview train``.

    accelerate launch recipes/ssl_genview.py --config recipes/configs/mocov3_vit_tiny.yaml
    genview train --config recipes/configs/mocov3_vit_tiny.yaml --max-steps 10

Steps: parse ``GenViewTrainingArguments`` (YAML ``--config`` + flags), load and validate the
views dataset (clear errors before training), build the model and its processor, the
collator and ``GenViewTrainer``; train (resuming from ``checkpoint-*`` when asked); export the
plain encoder + processor + card at the output root; push it when ``--push_to_hub``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    CLIPModel,
    CLIPProcessor,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from ..config import parse_config
from ..data.collators import build_collator
from ..data.views import generated_columns, validate_views_dataset
from ..modeling import GenViewCLIPModel, GenViewModel
from ..modeling.features import vision_tower
from .arguments import GenViewTrainingArguments
from .trainer import GenViewTrainer, load_direction

logger = logging.getLogger(__name__)

TINY_COMPONENTS = ("tiny-vit", "tiny-resnet", "tiny-clip")
SAMPLE_PREFIX = "sample:"


# ---------------------------------------------------------------------------------- models
def load_component(name: str, from_scratch: bool = False) -> tuple[torch.nn.Module, Any]:
    """(model, processor) for a tiny offline component, a local folder or a Hub id.

    ``from_scratch``: the architecture from the config with random weights (pre-training).
    A ``clip`` checkpoint gives the ``CLIPModel`` and its ``CLIPProcessor``.
    """
    if name in TINY_COMPONENTS:
        from .. import testing

        builder = {
            "tiny-vit": testing.tiny_vit,
            "tiny-resnet": testing.tiny_resnet,
            "tiny-clip": testing.tiny_clip,
        }
        return builder[name]()
    config = AutoConfig.from_pretrained(name)
    if config.model_type == "clip":
        processor = CLIPProcessor.from_pretrained(name)
        model = CLIPModel(config) if from_scratch else CLIPModel.from_pretrained(name)
        return model, processor
    processor = AutoImageProcessor.from_pretrained(name)
    model = AutoModel.from_config(config) if from_scratch else AutoModel.from_pretrained(name)
    return model, processor


def build_model(args: GenViewTrainingArguments) -> tuple[GenViewModel | GenViewCLIPModel, Any]:
    """The training wrapper for ``args.method`` and the processor saved beside the encoder."""
    model, processor = load_component(args.model_name_or_path, args.from_scratch)
    if args.is_clip:
        if not isinstance(model, CLIPModel):
            raise ValueError(
                f"method {args.method!r} needs a CLIP model; {args.model_name_or_path} is {type(model).__name__}"
            )
        wrapper = GenViewCLIPModel.from_clip(model, method=args.method)
    else:
        if isinstance(model, CLIPModel) and hasattr(processor, "image_processor"):
            processor = processor.image_processor
        wrapper = GenViewModel.from_backbone(
            model,
            method=args.method,
            proj_hidden_dim=args.proj_hidden_dim,
            proj_dim=args.proj_dim,
            proj_layers=args.proj_layers,
            pred_hidden_dim=args.pred_hidden_dim,
            pooling=args.pooling,
            queue_size=args.queue_size,
            use_hallucinator=args.use_hallucinator,
        )
    if args.use_peft:
        apply_lora(wrapper, args)
    return wrapper, processor


def apply_lora(model: GenViewModel | GenViewCLIPModel, args: GenViewTrainingArguments) -> None:
    """LoRA adapters on the backbone (SSL) or on CLIP; heads and CLIP's logit scale stay trainable.

    The momentum encoder is re-copied from the adapted backbone so that online and target keep
    the same parameter list (the frozen base weights stay equal; the EMA moves the adapters).
    """
    from peft import LoraConfig, get_peft_model

    is_clip = isinstance(model, GenViewCLIPModel)
    encoder = model.clip if is_clip else model.backbone
    targets = args.lora_target_modules or _default_lora_targets(encoder)
    config = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, target_modules=targets
    )
    adapted = get_peft_model(encoder, config)
    if is_clip:
        model.clip = adapted
        model.clip.base_model.model.logit_scale.requires_grad_(True)
        for module in (
            model.clip.base_model.model.visual_projection,
            model.clip.base_model.model.text_projection,
        ):
            module.requires_grad_(True)
    else:
        model.backbone = adapted
        model.reset_momentum_encoder()


def _default_lora_targets(encoder: torch.nn.Module) -> list[str]:
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in encoder.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    for pair in (("q_proj", "v_proj"), ("query", "value"), ("qkv",)):
        if set(pair) <= names:
            return list(pair)
    raise ValueError(
        f"no attention projections to adapt in {type(encoder).__name__}: LoRA (--use_peft) is for ViT and CLIP "
        "backbones; give --lora_target_modules"
    )


def build_quality_model(args: GenViewTrainingArguments) -> torch.nn.Module | None:
    """The frozen model of ``quality_mode=frozen``: a vision model, or a whole CLIP for GenView++."""
    if args.quality_mode != "frozen":
        return None
    model, _ = load_component(args.quality_model, from_scratch=False)
    if args.multi_positive:
        if not isinstance(model, CLIPModel):
            raise ValueError(
                f"GenView++ weights need a CLIP quality_model; {args.quality_model} is {type(model).__name__}"
            )
        return model
    return vision_tower(model)


# ---------------------------------------------------------------------------------- data
def load_split(args: GenViewTrainingArguments, split: str):
    """A split of ``args.dataset_name``: ``sample:<name>``, a ``save_to_disk`` folder, data files or a Hub id."""
    name = args.dataset_name
    if name.startswith(SAMPLE_PREFIX):
        from ..data.samples import load_sample

        return load_sample(name[len(SAMPLE_PREFIX) :], split=split)
    path = Path(name)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        from datasets import load_from_disk

        loaded = load_from_disk(str(path))
        if hasattr(loaded, "keys"):
            if split not in loaded:
                raise ValueError(f"{name} has no split {split!r}: it has {', '.join(loaded.keys())}")
            return loaded[split]
        return loaded
    from datasets import load_dataset

    return load_dataset(name, args.dataset_config_name, split=split)


def build_datasets(args: GenViewTrainingArguments):
    train = load_split(args, args.train_split)
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    evaluation = load_split(args, args.eval_split) if args.eval_split else None
    return train, evaluation


def view_columns(args: GenViewTrainingArguments, column_names: list[str]) -> list[str] | None:
    if args.view_mode is None:
        return None
    if args.view_mode == "none":
        return []
    wanted = [f"view_{args.view_mode}"]
    found = generated_columns(column_names, wanted)
    if not found:
        raise ValueError(f"view_mode {args.view_mode!r}: the dataset has no column view_{args.view_mode}")
    return found


def build_data_collator(args: GenViewTrainingArguments, processor: Any, train_dataset):
    columns = view_columns(args, list(train_dataset.column_names))
    masks = args.quality_mode == "stored"
    try:
        validate_views_dataset(
            train_dataset,
            args.method,
            multi_positive=args.multi_positive,
            view_columns=columns,
            masks=masks,
            max_rows=64,
        )
    except ValueError as error:
        context = f"method {args.method!r}" + (", quality_mode='stored'" if masks else "")
        raise ValueError(
            f"{args.dataset_name} ({args.train_split}) cannot train {context}: {error}"
        ) from error
    kwargs: dict[str, Any] = dict(
        image_size=args.image_size, generated_view_prob=args.generated_view_prob, view_columns=columns
    )
    if args.multi_positive:
        kwargs.pop("generated_view_prob")  # every generated view is used
        return build_collator(args.method, tokenizer=processor, multi_positive=True, masks=masks, **kwargs)
    if args.is_clip:
        if args.method == "slip":
            kwargs["masks"] = False
        return build_collator(args.method, tokenizer=processor, **kwargs)
    image_processor = getattr(processor, "image_processor", processor)
    mean, std = getattr(image_processor, "image_mean", None), getattr(image_processor, "image_std", None)
    if mean is not None and std is not None:
        kwargs.update(mean=mean, std=std)
    return build_collator(args.method, masks=masks, **kwargs)


# ---------------------------------------------------------------------------------- main
def resolve_resume(args: GenViewTrainingArguments) -> str | None:
    value = args.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("true", "last"):
        last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        if last is None:
            logger.warning(
                "resume requested but %s has no checkpoint-*: starting from scratch", args.output_dir
            )
        return last
    return str(value)


def build_trainer(args: GenViewTrainingArguments) -> GenViewTrainer:
    set_seed(args.seed)
    train_dataset, eval_dataset = build_datasets(args)
    model, processor = build_model(args)
    collator = build_data_collator(args, processor, train_dataset)
    direction = load_direction(args.quality_direction) if args.quality_direction else None
    trainer = GenViewTrainer(
        model,
        args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        quality_model=build_quality_model(args),
        quality_direction=direction,
    )
    if args.knn_monitor_split:
        from ..evaluation.callbacks import KNNMonitorCallback

        monitor = KNNMonitorCallback(
            load_split(args, args.knn_monitor_split),
            every_n_steps=args.knn_monitor_steps,
            image_column=args.image_column,
            label_column=args.label_column,
            seed=args.seed,
        )
        trainer.knn_monitor = monitor.attach(trainer)
    return trainer


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_config((GenViewTrainingArguments,), argv)
    trainer = build_trainer(args)
    result = trainer.train(resume_from_checkpoint=resolve_resume(args))
    metrics = {f"train_{k}" if not k.startswith("train") else k: v for k, v in result.metrics.items()}
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    monitor = getattr(trainer, "knn_monitor", None)
    if monitor is not None:
        metrics[monitor.metric_name] = monitor.measure(trainer.unwrapped(), trainer.processing_class)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("all", metrics)
    trainer.save_encoder(metrics={k: round(v, 4) for k, v in metrics.items() if isinstance(v, int | float)})
    if args.push_to_hub:
        trainer.push_to_hub()
    return 0


__all__ = ["build_model", "build_trainer", "load_component", "main"]
