"""The GenView training wrappers as ``PreTrainedModel``s.

``GenViewModel``: image-only SSL around any ``AutoModel`` vision backbone (ViT, ResNet,
ConvNeXt, CLIP vision, DINOv2 ...), kept as the attribute ``backbone`` so that it can be
saved on its own as a plain transformers model. The method's heads, the momentum encoder and
the MoCo queue are ordinary submodules and buffers, so a ``checkpoint-*`` folder written by
the Trainer holds everything an exact resume needs.

``GenViewCLIPModel``: a stock ``CLIPModel`` (attribute ``clip``) plus SLIP's image SSL head.

Both return the loss from ``forward`` given a collated batch (see ``genview_hf.data.collators``)
and optional per-pair quality weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, CLIPModel, CLIPVisionModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .. import distributed, losses
from ..quality import image_text_quality_weights, multi_view_quality_weights, quality_weights
from .configuration_genview import (
    MOMENTUM_METHODS,
    QUEUE_METHODS,
    GenViewCLIPConfig,
    GenViewConfig,
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

_CLS_POOLING_TYPES = ("vit", "deit", "vit_msn", "vit_mae")


@dataclass
class GenViewOutput(ModelOutput):
    """``loss``: the (weighted) objective; ``weights``: the per-pair weights used (None when off);
    ``embeddings``: the online embedding of the first view (projector output, or the image
    embedding for CLIP); ``logit_scale``: CLIP's temperature scale (exp, after clamping)."""

    loss: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None


def build_mlp(
    in_dim: int, hidden_dim: int, out_dim: int, layers: int, batchnorm: bool, last_bn: bool
) -> nn.Sequential:
    """Linear(-BN)-ReLU blocks then a Linear (+ a non-affine BN when ``last_bn``), as in the MoCo v3 code."""
    if layers < 1:
        raise ValueError(f"an MLP head needs at least 1 layer, got {layers}")
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        modules.append(nn.Linear(dim, hidden_dim, bias=not batchnorm))
        if batchnorm:
            modules.append(nn.BatchNorm1d(hidden_dim))
        modules.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)


def vision_tower(model: nn.Module) -> nn.Module:
    """The image encoder inside ``model``: a CLIPModel's ``vision_model``, else the model itself."""
    if isinstance(model, CLIPModel) or (
        hasattr(model, "vision_model") and hasattr(model, "get_image_features")
    ):
        return model.vision_model
    return model


def backbone_feature_dim(config: PretrainedConfig) -> int:
    """Width of one pooled feature: ``hidden_sizes[-1]`` (ResNet, ConvNeXt) or ``hidden_size``."""
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    if getattr(config, "hidden_size", None):
        return int(config.hidden_size)
    raise ValueError(f"cannot tell the feature width of a {type(config).__name__}: it has no hidden_size(s)")


def resolve_pooling(config: PretrainedConfig, pooling: str) -> str:
    if pooling != "auto":
        return pooling
    return "cls" if config.model_type in _CLS_POOLING_TYPES else "pooler"


def token_map(last_hidden_state: torch.Tensor) -> torch.Tensor:
    """Patch tokens (N, T, C) from a backbone's last hidden state.

    Convolutional maps (N, C, h, w) are flattened; sequences (N, S, C) lose their prefix tokens
    (CLS, registers): the largest square grid that leaves 1 to 8 prefix tokens is kept.
    """
    if last_hidden_state.dim() == 4:
        return last_hidden_state.flatten(2).transpose(1, 2)
    if last_hidden_state.dim() != 3:
        raise ValueError(
            f"expected a (N, C, h, w) or (N, S, C) hidden state, got shape {tuple(last_hidden_state.shape)}"
        )
    length = last_hidden_state.shape[1]
    side = math.isqrt(length - 1)
    prefix = length - side * side
    if not 1 <= prefix <= 8:
        raise ValueError(f"cannot find the patch grid in a sequence of {length} tokens")
    return last_hidden_state[:, prefix:]


