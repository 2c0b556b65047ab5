"""The frozen mode's model: a frozen vision model's token maps of each batch's views, and its one
foreground direction (fitted once on the training set, given as a file, or each batch's own), as
``training.quality_modes.quality_weights`` reads them for ``quality_mode="frozen"``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoImageProcessor, CLIPModel

from .._compat import clip_post_layernorm
from ..data import schema
from ..data.collators import QUALITY_INPUTS
from ..data.images import decode_image
from ..foreground import ForegroundScorer, grid_from_tokens
from ..modeling.features import backbone_feature_dim, principal_direction, token_map, vision_tower
from .quality_modes import TokenMaps, masked_pair_maps

logger = logging.getLogger(__name__)

# The frozen mode's foreground direction: quality_direction="batch" re-fits it on every batch;
# by default it is fitted once on DIRECTION_SAMPLES training images (the paper's sample size) and
# saved in output_dir/DIRECTION_FOLDER.
BATCH_DIRECTION = "batch"
DIRECTION_FOLDER = "quality_direction"
DIRECTION_SAMPLES = 10_000
# Rows that are already tensors (no image column): the view the direction is fitted on, first found.
SAMPLE_PIXEL_KEYS = ("pixel_values_real", "pixel_values_orig", "pixel_values_1", "pixel_values")


def quality_tokens(vision: nn.Module, outputs: Any) -> torch.Tensor:
    """Patch tokens (N, T, C) of a vision model's ``outputs``, in the space the foreground
    direction lives in, for the frozen mode and the generation scorer alike: a CLIP vision
    tower's tokens after its ``post_layernorm`` (CLS dropped), as ``ClipTokenEncoder`` reads them;
    any other model's last hidden state as :func:`token_map` reads it (ConvNeXt: the stage-4 map
    before the head norm, the official GenView tokens; ViT: after its final layer norm)."""
    tokens = token_map(outputs.last_hidden_state)
    if getattr(vision.config, "model_type", None) == "clip_vision_model":
        tokens = clip_post_layernorm(vision)(tokens)
    return tokens


class FrozenQualityModel:
    """The frozen vision model of the ``frozen`` mode: eval mode, no gradient, bf16 on GPU.

    ``model``: any HF vision model (a ``CLIPModel`` contributes its vision tower); GenView++
    (multi-positive) needs a whole ``CLIPModel`` for its image and text embeddings. Its tokens
    are read as :func:`quality_tokens` reads them; ``width`` is their channel count C.

    ``direction`` (C,): the fixed foreground direction of those tokens (:func:`run_direction`: a
    given one, or one fitted once on the training set by :meth:`fit_direction`); None: the first
    principal component of each batch's tokens (``quality_direction="batch"``: a row's weight
    then depends on the other rows of its batch).

    ``processor``: the model's image processor (its pixel statistics, the preprocessing of the
    fit); None: loaded from the folder or Hub id the model was loaded from, as ``pipeline`` does.
    ``input_mean`` / ``input_std``: the statistics the batches' pixels are normalised with (the
    training collator's): each view is re-normalised with the processor's statistics and resized
    to the model's ``image_size``. None: the pixels already use the frozen model's statistics.
    """

    def __init__(
        self,
        model: nn.Module,
        direction: torch.Tensor | None = None,
        *,
        processor: Any = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        multi_positive: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if multi_positive and not isinstance(model, CLIPModel):
            raise ValueError(
                f"GenView++ image-text weights need a frozen CLIPModel (image and text towers), got {type(model).__name__}"
            )
        self.clip = model if multi_positive else None
        self.vision = vision_tower(model)
        self.width = backbone_feature_dim(self.vision.config)
        self.processor = _image_processor(model, processor)
        self._renormalization = self._input_to_own(input_mean, input_std)
        device = torch.device(device)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        (model if multi_positive else self.vision).eval().requires_grad_(False).to(device, dtype)
        self.direction = direction

    @property
    def direction(self) -> torch.Tensor | None:
        return self._fixed_direction

    @direction.setter
    def direction(self, value: torch.Tensor | None) -> None:
        self._fixed_direction = None if value is None else checked_direction(value, self.width)

    def _input_to_own(
        self, mean: Sequence[float] | None, std: Sequence[float] | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(scale, shift), each (3, 1, 1), with ``own = input * scale + shift``: the input
        normalisation undone, the processor's applied. None when the inputs already use the latter."""
        if mean is None and std is None:
            return None
        own_mean, own_std = (getattr(self.processor, name, None) for name in ("image_mean", "image_std"))
        if mean is None or std is None or own_mean is None or own_std is None:
            raise ValueError(
                "cannot re-normalise the views for the frozen quality model: it needs input_mean and input_std "
                "and the model's own image processor (image_mean, image_std); load the model with "
                "from_pretrained from a folder or Hub id that has a preprocessor_config.json, or pass processor="
            )
        mean, std, own_mean, own_std = (
            torch.tensor(list(values), dtype=torch.float32).view(-1, 1, 1)
            for values in (mean, std, own_mean, own_std)
        )
        # input = (x - mean) / std and own = (x - own_mean) / own_std for the same [0, 1] pixels x
        return std / own_std, (mean - own_mean) / own_std

    def _pixels(self, pixels: torch.Tensor, renormalize: bool = True) -> torch.Tensor:
        """Views (N, 3, h, w) as the frozen model reads them: re-normalised with its statistics
        (``renormalize``), resized to its ``image_size`` (when it has one), in its device and dtype.
        Both steps are per-channel affine, so their order does not matter."""
        parameter = next(self.vision.parameters())
        pixels = pixels.to(parameter.device, torch.float32)
        if renormalize and self._renormalization is not None:
            scale, shift = (t.to(pixels.device) for t in self._renormalization)
            pixels = pixels * scale + shift
        size = getattr(self.vision.config, "image_size", None)
        if isinstance(size, int) and pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
        return pixels.to(parameter.dtype)

    def _encode(self, pixels: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The vision model's outputs on prepared pixels, and their tokens (N, T, C) in float32."""
        outputs = self.vision(pixel_values=pixels)
        return outputs, quality_tokens(self.vision, outputs).float()

    def _direction(self, tokens: torch.Tensor) -> torch.Tensor:
        direction = principal_direction(tokens) if self.direction is None else self.direction
        return direction.to(tokens.device)

    def token_maps(
        self,
        batch: dict[str, Any],
        multi_positive: bool,
        original_pairs: bool = False,
        foreground: str = "direction",
    ) -> TokenMaps:
        """The frozen model's token maps of the batch's views; their foreground from ``direction`` or,
        with ``foreground="masks"`` (GenView pairs), from the batch's cropped stored masks."""
        if foreground not in ("direction", "masks"):
            raise ValueError(f"unknown quality_foreground {foreground!r}: expected direction or masks")
        if multi_positive:
            if foreground == "masks":
                raise ValueError("quality_foreground='masks' is for GenView pairs, not GenView++ batches")
            return self._multi_positive_maps(batch)
        # Every view in one pass (eval mode: no batch statistics); LeOCLR's original first. A view's
        # geometric version (quality_views="geometric") replaces it when the batch has one.
        keys = ["pixel_values_1", "pixel_values_2"]
        if original_pairs:
            keys = ["pixel_values_orig", *keys]
        pixels = [batch.get(QUALITY_INPUTS + key, batch[key]) for key in keys]
        n = pixels[0].shape[0]
        _, tokens = self._encode(self._pixels(torch.cat(pixels)))  # (V N, T, C)
        views = tokens.reshape(len(keys), n, *tokens.shape[1:]).transpose(0, 1)  # (N, V, T, C)
        if foreground == "masks":  # the batch's cropped stored masks, not the direction
            return masked_pair_maps(batch, keys, views, original_pairs)
        return TokenMaps(views=views, direction=self._direction(tokens), anchored=original_pairs)

    def _multi_positive_maps(self, batch: dict[str, Any]) -> TokenMaps:
        pixels = batch["pixel_values"]
        n, v = pixels.shape[:2]
        outputs, tokens = self._encode(self._pixels(pixels.flatten(0, 1)))
        views = tokens.reshape(n, v, *tokens.shape[1:])  # (N, V, T, C)
        _, real_tokens = self._encode(self._pixels(batch["pixel_values_real"]))  # (N, T, C)
        text = self.clip.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")
        ).pooler_output
        return TokenMaps(
            views=views,
            direction=self._direction(torch.cat([tokens, real_tokens])),
            real=real_tokens,
            image_embeds=self.clip.visual_projection(outputs.pooler_output).float().reshape(n, v, -1),
            text_embeds=text.float(),
        )

    @torch.no_grad()
    def fit_direction(
        self,
        dataset: Any,
        num_samples: int = DIRECTION_SAMPLES,
        batch_size: int = 64,
        seed: int = 0,
        progress: bool = False,
    ) -> ForegroundScorer:
        """The generation scorer's fit (:meth:`ForegroundScorer.fit`: the top eigenvector of the
        tokens' mean-centred covariance, signed so the centre of the grid projects above its
        border) on this model's tokens of ``num_samples`` rows of ``dataset``, drawn with ``seed``
        (every row when it has fewer). Each row's ``image`` is read unaugmented, through the
        processor (resize, centre crop, its statistics), as the official fit reads its sample;
        rows that are already tensors give their first view (``SAMPLE_PIXEL_KEYS``), normalised
        as the training batches are."""
        if num_samples < 1:
            raise ValueError(f"quality_direction_samples must be at least 1, got {num_samples}")
        if dataset is None or not hasattr(dataset, "__len__") or len(dataset) == 0:
            raise ValueError(
                "quality_mode='frozen' fits its foreground direction on the training set, which is missing, "
                "empty or has no length (a streamed dataset): give quality_direction"
            )
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        indices = order[:num_samples].sort().values.tolist()
        if schema.IMAGE in (getattr(dataset, "column_names", None) or []):
            dataset = dataset.select_columns([schema.IMAGE])  # decode the images only
        chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
        logger.info("quality direction: fitting it on %d training images (two passes)", len(indices))

        def batches():
            return tqdm(chunks, desc="quality direction", disable=not progress)

        def encode(chunk: list[int]) -> torch.Tensor:
            return self._encode(self._sample_pixels(dataset, chunk))[1]

        grid = grid_from_tokens(encode(chunks[0][:1]).shape[1])
        return ForegroundScorer.fit(encode, batches, grid)

    def _sample_pixels(self, dataset: Any, indices: list[int]) -> torch.Tensor:
        """The prepared pixels (B, 3, S, S) of the rows ``indices`` of a fit sample."""
        rows = [dataset[index] for index in indices]
        if schema.IMAGE in rows[0]:
            if self.processor is None:
                raise ValueError(
                    "fitting the quality direction on images needs the frozen model's image processor: load the "
                    "model with from_pretrained from a folder or Hub id that has one, or pass processor="
                )
            images = [
                decode_image(row[schema.IMAGE], f"row {index}, column {schema.IMAGE}")
                for index, row in zip(indices, rows)
            ]
            pixels = self.processor(images=images, return_tensors="pt").pixel_values
            return self._pixels(pixels, renormalize=False)
        first = rows[0]
        keys = [k for k in SAMPLE_PIXEL_KEYS if torch.is_tensor(first.get(k)) and first[k].dim() == 3]
        if not keys:
            raise ValueError(
                f"cannot fit the quality direction: the training rows have no {schema.IMAGE} column and no "
                f"pixel tensor ({', '.join(SAMPLE_PIXEL_KEYS)}); give quality_direction"
            )
        return self._pixels(torch.stack([row[keys[0]] for row in rows]))


