"""Frozen features of any encoder over a ``datasets.Dataset``: batched, no grad, bf16 on GPU, cached.

Which feature an encoder gives is the one pooling rule of training
(``genview_hf.modeling.features.image_features``), so evaluation scores the feature the
trainer and its kNN monitor read:

1. CLIP-type models (anything with ``get_image_features``, e.g. ``CLIPModel``): the projected
   image embedding.
2. Other encoders (``model(pixel_values=...)``), with ``pooling="auto"``: the pooling recorded
   in the config of an encoder genview_hf exported, else the CLS token of ViT-like models
   (their dense + tanh pooler is never trained by SSL) and the pooled output of the rest
   (ResNet / ConvNeXt average pooling, CLIP vision's post-layernorm CLS, ``image_embeds`` of a
   ``CLIPVisionModelWithProjection``). ``cls``, ``mean`` and ``pooler`` force a choice.

A training wrapper (``GenViewModel``) is read through its backbone with its own pooling.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.images import decode_image
from ..modeling.features import POOLINGS, image_features


@dataclass
class Encoder:
    """A model with what it needs to read images (and text, for CLIP-type models)."""

    model: nn.Module
    image_processor: Any
    tokenizer: Any = None
    pooling: str = "auto"
    source: str = field(default="")

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")

    @property
    def is_clip(self) -> bool:
        """Has both towers: ``get_image_features`` and ``get_text_features``."""
        return hasattr(self.model, "get_image_features") and hasattr(self.model, "get_text_features")

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features of a batch of pixel values, by the rule in the module docstring."""
        return image_features(self.model, pixel_values, self.pooling)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), D)`` text embeddings; only for CLIP-type encoders."""
        if not self.is_clip:
            raise TypeError(
                f"text features need a CLIP-type model with get_text_features (e.g. CLIPModel); "
                f"got {type(self.model).__name__}"
            )
        if self.tokenizer is None:
            raise ValueError("text features need a tokenizer: pass tokenizer= (or a processor holding one)")
        inputs = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        inputs = {key: value for key, value in inputs.items() if key in ("input_ids", "attention_mask")}
        return _embedding(self.model.get_text_features(**inputs))


def _get(output: Any, name: str):
    if isinstance(output, dict) or hasattr(output, "keys"):
        return output.get(name)
    return getattr(output, name, None)


def _embedding(output: Any) -> torch.Tensor:
    """The (B, E) embeddings of a ``get_*_features`` output (a model output with ``pooler_output``)."""
    pooled = _get(output, "pooler_output")
    if pooled is None:
        raise ValueError(f"{type(output).__name__} has no pooler_output")
    return pooled


def _split_processor(processor: Any) -> tuple[Any, Any]:
    """(image_processor, tokenizer) from a processor, an image processor or ``None``."""
    if processor is None:
        return None, None
    image_processor = getattr(processor, "image_processor", None)
    tokenizer = getattr(processor, "tokenizer", None)
    if image_processor is None and tokenizer is None:
        return processor, None
    return image_processor, tokenizer


def unwrap_encoder(model: nn.Module, pooling: str = "auto") -> tuple[nn.Module, str]:
    """(encoder, pooling) of a model or training wrapper: a CLIP-type model as is, the CLIP model
    a wrapper keeps under ``clip`` (GenViewCLIPModel), else ``model.backbone`` (GenViewModel) read
    with the wrapper's own pooling when ``pooling`` is ``auto``."""
    if hasattr(model, "get_image_features"):
        return model, pooling
    clip = getattr(model, "clip", None)
    if clip is not None and hasattr(clip, "get_image_features"):
        return clip, pooling
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return model, pooling
    return backbone, (getattr(model, "pooling", pooling) if pooling == "auto" else pooling)


def load_encoder(
    model: str | os.PathLike | nn.Module | Encoder,
    processor: Any = None,
    *,
    tokenizer: Any = None,
    pooling: str = "auto",
    device: str | torch.device | None = None,
) -> Encoder:
    """An :class:`Encoder` from a folder, a Hub id, an in-memory model or an ``Encoder``.

    Folders and Hub ids load with ``AutoModel`` (a CLIP folder gives ``CLIPModel``) and their
    processor with ``AutoProcessor``. An in-memory model needs ``processor`` unless its
    ``name_or_path`` is a folder holding one. Training wrappers are unwrapped with
    :func:`unwrap_encoder`. ``device`` moves the model (default: CUDA when loading, else where it is).
    """
    if isinstance(model, Encoder):
        return model
    from transformers import AutoModel, AutoProcessor

    image_processor, text_tokenizer = _split_processor(processor)
    if isinstance(model, (str, os.PathLike)):
        source = str(model)
        module = AutoModel.from_pretrained(source)
        if image_processor is None:
            image_processor, found_tokenizer = _split_processor(AutoProcessor.from_pretrained(source))
            text_tokenizer = text_tokenizer or found_tokenizer
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(model, nn.Module):
        module, pooling = unwrap_encoder(model, pooling)
        source = str(getattr(module, "name_or_path", "") or "")
        if image_processor is None:
            if source and Path(source).is_dir():
                image_processor, found_tokenizer = _split_processor(AutoProcessor.from_pretrained(source))
                text_tokenizer = text_tokenizer or found_tokenizer
            else:
                raise ValueError(
                    f"{type(module).__name__} was not loaded from a folder: pass its image processor (processor=...)"
                )
    else:
        raise TypeError(
            f"model must be a folder, a Hub id, an nn.Module or an Encoder; got {type(model).__name__}"
        )
    if image_processor is None:
        raise ValueError(f"no image processor found for {source or type(module).__name__}")
    if device is not None:
        module = module.to(device)
    return Encoder(module, image_processor, tokenizer or text_tokenizer, pooling=pooling, source=source)


