"""``GenViewCLIPModel``: the state of image-text training (CLIP, SLIP, GenView++) as a ``PreTrainedModel``.

A stock ``CLIPModel`` is kept as the attribute ``clip`` (saved on its own as a plain
transformers model), plus SLIP's image SSL head. ``forward`` embeds a collated batch (see
``genview_hf.data.collators``) and returns the embeddings (``GenViewCLIPOutput``); the loss is
the trainer's (``GenViewTrainer.objective``).

Shapes: N captions of L tokens, V views per caption (GenView++), 3 x H x W pixels, E the
embedding size, D the SSL head's, T patch tokens of C channels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from transformers import CLIPModel, CLIPVisionModel
from transformers.utils import ModelOutput

from ..methods import get_method
from .common import GenViewPreTrainedModel, build_mlp, l2_normalize
from .configuration_genview import GenViewCLIPConfig
from .features import token_map

# CLIP keeps its learnable log-scale in [0, ln 100]: clamped in place after each optimizer step
# (open_clip src/open_clip_train/train.py, SLIP main.py ``train``), never inside the forward.
LOGIT_SCALE_MAX = math.log(100.0)


@dataclass
class GenViewCLIPOutput(ModelOutput):
    """Embeddings of one image-text batch; None where the batch or the method has no such part.

    - ``image_embeds`` (N, E), or (N, V, E) for a GenView++ batch (view 0 the real image), and
      ``text_embeds`` (N, E): unit-norm, float32; ``logit_scale``: exp of the parameter.
    - ``ssl_embeds_1``, ``ssl_embeds_2`` (N, D): SLIP's SSL head on its two extra views.
    - ``view_embeds`` (N, V, D): what GenView++'s image-image term contrasts (SLIP: the SSL head
      on every view; CLIP: ``image_embeds``).
    - ``output_tokens=True`` (the ``stored`` quality mode), detached: ``tokens_1``, ``tokens_2``
      (N, T, C) of SLIP's SSL views; ``view_tokens`` (N, V, T, C) and ``real_tokens`` (N, T, C),
      the unaugmented real image's, for GenView++.
    """

    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None
    ssl_embeds_1: torch.Tensor | None = None
    ssl_embeds_2: torch.Tensor | None = None
    view_embeds: torch.Tensor | None = None
    tokens_1: torch.Tensor | None = None
    tokens_2: torch.Tensor | None = None
    view_tokens: torch.Tensor | None = None
    real_tokens: torch.Tensor | None = None


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
            heads = get_method("slip").heads  # SLIP: 3-layer MLP 4096 -> 256 with BN on the vision features
            self.ssl_head = build_mlp(
                width,
                config.ssl_hidden_dim,
                config.ssl_dim,
                heads.proj_layers,
                heads.batchnorm,
                heads.last_bn,
            )
        self.post_init()

    @classmethod
    def from_clip(cls, clip: CLIPModel, **config_kwargs) -> GenViewCLIPModel:
        return cls(GenViewCLIPConfig(clip_config=clip.config, **config_kwargs), clip=clip)

    @property
    def backbone(self) -> CLIPVisionModel:
        """The image tower (what image-only evaluation such as kNN reads)."""
        return self.clip.vision_model

    def logit_scale(self) -> torch.Tensor:
        """exp(logit_scale), unclamped: a clamp here would have zero gradient above ln 100, so a
        scale that crossed the bound could never come back; :meth:`clamp_logit_scale` bounds it."""
        return self.clip.logit_scale.exp()

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Clamp the log-scale parameter in place to [0, ln 100], as open_clip and SLIP do after every
        optimizer step (``LogitScaleClampCallback``)."""
        self.clip.logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values_1: torch.Tensor | None = None,
        pixel_values_2: torch.Tensor | None = None,
        pixel_values_real: torch.Tensor | None = None,
        output_tokens: bool = False,
    ) -> GenViewCLIPOutput:
        """Embed captions ``input_ids`` (N, L) and images ``pixel_values`` (N, 3, H, W).

        SLIP adds two SSL views ``pixel_values_1``, ``pixel_values_2`` (N, 3, H, W). A GenView++
        batch has ``pixel_values`` (N, V, 3, H, W) (the real image, then its generated views)
        and ``pixel_values_real`` (N, 3, H, W), the unaugmented real image.
        """
        if input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"{input_ids.shape[0]} captions for {pixel_values.shape[0]} images")
        if input_ids.shape[0] < 2 and self.training:
            raise ValueError("a training batch needs at least 2 image-text pairs")
        text = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        out = GenViewCLIPOutput(text_embeds=l2_normalize(text), logit_scale=self.logit_scale())
        if pixel_values.dim() == 5:
            self._multi_positive(out, pixel_values, pixel_values_real, output_tokens)
            return out
        out.image_embeds = l2_normalize(self.clip.get_image_features(pixel_values=pixel_values).pooler_output)
        if self.config.method == "slip":
            if pixel_values_1 is None or pixel_values_2 is None:
                raise ValueError("method 'slip' needs pixel_values_1 and pixel_values_2 (the two SSL views)")
            # One vision pass over both SSL views (no batch statistics in the tower); the head's
            # batch norm still sees each view on its own, as in SLIP.
            n = pixel_values_1.shape[0]
            vision = self.clip.vision_model(pixel_values=torch.cat([pixel_values_1, pixel_values_2]))
            out.ssl_embeds_1 = self.ssl_head(vision.pooler_output[:n])  # (N, D)
            out.ssl_embeds_2 = self.ssl_head(vision.pooler_output[n:])
            if output_tokens:
                tokens = token_map(vision.last_hidden_state.detach())  # (2N, T, C)
                out.tokens_1, out.tokens_2 = tokens[:n], tokens[n:]
        return out

    def _multi_positive(
        self,
        out: GenViewCLIPOutput,
        pixel_values: torch.Tensor,
        pixel_values_real: torch.Tensor | None,
        output_tokens: bool,
    ) -> None:
        """GenView++: every view of a caption through the image tower in one pass."""
        n, v = pixel_values.shape[:2]
        if v < 2:
            raise ValueError(
                f"a multi-positive batch needs V >= 2 views per caption, got pixel_values {tuple(pixel_values.shape)}"
            )
        vision = self.clip.vision_model(pixel_values=pixel_values.flatten(0, 1))
        pooled = vision.pooler_output  # (N V, C)
        out.image_embeds = l2_normalize(self.clip.visual_projection(pooled)).view(n, v, -1)  # (N, V, E)
        out.view_embeds = (
            self.ssl_head(pooled).view(n, v, -1) if self.ssl_head is not None else out.image_embeds
        )
        if output_tokens:
            if pixel_values_real is None:
                raise ValueError(
                    "the stored quality mode needs pixel_values_real (the unaugmented real image)"
                )
            tokens = token_map(vision.last_hidden_state.detach())
            out.view_tokens = tokens.reshape(n, v, *tokens.shape[1:])  # (N, V, T, C)
            with torch.no_grad():
                real = self.clip.vision_model(pixel_values=pixel_values_real).last_hidden_state
            out.real_tokens = token_map(real)  # (N, T, C)

    def export_encoder(self) -> CLIPModel:
        """The ``CLIPModel`` as a plain transformers model (LoRA merged into a copy)."""
        encoder = self.clip
        if hasattr(encoder, "merge_and_unload"):  # a PEFT model
            encoder = copy.deepcopy(encoder).merge_and_unload()
        return encoder
