"""The building blocks of a training run, shared by ``recipes/train_genview.py`` (and so
``genview train``) and the demo: load a model, prepare the views dataset, build the collator, the
frozen quality model and the kNN monitor, resolve a resume.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor
from transformers.trainer_utils import sort_checkpoints

from ..config import ScriptArguments
from ..data import schema
from ..data.collators import build_collator
from ..data.loading import load_split
from ..data.views import (
    ROW_INDEX,
    generated_columns,
    incomplete_rows,
    mask_column_for,
    to_contract_columns,
    undecoded_images,
    validate_views_dataset,
)
from ..integrity import DamagedFileError, check_file, file_damage, unsafe_pickle
from ..methods import get_method
from ..modeling import GenViewCLIPModel, GenViewModel
from ..modeling.features import backbone_feature_dim, vision_tower
from ..preflight import check_model_source
from .arguments import GenViewTrainingArguments, ModelArguments
from .frozen_quality import BATCH_DIRECTION, load_direction
from .trainer import missing_checkpoint_files

CHECKED_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".json")

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- models
def load_model(
    name: str, from_scratch: bool = False, setting: str = "model_name_or_path"
) -> tuple[torch.nn.Module, Any]:
    """(model, processor) from a Hub id or a local folder; a CLIP checkpoint gives the
    ``CLIPModel`` and its ``CLIPProcessor``. ``from_scratch``: the architecture from the config
    with random weights (the papers pre-train from scratch). A local folder that cannot load is
    named with ``setting`` first."""
    check_model_source(name, setting)
    config = AutoConfig.from_pretrained(name)
    if config.model_type == "clip":
        processor = CLIPProcessor.from_pretrained(name)
        model = CLIPModel(config) if from_scratch else CLIPModel.from_pretrained(name)
        return model, processor
    processor = AutoImageProcessor.from_pretrained(name)
    model = AutoModel.from_config(config) if from_scratch else AutoModel.from_pretrained(name)
    return model, processor


def ssl_model(args: ModelArguments, method: str) -> tuple[GenViewModel, Any]:
    """The SSL wrapper of ``method`` around ``args.model_name_or_path``, and the image processor."""
    backbone, processor = load_model(args.model_name_or_path, args.from_scratch)
    processor = getattr(processor, "image_processor", processor)  # a CLIP checkpoint as backbone
    model = GenViewModel.from_backbone(
        backbone,
        method=method,
        proj_hidden_dim=args.proj_hidden_dim,
        proj_dim=args.proj_dim,
        proj_layers=args.proj_layers,
        pred_hidden_dim=args.pred_hidden_dim,
        pooling=args.pooling,
        queue_size=args.queue_size,
        use_hallucinator=args.use_hallucinator,
        pred_last_bn=args.pred_last_bn,
        freeze_patch_projection=args.freeze_patch_projection,
        shuffle_bn=args.shuffle_bn,
        shuffle_bn_groups=args.shuffle_bn_groups,
    )
    if args.use_peft:
        apply_lora(model, args)
    _record_origin(model, args)
    return model, processor


def clip_model(args: ModelArguments, method: str) -> tuple[GenViewCLIPModel, CLIPProcessor]:
    """The image-text wrapper of ``method`` around the CLIPModel ``args.model_name_or_path``."""
    clip, processor = load_model(args.model_name_or_path, args.from_scratch)
    if not isinstance(clip, CLIPModel):
        raise ValueError(
            f"method {method!r} needs a CLIP model; {args.model_name_or_path} is {type(clip).__name__}"
        )
    model = GenViewCLIPModel.from_clip(clip, method=method)
    if args.use_peft:
        apply_lora(model, args)
    _record_origin(model, args)
    return model, processor


def train_model(args: ModelArguments, method: str) -> tuple[GenViewModel | GenViewCLIPModel, Any]:
    """The wrapper ``method`` trains (``clip_model`` for image-text methods, else ``ssl_model``) and
    its processor."""
    build = clip_model if get_method(method).is_image_text else ssl_model
    return build(args, method)


def _record_origin(model: GenViewModel | GenViewCLIPModel, args: ModelArguments) -> None:
    """The wrapper's config names what its encoder was built from, for the model card: the id or folder
    (``_name_or_path``, as ``from_pretrained`` sets it) and whether its weights were loaded."""
    model.config._name_or_path = args.model_name_or_path
    model.config.pretrained_encoder = not args.from_scratch


def apply_lora(model: GenViewModel | GenViewCLIPModel, args: ModelArguments) -> None:
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
    """The frozen model of ``quality_mode=frozen`` as loaded (a CLIPModel whole: GenView++ reads both
    towers, the other methods its vision tower; the trainer finds its image processor from its
    folder), and the foreground direction when ``args.quality_direction`` names a file or folder,
    checked against the model's token width. Otherwise None: the trainer fits one at the start of
    training, or for ``batch`` uses each batch's own (``training.frozen_quality.run_direction``)."""
    if args.quality_mode != "frozen":
        return None, None
    if not args.quality_model:
        raise ValueError(
            "quality_mode='frozen' needs quality_model, the frozen vision model's Hub id or folder (the shipped "
            "configs: openai/clip-vit-base-patch16), or use quality_mode='stored' or 'off'"
        )
    model, _ = load_model(args.quality_model, from_scratch=False, setting="quality_model")
    if args.multi_positive and not isinstance(model, CLIPModel):
        raise ValueError(
            f"GenView++ weights need a CLIP quality_model; {args.quality_model} is {type(model).__name__}"
        )
    direction = None
    if args.quality_direction and args.quality_direction != BATCH_DIRECTION:
        width = backbone_feature_dim(vision_tower(model).config)
        direction = load_direction(args.quality_direction, width)
    return model, direction


