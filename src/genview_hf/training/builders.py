"""The building blocks of a training run, shared by ``recipes/ssl_genview.py``,
``recipes/clip_genview.py`` and ``genview train``: load a model, prepare the views dataset,
build the collator, the frozen quality model and the kNN monitor, resolve a resume.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor
from transformers.trainer_utils import get_last_checkpoint

from ..data import schema
from ..data.collators import build_collator
from ..data.loading import load_split
from ..data.views import generated_columns, to_contract_columns, validate_views_dataset
from ..modeling import GenViewCLIPModel, GenViewModel
from ..modeling.features import vision_tower
from .arguments import GenViewTrainingArguments
from .quality_modes import load_direction

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- models
def load_model(name: str, from_scratch: bool = False) -> tuple[torch.nn.Module, Any]:
    """(model, processor) from a Hub id or a local folder; a CLIP checkpoint gives the
    ``CLIPModel`` and its ``CLIPProcessor``. ``from_scratch``: the architecture from the config
    with random weights (the papers pre-train from scratch)."""
    config = AutoConfig.from_pretrained(name)
    if config.model_type == "clip":
        processor = CLIPProcessor.from_pretrained(name)
        model = CLIPModel(config) if from_scratch else CLIPModel.from_pretrained(name)
        return model, processor
    processor = AutoImageProcessor.from_pretrained(name)
    model = AutoModel.from_config(config) if from_scratch else AutoModel.from_pretrained(name)
    return model, processor


def ssl_model(args: GenViewTrainingArguments) -> tuple[GenViewModel, Any]:
    """The SSL wrapper of ``args.method`` around ``args.model_name_or_path``, and the image processor."""
    backbone, processor = load_model(args.model_name_or_path, args.from_scratch)
    processor = getattr(processor, "image_processor", processor)  # a CLIP checkpoint as backbone
    model = GenViewModel.from_backbone(
        backbone,
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
        apply_lora(model, args)
    return model, processor


def clip_model(args: GenViewTrainingArguments) -> tuple[GenViewCLIPModel, CLIPProcessor]:
    """The image-text wrapper of ``args.method`` around the CLIPModel ``args.model_name_or_path``."""
    clip, processor = load_model(args.model_name_or_path, args.from_scratch)
    if not isinstance(clip, CLIPModel):
        raise ValueError(
            f"method {args.method!r} needs a CLIP model; {args.model_name_or_path} is {type(clip).__name__}"
        )
    model = GenViewCLIPModel.from_clip(clip, method=args.method)
    if args.use_peft:
        apply_lora(model, args)
    return model, processor


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


def quality_model(args: GenViewTrainingArguments) -> tuple[torch.nn.Module | None, torch.Tensor | None]:
    """The frozen model of ``quality_mode=frozen`` (a whole CLIPModel for GenView++, else its vision
    tower) and the fixed foreground direction when ``args.quality_direction`` names one."""
    if args.quality_mode != "frozen":
        return None, None
    model, _ = load_model(args.quality_model, from_scratch=False)
    if args.multi_positive and not isinstance(model, CLIPModel):
        raise ValueError(
            f"GenView++ weights need a CLIP quality_model; {args.quality_model} is {type(model).__name__}"
        )
    direction = load_direction(args.quality_direction) if args.quality_direction else None
    return (model if args.multi_positive else vision_tower(model)), direction


# ---------------------------------------------------------------------------------- data
def views_dataset(dataset, args: GenViewTrainingArguments, where: str = "the dataset"):
    """A views dataset ready for ``args``: its source columns under the contract's names
    (``image_column`` -> ``image``, ``caption_column`` -> ``caption``), checked for what the method
    and the quality mode read (clear errors naming the column or row before any step)."""
    dataset = to_contract_columns(dataset, args.image_column, args.caption_column)
    try:
        validate_views_dataset(
            dataset,
            args.method,
            multi_positive=args.multi_positive,
            view_columns=view_columns(args, list(dataset.column_names)),
            masks=args.needs_masks,
            max_rows=64,
        )
    except ValueError as error:
        context = f"method {args.method!r}" + (", quality_mode='stored'" if args.needs_masks else "")
        raise ValueError(f"{where} cannot train {context}: {error}") from error
    return dataset


def view_columns(args: GenViewTrainingArguments, column_names: list[str]) -> list[str] | None:
    """The generated columns ``args.view_mode`` asks for (None: every one present)."""
    if args.view_mode is None:
        return None
    if args.view_mode == "none":
        return []
    found = generated_columns(column_names, [schema.view_column(args.view_mode)])
    if not found:
        raise ValueError(f"view_mode {args.view_mode!r}: the dataset has no column view_{args.view_mode}")
    return found


def collator(args: GenViewTrainingArguments, processor: Any, train_dataset):
    """The collator of ``args.method``: its augmentation preset, the processor's pixel statistics,
    the generated columns of ``args.view_mode`` and the stored masks when the quality mode reads them."""
    kwargs: dict[str, Any] = dict(
        image_size=args.image_size,
        generated_view_prob=args.generated_view_prob,
        view_columns=view_columns(args, list(train_dataset.column_names)),
    )
    if args.multi_positive:
        kwargs.pop("generated_view_prob")  # every generated view is used
        return build_collator(
            args.method, tokenizer=processor, multi_positive=True, masks=args.needs_masks, **kwargs
        )
    if args.method == "clip":
        return build_collator(args.method, tokenizer=processor, **kwargs)
    if args.method == "slip":
        return build_collator(args.method, tokenizer=processor, masks=args.needs_masks, **kwargs)
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if mean is not None and std is not None:
        kwargs.update(mean=mean, std=std)
    return build_collator(args.method, masks=args.needs_masks, **kwargs)


def knn_monitor(args: GenViewTrainingArguments, dataset_name: str, dataset_config: str | None = None):
    """The kNN monitor on ``args.knn_monitor_split`` of the dataset, or None when it is off."""
    if not args.knn_monitor_split:
        return None
    from ..evaluation.callbacks import KNNMonitorCallback

    split = to_contract_columns(
        load_split(dataset_name, args.knn_monitor_split, dataset_config),
        args.image_column,
        args.caption_column,
    )
    return KNNMonitorCallback(
        split, every_n_steps=args.knn_monitor_steps, label_column=args.label_column, seed=args.seed
    )


def resume_checkpoint(args: GenViewTrainingArguments) -> str | None:
    """``resume_from_checkpoint`` resolved: ``true``/``last`` is the newest ``checkpoint-*`` of
    the output folder (a warning and a fresh start when there is none)."""
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