def _image_processor(model: nn.Module, processor: Any) -> Any:
    """``processor``'s image processor, else the one saved with ``model``; None when there is none
    (the steps that need it say so)."""
    if processor is None:
        source = getattr(model, "name_or_path", "")
        if not source:
            return None
        try:
            processor = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):  # no preprocessor_config.json there
            return None
    return getattr(processor, "image_processor", processor)


def run_direction(frozen: FrozenQualityModel, dataset: Any, args: Any) -> torch.Tensor | None:
    """The foreground direction of a run's frozen mode, from ``args.quality_direction``:

    - a path: that direction (:func:`load_direction`);
    - ``"batch"``: None, each batch's own first principal component;
    - None (the default): fitted once, at the start of training, on ``args.quality_direction_samples``
      rows of the training set (:meth:`FrozenQualityModel.fit_direction`) and saved as
      ``output_dir/quality_direction/``, a scorer folder; a resume, or another run in the same
      ``output_dir``, reads it back. The main process fits; the others wait and read it.
    """
    if args.quality_direction == BATCH_DIRECTION:
        return None
    if args.quality_direction:
        return load_direction(args.quality_direction, frozen.width)
    folder = Path(args.output_dir) / DIRECTION_FOLDER
    with args.main_process_first(local=False, desc="the quality direction"):
        if ForegroundScorer.exists(folder):
            logger.info("quality direction: reusing %s (delete it to fit the direction again)", folder)
            return load_direction(folder, frozen.width)
        scorer = frozen.fit_direction(
            dataset,
            num_samples=args.quality_direction_samples,
            batch_size=args.per_device_train_batch_size,
            seed=args.seed,
            progress=not args.disable_tqdm,
        )
        if args.should_save:
            scorer.save(folder)
            logger.info("quality direction: saved to %s", folder)
        return scorer.direction