def check_column(dataset, column: str, purpose: str) -> None:
    """A clear error when ``dataset`` lacks ``column``, naming what it has."""
    if column not in dataset.column_names:
        raise KeyError(
            f"{purpose} needs the column {column!r}, which the dataset does not have "
            f"(columns: {', '.join(dataset.column_names)})"
        )


class _ImageBatches(torch.utils.data.Dataset):
    """Batch ``b`` of the dataset as pixel values; runs in DataLoader workers when asked."""

    def __init__(self, dataset, column: str, image_processor: Any, batch_size: int):
        self.dataset = dataset.select_columns([column])
        self.column = column
        self.image_processor = image_processor
        self.batch_size = batch_size

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int) -> torch.Tensor:
        start = index * self.batch_size
        images = self.dataset[start : start + self.batch_size][self.column]
        return pixel_values(images, self.image_processor, column=self.column, first_row=start)


def pixel_values(
    images: list, image_processor: Any, *, column: str = "image", first_row: int = 0
) -> torch.Tensor:
    """Pixel values of a list of images through the one decode of ``data.images`` (the pixels
    training saw: alpha over white, 16-bit scaled); a bad row is named."""
    converted = [
        decode_image(image, f"row {first_row + offset}, column {column!r}")
        for offset, image in enumerate(images)
    ]
    return image_processor(images=converted, return_tensors="pt")["pixel_values"]


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_pixels(
    encoder: Encoder, batches, *, progress: bool = False, desc: str = "features"
) -> torch.Tensor:
    """Features (float32, CPU) of an iterable of pixel-value batches; the model's mode is restored."""
    model = encoder.model
    was_training = model.training
    model.eval()
    device = encoder.device
    chunks = []
    try:
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            with autocast(device):
                chunks.append(encoder.image_features(batch.to(device, non_blocking=True)).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("no images to encode: the dataset is empty")
    return torch.cat(chunks)


def extract_features(
    model: str | os.PathLike | nn.Module | Encoder,
    dataset,
    *,
    processor: Any = None,
    image_column: str = "image",
    batch_size: int = 64,
    num_workers: int = 0,
    pooling: str = "auto",
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """``(len(dataset), D)`` float32 features of ``dataset[image_column]`` under a frozen encoder.

    With ``cache_dir``, features are stored as ``<cache_dir>/<key>.safetensors``, the key
    hashing the model's weights and class, the dataset's fingerprint, the column, the pooling,
    the image processor's settings and the autocast dtype; a second call with the same inputs
    reads the file instead of running the model.
    """
    encoder = load_encoder(model, processor, pooling=pooling, device=device)
    check_column(dataset, image_column, "feature extraction")
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"{feature_cache_key(encoder, dataset, image_column)}.safetensors"
        if cache_path.exists():
            from safetensors.torch import load_file

            return load_file(cache_path)["features"]
    batches = _ImageBatches(dataset, image_column, encoder.image_processor, batch_size)
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=encoder.device.type == "cuda",
    )
    features = encode_pixels(encoder, loader, progress=progress, desc=f"features {image_column}")
    if cache_path is not None:
        from safetensors.torch import save_file

        cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_path.with_suffix(f".partial-{os.getpid()}")
        save_file({"features": features.contiguous()}, str(partial))
        os.replace(partial, cache_path)  # atomic: a killed run never leaves a half-written cache
    return features


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def feature_cache_key(encoder: Encoder, dataset, image_column: str) -> str:
    """Key of a feature file: model weights + dataset fingerprint + everything else that changes features."""
    processor = encoder.image_processor
    processor_settings = (
        processor.to_json_string() if hasattr(processor, "to_json_string") else repr(processor)
    )
    parts = {
        "model_class": type(encoder.model).__name__,
        "weights": weights_digest(encoder.model),
        "dataset": getattr(dataset, "_fingerprint", None) or repr(dataset),
        "rows": len(dataset),
        "column": image_column,
        "pooling": encoder.pooling,
        "processor": processor_settings,
        "autocast": "bf16" if encoder.device.type == "cuda" else "fp32",
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def labels_of(dataset, label_column: str, purpose: str) -> torch.Tensor:
    """Integer labels of ``dataset[label_column]``; a clear error if missing or unlabelled (-1/None)."""
    if dataset is None:
        raise ValueError(f"{purpose} needs a labelled dataset; got None")
    if label_column not in dataset.column_names:
        raise KeyError(
            f"{purpose} needs labels: the dataset has no {label_column!r} column "
            f"(columns: {', '.join(dataset.column_names)}); set label_column"
        )
    values = list(dataset[label_column])
    bad = [
        row for row, value in enumerate(values) if value is None or not isinstance(value, int) or value < 0
    ]
    if bad:
        raise ValueError(
            f"{purpose} needs a non-negative integer label on every row; column {label_column!r} "
            f"has {len(bad)} bad rows (first: row {bad[0]}, value {values[bad[0]]!r})"
        )
    return torch.tensor(values, dtype=torch.long)


def class_names_of(dataset, label_column: str) -> list[str] | None:
    """The names of a ``ClassLabel`` column, else ``None``."""
    feature = dataset.features.get(label_column) if dataset is not None else None
    return list(feature.names) if hasattr(feature, "names") else None
