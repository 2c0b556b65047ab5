"""``GenViewModel``: image-only SSL as a ``PreTrainedModel``.

Any ``AutoModel`` vision backbone (ViT, ResNet, ConvNeXt, CLIP vision, DINOv2 ...) is kept as
the attribute ``backbone``, so that it can be saved on its own as a plain transformers model.
The method's heads, the momentum encoder and the MoCo queue are ordinary submodules and
buffers, so a ``checkpoint-*`` folder written by the Trainer holds everything an exact resume
needs. ``forward`` returns the loss of a collated batch (see ``genview_hf.data.collators``)
with optional per-pair quality weights. The image-text wrapper is in ``modeling_genview_clip``.

Shapes: N pairs, 3 x H x W pixels, D = ``proj_dim``, T patch tokens of C channels, K queue size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel

from .. import distributed, losses
from ..quality import quality_weights
from .common import GenViewOutput, GenViewPreTrainedModel, build_mlp, l2_normalize
from .configuration_genview import MOMENTUM_METHODS, QUEUE_METHODS, GenViewConfig
from .features import (
    backbone_feature_dim,
    encode_image,
    masks_to_tokens,
    resolve_pooling,
    vision_tower,
)
from .hallucinator import Hallucinator

# Default temperatures per method, from the papers (MoCo v3 ViT: 0.2; MoCo v2: 0.2;
# SimCLR at large batch: 0.1; LeOCLR follows MoCo v2: 0.2). ResNet MoCo v3 uses 1.0 (set it in the run).
DEFAULT_TEMPERATURE = {
    "mocov2": 0.2,
    "mocov3": 0.2,
    "simclr": 0.1,
    "leoclr": 0.2,
    "simsiam": None,
    "byol": None,
}


@dataclass
class _Encoded:
    """What one batch's forward passes produced; None where the method does not need it.

    ``online_*`` (N, D): query encoder + projector (the predictor is applied in the loss;
    LeOCLR's ``online_1`` is its uncropped original); ``key_*`` (N, D): momentum encoder, no gradient; ``tokens_*`` (N, T, C): the
    patch tokens read for the ``stored`` quality mode, from whichever encoder saw that view.
    """

    online_1: torch.Tensor
    online_2: torch.Tensor | None = None
    key_1: torch.Tensor | None = None
    key_2: torch.Tensor | None = None
    tokens_1: torch.Tensor | None = None
    tokens_2: torch.Tensor | None = None


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
        feature_dim = backbone_feature_dim(backbone.config)
        last_bn = config.method in ("mocov3", "simsiam")  # a non-affine BN ends their projectors
        self.projector = build_mlp(
            feature_dim,
            config.proj_hidden_dim,
            config.proj_dim,
            config.proj_layers,
            config.head_batchnorm,
            last_bn,
        )
        self.predictor = (
            build_mlp(
                config.proj_dim, config.pred_hidden_dim, config.proj_dim, 2, config.head_batchnorm, False
            )
            if config.pred_hidden_dim > 0
            else None
        )
        self.hallucinator = (
            Hallucinator(config.proj_dim, config.hallucinator_max_lambda) if config.use_hallucinator else None
        )
        if config.method in QUEUE_METHODS:
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
        return self.config.method in MOMENTUM_METHODS

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
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys (N, D) of every process into the ring buffer (the newest K when N > K)."""
        keys = distributed.gather_no_grad(keys.detach()).to(self.queue.dtype)  # (world N, D)
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
        return self.projector(features), tokens

    @torch.no_grad()
    def _target(
        self, pixel_values: torch.Tensor, with_tokens: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projection (N, D) of the momentum encoder (no gradient) and, when asked, its tokens (N, T, C)."""
        features, tokens = encode_image(self.momentum_backbone, pixel_values, self.pooling, with_tokens)
        return self.momentum_projector(features), tokens

    def _predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.predictor(z) if self.predictor is not None else z

    def forward(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        masks_1: torch.Tensor | None = None,
        masks_2: torch.Tensor | None = None,
        pixel_values_orig: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        temperature: float | None = None,
        quality_gamma: float = 1.0,
        return_loss: bool = True,
        **unused,
    ) -> GenViewOutput:
        """Loss of one batch of positive pairs: views ``pixel_values_1``, ``pixel_values_2`` (N, 3, H, W).

        ``weights`` (N,): per-pair quality weights computed outside (``frozen`` mode). Without
        them, ``masks_1``/``masks_2`` (N, H, W) give the ``stored`` mode: weights from the stored
        foreground masks and this model's own detached patch tokens. Neither: unweighted.
        ``pixel_values_orig`` (N, 3, H, W): LeOCLR's uncropped original image.
        """
        self._check_batch(pixel_values_1, pixel_values_2, pixel_values_orig)
        method = self.config.method
        temperature = temperature if temperature is not None else DEFAULT_TEMPERATURE[method]
        stored = weights is None and masks_1 is not None and masks_2 is not None
        encoded = self._encode(pixel_values_1, pixel_values_2, pixel_values_orig, with_tokens=stored)
        if stored:
            weights = self.stored_quality_weights(
                encoded.tokens_1, encoded.tokens_2, masks_1, masks_2, quality_gamma
            )
        if weights is not None:
            weights = weights.detach().to(encoded.online_1.device, torch.float32)
            if weights.shape != (pixel_values_1.shape[0],):
                raise ValueError(f"weights must be ({pixel_values_1.shape[0]},), got {tuple(weights.shape)}")
        if not return_loss:
            return GenViewOutput(weights=weights, embeddings=encoded.online_1)
        loss = self._loss(encoded, temperature, weights)
        return GenViewOutput(loss=loss, weights=weights, embeddings=encoded.online_1)

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

    def _encode(
        self,
        pixel_values_1: torch.Tensor,
        pixel_values_2: torch.Tensor,
        pixel_values_orig: torch.Tensor | None,
        with_tokens: bool,
    ) -> _Encoded:
        """Only the forward passes the method's loss reads.

        - LeOCLR: the uncropped original through the query encoder, both crops through the
          momentum encoder (tokens from there).
        - MoCo v2 (asymmetric, as the official code): view 1 through the query encoder, view 2
          through the momentum encoder (view 2's tokens from there).
        - MoCo v3, BYOL: both views through both encoders; SimSiam, SimCLR: both views through
          the one encoder.
        """
        method = self.config.method
        if method == "leoclr":
            query, _ = self._online(pixel_values_orig, False)
            key_1, tokens_1 = self._target(pixel_values_1, with_tokens)
            key_2, tokens_2 = self._target(pixel_values_2, with_tokens)
            return _Encoded(query, key_1=key_1, key_2=key_2, tokens_1=tokens_1, tokens_2=tokens_2)
        if method == "mocov2":
            online_1, tokens_1 = self._online(pixel_values_1, with_tokens)
            key_2, tokens_2 = self._target(pixel_values_2, with_tokens)
            return _Encoded(online_1, key_2=key_2, tokens_1=tokens_1, tokens_2=tokens_2)
        online_1, tokens_1 = self._online(pixel_values_1, with_tokens)
        online_2, tokens_2 = self._online(pixel_values_2, with_tokens)
        encoded = _Encoded(online_1, online_2, tokens_1=tokens_1, tokens_2=tokens_2)
        if self.has_momentum_encoder:
            encoded.key_1, _ = self._target(pixel_values_1, False)
            encoded.key_2, _ = self._target(pixel_values_2, False)
        return encoded

    def _loss(
        self, encoded: _Encoded, temperature: float | None, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """The method's objective; ``weights`` (N,) multiply each pair's loss (None: unweighted)."""
        method = self.config.method
        if method == "mocov3":
            # Symmetric InfoNCE, keys gathered across processes, scaled by 2 tau (official code).
            q_1, q_2 = self._predict(encoded.online_1), self._predict(encoded.online_2)
            loss = self._info_nce(q_1, encoded.key_2, temperature, weights) + self._info_nce(
                q_2, encoded.key_1, temperature, weights
            )
            return loss * (2 * temperature)
        if method == "mocov2":
            # The queue as it was before this batch; this batch's keys are enqueued after the loss.
            loss = self._info_nce(encoded.online_1, encoded.key_2, temperature, weights, queue=self.queue)
            if self.training:
                self._enqueue(l2_normalize(encoded.key_2))
            return loss
        if method == "leoclr":
            loss = losses.leoclr_loss(
                encoded.online_1,
                encoded.key_1,
                encoded.key_2,
                self.queue,
                temperature=temperature,
                weights=weights,
            )
            if self.training:
                self._enqueue(l2_normalize(encoded.key_1))
            return loss
        if method == "simsiam":
            p_1, p_2 = self._predict(encoded.online_1), self._predict(encoded.online_2)
            return 0.5 * (
                self._pair_loss(losses.negative_cosine_loss, p_1, encoded.online_2, weights)
                + self._pair_loss(losses.negative_cosine_loss, p_2, encoded.online_1, weights)
            )
        if method == "byol":
            p_1, p_2 = self._predict(encoded.online_1), self._predict(encoded.online_2)
            return self._pair_loss(losses.byol_loss, p_1, encoded.key_2, weights) + self._pair_loss(
                losses.byol_loss, p_2, encoded.key_1, weights
            )
        if method == "simclr":
            # Negatives from every process are gathered inside the loss.
            return losses.nt_xent_loss(
                encoded.online_1, encoded.online_2, temperature=temperature, weights=weights
            )
        raise ValueError(f"unknown method {method!r}")  # guarded by the config

    def _info_nce(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        temperature: float,
        weights: torch.Tensor | None,
        queue: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """InfoNCE of queries (N, D) against detached keys (N, D) (+ the queue (K, D)), plus the
        Hallucinator's rows against the same keys when it is on and training.

        Normalised inside the loss; in-batch negatives (queue None) are gathered there across processes.
        """
        keys = keys.detach()
        loss = losses.info_nce_loss(query, keys, queue=queue, temperature=temperature, weights=weights)
        if self.hallucinator is not None and self.training:
            hallucinated = self.hallucinator(query, keys)  # (N, D)
            loss = loss + losses.info_nce_loss(
                hallucinated, keys, queue=queue, temperature=temperature, weights=weights
            )
        return loss

    def _pair_loss(
        self, loss_fn, p: torch.Tensor, z: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """``loss_fn(p, stopgrad(z))`` for predictions and targets (N, D), plus the Hallucinator's rows."""
        z = z.detach()
        loss = loss_fn(p, z, weights=weights)
        if self.hallucinator is not None and self.training:
            loss = loss + loss_fn(self.hallucinator(p, z), z, weights=weights)
        return loss

    @torch.no_grad()
    def stored_quality_weights(
        self,
        tokens_1: torch.Tensor,
        tokens_2: torch.Tensor,
        masks_1: torch.Tensor,
        masks_2: torch.Tensor,
        gamma: float,
    ) -> torch.Tensor:
        """``stored`` mode weights (N,): masks (N, H, W) cropped with the views, pooled onto this
        model's own token grid of ``tokens_*`` (N, T, C)."""
        if masks_1.shape[0] != tokens_1.shape[0] or masks_2.shape[0] != tokens_2.shape[0]:
            raise ValueError(
                f"masks batch {masks_1.shape[0]}/{masks_2.shape[0]} does not match the views batch {tokens_1.shape[0]}"
            )
        return quality_weights(
            tokens_1.detach().float(),
            tokens_2.detach().float(),
            None,
            gamma=gamma,
            masks1=masks_to_tokens(masks_1, tokens_1.shape[1]),
            masks2=masks_to_tokens(masks_2, tokens_2.shape[1]),
        )
