"""Architecture settings of the GenView training wrappers (``PretrainedConfig``s).

Two wrappers: ``GenViewConfig`` for image-only SSL (any ``AutoModel`` vision backbone plus the
method's heads, momentum encoder and queue), ``GenViewCLIPConfig`` for image-text training
(a stock ``CLIPModel`` plus, for SLIP, an image SSL head). Run settings (learning rate,
temperature schedule, quality weights ...) live in ``GenViewTrainingArguments``, not here.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, CLIPConfig, PretrainedConfig

SSL_METHODS = ("mocov2", "mocov3", "simsiam", "byol", "simclr", "leoclr")
CLIP_METHODS = ("clip", "slip")
MOMENTUM_METHODS = ("mocov2", "mocov3", "byol", "leoclr")  # methods with a momentum (key/target) encoder
QUEUE_METHODS = ("mocov2", "leoclr")  # methods with a queue of negatives
PREDICTOR_METHODS = ("mocov3", "simsiam", "byol")  # methods with a predictor on the online branch
# methods whose loss reads the Hallucinator's rows (elsewhere its weights would get no gradient)
HALLUCINATOR_METHODS = ("mocov2", "mocov3", "simsiam", "byol")

# Head shapes per method, from the papers / official code:
# (projector hidden, projector out, projector layers, predictor hidden, BN in the projector)
_HEADS: dict[str, dict[str, Any]] = {
    # MoCo v2 (Chen et al. 2020, official code): 2-layer MLP 2048 -> 128, no BN.
    "mocov2": dict(
        proj_hidden_dim=2048, proj_dim=128, proj_layers=2, pred_hidden_dim=0, head_batchnorm=False
    ),
    # MoCo v3 (Chen, Xie, He 2021): projector 3 layers 4096 -> 256 (ViT), predictor 2 layers 4096, BN.
    "mocov3": dict(
        proj_hidden_dim=4096, proj_dim=256, proj_layers=3, pred_hidden_dim=4096, head_batchnorm=True
    ),
    # SimSiam (Chen & He 2021): projector 3 layers 2048 -> 2048, predictor bottleneck 512, BN.
    "simsiam": dict(
        proj_hidden_dim=2048, proj_dim=2048, proj_layers=3, pred_hidden_dim=512, head_batchnorm=True
    ),
    # BYOL (Grill et al. 2020): projector 4096 -> 256, predictor 4096 -> 256, 2 layers, BN.
    "byol": dict(
        proj_hidden_dim=4096, proj_dim=256, proj_layers=2, pred_hidden_dim=4096, head_batchnorm=True
    ),
    # SimCLR (Chen et al. 2020): 2-layer MLP 2048 -> 128 (v1), BN.
    "simclr": dict(proj_hidden_dim=2048, proj_dim=128, proj_layers=2, pred_hidden_dim=0, head_batchnorm=True),
    # LeOCLR (Alkhalefi et al. 2024) builds on MoCo v2: 2-layer MLP 2048 -> 128.
    "leoclr": dict(
        proj_hidden_dim=2048, proj_dim=128, proj_layers=2, pred_hidden_dim=0, head_batchnorm=False
    ),
}


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming the setting and the choices."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(choices)}")
    return value


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
            ``None`` takes the method's paper value (see ``_HEADS``). ``pred_hidden_dim=0``: no predictor.
        pooling: how one vector per image is read from the backbone: ``cls`` (first token),
            ``mean`` (mean of the tokens), ``pooler`` (the backbone's ``pooler_output``) or
            ``auto`` (cls for ViT-like models with a CLS token, pooler otherwise).
        queue_size: negatives kept for mocov2 / leoclr (MoCo v2: 65536).
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
        pooling: str = "auto",
        queue_size: int = 65536,
        use_hallucinator: bool = False,
        hallucinator_max_lambda: float = 0.1,
        **kwargs: Any,
    ) -> None:
        check_choice("method", method, SSL_METHODS)
        check_choice("pooling", pooling, ("auto", "cls", "mean", "pooler"))
        self.backbone_config = _as_config(backbone_config)
        self.method = method
        heads = _HEADS[method]
        self.proj_hidden_dim = heads["proj_hidden_dim"] if proj_hidden_dim is None else proj_hidden_dim
        self.proj_dim = heads["proj_dim"] if proj_dim is None else proj_dim
        self.proj_layers = heads["proj_layers"] if proj_layers is None else proj_layers
        if method not in PREDICTOR_METHODS:
            self.pred_hidden_dim = 0  # MoCo v2, SimCLR, LeOCLR have no predictor
        else:
            self.pred_hidden_dim = heads["pred_hidden_dim"] if pred_hidden_dim is None else pred_hidden_dim
        if method in ("simsiam", "byol") and self.pred_hidden_dim <= 0:
            raise ValueError(f"method {method!r} needs a predictor: pred_hidden_dim must be > 0")
        self.head_batchnorm = heads["head_batchnorm"] if head_batchnorm is None else head_batchnorm
        self.pooling = pooling
        if method in QUEUE_METHODS and queue_size < 1:
            raise ValueError(f"method {method!r} needs a queue: queue_size must be >= 1, got {queue_size}")
        self.queue_size = queue_size
        if use_hallucinator and method not in HALLUCINATOR_METHODS:
            raise ValueError(
                f"use_hallucinator is wired into {', '.join(HALLUCINATOR_METHODS)}, not {method!r}"
            )
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
        ssl_hidden_dim, ssl_dim: SLIP's image SSL head (SLIP paper: 3-layer MLP 4096 -> 256).
    """

    model_type = "genview_clip"

    def __init__(
        self,
        clip_config: CLIPConfig | dict | None = None,
        method: str = "clip",
        ssl_hidden_dim: int = 4096,
        ssl_dim: int = 256,
        **kwargs: Any,
    ) -> None:
        check_choice("method", method, CLIP_METHODS)
        self.clip_config = _as_config(clip_config, default_type="clip")
        self.method = method
        self.ssl_hidden_dim = ssl_hidden_dim
        self.ssl_dim = ssl_dim
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(self.clip_config, PretrainedConfig):
            output["clip_config"] = self.clip_config.to_dict()
        return output
