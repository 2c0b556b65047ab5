"""Architecture settings of the GenView training wrappers (``PretrainedConfig``s).

Two wrappers: ``GenViewConfig`` for image-only SSL (any ``AutoModel`` vision backbone plus the
method's heads, momentum encoder and queue), ``GenViewCLIPConfig`` for image-text training
(a stock ``CLIPModel`` plus, for SLIP, an image SSL head). Run settings (learning rate,
temperature schedule, quality weights ...) live in ``GenViewTrainingArguments``, not here.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, CLIPConfig, PretrainedConfig

from ..methods import IMAGE_TEXT_METHODS, SSL_METHODS, check_choice, get_method
from .features import POOLINGS


def _as_config(
    value: PretrainedConfig | dict | None, default_type: str | None = None
) -> PretrainedConfig | None:
    if value is None or isinstance(value, PretrainedConfig):
        return value
    values = dict(value)
    model_type = values.pop("model_type", default_type)
    if model_type is None:
        raise ValueError("backbone_config needs a model_type (e.g. 'vit', 'resnet', 'clip_vision_model')")
    return AutoConfig.for_model(model_type, **values)


class GenViewConfig(PretrainedConfig):
    """An SSL wrapper: ``backbone`` (any HF vision model) + projector/predictor + momentum encoder + queue.

    Args:
        backbone_config: the backbone's own config (or its dict); the backbone is built with
            ``AutoModel.from_config`` when the model is not given one.
        method: mocov2 | mocov3 | simsiam | byol | simclr | leoclr.
        proj_hidden_dim, proj_dim, proj_layers, pred_hidden_dim, head_batchnorm: head shapes;
            ``None`` takes the method's paper value (``genview_hf.methods``). ``pred_hidden_dim=0``:
            no predictor.
        pred_last_bn: a non-affine BN ends the predictor (``None``: the method's; MoCo v3 ViT yes,
            its ResNet-50 recipe no).
        head_bias: linear layers of the heads not followed by a BN keep a bias (``None``: the
            method's; MoCo v3 has none).
        pooling: how one vector per image is read from the backbone (``modeling.features.pool``):
            ``cls``, ``mean``, ``pooler`` or ``auto`` (cls for ViT-like models, pooler otherwise).
        queue_size: negatives kept for mocov2 / leoclr (MoCo v2: 65536).
        shuffle_bn: the momentum encoder sees each key batch in shuffled sub-batches, so that a
            query and its positive key never share batch-norm statistics (``None``: the method's;
            MoCo v2 and LeOCLR yes). Across processes: each process encodes a random slice of the
            global batch (MoCo's ``_batch_shuffle_ddp``); in one process: a random permutation
            split into ``shuffle_bn_groups`` sub-batches.
        shuffle_bn_groups: sub-batches of the keys in a single process (default 2).
        freeze_patch_projection: a ViT-like backbone's patch projection keeps its initial
            weights (MoCo v3's ``stop_grad_conv1``; ``None``: the method's, on for MoCo v3 where
            the backbone has a patch projection).
        use_hallucinator: add the Hallucinator's feature-space positives (training only; mocov2,
            mocov3, simsiam, byol).
        hallucinator_max_lambda: lam ~ U(0, max) per step (paper: 0.1).
    """

    model_type = "genview"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict | None = None,
        method: str = "mocov3",
        proj_hidden_dim: int | None = None,
        proj_dim: int | None = None,
        proj_layers: int | None = None,
        pred_hidden_dim: int | None = None,
        head_batchnorm: bool | None = None,
        pred_last_bn: bool | None = None,
        head_bias: bool | None = None,
        pooling: str = "auto",
        queue_size: int = 65536,
        shuffle_bn: bool | None = None,
        shuffle_bn_groups: int = 2,
        freeze_patch_projection: bool | None = None,
        use_hallucinator: bool = False,
        hallucinator_max_lambda: float = 0.1,
        **kwargs: Any,
    ) -> None:
        check_choice("method", method, SSL_METHODS)
        check_choice("pooling", pooling, POOLINGS)
        self.backbone_config = _as_config(backbone_config)
        self.method = method
        spec = get_method(method)
        heads = spec.heads
        self.proj_hidden_dim = heads.proj_hidden_dim if proj_hidden_dim is None else proj_hidden_dim
        self.proj_dim = heads.proj_dim if proj_dim is None else proj_dim
        self.proj_layers = heads.proj_layers if proj_layers is None else proj_layers
        if not spec.predictor:
            self.pred_hidden_dim = 0  # MoCo v2, SimCLR, LeOCLR have no predictor
        else:
            self.pred_hidden_dim = heads.pred_hidden_dim if pred_hidden_dim is None else pred_hidden_dim
        if method in ("simsiam", "byol") and self.pred_hidden_dim <= 0:
            raise ValueError(f"method {method!r} needs a predictor: pred_hidden_dim must be > 0")
        self.head_batchnorm = heads.batchnorm if head_batchnorm is None else head_batchnorm
        self.pred_last_bn = heads.pred_last_bn if pred_last_bn is None else pred_last_bn
        self.head_bias = heads.bias if head_bias is None else head_bias
        self.pooling = pooling
        if spec.queue and queue_size < 1:
            raise ValueError(f"method {method!r} needs a queue: queue_size must be >= 1, got {queue_size}")
        self.queue_size = queue_size
        if shuffle_bn and not spec.momentum_encoder:
            raise ValueError(f"shuffle_bn shuffles the momentum encoder's keys; method {method!r} has none")
        self.shuffle_bn = spec.shuffle_bn if shuffle_bn is None else shuffle_bn
        if shuffle_bn_groups < 1:
            raise ValueError(f"shuffle_bn_groups must be >= 1, got {shuffle_bn_groups}")
        self.shuffle_bn_groups = shuffle_bn_groups
        # None is kept: whether a backbone has a patch projection is known once it is built.
        self.freeze_patch_projection = freeze_patch_projection
        if use_hallucinator and not spec.hallucinator:
            readers = ", ".join(name for name in SSL_METHODS if get_method(name).hallucinator)
            raise ValueError(f"use_hallucinator is wired into {readers}, not {method!r}")
        self.use_hallucinator = use_hallucinator
        self.hallucinator_max_lambda = hallucinator_max_lambda
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(self.backbone_config, PretrainedConfig):
            output["backbone_config"] = self.backbone_config.to_dict()
        return output


class GenViewCLIPConfig(PretrainedConfig):
    """Image-text training: a stock ``CLIPModel`` (``clip_config``) plus, for SLIP, an image SSL head.

    Args:
        clip_config: the ``CLIPConfig`` (or its dict).
        method: clip | slip.
        ssl_hidden_dim, ssl_dim: SLIP's image SSL head (``None``: the method table's, SLIP's
            3-layer MLP 4096 -> 256).
    """

    model_type = "genview_clip"

    def __init__(
        self,
        clip_config: CLIPConfig | dict | None = None,
        method: str = "clip",
        ssl_hidden_dim: int | None = None,
        ssl_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        check_choice("method", method, IMAGE_TEXT_METHODS)
        self.clip_config = _as_config(clip_config, default_type="clip")
        self.method = method
        heads = get_method(method).heads
        self.ssl_hidden_dim = heads.proj_hidden_dim if ssl_hidden_dim is None else ssl_hidden_dim
        self.ssl_dim = heads.proj_dim if ssl_dim is None else ssl_dim
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(self.clip_config, PretrainedConfig):
            output["clip_config"] = self.clip_config.to_dict()
        return output