# ---------------------------------------------------------------------------------- data
def views_dataset(
    dataset,
    args: GenViewTrainingArguments,
    where: str = "the dataset",
    image_column: str = schema.IMAGE,
    caption_column: str = schema.CAPTION,
):
    """A views dataset ready for ``args``: its source columns under the contract's names
    (``image_column`` -> ``image``, ``caption_column`` -> ``caption``; ``ScriptArguments`` names
    them), checked for what the method and the quality mode read (clear errors naming the column or
    row before any step)."""
    dataset = to_contract_columns(dataset, image_column, caption_column)
    names = list(dataset.column_names)
    if ROW_INDEX not in names:  # each row's index in this dataset: error messages and augmentation seeds
        dataset = dataset.add_column(ROW_INDEX, range(len(dataset)))
    context = f"method {args.method!r}" + (", quality_mode='stored'" if args.needs_masks else "")
    try:
        views = view_columns(args, names)
        columns = read_columns(args, names, views)
        dataset = without_incomplete_rows(dataset, columns, args, where)
        # The collators decode the stored bytes themselves: a file that does not decode is named by its row.
        dataset = undecoded_images(dataset, columns)
        validate_views_dataset(
            dataset,
            args.method,
            multi_positive=args.multi_positive,
            view_columns=views,
            masks=args.needs_masks,
            max_rows=64,
        )
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where} cannot train {context}: {error}") from error
    return dataset


def read_columns(args: GenViewTrainingArguments, names: list[str], views: list[str] | None) -> list[str]:
    """The columns of ``names`` that the run's collator reads: images, views, their masks, captions."""
    images = [schema.IMAGE, *generated_columns(names, views)]
    columns = images + ([mask_column_for(column) for column in images] if args.needs_masks else [])
    if args.is_image_text or args.multi_positive:
        columns.append(schema.CAPTION)
    return [column for column in columns if column in names]  # a missing one is named by the check


def without_incomplete_rows(dataset, columns: list[str], args: GenViewTrainingArguments, where: str):
    """``dataset`` without the rows that have a null in ``columns`` (``skip_incomplete_rows``), or a
    ValueError naming them."""
    missing = incomplete_rows(dataset, columns)
    if not missing:
        return dataset
    shown = ", ".join(str(row) for row in missing[:10]) + (", ..." if len(missing) > 10 else "")
    if not args.skip_incomplete_rows:
        raise ValueError(
            f"{len(missing)} of {len(dataset)} rows have no value in some of {', '.join(columns)} (rows {shown}; "
            "generation lists why in failures.jsonl): set skip_incomplete_rows to train without them"
        )
    logger.warning(
        "%s: leaving out %d of %d rows without a value in some of %s (rows %s; generation lists why in "
        "failures.jsonl)",
        where,
        len(missing),
        len(dataset),
        ", ".join(columns),
        shown,
    )
    skipped = set(missing)
    return dataset.select([index for index in range(len(dataset)) if index not in skipped])


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


