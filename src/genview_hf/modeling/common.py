"""Pieces shared by the SSL and the CLIP wrappers: their ``PreTrainedModel`` base and the MLP
heads (projector, predictor, SLIP's SSL head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel


def build_mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    layers: int,
    batchnorm: bool,
    last_bn: bool,
    bias: bool = True,
) -> nn.Sequential:
    """Linear(-BN)-ReLU blocks then a Linear (+ a non-affine BN when ``last_bn``), as in the MoCo v3 code.

    A linear layer followed by a BN never has a bias (the BN's mean removes it); the others have
    one when ``bias`` (MoCo v3's ``_build_mlp`` uses ``bias=False`` everywhere; SimSiam's
    predictor and MoCo v2's head keep theirs).
    """
    if layers < 1:
        raise ValueError(f"an MLP head needs at least 1 layer, got {layers}")
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        modules.append(nn.Linear(dim, hidden_dim, bias=bias and not batchnorm))
        if batchnorm:
            modules.append(nn.BatchNorm1d(hidden_dim))
        modules.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim, bias=bias and not last_bn))
    if last_bn:
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (..., D) scaled to unit length, in float32."""
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
