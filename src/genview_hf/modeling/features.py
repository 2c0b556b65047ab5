"""Reading features from any Hugging Face vision backbone: pooled vectors, patch tokens, masks.

Shared by the SSL and CLIP wrappers, the trainer's quality modes, evaluation and the kNN monitor:
one pooling rule for all of them (``resolve_pooling`` + ``pool``). Shapes: N images, C channels, T patch tokens on a square grid, H x W pixels.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, PretrainedConfig

Pooling = Literal["auto", "cls", "mean", "pooler"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
# Models whose pooler (dense + tanh on the CLS token) self-supervised training never trains: "auto"
# reads their CLS token instead.
_CLS_POOLING_TYPES = ("vit", "deit", "vit_msn", "vit_mae")
# Written into an exported encoder's config, so "auto" later reads what training read.
POOLING_CONFIG_KEY = "genview_pooling"


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


def resolve_pooling(config: PretrainedConfig, pooling: str = "auto") -> str:
    """The pooling rule, shared by training, evaluation and the kNN monitor.

    ``auto``: what the encoder was trained with when genview_hf exported it (its config's
    ``genview_pooling``), else ``cls`` for ViT-like models (their pooler is untrained by SSL) and
    ``pooler`` for the rest (ResNet / ConvNeXt average pooling, CLIP's post-layernorm CLS, ...).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
    if pooling != "auto":
        return pooling
    recorded = getattr(config, POOLING_CONFIG_KEY, None)
    if recorded in POOLINGS and recorded != "auto":
        return recorded
    return "cls" if config.model_type in _CLS_POOLING_TYPES else "pooler"


def pool(outputs, pooling: str) -> torch.Tensor:
    """One vector (N, C) per image from a vision model's outputs, with a resolved ``pooling``.

    ``pooler``: ``pooler_output`` (flattened: ResNet's (N, C, 1, 1)), else ``image_embeds``
    (models with a projection and no pooler); ``cls``: the first token; ``mean``: the token
    mean. Feature maps (N, C, h, w) have no CLS token: ``cls`` reads their spatial mean, as
    does ``pooler`` for a model that has no pooled output.
    """
    hidden = outputs.last_hidden_state  # (N, S, C) or (N, C, h, w)
    if pooling == "pooler":
        for name in ("pooler_output", "image_embeds"):
            value = getattr(outputs, name, None)
            if value is not None:
                return value.flatten(1)
    if pooling == "cls" and hidden.dim() == 3:
        return hidden[:, 0]
    return hidden.flatten(2).mean(-1) if hidden.dim() == 4 else hidden.mean(1)


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
    """One pooled feature (N, C) per image (N, 3, H, W) and, when asked, the patch tokens (N, T, C)."""
    model = vision_tower(model)
    outputs = model(pixel_values=pixel_values)
    pooled = pool(outputs, resolve_pooling(model.config, pooling))
    return pooled, (token_map(outputs.last_hidden_state) if with_tokens else None)


def image_features(model: nn.Module, pixel_values: torch.Tensor, pooling: str = "auto") -> torch.Tensor:
    """The feature (N, D) an encoder is evaluated on: a CLIP-type model's projected image
    embedding (``get_image_features``), else the pooled feature of :func:`encode_image`."""
    if hasattr(model, "get_image_features"):
        output = model.get_image_features(pixel_values=pixel_values)
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    return encode_image(model, pixel_values, pooling)[0]


def masks_to_tokens(masks: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Foreground masks (N, H, W) in [0, 1] averaged onto the square token grid: (N, T)."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"stored masks need a square token grid; the backbone gives {num_tokens} tokens")
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    return F.adaptive_avg_pool2d(masks[:, None].float(), side).flatten(1)


def principal_direction(tokens: torch.Tensor) -> torch.Tensor:
    """First principal direction (C,) of token maps (N, T, C), fitted as the generation-time scorer
    fits its own (``genview_hf.foreground.ForegroundScorer.fit``): the top eigenvector of the
    mean-centred covariance of the tokens (the official ``extract_features_pca.py`` ``PCA``);
    projections on it stay un-centred. Signed like the scorer: larger projections in the centre
    than on the border ring of the square token grid (the mean projection decides when T is not
    square).

    The foreground direction when no fitted one is given: the batch's own tokens. The sign is
    chosen on the device, without boolean indexing (no host sync of its own).
    """
    from ..foreground import border_ring

    flat = tokens.reshape(-1, tokens.shape[-1]).float()  # (N T, C)
    centred = flat - flat.mean(0)
    direction = torch.linalg.eigh(centred.T @ centred).eigenvectors[:, -1]  # (C,)
    projections = tokens.float() @ direction  # (N, T)
    side = math.isqrt(projections.shape[-1]) if projections.dim() >= 2 else 0
    if side >= 3 and side * side == projections.shape[-1]:
        ring = border_ring((side, side)).to(projections.device, projections.dtype)  # (T,) 1 on the border
        centre = 1.0 - ring
        centre_minus_border = (
            projections @ (centre / centre.sum()) - projections @ (ring / ring.sum())
        ).sum()
    else:
        centre_minus_border = projections.mean()
    return torch.where(centre_minus_border < 0, -direction, direction)


def patch_projection(model: nn.Module) -> nn.Conv2d | None:
    """The patch projection of a ViT-like backbone (ViT, DeiT, DINOv2, CLIP vision ...): the Conv2d
    whose kernel and stride are the config's ``patch_size``; None for convolutional backbones
    (their config lists ``hidden_sizes``) and models without one."""
    model = vision_tower(model)
    config = getattr(model, "config", None)
    patch = getattr(config, "patch_size", None)
    if patch is None or getattr(config, "hidden_sizes", None):
        return None
    size = (patch, patch) if isinstance(patch, int) else tuple(patch)
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == size and module.stride == size:
            return module
    return None
