"""The settings of a training run, on TRL's split (``trl/scripts/dpo.py``):

- ``ModelArguments`` (TRL's ``ModelConfig``): which encoder, the method's heads, LoRA;
- ``GenViewTrainingArguments`` (TRL's ``DPOConfig``): what the trainer does each step;
- ``genview_hf.config.ScriptArguments``: the dataset, its splits and columns.

``genview_hf.config.parse_config`` reads the three from one YAML ``--config`` plus flags
(``HfArgumentParser`` flattens them). A setting left at None takes the method's value from the
method table (``genview_hf.methods``): the model's in its config (``GenViewConfig``), the
trainer's in ``GenViewTrainingArguments.__post_init__``. Fields with fixed choices are
``Literal``: ``--help`` lists them and a bad value is refused at parse time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

import torch
from transformers import TrainingArguments

from ..methods import (
    IMAGE_TEXT_METHODS,
    SSL_METHODS,
    Method,
    MethodName,
    check_choice,
    get_method,
)
from ..modeling.features import Pooling
from .quality_modes import QualityMode

ViewMode = Literal["ic", "tc", "itc", "none"]
MomentumSchedule = Literal["cosine", "constant"]
QualityForeground = Literal["direction", "masks"]
QualityViews = Literal["augmented", "geometric"]
QualityWeighting = Literal["softmax", "threshold", "rank_cut", "sigmoid", "annealed", "row_memory"]
CHOICES = {
    "quality_mode": get_args(QualityMode),
    "momentum_schedule": get_args(MomentumSchedule),
    "view_mode": get_args(ViewMode),
    "quality_foreground": get_args(QualityForeground),
    "quality_views": get_args(QualityViews),
    "quality_weighting": get_args(QualityWeighting),
}


@dataclass
class ModelArguments:
    """The model a run trains (TRL's ``ModelConfig``): the encoder, the method's heads around it
    (``None``: the method's paper value, resolved by ``GenViewConfig``) and LoRA adapters. No model
    is assumed: a config or ``--model_name_or_path`` names it."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Backbone (SSL) or CLIPModel (clip, slip): a Hub id or a local folder"},
    )
    from_scratch: bool = field(
        default=True,
        metadata={
            "help": "Random weights from the model's config (the papers pre-train from scratch); "
            "False loads the pretrained weights."
        },
    )
    pooling: Pooling = field(
        default="auto",
        metadata={
            "help": "One vector per image: auto (cls for ViT-like models, else the pooler), cls, mean, pooler"
        },
    )
    proj_hidden_dim: int | None = field(
        default=None, metadata={"help": "Projector width (None: the method's paper value)"}
    )
    proj_dim: int | None = field(
        default=None, metadata={"help": "Embedding size (None: the method's paper value)"}
    )
    proj_layers: int | None = field(
        default=None,
        metadata={"help": "Projector depth (None: paper value; MoCo v3 ResNet-50 uses 2, ViT 3)"},
    )
    pred_hidden_dim: int | None = field(
        default=None, metadata={"help": "Predictor width (None: paper value; 0: none)"}
    )
    pred_last_bn: bool | None = field(
        default=None,
        metadata={
            "help": "A non-affine BN ends the predictor (None: the method's; MoCo v3 ViT yes, moco-v3 "
            "MoCo_ViT; its ResNet-50 recipe no, MoCo_ResNet)"
        },
    )
    freeze_patch_projection: bool | None = field(
        default=None,
        metadata={
            "help": "Keep a ViT backbone's random patch projection frozen (MoCo v3's --stop-grad-conv1; None: "
            "on for mocov3 where the backbone has one)"
        },
    )
    queue_size: int = field(
        default=65536, metadata={"help": "MoCo v2 / LeOCLR queue of negatives (MoCo v2: 65536)"}
    )
    use_hallucinator: bool = field(
        default=False,
        metadata={"help": "Add Hallucinator feature-space positives (mocov2, mocov3, simsiam, byol)"},
    )
    shuffle_bn: bool | None = field(
        default=None,
        metadata={
            "help": "Keys through the momentum encoder's batch norm in shuffled sub-batches (MoCo's shuffling BN; "
            "None: on for mocov2 and leoclr)"
        },
    )
    shuffle_bn_groups: int = field(
        default=2, metadata={"help": "shuffle_bn in a single process: the keys' sub-batches (default 2)"}
    )
    # --- PEFT --------------------------------------------------------------------------------
    use_peft: bool = field(
        default=False, metadata={"help": "Train LoRA adapters on the backbone / CLIP (merged on save)"}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names to adapt (None: attention query/value projections)"}
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ValueError(
                "model_name_or_path is required: give it in the --config file or as --model_name_or_path"
            )


def split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One dict of run settings (as a YAML config holds them) split into ``ModelArguments``' fields
    and the others (``GenViewTrainingArguments``')."""
    model_fields = {f.name for f in fields(ModelArguments)}
    model = {name: value for name, value in settings.items() if name in model_fields}
    return model, {name: value for name, value in settings.items() if name not in model}


@dataclass
class GenViewTrainingArguments(TrainingArguments):
    # --- what to train -------------------------------------------------------------------
    method: MethodName = field(
        default="mocov3",
        metadata={
            "help": f"Image SSL ({', '.join(SSL_METHODS)}) or image-text ({', '.join(IMAGE_TEXT_METHODS)})"
        },
    )
    # --- data ------------------------------------------------------------------------------
    view_mode: ViewMode | None = field(
        default=None,
        metadata={
            "help": "Generated views to use: ic, tc, itc (None: every one present; none: real images only)"
        },
    )
    generated_view_prob: float = field(
        default=1.0,
        metadata={
            "help": "Probability that one view of a pair comes from the generated image (GenView: 1.0)"
        },
    )
    image_size: int = field(default=224, metadata={"help": "Crop size of the training views (papers: 224)"})
    crop_scale: list[float] | None = field(
        default=None,
        metadata={
            "help": "RandomResizedCrop area range of the SSL views, two values (None: the method's preset, "
            "MoCo v2 / SimSiam 0.2 1, MoCo v3 / BYOL 0.08 1; MoCo v3 ResNet-50: 0.2 1, --crop-min=.2)"
        },
    )
    query_center_box: bool | None = field(
        default=None,
        metadata={
            "help": "View 1 (the query) cropped around the centre box (0.2, 0.2, 0.8, 0.8), crop centre "
            "~ Beta(0.6, 0.6), as the Hallucinator's released configs (None: on with use_hallucinator)"
        },
    )
    knn_monitor_split: str | None = field(
        default=None,
        metadata={
            "help": "A labelled split of the dataset for the kNN monitor (logs knn_top1); off when unset, "
            "null, none or empty"
        },
    )
    knn_monitor_steps: int = field(default=100, metadata={"help": "kNN monitor every N optimizer steps"})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate the training set (debugging)"}
    )
    skip_incomplete_rows: bool = field(
        default=True,
        metadata={
            "help": "Leave out, with a logged count, the rows that lack an image, view, mask or caption the run "
            "reads (generation records such rows in failures.jsonl); False: refuse the dataset, naming them"
        },
    )
    # --- objective ---------------------------------------------------------------------------
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "Contrastive temperature (None: the method's; MoCo v3 ViT 0.2, R50 1.0; MoCo v2 0.2; "
            "SimCLR 0.1; SLIP's SimCLR term and GenView++'s image-image term 0.1)"
        },
    )
    ssl_scale: float = field(default=1.0, metadata={"help": "SLIP: weight of the SimCLR term (SLIP: 1.0)"})
    multi_positive: bool = field(
        default=False,
        metadata={
            "help": "GenView++ (clip, slip): the real image and all its generated views are positives of the caption"
        },
    )
    loss_coefficients: list[float] = field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0],
        metadata={"help": "GenView++: c0 L_ii + c1 L_ii_QD + c2 L_it + c3 L_it_QD (paper: 1 1 1 1)"},
    )
    # --- quality-driven weights --------------------------------------------------------------
    quality_mode: QualityMode = field(
        default="frozen",
        metadata={
            "help": "frozen (the papers: a frozen vision model's token map) | stored (our approximation: the "
            "stored masks and the training model's own detached tokens, no extra forward) | off"
        },
    )
    quality_model: str | None = field(
        default=None,
        metadata={
            "help": "Frozen vision model of quality_mode=frozen (any HF vision model; GenView++ needs a CLIPModel; "
            "official GenView code: a CLIP ConvNeXt-Base)"
        },
    )
    quality_direction: str | None = field(
        default=None,
        metadata={
            "help": "The one foreground direction of the frozen model's tokens: a views dataset's foreground/ "
            "folder or a .safetensors/.pt/.npy/.json vector (the official pca_vectors.npy too), as wide as the "
            "tokens. None: fitted once at the start of training on quality_direction_samples training images, "
            "saved as output_dir/quality_direction/ and reused on resume. 'batch': the first principal "
            "component of each batch's tokens (a row's weight then depends on its batch)"
        },
    )
    quality_direction_samples: int = field(
        default=10_000,
        metadata={
            "help": "Training images the frozen mode's foreground direction is fitted on when quality_direction "
            "is not given (the paper: 10,000; every image when the training set is smaller)"
        },
    )
    gamma: float | None = field(
        default=None,
        metadata={
            "help": "Sharpness of the quality weights (None: the paper's, 1 for GenView pairs, 2 for GenView++)"
        },
    )
    quality_foreground: QualityForeground = field(
        default="direction",
        metadata={
            "help": "frozen mode, GenView pairs: each view's foreground from the frozen tokens projected on the "
            "foreground direction (direction: the papers) or from the stored masks cropped with the view (masks: "
            "ours; needs the mask columns; no direction is fitted). See docs/efficacy.md"
        },
    )
    quality_views: QualityViews = field(
        default="augmented",
        metadata={
            "help": "frozen mode, GenView pairs: the frozen model sees the training views (augmented: the papers) "
            "or each view's crop and flip without its colour operations (geometric: ours, one more augmentation "
            "pass in the collator). See docs/efficacy.md"
        },
    )
    quality_center: bool = field(
        default=False,
        metadata={
            "help": "GenView pairs: subtract the batch's mean token before the cosines of q (ours; the papers: "
            "False). Spreads the cosines of non-negative (post-ReLU) features. See docs/efficacy.md"
        },
    )
    quality_weighting: QualityWeighting = field(
        default="softmax",
        metadata={
            "help": "GenView pairs: how the qualities q become weights. softmax: N softmax(gamma q) (the papers); "
            "ours, which can reach 0: threshold (q > 0 kept), rank_cut (the batch's top half), sigmoid (of the "
            "standardised q), annealed (softmax, gamma rising to 10), row_memory (each row's q averaged over "
            "its visits, then threshold). See docs/efficacy.md"
        },
    )
    # --- momentum encoder -------------------------------------------------------------------
    momentum: float | None = field(
        default=None,
        metadata={
            "help": "Base momentum of the key/target encoder (None: the method's; MoCo v2 and LeOCLR 0.999, "
            "MoCo v3 0.99, BYOL 0.996)"
        },
    )
    momentum_end: float = field(
        default=1.0, metadata={"help": "Final momentum of the cosine schedule (MoCo v3, BYOL: 1.0)"}
    )
    momentum_schedule: MomentumSchedule | None = field(
        default=None,
        metadata={
            "help": "cosine (base to momentum_end) or constant (None: the method's; MoCo v2 and LeOCLR "
            "constant, MoCo v3 and BYOL cosine)"
        },
    )
    sync_batchnorm: bool | None = field(
        default=None,
        metadata={
            "help": "Convert BatchNorm to SyncBatchNorm when training on several CUDA processes (None: on, "
            "except with shuffle_bn, which SyncBatchNorm would undo)"
        },
    )
    fixed_predictor_lr: bool | None = field(
        default=None,
        metadata={
            "help": "The predictor keeps the base learning rate while the rest follows the schedule (SimSiam's "
            "--fix-pred-lr; None: on for simsiam)"
        },
    )
    # --- output ------------------------------------------------------------------------------
    training_figures: bool = field(
        default=True,
        metadata={
            "help": "Write the quality weights over training, the highest/lowest-weighted pairs and the kNN "
            "curve as PNGs into output_dir, linked from the model card"
        },
    )
    nan_check_steps: int = field(
        default=1,
        metadata={
            "help": "Read the non-finite loss guard on the host every N steps (one device sync each) and before "
            "every log, save and evaluation; 1 stops before the first bad update, N > 1 keeps the steps in "
            "between free of syncs and stops at the next check, naming the first non-finite step"
        },
    )
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": "transformers' filter tests every step's loss on the host (a GPU sync per step); "
            "off here, so a NaN loss shows in the logs"
        },
    )
    dataloader_drop_last: bool = field(
        default=True,
        metadata={
            "help": "Drop the last incomplete batch (default True here: a last batch of one sample has no "
            "in-batch negatives and breaks batch norm, so a dataset of length 1 mod the batch would fail)"
        },
    )

    def __post_init__(self) -> None:
        method = get_method(self.method)
        self._resolve_method_defaults(method)
        for (
            name,
            choices,
        ) in CHOICES.items():  # Literal fields: the parser checks flags, this the Python calls
            if getattr(self, name) is not None:
                check_choice(name, getattr(self, name), choices)
        if not 0.0 <= self.generated_view_prob <= 1.0:
            raise ValueError(f"generated_view_prob must be in [0, 1], got {self.generated_view_prob}")
        if self.nan_check_steps < 1:
            raise ValueError(f"nan_check_steps must be >= 1, got {self.nan_check_steps}")
        momentum_ok = self.momentum is None or 0.0 <= self.momentum <= 1.0
        if not momentum_ok or not 0.0 <= self.momentum_end <= 1.0:
            raise ValueError(
                f"momentum and momentum_end must be in [0, 1], got {self.momentum}, {self.momentum_end}"
            )
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        self._check_quality_options(method)
        if len(self.loss_coefficients) != 4:
            raise ValueError(f"loss_coefficients needs 4 values (c0 c1 c2 c3), got {self.loss_coefficients}")
        if self.multi_positive and not method.is_image_text:
            raise ValueError(
                f"multi_positive is GenView++ image-text training: method must be clip or slip, not {self.method!r}"
            )
        if self.method == "clip" and not self.multi_positive and self.quality_mode != "off":
            raise ValueError(
                f"quality_mode={self.quality_mode!r} with method 'clip' needs --multi_positive (GenView++ weights "
                "on the views of each caption); without it CLIP has no image pair to weight: use quality_mode=off"
            )
        if self.fixed_predictor_lr and not method.predictor:
            raise ValueError(f"fixed_predictor_lr: method {self.method!r} trains no predictor")
        if self.query_center_box and method.is_image_text:
            raise ValueError(f"query_center_box crops the query view of an SSL pair, not {self.method!r}")
        if self.crop_scale is not None:
            if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
                raise ValueError(f"crop_scale needs two values 0 < min <= max <= 1, got {self.crop_scale}")
            if method.is_image_text:
                raise ValueError(f"crop_scale sets the SSL views' crop, not {self.method!r}'s")
        if str(self.knn_monitor_split).strip().lower() in ("", "none", "null"):
            self.knn_monitor_split = None  # unset, or switched off from the command line
        if self.label_names is None:
            self.label_names = []  # eval loss without labels
        if self.ddp_find_unused_parameters is None:
            self.ddp_find_unused_parameters = False  # every trainable parameter takes part in each loss
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not self.use_cpu:
            # Under `accelerate launch --multi_gpu` on a machine without CUDA the Trainer would run
            # each process on its own (no DDP); use_cpu makes it a real multi-CPU (gloo) run.
            self.use_cpu = True
        super().__post_init__()

    def _resolve_method_defaults(self, method: Method) -> None:
        """Settings left at None take the method's value from the method table (``genview_hf.methods``),
        GenView's gamma (1 for pairs, 2 for GenView++'s multi-positive batches) and temperature."""
        if self.momentum is None:
            self.momentum = method.momentum  # stays None for methods without a momentum encoder
        if self.momentum_schedule is None:
            self.momentum_schedule = method.momentum_schedule
        if self.fixed_predictor_lr is None:
            self.fixed_predictor_lr = method.fixed_predictor_lr
        if self.temperature is None:
            self.temperature = method.temperature  # stays None for losses without one (SimSiam, BYOL)
        if self.gamma is None:
            self.gamma = 2.0 if self.multi_positive else 1.0

    def _check_quality_options(self, method: Method) -> None:
        """Our options of the quality weights: each needs the mode and the batches it acts on."""
        frozen_only = [
            f"{name}={value!r}"
            for name, value, default in (
                ("quality_foreground", self.quality_foreground, "direction"),
                ("quality_views", self.quality_views, "augmented"),
            )
            if value != default
        ]
        chosen = frozen_only + (["quality_center=True"] if self.quality_center else [])
        if self.quality_weighting != "softmax":
            chosen.append(f"quality_weighting={self.quality_weighting!r}")
            if self.quality_mode == "off":
                raise ValueError(
                    f"quality_weighting={self.quality_weighting!r} weights pairs, but quality_mode is 'off'"
                )
            if self.quality_weighting == "row_memory" and self.method == "leoclr":
                raise ValueError(
                    "quality_weighting='row_memory' keeps one quality per row; LeOCLR weighs two pairs per row"
                )
        if frozen_only and self.quality_mode != "frozen":
            raise ValueError(
                f"{', '.join(frozen_only)}: options of quality_mode='frozen', not {self.quality_mode!r} "
                "(stored mode always pools its forward's tokens with the masks)"
            )
        if self.quality_center and self.quality_mode == "off":
            raise ValueError("quality_center=True centres the weights' cosines, but quality_mode is 'off'")
        if chosen and (self.multi_positive or (method.is_image_text and self.method != "slip")):
            raise ValueError(
                f"{', '.join(chosen)} act on GenView pairs (SSL methods, SLIP's SSL pair), not on "
                + ("GenView++ multi-positive batches" if self.multi_positive else f"method {self.method!r}")
            )

    @property
    def is_image_text(self) -> bool:
        return get_method(self.method).is_image_text

    @property
    def needs_masks(self) -> bool:
        """The collator reads the stored masks for the ``stored`` quality mode and for the frozen mode's
        ``quality_foreground="masks"``."""
        masks_foreground = self.quality_mode == "frozen" and self.quality_foreground == "masks"
        return self.quality_mode == "stored" or masks_foreground
