"""``GenViewCLIPModel``: image-text training (CLIP, SLIP, GenView++ multi-positive) as a ``PreTrainedModel``.

A stock ``CLIPModel`` is kept as the attribute ``clip`` (saved on its own as a plain
transformers model), plus SLIP's image SSL head. ``forward`` returns the loss of a collated
batch (see ``genview_hf.data.collators``) with optional quality weights.

Shapes: N captions of L tokens, V views per caption (GenView++), 3 x H x W pixels, E the
embedding size, T patch tokens of C channels.
"""

from __future__ import annotations

import math

import torch
from transformers import CLIPModel, CLIPVisionModel

from .. import losses
from ..quality import image_text_quality_weights, multi_view_quality_weights
from .common import GenViewOutput, GenViewPreTrainedModel, build_mlp, l2_normalize
from .configuration_genview import GenViewCLIPConfig
from .features import masks_to_tokens, principal_direction, token_map

LOGIT_SCALE_MAX = math.log(100.0)  # CLIP clamps its learnable log-scale at ln 100


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
        return self.clip.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()

    def _text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Unit-norm caption embeddings (N, E), float32."""
        text = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return l2_normalize(text)

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
        """CLIP loss on (image, caption) pairs: ``input_ids`` (N, L), ``pixel_values`` (N, 3, H, W).

        SLIP adds ``ssl_scale`` * SimCLR on two more views ``pixel_values_1``, ``pixel_values_2``
        (N, 3, H, W) (SLIP: ssl_scale 1.0, temperature 0.1). ``weights`` (N,) weight each
        image-text pair, ``ssl_weights`` (N,) each image-image pair of SLIP's SSL term.

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
        image_embeds = l2_normalize(self.clip.get_image_features(pixel_values=pixel_values).pooler_output)
        text_embeds = self._text_embeds(input_ids, attention_mask)
        scale = self.logit_scale()
        if weights is not None:
            weights = weights.detach().float()
        if not return_loss:
            return GenViewOutput(weights=weights, embeddings=image_embeds, logit_scale=scale.detach())
        # Negatives from every process are gathered (with gradient) inside the losses.
        if self.config.method == "slip":
            if pixel_values_1 is None or pixel_values_2 is None:
                raise ValueError("method 'slip' needs pixel_values_1 and pixel_values_2 (the two SSL views)")
            # One vision pass over both SSL views (no batch statistics in the tower); the head's
            # batch norm still sees each view on its own, as in SLIP.
            n = pixel_values_1.shape[0]
            pooled = self.clip.vision_model(
                pixel_values=torch.cat([pixel_values_1, pixel_values_2])
            ).pooler_output
            z_1, z_2 = self.ssl_head(pooled[:n]), self.ssl_head(pooled[n:])  # (N, ssl_dim) each
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
        pooled = vision.pooler_output  # (N V, C)
        image_embeds = l2_normalize(self.clip.visual_projection(pooled)).view(n, v, -1)  # (N, V, E)
        text_embeds = self._text_embeds(input_ids, attention_mask)  # (N, E)
        scale = self.logit_scale()
        if weights is None and ssl_weights is None and masks is not None:
            weights, ssl_weights = self._stored_weights(
                vision.last_hidden_state,
                image_embeds,
                text_embeds,
                masks,
                pixel_values_real,
                masks_real,
                gamma,
            )
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

    @torch.no_grad()
    def _stored_weights(
        self,
        view_hidden: torch.Tensor,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        masks: torch.Tensor,
        pixel_values_real: torch.Tensor | None,
        masks_real: torch.Tensor | None,
        gamma: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``stored`` mode GenView++ weights from this model's own detached tokens and embeddings.

        ``view_hidden`` (N V, S, C): the vision tower's last hidden state of the views;
        ``image_embeds`` (N, V, E), ``text_embeds`` (N, E); ``masks`` (N, V, H, W) the views'
        stored masks; ``pixel_values_real`` (N, 3, H, W) the unaugmented real image and
        ``masks_real`` (N, H, W) its mask (None: its foreground from the batch's principal
        direction). Returns image-text (N, V) and image-image (N, V, V) weights.
        """
        if pixel_values_real is None:
            raise ValueError("stored-mask weights need pixel_values_real (the unaugmented real image)")
        n, v = image_embeds.shape[:2]
        tokens = token_map(view_hidden.detach()).float()
        tokens = tokens.reshape(n, v, *tokens.shape[1:])  # (N, V, T, C)
        real_tokens = token_map(
            self.clip.vision_model(pixel_values=pixel_values_real).last_hidden_state
        ).float()
        view_masks = masks_to_tokens(masks.flatten(0, 1), tokens.shape[2]).view(n, v, -1)  # (N, V, T)
        real_masks = masks_to_tokens(masks_real, real_tokens.shape[1]) if masks_real is not None else None
        direction = principal_direction(real_tokens) if real_masks is None else None
        image_image = multi_view_quality_weights(tokens, None, gamma, view_masks=view_masks)
        image_text = image_text_quality_weights(
            image_embeds.detach(), text_embeds.detach(), tokens, real_tokens, direction, gamma,
            view_masks=view_masks, real_masks=real_masks,
        )  # fmt: skip
        return image_text, image_image
