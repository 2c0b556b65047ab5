"""The method table: everything genview_hf knows about each training method, in one place.

Each ``Method`` holds a method's name, kind (image SSL or image-text), default temperature,
head shapes, augmentation preset, capabilities (momentum encoder, queue, predictor,
Hallucinator) and the run defaults that differ between methods (momentum and its schedule,
shuffled batch norm for the keys, a fixed predictor learning rate, a frozen patch projection).
The model configs, the arguments, the collators, the trainer's loss and the docs read it;
nothing else lists methods. Values quote the papers and their official code.

Adding a method touches six files: its loss in ``losses.py`` with a test against a naive
reference in ``tests/test_losses.py``, its row here, its branch in ``GenViewTrainer.objective``,
a config under ``recipes/configs/`` and a line in ``docs/training.md``; a seventh,
``GenViewModel.forward``, when it needs other forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from .data.augment import (
    BYOL_1,
    BYOL_2,
    CLIP_VIEW,
    LEOCLR_ORIGINAL,
    MOCOV2,
    SIMCLR,
    SLIP_SSL,
    MethodAugmentations,
)

MethodName = Literal["mocov2", "mocov3", "simsiam", "byol", "simclr", "leoclr", "clip", "slip"]


@dataclass(frozen=True)
class Heads:
    """MLP heads on the pooled backbone feature: a projector and, when ``pred_hidden_dim`` > 0,
    a 2-layer predictor. ``batchnorm``: BN after each hidden layer; ``last_bn``: a non-affine BN
    ends the projector (MoCo v3, SimSiam); ``pred_last_bn``: one ends the predictor (MoCo v3
    ViT); ``bias``: linear layers not followed by a BN keep a bias (False: no linear layer has
    one, as in MoCo v3's ``_build_mlp``)."""

    proj_hidden_dim: int
    proj_dim: int
    proj_layers: int
    pred_hidden_dim: int = 0
    batchnorm: bool = True
    last_bn: bool = False
    pred_last_bn: bool = False
    bias: bool = True


@dataclass(frozen=True)
class Method:
    """One training method; ``kind`` is ``ssl`` (pairs of image views) or ``image_text`` (captions)."""

    name: str
    kind: Literal["ssl", "image_text"]
    paper: str
    heads: Heads  # image-text methods: SLIP's image SSL head (CLIP has none)
    augmentations: MethodAugmentations
    temperature: float | None  # None: the loss has no temperature (SimSiam, BYOL)
    momentum_encoder: bool = False  # a momentum (key / target) copy of backbone and projector
    queue: bool = False  # a queue of negatives (MoCo v2 style)
    hallucinator: bool = False  # its loss reads the Hallucinator's extra positives
    momentum: float | None = None  # base momentum of the momentum encoder (None: it has none)
    momentum_schedule: Literal["cosine", "constant"] = "cosine"  # cosine: from momentum to 1
    shuffle_bn: bool = False  # keys through batch norm in shuffled sub-batches (MoCo's shuffling BN)
    fixed_predictor_lr: bool = False  # the predictor keeps the base learning rate (SimSiam's fix_pred_lr)
    freeze_patch_projection: bool = False  # a ViT's random patch projection stays frozen (stop_grad_conv1)

    @property
    def predictor(self) -> bool:
        return self.heads.pred_hidden_dim > 0

    @property
    def is_image_text(self) -> bool:
        return self.kind == "image_text"


_TABLE = (
    # MoCo v2 (official main_moco.py --mlp --aug-plus): 2-layer MLP 2048 -> 128 without BN,
    # tau 0.2, a queue of K = 65536 keys, momentum 0.999 constant (--moco-m), keys through
    # shuffled BN (moco/builder.py, _batch_shuffle_ddp / _batch_unshuffle_ddp).
    Method(
        "mocov2",
        "ssl",
        "Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning",
        Heads(2048, 128, 2, batchnorm=False),
        MethodAugmentations(view_1=MOCOV2, view_2=MOCOV2),
        temperature=0.2,
        momentum_encoder=True,
        queue=True,
        hallucinator=True,
        momentum=0.999,
        momentum_schedule="constant",
        shuffle_bn=True,
    ),
    # MoCo v3 ViT (moco-v3 moco/builder.py MoCo_ViT, vits.py): 3-layer projector 4096 -> 256 and
    # 2-layer predictor 4096, both ending in a non-affine BN, no linear layer with a bias
    # (_build_mlp), tau 0.2, momentum 0.99 cosine to 1, frozen random patch projection
    # (--stop-grad-conv1; GenView's ViT-B config: stop_grad_conv1=True). Its ResNet-50 recipe
    # (MoCo_ResNet): 2-layer projector, predictor without the last BN, tau 1.0, set in the config.
    Method(
        "mocov3",
        "ssl",
        "Chen, Xie & He 2021, An Empirical Study of Training Self-Supervised Vision Transformers",
        Heads(4096, 256, 3, pred_hidden_dim=4096, last_bn=True, pred_last_bn=True, bias=False),
        MethodAugmentations(view_1=BYOL_1, view_2=BYOL_2),
        temperature=0.2,
        momentum_encoder=True,
        hallucinator=True,
        momentum=0.99,
        momentum_schedule="cosine",
        freeze_patch_projection=True,
    ),
    # SimSiam (simsiam/builder.py): 3-layer projector 2048 with BN (the last non-affine),
    # predictor bottleneck 512 whose output layer keeps its bias; the predictor's learning rate
    # stays at the base value (main_simsiam.py --fix-pred-lr; GenView's config: fix_pred_lr=True).
    Method(
        "simsiam",
        "ssl",
        "Chen & He 2021, Exploring Simple Siamese Representation Learning",
        Heads(2048, 2048, 3, pred_hidden_dim=512, last_bn=True),
        MethodAugmentations(view_1=MOCOV2, view_2=MOCOV2),
        temperature=None,
        hallucinator=True,
        fixed_predictor_lr=True,
    ),
    # BYOL: projector and predictor 4096 -> 256, 2 layers with BN, momentum target with
    # tau_base 0.996, cosine to 1 (Grill et al. 2020, Sec. 3.2).
    Method(
        "byol",
        "ssl",
        "Grill et al. 2020, Bootstrap Your Own Latent",
        Heads(4096, 256, 2, pred_hidden_dim=4096),
        MethodAugmentations(view_1=BYOL_1, view_2=BYOL_2),
        temperature=None,
        momentum_encoder=True,
        hallucinator=True,
        momentum=0.996,
        momentum_schedule="cosine",
    ),
    # SimCLR v1: 2-layer MLP 2048 -> 128 with BN; tau 0.1 at large batch.
    Method(
        "simclr",
        "ssl",
        "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
        Heads(2048, 128, 2),
        MethodAugmentations(view_1=SIMCLR, view_2=SIMCLR),
        temperature=0.1,
    ),
    # LeOCLR builds on MoCo v2: same head, queue, tau, momentum and shuffled BN; the query
    # encoder sees the whole original.
    Method(
        "leoclr",
        "ssl",
        "Alkhalefi et al. 2024, LeOCLR: Leveraging Original Images for Contrastive Learning",
        Heads(2048, 128, 2, batchnorm=False),
        MethodAugmentations(view_1=MOCOV2, view_2=MOCOV2, original=LEOCLR_ORIGINAL),
        temperature=0.2,
        momentum_encoder=True,
        queue=True,
        momentum=0.999,
        momentum_schedule="constant",
        shuffle_bn=True,
    ),
    # CLIP: symmetric image-text cross-entropy with a learnable logit scale. ``temperature`` is
    # that of GenView++'s image-image term between a caption's views (SLIP's 0.1).
    Method(
        "clip",
        "image_text",
        "Radford et al. 2021, Learning Transferable Visual Models From Natural Language Supervision",
        Heads(4096, 256, 3),
        MethodAugmentations(image=CLIP_VIEW),
        temperature=0.1,
    ),
    # SLIP: CLIP + SimCLR on two more views through a 3-layer MLP 4096 -> 256 with BN, tau 0.1.
    Method(
        "slip",
        "image_text",
        "Mu et al. 2022, SLIP: Self-supervision meets Language-Image Pre-training",
        Heads(4096, 256, 3),
        MethodAugmentations(image=CLIP_VIEW, view_1=SLIP_SSL, view_2=SLIP_SSL),
        temperature=0.1,
    ),
)
METHODS: dict[str, Method] = {method.name: method for method in _TABLE}
assert tuple(METHODS) == get_args(MethodName), "the method table and MethodName must list the same methods"

SSL_METHODS = tuple(name for name, method in METHODS.items() if method.kind == "ssl")
IMAGE_TEXT_METHODS = tuple(name for name, method in METHODS.items() if method.is_image_text)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming the setting and the choices."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(choices)}")
    return value


def get_method(name: str) -> Method:
    """The table row of ``name``; an unknown name is an error listing the methods."""
    return METHODS[check_choice("method", name, tuple(METHODS))]