def encode_image(
    model: nn.Module, pixel_values: torch.Tensor, pooling: str = "auto", with_tokens: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One pooled feature (N, C) per image and, when asked, the patch tokens (N, T, C)."""
    model = vision_tower(model)
    outputs = model(pixel_values=pixel_values)
    hidden = outputs.last_hidden_state
    pooling = resolve_pooling(model.config, pooling)
    if pooling == "pooler" and getattr(outputs, "pooler_output", None) is not None:
        pooled = outputs.pooler_output.flatten(1)
    elif pooling == "cls" and hidden.dim() == 3:
        pooled = hidden[:, 0]
    else:  # mean of the tokens, or of the spatial map
        pooled = hidden.flatten(2).mean(-1) if hidden.dim() == 4 else hidden.mean(1)
    return pooled, (token_map(hidden) if with_tokens else None)


def masks_to_tokens(masks: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Foreground masks (N, H, W) in [0, 1] averaged onto the square token grid: (N, T)."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"stored masks need a square token grid; the backbone gives {num_tokens} tokens")
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    return F.adaptive_avg_pool2d(masks[:, None].float(), side).flatten(1)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


class GenViewPreTrainedModel(PreTrainedModel):
    base_model_prefix = "genview"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        # Only our heads reach here: a pretrained backbone passed in keeps its weights.
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


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
        method = config.method
        feature_dim = backbone_feature_dim(backbone.config)
        last_bn = method in ("mocov3", "simsiam")
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
        if method in QUEUE_METHODS:
            self.register_buffer("queue", F.normalize(torch.randn(config.queue_size, config.proj_dim), dim=1))
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.post_init()
        self.reset_momentum_encoder()

    def reset_momentum_encoder(self) -> None:
        """(Re)start the momentum encoder as a frozen copy of the online backbone and projector."""
        if self.config.method in MOMENTUM_METHODS:
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
            target_params = [p for p in target.parameters()]
            torch._foreach_mul_(target_params, momentum)
            torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = distributed.gather_no_grad(keys.detach()).to(self.queue.dtype)
        size = self.queue.shape[0]
        keys = keys[-size:]
        index = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[index] = keys
        self.queue_ptr[0] = (self.queue_ptr[0] + keys.shape[0]) % size

    def _online(
        self, pixel_values: torch.Tensor, with_tokens: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        features, tokens = encode_image(self.backbone, pixel_values, self.pooling, with_tokens)
        return self.projector(features), tokens

    @torch.no_grad()
    def _target(
        self, pixel_values: torch.Tensor, with_tokens: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
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
        """Loss of one batch of positive pairs.

        ``weights`` (N,): per-pair quality weights computed outside (``frozen`` mode). Without
        them, ``masks_1``/``masks_2`` (N, H, W) give the ``stored`` mode: weights from the stored
        foreground masks and this model's own detached patch tokens. Neither: unweighted.
        """
        method = self.config.method
        if pixel_values_1.shape != pixel_values_2.shape:
            raise ValueError(
                f"pixel_values_1 {tuple(pixel_values_1.shape)} and pixel_values_2 {tuple(pixel_values_2.shape)} differ"
            )
        if pixel_values_1.shape[0] < 2 and self.training:
            raise ValueError("a training batch needs at least 2 pairs (batch norm and in-batch negatives)")
        if method == "leoclr" and pixel_values_orig is None:
            raise ValueError("method 'leoclr' needs pixel_values_orig (the uncropped original image)")
        temperature = temperature if temperature is not None else DEFAULT_TEMPERATURE[method]
        stored = weights is None and masks_1 is not None and masks_2 is not None
        tokens: dict[int, torch.Tensor | None] = {}

        if method == "leoclr":
            query, _ = self._online(pixel_values_orig, False)
            key_1, tokens[1] = self._target(pixel_values_1, stored)
            key_2, tokens[2] = self._target(pixel_values_2, stored)
            online_1 = query
        else:
            online_1, tokens[1] = self._online(pixel_values_1, stored)
            online_2, tokens[2] = self._online(pixel_values_2, stored)
            if self.has_momentum_encoder:
                key_1, _ = self._target(pixel_values_1, False)
                key_2, _ = self._target(pixel_values_2, False)

        if stored:
            weights = self.stored_quality_weights(tokens[1], tokens[2], masks_1, masks_2, quality_gamma)
        if weights is not None:
            weights = weights.detach().to(online_1.device, torch.float32)
            if weights.shape != (pixel_values_1.shape[0],):
                raise ValueError(f"weights must be ({pixel_values_1.shape[0]},), got {tuple(weights.shape)}")
        if not return_loss:
            return GenViewOutput(weights=weights, embeddings=online_1)

        if method == "mocov3":
            # Symmetric InfoNCE, keys gathered across processes, scaled by 2 tau (official code).
            q_1, q_2 = self._predict(online_1), self._predict(online_2)
            loss = self._info_nce(q_1, key_2, temperature, weights) + self._info_nce(
                q_2, key_1, temperature, weights
            )
            loss = loss * (2 * temperature)
        elif method == "mocov2":
            queue = self.queue.clone().detach()
            loss = self._info_nce(online_1, key_2, temperature, weights, queue=queue)
            if self.training:
                self._enqueue(_normalize(key_2))
        elif method == "leoclr":
            queue = self.queue.clone().detach()
            loss = losses.leoclr_loss(
                _normalize(query),
                _normalize(key_1),
                _normalize(key_2),
                queue,
                temperature=temperature,
                weights=weights,
            )
            if self.training:
                self._enqueue(_normalize(key_1))
        elif method == "simsiam":
            p_1, p_2 = self._predict(online_1), self._predict(online_2)
            loss = 0.5 * (
                self._pair_loss(losses.negative_cosine_loss, p_1, online_2.detach(), weights)
                + self._pair_loss(losses.negative_cosine_loss, p_2, online_1.detach(), weights)
            )
        elif method == "byol":
            p_1, p_2 = self._predict(online_1), self._predict(online_2)
            loss = self._pair_loss(losses.byol_loss, p_1, key_2, weights) + self._pair_loss(
                losses.byol_loss, p_2, key_1, weights
            )
        elif method == "simclr":
            # Negatives from every process are gathered inside the loss.
            loss = losses.nt_xent_loss(online_1, online_2, temperature=temperature, weights=weights)
        else:  # guarded by the config
            raise ValueError(f"unknown method {method!r}")
        return GenViewOutput(loss=loss, weights=weights, embeddings=online_1)

    def _info_nce(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        temperature: float,
        weights: torch.Tensor | None,
        queue: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Normalised inside the loss; in-batch negatives (queue None) are gathered there across processes.
        keys = keys.detach()
        loss = losses.info_nce_loss(query, keys, queue=queue, temperature=temperature, weights=weights)
        if self.hallucinator is not None and self.training:
            hallucinated = self.hallucinator(query, keys)
            loss = loss + losses.info_nce_loss(
                hallucinated, keys, queue=queue, temperature=temperature, weights=weights
            )
        return loss

    def _pair_loss(
        self, loss_fn, p: torch.Tensor, z: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        loss = loss_fn(p, z.detach(), weights=weights)
        if self.hallucinator is not None and self.training:
            loss = loss + loss_fn(self.hallucinator(p, z.detach()), z.detach(), weights=weights)
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
        """``stored`` mode: masks cropped with the views, pooled onto this model's own token grid."""
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


class GenViewCLIPModel(GenViewPreTrainedModel):
    """Image-text wrapper: the stock ``CLIPModel`` as ``clip`` plus, for SLIP, ``ssl_head``."""

    config_class = GenViewCLIPConfig
    main_input_name = "input_ids"

    def __init__(self, config: GenViewCLIPConfig, clip: CLIPModel | None = None) -> None:
        super().__init__(config)
        if clip is None:
            if config.clip_config is None:
                raise ValueError("GenViewCLIPModel needs a clip model or a clip_config")
            clip = CLIPModel(config.clip_config)
        config.clip_config = clip.config
        self.clip = clip
        self.ssl_head = None
        if config.method == "slip":
            width = clip.config.vision_config.hidden_size
            # SLIP (Mu et al. 2022): 3-layer MLP 4096 -> 256 with BN on the vision features.
            self.ssl_head = build_mlp(width, config.ssl_hidden_dim, config.ssl_dim, 3, True, False)
        self.post_init()

    @classmethod
    def from_clip(cls, clip: CLIPModel, **config_kwargs) -> GenViewCLIPModel:
        return cls(GenViewCLIPConfig(clip_config=clip.config, **config_kwargs), clip=clip)

    @property
    def backbone(self) -> CLIPVisionModel:
        """The image tower (what image-only evaluation such as kNN reads)."""
        return self.clip.vision_model

    def logit_scale(self) -> torch.Tensor:
        """exp(logit_scale), the learnable parameter clamped at ln(100) as in CLIP."""
        return self.clip.logit_scale.clamp(max=math.log(100.0)).exp()

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values_1: torch.Tensor | None = None,
        pixel_values_2: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        ssl_weights: torch.Tensor | None = None,
        temperature: float = 0.1,
        ssl_scale: float = 1.0,
        loss_coefficients: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        masks: torch.Tensor | None = None,
        pixel_values_real: torch.Tensor | None = None,
        masks_real: torch.Tensor | None = None,
        quality_gamma: float = 2.0,
        return_loss: bool = True,
        **unused,
    ) -> GenViewOutput:
        """CLIP loss on (image, caption) pairs; SLIP adds ``ssl_scale`` * SimCLR on two more views
        (SLIP: ssl_scale 1.0, temperature 0.1). ``weights`` (N,) weight each image-text pair,
        ``ssl_weights`` (N,) each image-image pair of SLIP's SSL term.

        ``pixel_values`` (N, V, 3, H, W) is a GenView++ multi-positive batch (index 0 the real
        image, 1.. its generated views): see ``_multi_positive``.
        """
        if input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"{input_ids.shape[0]} captions for {pixel_values.shape[0]} images")
        if input_ids.shape[0] < 2 and self.training:
            raise ValueError("a training batch needs at least 2 image-text pairs")
        if pixel_values.dim() == 5:
            return self._multi_positive(
                input_ids, pixel_values, attention_mask, weights, ssl_weights, temperature, loss_coefficients,
                masks, pixel_values_real, masks_real, quality_gamma, return_loss,
            )  # fmt: skip
        image_embeds = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        text_embeds = self.clip.get_text_features(
            input_ids=input_ids, attention_mask=attention_mask
        ).pooler_output
        image_embeds, text_embeds = _normalize(image_embeds), _normalize(text_embeds)
        scale = self.logit_scale()
        if weights is not None:
            weights = weights.detach().float()
        if not return_loss:
            return GenViewOutput(weights=weights, embeddings=image_embeds, logit_scale=scale.detach())
        # Negatives from every process are gathered (with gradient) inside the losses.
        if self.config.method == "slip":
            if pixel_values_1 is None or pixel_values_2 is None:
                raise ValueError("method 'slip' needs pixel_values_1 and pixel_values_2 (the two SSL views)")
            z_1 = self.ssl_head(self.clip.vision_model(pixel_values=pixel_values_1).pooler_output)
            z_2 = self.ssl_head(self.clip.vision_model(pixel_values=pixel_values_2).pooler_output)
            loss = losses.slip_loss(
                image_embeds,
                text_embeds,
                scale,
                z_1,
                z_2,
                ssl_scale=ssl_scale,
                ssl_temperature=temperature,
                weights=weights,
                ssl_weights=ssl_weights,
            )
        else:
            loss = losses.clip_loss(image_embeds, text_embeds, scale, weights=weights)
        reported = weights if weights is not None else ssl_weights
        return GenViewOutput(loss=loss, weights=reported, embeddings=image_embeds, logit_scale=scale.detach())

    def _multi_positive(
        self,
        input_ids,
        pixel_values,
        attention_mask,
        weights,
        ssl_weights,
        temperature,
        coefficients,
        masks,
        pixel_values_real,
        masks_real,
        gamma,
        return_loss,
    ) -> GenViewOutput:
        """GenView++: c0 L_ii + c1 L_ii_QD + c2 L_it + c3 L_it_QD over the V views of each caption.

        L_it: image-text loss with V images per caption; L_ii: multi-positive loss between the
        views (SLIP: on the SSL head; CLIP: on the image embeddings). The QD terms use
        ``weights`` (N, V) and ``ssl_weights`` (N, V, V); without them (and without ``masks``) they
        are unweighted, so all-ones weights train exactly like no weights. With ``masks`` (N, V, H, W)
        and ``pixel_values_real`` (the ``stored`` mode) both are computed here from the model's own
        detached tokens and embeddings.
        """
        n, v = pixel_values.shape[:2]
        if v < 2:
            raise ValueError(
                f"a multi-positive batch needs V >= 2 views per caption, got pixel_values {tuple(pixel_values.shape)}"
            )
        vision = self.clip.vision_model(pixel_values=pixel_values.flatten(0, 1))
        pooled = vision.pooler_output
        image_embeds = _normalize(self.clip.visual_projection(pooled)).view(n, v, -1)
        text_embeds = self.clip.get_text_features(
            input_ids=input_ids, attention_mask=attention_mask
        ).pooler_output
        text_embeds = _normalize(text_embeds)
        scale = self.logit_scale()
        if weights is None and ssl_weights is None and masks is not None:
            if pixel_values_real is None:
                raise ValueError("stored-mask weights need pixel_values_real (the unaugmented real image)")
            with torch.no_grad():
                tokens = token_map(vision.last_hidden_state.detach()).float()
                tokens = tokens.reshape(n, v, *tokens.shape[1:])
                real_tokens = token_map(
                    self.clip.vision_model(pixel_values=pixel_values_real).last_hidden_state
                ).float()
                view_masks = masks_to_tokens(masks.flatten(0, 1), tokens.shape[2]).view(n, v, -1)
                real_masks = (
                    masks_to_tokens(masks_real, real_tokens.shape[1]) if masks_real is not None else None
                )
                ssl_weights = multi_view_quality_weights(tokens, None, gamma, view_masks=view_masks)
                weights = image_text_quality_weights(
                    image_embeds.detach(), text_embeds.detach(), tokens, real_tokens, None if real_masks is not None else principal_direction(real_tokens),
                    gamma, view_masks=view_masks, real_masks=real_masks,
                )  # fmt: skip
        if not return_loss:
            return GenViewOutput(weights=weights, embeddings=image_embeds[:, 0], logit_scale=scale.detach())
        views = self.ssl_head(pooled).view(n, v, -1) if self.ssl_head is not None else image_embeds
        c0, c1, c2, c3 = coefficients
        l_ii = losses.multi_positive_loss(views, temperature)
        l_it = losses.multi_positive_clip_loss(image_embeds, text_embeds, scale)
        l_ii_qd = (
            l_ii
            if ssl_weights is None
            else losses.multi_positive_loss(views, temperature, weights=ssl_weights)
        )
        l_it_qd = (
            l_it
            if weights is None
            else losses.multi_positive_clip_loss(image_embeds, text_embeds, scale, weights=weights)
        )
        loss = c0 * l_ii + c1 * l_ii_qd + c2 * l_it + c3 * l_it_qd
        return GenViewOutput(
            loss=loss, weights=weights, embeddings=image_embeds[:, 0], logit_scale=scale.detach()
        )


def principal_direction(tokens: torch.Tensor) -> torch.Tensor:
    """First principal direction (uncentred) of token maps (N, T, C), signed like the generation-time
    scorer (``genview_hf.generation.foreground``): larger projections in the centre than on the
    border ring of the square token grid (the mean projection decides when T is not square).

    The foreground direction when no fitted one is given: the batch's own tokens.
    """
    from ..generation.foreground import border_ring

    flat = tokens.reshape(-1, tokens.shape[-1]).float()
    direction = torch.linalg.eigh(flat.T @ flat).eigenvectors[:, -1]
    projections = tokens.float() @ direction  # (N, T)
    side = math.isqrt(projections.shape[-1]) if projections.dim() >= 2 else 0
    if side >= 3 and side * side == projections.shape[-1]:
        ring = border_ring((side, side)).to(projections.device)
        centre_minus_border = (projections[..., ~ring].mean(-1) - projections[..., ring].mean(-1)).sum()
    else:
        centre_minus_border = projections.mean()
    return -direction if centre_minus_border < 0 else direction