def checked_direction(direction: Any, width: int | None, source: str = "quality_direction") -> torch.Tensor:
    """``direction`` as a float32 vector (C,); a ValueError naming ``source`` when it is empty, not
    finite, or its length is not ``width`` (the frozen model's token channels)."""
    value = torch.as_tensor(direction, dtype=torch.float32).flatten()
    if value.numel() == 0 or not torch.isfinite(value).all():
        raise ValueError(f"{source}: the foreground direction is empty or not finite")
    if width is not None and value.numel() != width:
        raise ValueError(
            f"{source}: the foreground direction has {value.numel()} values but the frozen quality model's tokens "
            f"have {width} channels: it was fitted on another model's tokens"
        )
    return value


def load_direction(path: str | Path, width: int | None = None) -> torch.Tensor:
    """A foreground direction (C,): a scorer folder (``genview_hf.foreground``: a views dataset's
    ``foreground/``, a run's ``quality_direction/``), or a .safetensors (key ``direction``) / .pt /
    .npy / .json vector; the official ``pca_vectors.npy`` (1024 x 1) gives its 1024 values, its sign
    as stored. ``width``: the token channels it is used with, checked (:func:`checked_direction`)."""
    path = Path(path)
    if not path.is_dir() and path.suffix not in (".safetensors", ".pt", ".npy", ".json"):
        raise ValueError(
            f"{path}: a foreground direction is a scorer folder or a .safetensors/.pt/.npy/.json file"
        )
    if not path.exists():
        raise FileNotFoundError(f"quality_direction: no file or folder at {path}")
    if path.is_dir():
        value = ForegroundScorer.load(path).direction
    elif path.suffix == ".safetensors":
        tensors = safetensors.torch.load_file(str(path))
        if "direction" not in tensors:
            raise ValueError(f"{path}: no 'direction' tensor (it holds {', '.join(tensors) or 'nothing'})")
        value = tensors["direction"]
    elif path.suffix == ".pt":
        value = torch.load(path, map_location="cpu", weights_only=True)
    elif path.suffix == ".npy":
        value = torch.from_numpy(np.load(path))
    else:  # .json
        value = torch.tensor(json.loads(path.read_text()))
    return checked_direction(value, width, str(path))
