"""``GenViewModel``: the state of image-only SSL as a ``PreTrainedModel``.

Any ``AutoModel`` vision backbone (ViT, ResNet, ConvNeXt, CLIP vision, DINOv2 ...) is kept as
the attribute ``backbone``, so that it can be saved on its own as a plain transformers model.
The method's heads, the momentum encoder and the MoCo queue are ordinary submodules and
buffers, so a ``checkpoint-*`` folder holds everything an exact resume needs. ``forward`` runs
the passes the method's loss reads and returns the embeddings (``GenViewSSLOutput``); the loss
itself is the trainer's (``GenViewTrainer.objective``).

Shapes: N pairs, 3 x H x W pixels, D = ``proj_dim``, T patch tokens of C channels, K queue size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel
from transformers.utils import ModelOutput

from .. import distributed
from ..methods import get_method
from .common import GenViewPreTrainedModel, build_mlp, l2_normalize
from .configuration_genview import GenViewConfig
from .features import (
    POOLING_CONFIG_KEY,
    backbone_feature_dim,
    encode_image,
    patch_projection,
    resolve_pooling,
    vision_tower,
)
from .hallucinator import Hallucinator
from .shuffle_bn import shuffled_keys


@dataclass
class GenViewSSLOutput(ModelOutput):
    """What one batch's forward passes produced; None where the method does not need it.

    - ``queries_1``, ``queries_2`` (N, D): the online branch (projector, then the predictor
      where the method has one); LeOCLR's ``queries_1`` is its uncropped original.
    - ``targets_1``, ``targets_2`` (N, D): what the queries are pulled toward, without gradient:
      the momentum encoder's keys, or SimSiam's detached projections. SimCLR has none (its
      NT-Xent contrasts ``queries_1`` with ``queries_2``).
    - ``hallucinated_1``, ``hallucinated_2`` (N, D): the Hallucinator's extra positives of
      ``queries_1`` (against ``targets_2``) and ``queries_2`` (against ``targets_1``), in
      training only (MoCo v2: ``queries_1`` against ``targets_2``).
    - ``tokens_1``, ``tokens_2`` (N, T, C): each view's detached patch tokens, from whichever
      encoder saw it (``output_tokens=True``: the ``stored`` quality mode); ``tokens_orig``
      (N, T, C): LeOCLR's original, from the query encoder.
    - ``queue`` (K, D): the negatives before this batch (MoCo v2, LeOCLR).
    """

    queries_1: torch.Tensor | None = None
    queries_2: torch.Tensor | None = None
    targets_1: torch.Tensor | None = None
    targets_2: torch.Tensor | None = None
    hallucinated_1: torch.Tensor | None = None
    hallucinated_2: torch.Tensor | None = None
    tokens_1: torch.Tensor | None = None
    tokens_2: torch.Tensor | None = None
    tokens_orig: torch.Tensor | None = None
    queue: torch.Tensor | None = None


class GenViewModel(GenViewPreTrainedModel):
    """SSL wrapper: ``backbone`` + ``projector`` (+ ``predictor``) (+ momentum copies) (+ ``queue``)."""

    config_class = GenViewConfig
    main_input_name = "pixel_values_1"

    def __init__(self, config: GenViewConfig, backbone: nn.Module | None = None) -> None:
        super().__init__(config)
        if backbone is None:
            if config.backbone_config is None:
                raise ValueError("GenViewModel needs a backbone or a backbone_config")
            backbone = AutoModel.from_config(config.backbone_config)
        backbone = vision_tower(backbone)
        if config.backbone_config is None or config.backbone_config.model_type != backbone.config.model_type:
            config.backbone_config = backbone.config
        self.backbone = backbone
        self.pooling = resolve_pooling(backbone.config, config.pooling)
        if self.pooling != "pooler" and getattr(backbone, "pooler", None) is not None:
            # e.g. ViT's dense+tanh pooler, unused with CLS pooling: frozen so that it is not a
            # trainable parameter without gradient (DDP) and still saved for AutoModel.
            backbone.pooler.requires_grad_(False)
        _freeze_patch_projection(backbone, config)
        feature_dim = backbone_feature_dim(backbone.config)
        last_bn = get_method(config.method).heads.last_bn
        self.projector = build_mlp(
            feature_dim,
            config.proj_hidden_dim,
            config.proj_dim,
            config.proj_layers,
            config.head_batchnorm,
            last_bn,
            config.head_bias,
        )
        self.predictor = (
            build_mlp(
                config.proj_dim,
                config.pred_hidden_dim,
                config.proj_dim,
                2,
                config.head_batchnorm,
                config.pred_last_bn,
                config.head_bias,
            )
            if config.pred_hidden_dim > 0
            else None
        )
        self.hallucinator = (
            Hallucinator(config.proj_dim, config.hallucinator_max_lambda) if config.use_hallucinator else None
        )
        if get_method(config.method).queue:
            # (K, D) unit-norm negatives and the ring-buffer write position
            self.register_buffer("queue", F.normalize(torch.randn(config.queue_size, config.proj_dim), dim=1))
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.post_init()
        self.reset_momentum_encoder()

    def reset_momentum_encoder(self) -> None:
        """(Re)start the momentum encoder as a frozen copy of the online backbone and projector."""
        if self.has_momentum_encoder:
            # Copied after post_init so that the momentum encoder starts equal to the online one.
            self.momentum_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
            self.momentum_projector = copy.deepcopy(self.projector).requires_grad_(False)

    @classmethod
    def from_backbone(cls, backbone: nn.Module, **config_kwargs) -> GenViewModel:
        """Wrap an already built or loaded backbone (its weights are kept)."""
        backbone = vision_tower(backbone)
        return cls(GenViewConfig(backbone_config=backbone.config, **config_kwargs), backbone=backbone)

    @property
    def has_momentum_encoder(self) -> bool:
        return get_method(self.config.method).momentum_encoder

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """target = momentum * target + (1 - momentum) * online, for every parameter of the momentum encoder."""
        if not self.has_momentum_encoder:
            return
        for online, target in (
            (self.backbone, self.momentum_backbone),
            (self.projector, self.momentum_projector),
        ):
            online_params = [p.detach() for p in online.parameters()]
            target_params = list(target.parameters())
            torch._foreach_mul_(target_params, momentum)
            torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write the unit-normalised keys (N, D) of every process into the ring buffer (the newest
        K when N > K). The trainer calls it after the loss has read the queue."""
        keys = distributed.gather_no_grad(l2_normalize(keys.detach())).to(self.queue.dtype)  # (world N, D)
        size = self.queue.shape[0]
        keys = keys[-size:]
        index = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[index] = keys
        self.queue_ptr[0] = (self.queue_ptr[0] + keys.shape[0]) % size

    def _online(
        self, pixel_values: torch.Tensor, with_tokens: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projection (N, D) of the query encoder and, when asked, its patch tokens (N, T, C)."""
        features, tokens = encode_image(self.backbone, pixel_values, self.pooling, with_tokens)
        return self.projector(features), (tokens.detach() if tokens is not None else None)

    @torch.no_grad()
    def _target(
        self, pixel_values: torch.Tensor, with_tokens: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projection (N, D) of the momentum encoder (no gradient) and, when asked, its tokens (N, T, C);
        in shuffled sub-batches in training when ``config.shuffle_bn`` (``modeling.shuffle_bn``)."""

        def encode(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            features, tokens = encode_image(self.momentum_backbone, pixels, self.pooling, with_tokens)
            return self.momentum_projector(features), tokens

        if self.config.shuffle_bn and self.training:
            return shuffled_keys(encode, pixel_values, self.config.shuffle_bn_groups)
        return encode(pixel_values)

    def _predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.predictor(z) if self.predictor is not None else z

    def forward(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        pixel_values_orig: torch.Tensor | None = None,
        output_tokens: bool = False,
    ) -> GenViewSSLOutput:
        """The embeddings of one batch of pairs: views ``pixel_values_1``, ``pixel_values_2``
        (N, 3, H, W); ``pixel_values_orig`` (N, 3, H, W) is LeOCLR's uncropped original.

        Only the passes the method's loss reads run:

        - LeOCLR: the original through the query encoder, both crops through the momentum encoder;
        - MoCo v2 (asymmetric, as the official code): view 1 through the query encoder, view 2
          through the momentum encoder;
        - MoCo v3, BYOL: both views through both encoders; SimSiam, SimCLR: both views through
          the one encoder.
        """
        self._check_batch(pixel_values_1, pixel_values_2, pixel_values_orig)
        method = self.config.method
        out = GenViewSSLOutput()
        if method == "leoclr":
            out.queries_1, out.tokens_orig = self._online(pixel_values_orig, output_tokens)
            out.targets_1, out.tokens_1 = self._target(pixel_values_1, output_tokens)
            out.targets_2, out.tokens_2 = self._target(pixel_values_2, output_tokens)
        elif method == "mocov2":
            out.queries_1, out.tokens_1 = self._online(pixel_values_1, output_tokens)
            out.targets_2, out.tokens_2 = self._target(pixel_values_2, output_tokens)
        else:
            z_1, out.tokens_1 = self._online(pixel_values_1, output_tokens)
            z_2, out.tokens_2 = self._online(pixel_values_2, output_tokens)
            out.queries_1, out.queries_2 = self._predict(z_1), self._predict(z_2)
            if self.has_momentum_encoder:
                out.targets_1, _ = self._target(pixel_values_1, False)
                out.targets_2, _ = self._target(pixel_values_2, False)
            elif method == "simsiam":
                out.targets_1, out.targets_2 = z_1.detach(), z_2.detach()
        if self.hallucinator is not None and self.training:
            self._hallucinate(out)
        if get_method(method).queue:
            out.queue = self.queue
        return out

    def _hallucinate(self, out: GenViewSSLOutput) -> None:
        """The Hallucinator's positives, each query extrapolated away from what the official code uses
        (Wu et al. 2023, ``models/moco.py`` ``MoCo.forward``, ``models/simsiam.py`` ``SimSiam.forward``):

        - SimSiam: the other view's predictor output, with its gradient (``generator(p1, p2)``);
        - MoCo v2: the L2-normalised momentum key (``generator(q, k_original)``); MoCo v3 and BYOL
          (no official code) follow MoCo's rule.
        """
        if self.config.method == "simsiam":
            key_1, key_2 = out.queries_2, out.queries_1
        else:
            key_1 = F.normalize(out.targets_2, dim=-1)
            key_2 = F.normalize(out.targets_1, dim=-1) if out.targets_1 is not None else None
        out.hallucinated_1 = self.hallucinator(out.queries_1, key_1)
        if out.queries_2 is not None:
            out.hallucinated_2 = self.hallucinator(out.queries_2, key_2)

    def _check_batch(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        pixel_values_orig: torch.Tensor | None,
    ) -> None:
        if pixel_values_1.shape != pixel_values_2.shape:
            raise ValueError(
                f"pixel_values_1 {tuple(pixel_values_1.shape)} and pixel_values_2 {tuple(pixel_values_2.shape)} differ"
            )
        if pixel_values_1.shape[0] < 2 and self.training:
            raise ValueError("a training batch needs at least 2 pairs (batch norm and in-batch negatives)")
        if self.config.method == "leoclr" and pixel_values_orig is None:
            raise ValueError("method 'leoclr' needs pixel_values_orig (the uncropped original image)")

    def export_encoder(self) -> nn.Module:
        """The backbone as a plain transformers model (LoRA merged into a copy), its config
        recording the pooling so that evaluation reads the feature training read."""
        encoder = self.backbone
        if hasattr(encoder, "merge_and_unload"):  # a PEFT model
            encoder = copy.deepcopy(encoder).merge_and_unload()
        setattr(encoder.config, POOLING_CONFIG_KEY, self.pooling)
        return encoder


def _freeze_patch_projection(backbone: nn.Module, config: GenViewConfig) -> None:
    """MoCo v3's ``stop_grad_conv1`` (``vits.py`` ``VisionTransformerMoCo``): the patch projection of
    a ViT-like backbone keeps its initial (random, when training from scratch) weights.

    ``config.freeze_patch_projection`` None: the method's default where the backbone has a patch
    projection; True on a backbone without one is an error."""
    wanted = config.freeze_patch_projection
    projection = patch_projection(backbone)
    if wanted is None:
        wanted = get_method(config.method).freeze_patch_projection and projection is not None
    if not wanted:
        return
    if projection is None:
        raise ValueError(
            f"freeze_patch_projection: a {type(backbone).__name__} has no ViT-style patch projection to freeze"
        )
    projection.requires_grad_(False)