def collator(args: GenViewTrainingArguments, processor: Any, train_dataset, use_hallucinator: bool = False):
    """The collator of ``args`` (``data.collators.build_collator`` picks it): the method's augmentation
    preset, the processor's pixel statistics (an image processor's; CLIP's come with its processor),
    the generated columns of ``args.view_mode``, the stored masks when the quality mode reads them,
    each view's geometric version with ``quality_views="geometric"``, each row's index with
    ``quality_weighting="row_memory"``. ``use_hallucinator`` (``ModelArguments``): the default of
    ``query_center_box``."""
    statistics = {name: getattr(processor, f"image_{name}", None) for name in ("mean", "std")}
    return build_collator(
        args.method,
        tokenizer=processor if args.is_image_text else None,
        multi_positive=args.multi_positive,
        geometric_views=args.quality_views == "geometric",
        row_indices=args.quality_weighting == "row_memory",
        masks=args.needs_masks,
        crop_scale=tuple(args.crop_scale) if args.crop_scale is not None else None,
        query_center_box=use_hallucinator if args.query_center_box is None else args.query_center_box,
        image_size=args.image_size,
        generated_view_prob=args.generated_view_prob,
        view_columns=view_columns(args, list(train_dataset.column_names)),
        **{name: value for name, value in statistics.items() if value is not None},
    )


def knn_monitor(args: GenViewTrainingArguments, script_args: ScriptArguments):
    """The kNN monitor on ``args.knn_monitor_split`` of the script's dataset, or None when it is off."""
    if not args.knn_monitor_split:
        return None
    from ..evaluation.callbacks import KNNMonitorCallback

    split = to_contract_columns(
        load_split(script_args.dataset_name, args.knn_monitor_split, script_args.dataset_config),
        script_args.image_column,
        script_args.caption_column,
    )
    return KNNMonitorCallback(
        split, every_n_steps=args.knn_monitor_steps, label_column=script_args.label_column, seed=args.seed
    )


def resume_checkpoint(args: GenViewTrainingArguments) -> str | None:
    """``resume_from_checkpoint`` resolved: ``true``/``last`` is the newest complete ``checkpoint-*``
    of the output folder whose files are whole (one a kill or a full disk cut short is passed over,
    with a warning naming the file and why; a warning and a fresh start when there is none). A
    folder named explicitly is refused naming a damaged file here, a missing one when the Trainer
    loads it."""
    value = args.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() not in ("true", "last"):
        if Path(value).is_dir():  # missing files are named by the Trainer's load, damaged ones here
            for file in checkpoint_files(value):
                try:
                    check_file(file, "checkpoint file")
                except DamagedFileError as error:
                    raise DamagedFileError(
                        f"{error}; or resume with resume_from_checkpoint=true, which passes over damaged checkpoints"
                    ) from None
            check_pickles(Path(value))
        return str(value)
    checkpoints = sort_checkpoints(args.output_dir) if Path(args.output_dir).is_dir() else []
    for checkpoint in reversed(checkpoints):  # newest first
        missing = missing_checkpoint_files(checkpoint)
        damaged = {file.name: file_damage(file) for file in checkpoint_files(checkpoint)}
        damaged = {name: why for name, why in damaged.items() if why is not None}
        if not missing and not damaged:
            check_pickles(Path(checkpoint))
            return checkpoint
        why = [f"it has no {', '.join(missing)} (a save cut short)"] if missing else []
        why += [f"its {name} is damaged: {reason}" for name, reason in damaged.items()]
        logger.warning("passing over %s: %s", checkpoint, "; ".join(why))
    logger.warning(
        "resume requested but %s has no complete checkpoint-*: starting from scratch", args.output_dir
    )
    return None


def check_pickles(folder: Path) -> None:
    """The training state a resume unpickles (optimizer, scheduler, RNG states) must load weights-only:
    one that does not is named (torch's own refusal names no file and spans a page)."""
    for file in sorted(folder.glob("*.pt")) + sorted(folder.glob("rng_state*.pth")):
        reason = unsafe_pickle(file)
        if reason is not None:
            raise DamagedFileError(
                f"checkpoint file {file} is refused: {reason}; resume from a checkpoint you trust"
            )


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The files of a checkpoint that a resume reads and :func:`genview_hf.integrity.file_damage` can check."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in CHECKED_SUFFIXES)
