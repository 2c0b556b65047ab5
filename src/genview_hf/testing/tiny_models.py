"""Tiny transformers components built offline from configs.

Each builder creates a randomly initialised model from a small config (seeded, so the
weights are the same on every machine), saves it with ``save_pretrained`` to a local folder
and loads it back with ``from_pretrained``: the real loading path runs, with no network.
Tests, the demo and the benchmarks share these.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import (
    AutoImageProcessor,
    AutoModel,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetModel,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

TINY_IMAGE_SIZE = 32
TINY_TEXT_LENGTH = 77


def tiny_root() -> Path:
    """Folder holding the tiny components: ``GENVIEW_TINY_DIR``, else a temp folder named after
    a hash of the builders' source, so a changed builder never reuses a stale saved component."""
    if os.environ.get("GENVIEW_TINY_DIR"):
        return Path(os.environ["GENVIEW_TINY_DIR"])
    digest = hashlib.sha1()
    for module in ("tiny_models.py", "tiny_diffusion.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return Path(tempfile.gettempdir()) / f"genview_hf_tiny-{digest.hexdigest()[:10]}"


def _folder(name: str, folder: str | os.PathLike | None) -> Path:
    return Path(folder) if folder is not None else tiny_root() / name


def save_atomically(folder: Path, *parts) -> None:
    """``save_pretrained`` each part into a private staging folder, then rename it into place, so
    processes building the same component at once never read a half-written folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for part in parts:
            part.save_pretrained(staging)
        try:
            os.rename(staging, folder)
        except OSError:  # another process got there first: its folder is complete
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_saved(folder: Path) -> bool:
    return (folder / "config.json").exists() or (folder / "model_index.json").exists()


def tiny_clip_tokenizer(folder: str | os.PathLike | None = None) -> CLIPTokenizer:
    """A CLIP tokenizer over a byte-level vocabulary: no files, no merges, never an unknown token."""
    folder = _folder("clip-tokenizer", folder)
    if not (folder / "tokenizer_config.json").exists():
        symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
        tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
        vocab = {token: index for index, token in enumerate(tokens)}
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_TEXT_LENGTH)
        save_atomically(folder, tokenizer)
    return CLIPTokenizer.from_pretrained(folder)


def tiny_clip_image_processor(image_size: int = TINY_IMAGE_SIZE) -> CLIPImageProcessor:
    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


def tiny_clip_vision_config(
    image_size: int = TINY_IMAGE_SIZE, hidden_size: int = 32, projection_dim: int = 16
):
    return CLIPVisionConfig(
        image_size=image_size,
        patch_size=8,  # 32 px -> 4x4 = 16 patch tokens
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=projection_dim,
    )


def tiny_clip_text_config(tokenizer: CLIPTokenizer, hidden_size: int = 32, projection_dim: int = 16):
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TINY_TEXT_LENGTH,
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_clip(folder: str | os.PathLike | None = None, seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    """A 2-layer CLIP (vision 32 px, patch 8; text 77 tokens; embeddings of 16) and its processor."""
    folder = _folder("clip", folder)
    if not _is_saved(folder):
        tokenizer = tiny_clip_tokenizer()
        config = CLIPConfig(
            text_config=tiny_clip_text_config(tokenizer).to_dict(),
            vision_config=tiny_clip_vision_config().to_dict(),
            projection_dim=16,
        )
        torch.manual_seed(seed)
        processor = CLIPProcessor(image_processor=tiny_clip_image_processor(), tokenizer=tokenizer)
        save_atomically(folder, CLIPModel(config), processor)
    return CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)


def tiny_clip_vision_with_projection(
    folder: str | os.PathLike | None = None, image_size: int = TINY_IMAGE_SIZE, seed: int = 0
) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    """A tiny CLIP vision tower with its projection (the image encoder of Stable unCLIP)."""
    folder = _folder(f"clip-vision-{image_size}", folder)
    if not _is_saved(folder):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(tiny_clip_vision_config(image_size))
        save_atomically(folder, model, tiny_clip_image_processor(image_size))
    return CLIPVisionModelWithProjection.from_pretrained(folder), CLIPImageProcessor.from_pretrained(folder)


def tiny_vit(folder: str | os.PathLike | None = None, seed: int = 0) -> tuple[ViTModel, ViTImageProcessor]:
    """A 2-layer ViT (32 px, patch 8, width 32) loadable with ``AutoModel``."""
    folder = _folder("vit", folder)
    if not _is_saved(folder):
        config = ViTConfig(
            image_size=TINY_IMAGE_SIZE,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
        )
        torch.manual_seed(seed)
        processor = ViTImageProcessor(size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})
        save_atomically(folder, ViTModel(config), processor)
    return AutoModel.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)


def tiny_resnet(
    folder: str | os.PathLike | None = None, seed: int = 0
) -> tuple[ResNetModel, ConvNextImageProcessor]:
    """A 2-stage ResNet (basic blocks, widths 8 and 16) with BatchNorm, loadable with ``AutoModel``."""
    folder = _folder("resnet", folder)
    if not _is_saved(folder):
        config = ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            layer_type="basic",
            downsample_in_first_stage=False,
        )
        torch.manual_seed(seed)
        processor = ConvNextImageProcessor(size={"shortest_edge": TINY_IMAGE_SIZE}, crop_pct=1.0)
        save_atomically(folder, ResNetModel(config), processor)
    return AutoModel.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
