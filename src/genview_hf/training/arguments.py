"""``GenViewTrainingArguments``: every run setting of GenView training in one dataclass.

Parsed by ``HfArgumentParser`` through ``genview_hf.config.parse_config`` (YAML ``--config``
plus flags). Architecture lives in the model's ``PretrainedConfig``; these are the run's knobs.
Defaults quote the papers beside the number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from ..modeling.configuration_genview import CLIP_METHODS, SSL_METHODS, check_choice

METHODS = SSL_METHODS + CLIP_METHODS
QUALITY_MODES = ("frozen", "stored", "off")
MOMENTUM_SCHEDULES = ("cosine", "constant")


@dataclass
class GenViewTrainingArguments(TrainingArguments):
    # --- what to train -------------------------------------------------------------------
    method: str = field(
        default="mocov3",
        metadata={
            "help": "mocov2 | mocov3 | simsiam | byol | simclr | leoclr (image SSL) or clip | slip (image-text)"
        },
    )
    model_name_or_path: str = field(
        default="google/vit-base-patch16-224-in21k",
        metadata={
            "help": "Backbone (SSL) or CLIPModel (clip/slip): a Hub id, a local folder, or a tiny offline component "
            "(tiny-vit, tiny-resnet, tiny-clip)."
        },
    )
    from_scratch: bool = field(
        default=True,
        metadata={
            "help": "Random weights from the model's config (the papers pre-train from scratch); "
            "False loads the pretrained weights."
        },
    )
    pooling: str = field(
        default="auto", metadata={"help": "auto | cls | mean | pooler: one vector per image"}
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
    queue_size: int = field(
        default=65536, metadata={"help": "MoCo v2 / LeOCLR queue of negatives (MoCo v2: 65536)"}
    )
    use_hallucinator: bool = field(
        default=False,
        metadata={"help": "Add Hallucinator feature-space positives (mocov2, mocov3, simsiam, byol)"},
    )
    # --- data ------------------------------------------------------------------------------
    dataset_name: str = field(
        default="sample:shapes",
        metadata={
            "help": "A views dataset: Hub id, local folder (load_from_disk or data files) or sample:<name>"
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name"})
    train_split: str = field(default="train", metadata={"help": "Split to train on"})
    eval_split: str | None = field(
        default=None, metadata={"help": "Split for the eval loss (None: no evaluation)"}
    )
    image_column: str = field(default="image", metadata={"help": "Column of the source images"})
    caption_column: str = field(default="caption", metadata={"help": "Column of the captions (clip/slip)"})
    view_mode: str | None = field(
        default=None,
        metadata={"help": "Generated views to use: ic | tc | itc (None: the first present; none: real only)"},
    )
    generated_view_prob: float = field(
        default=1.0,
        metadata={
            "help": "Probability that one view of a pair comes from the generated image (GenView: 1.0)"
        },
    )
    image_size: int = field(default=224, metadata={"help": "Crop size of the training views (papers: 224)"})
    knn_monitor_split: str | None = field(
        default=None,
        metadata={"help": "A labelled split of the dataset for the kNN monitor (logs knn_top1; None: off)"},
    )
    knn_monitor_steps: int = field(default=100, metadata={"help": "kNN monitor every N optimizer steps"})
    label_column: str = field(default="label", metadata={"help": "Label column of the kNN monitor split"})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate the training set (debugging)"}
    )
    # --- objective ---------------------------------------------------------------------------
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "Contrastive temperature (None: method default; MoCo v3 ViT 0.2, R50 1.0; MoCo v2 0.2; "
            "SimCLR 0.1; SLIP's SimCLR term 0.1)"
        },
    )
    ssl_scale: float = field(default=1.0, metadata={"help": "SLIP: weight of the SimCLR term (SLIP: 1.0)"})
    multi_positive: bool = field(
        default=False,
        metadata={
            "help": "GenView++ (clip/slip): the real image and all its generated views are positives of the caption"
        },
    )
    multi_positive_gamma: float = field(
        default=2.0,
        metadata={"help": "GenView++: gamma of the image-image and image-text weights (paper: 2)"},
    )
    loss_coefficients: list[float] = field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0],
        metadata={"help": "GenView++: c0 L_ii + c1 L_ii_QD + c2 L_it + c3 L_it_QD (paper: 1 1 1 1)"},
    )
    # --- quality-driven weights --------------------------------------------------------------
    quality_mode: str = field(
        default="frozen",
        metadata={
            "help": "frozen (paper: a frozen vision model's token map) | stored (stored masks + the training "
            "model's own detached tokens, no extra forward) | off"
        },
    )
    quality_model: str = field(
        default="openai/clip-vit-base-patch16",
        metadata={
            "help": "Frozen vision model for quality_mode=frozen (any HF vision model; official code: a CLIP "
            "ConvNeXt-Base). tiny-clip / tiny-vit for offline runs."
        },
    )
    quality_direction: str | None = field(
        default=None,
        metadata={
            "help": "A .pt/.npy file with the foreground direction v for the frozen model's tokens (None: the "
            "first principal component of each batch's tokens)"
        },
    )
    gamma: float = field(
        default=1.0, metadata={"help": "Sharpness of the pair weights softmax (GenView: 1.0)"}
    )
    # --- momentum encoder -------------------------------------------------------------------
    momentum: float = field(
        default=0.99,
        metadata={
            "help": "Base momentum of the key/target encoder (MoCo v3: 0.99; MoCo v2: 0.999; BYOL: 0.996)"
        },
    )
    momentum_end: float = field(
        default=1.0, metadata={"help": "Final momentum of the cosine schedule (MoCo v3, BYOL: 1.0)"}
    )
    momentum_schedule: str = field(default="cosine", metadata={"help": "cosine | constant"})
    sync_batchnorm: bool = field(
        default=True,
        metadata={"help": "Convert BatchNorm to SyncBatchNorm when training on several CUDA processes"},
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
    # --- output ------------------------------------------------------------------------------
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": "transformers' filter tests every step's loss on the host (a GPU sync per step); "
            "off here, so a NaN loss shows in the logs"
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collators read image, view and mask columns"}
    )

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("quality_mode", self.quality_mode, QUALITY_MODES)
        check_choice("momentum_schedule", self.momentum_schedule, MOMENTUM_SCHEDULES)
        if not 0.0 <= self.generated_view_prob <= 1.0:
            raise ValueError(f"generated_view_prob must be in [0, 1], got {self.generated_view_prob}")
        if not 0.0 <= self.momentum <= 1.0 or not 0.0 <= self.momentum_end <= 1.0:
            raise ValueError(
                f"momentum and momentum_end must be in [0, 1], got {self.momentum}, {self.momentum_end}"
            )
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if len(self.loss_coefficients) != 4:
            raise ValueError(f"loss_coefficients needs 4 values (c0 c1 c2 c3), got {self.loss_coefficients}")
        if self.multi_positive and self.method not in CLIP_METHODS:
            raise ValueError(
                f"multi_positive is GenView++ image-text training: method must be clip or slip, not {self.method!r}"
            )
        if self.method in CLIP_METHODS and not self.multi_positive and self.quality_mode != "off":
            if not (self.method == "slip" and self.quality_mode == "frozen"):
                raise ValueError(
                    f"quality_mode={self.quality_mode!r} with method {self.method!r} needs --multi_positive "
                    "(GenView++ weights); without it only slip + frozen (weights on the SSL pair) or off"
                )
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns must stay False: the collators read the raw image/view/mask columns"
            )
        if self.label_names is None:
            self.label_names = []  # eval loss without labels
        if self.ddp_find_unused_parameters is None:
            self.ddp_find_unused_parameters = False  # every trainable parameter takes part in each loss
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not self.use_cpu:
            # Under `accelerate launch --multi_gpu` on a machine without CUDA the Trainer would run
            # each process on its own (no DDP); use_cpu makes it a real multi-CPU (gloo) run.
            self.use_cpu = True
        super().__post_init__()

    @property
    def is_clip(self) -> bool:
        return self.method in CLIP_METHODS
