"""A CLIP root as an open_clip model too: ``open_clip_config.json`` + ``open_clip_model.safetensors``.

A CLIP or SLIP root (``CLIPModel`` + ``CLIPProcessor``, see ``GenViewTrainer.save_model``) gains
the two files open_clip reads from a folder or a Hub repo, beside the transformers files, so one
folder loads three ways:

    AutoModel.from_pretrained(root)                                       # transformers
    open_clip.create_model_and_transforms(f"local-dir:{root}")            # open_clip (or hf-hub:<id>)
    clip_benchmark eval --model_type open_clip --model local-dir:<root>   # CLIP_benchmark

The weights are the same numbers under open_clip's ``CLIP`` names (its ``TextTransformer`` and
``VisionTransformer`` towers, q/k/v packed into one ``in_proj``, projections transposed). The
tokenizer stays the root's own transformers tokenizer: ``text_cfg.hf_tokenizer_name`` makes
open_clip read it with ``AutoTokenizer`` (from the folder itself under ``local-dir:``, from the repo
named there under ``hf-hub:``), and the text is pooled at the tokenizer's first end-of-text token,
as ``CLIPTextModel`` pools it. A SLIP root holds the same ``CLIPModel`` (its SSL head stays in the
training checkpoints), so it exports the same way.

Pure json / torch / safetensors: written wherever a CLIP root is saved, without open_clip
installed. For an existing root:

    genview export-open-clip <root> [--repo_id owner/name]
    python -m genview_hf.modeling.export_open_clip <root>    # the same
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
HF_WEIGHTS = "model.safetensors"
# transformers' hidden_act -> open_clip's quick_gelu flag (its other activation is nn.GELU, erf)
ACTIVATIONS = {"quick_gelu": True, "gelu": False}
# PIL resample codes of a transformers image processor -> open_clip's interpolation names
INTERPOLATIONS = {2: "bilinear", 3: "bicubic"}
# transformers CLIP layer -> open_clip residual block, for the weights that only change name
_BLOCK_RENAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def is_clip_root(folder: str | os.PathLike) -> bool:
    """Whether ``folder/config.json`` is a transformers ``CLIPModel``'s."""
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


def open_clip_config(
    config: dict[str, Any], image_processor: dict[str, Any], tokenizer_name: str
) -> dict[str, Any]:
    """``open_clip_config.json``'s content from a ``CLIPModel``'s ``config.json`` and its
    ``preprocessor_config.json``; raises ``ValueError`` naming the setting open_clip has no match for."""
    text, vision = config["text_config"], config["vision_config"]
    acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or not acts <= ACTIVATIONS.keys():
        raise ValueError(
            f"hidden_act {sorted(acts)}: open_clip's CLIP has one activation for both towers, "
            f"one of {', '.join(ACTIVATIONS)}"
        )
    embed_dim = config.get("projection_dim", 512)
    for tower in (text, vision):
        if tower.get("projection_dim", embed_dim) != embed_dim:
            raise ValueError(
                f"projection_dim {tower['projection_dim']} of a tower != the model's {embed_dim}"
            )
    width, heads = vision["hidden_size"], vision["num_attention_heads"]
    if width % heads:
        raise ValueError(f"vision hidden_size {width} is not a multiple of num_attention_heads {heads}")
    model_cfg = {
        "embed_dim": embed_dim,
        "quick_gelu": ACTIVATIONS[acts.pop()],
        "vision_cfg": {
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "width": width,
            "layers": vision["num_hidden_layers"],
            "head_width": width // heads,
            "mlp_ratio": _mlp_ratio(vision, "vision"),
            "norm_kwargs": {"eps": vision.get("layer_norm_eps", 1e-5)},
        },
        "text_cfg": {
            "context_length": text["max_position_embeddings"],
            "vocab_size": text["vocab_size"],
            "width": text["hidden_size"],
            "heads": text["num_attention_heads"],
            "layers": text["num_hidden_layers"],
            "mlp_ratio": _mlp_ratio(text, "text"),
            "norm_kwargs": {"eps": text.get("layer_norm_eps", 1e-5)},
            # CLIPTextModel pools at the first end-of-text token (its eos_token_id 2 means the legacy
            # argmax over ids, which open_clip's default pool_type is too)
            **_text_pooling(text),
            "hf_tokenizer_name": tokenizer_name,
        },
    }
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg(image_processor, vision["image_size"])}


def _mlp_ratio(tower: dict[str, Any], name: str) -> float:
    """intermediate_size / hidden_size, checked to give back the width open_clip computes (int(w * r))."""
    ratio = tower["intermediate_size"] / tower["hidden_size"]
    if int(tower["hidden_size"] * ratio) != tower["intermediate_size"]:
        raise ValueError(
            f"{name} intermediate_size {tower['intermediate_size']} is not hidden_size * a ratio"
        )
    return ratio


def _text_pooling(text: dict[str, Any]) -> dict[str, Any]:
    eos = text.get("eos_token_id", 2)
    if eos == 2:  # transformers' legacy CLIP configs: the highest id is the end-of-text token
        return {"pool_type": "argmax"}
    return {"pool_type": "eos", "eos_id": eos, "pad_id": text.get("pad_token_id", 1)}


def preprocess_cfg(image_processor: dict[str, Any], image_size: int) -> dict[str, Any]:
    """open_clip's evaluation preprocessing (shortest side to the input size, centre crop, mean / std)
    from a ``CLIPImageProcessor``'s settings; a processor it cannot express is refused by name."""
    crop = image_processor.get("crop_size") or {"height": image_size, "width": image_size}
    size = image_processor.get("size") or {}
    crop = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
    if crop != (image_size, image_size):
        raise ValueError(f"crop_size {crop} != the vision tower's image_size {image_size}")
    if image_processor.get("do_resize", True) and size.get("shortest_edge", image_size) != image_size:
        raise ValueError(
            f"size {size}: open_clip resizes the shortest side to the crop size {image_size}, "
            "a processor resizing to another size has no open_clip preprocessing"
        )
    resample = image_processor.get("resample", 3)
    if resample not in INTERPOLATIONS:
        raise ValueError(
            f"resample {resample}: open_clip interpolates with {', '.join(INTERPOLATIONS.values())}"
        )
    return {
        "size": image_size,
        "mode": "RGB",
        "mean": list(image_processor["image_mean"]),
        "std": list(image_processor["image_std"]),
        "interpolation": INTERPOLATIONS[resample],
        "resize_mode": "shortest",
    }


def open_clip_state_dict(hf: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A ``CLIPModel`` state dict under open_clip ``CLIP``'s names (every open_clip weight filled
    once; a transformers weight left unused is an error naming it)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in hf:
            raise ValueError(f"{name}: missing from the CLIPModel weights")
        used.add(name)
        return hf[name]

    def blocks(src: str, dst: str, layers: int) -> None:
        for i in range(layers):
            s, d = f"{src}.{i}", f"{dst}.{i}"
            for kind in ("weight", "bias"):  # q, k, v -> one (3 W, W) in_proj
                out[f"{d}.attn.in_proj_{kind}"] = torch.cat(
                    [take(f"{s}.self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
                )
                for old, new in _BLOCK_RENAMES.items():
                    out[f"{d}.{new}.{kind}"] = take(f"{s}.{old}.{kind}")

    text_layers = config["text_config"]["num_hidden_layers"]
    vision_layers = config["vision_config"]["num_hidden_layers"]
    out["token_embedding.weight"] = take("text_model.embeddings.token_embedding.weight")
    out["positional_embedding"] = take("text_model.embeddings.position_embedding.weight")
    blocks("text_model.encoder.layers", "transformer.resblocks", text_layers)
    for kind in ("weight", "bias"):
        out[f"ln_final.{kind}"] = take(f"text_model.final_layer_norm.{kind}")
        out[f"visual.ln_pre.{kind}"] = take(f"vision_model.pre_layrnorm.{kind}")
        out[f"visual.ln_post.{kind}"] = take(f"vision_model.post_layernorm.{kind}")
    out["text_projection"] = take("text_projection.weight").T  # x @ (W, E) in open_clip
    out["visual.class_embedding"] = take("vision_model.embeddings.class_embedding")
    out["visual.positional_embedding"] = take("vision_model.embeddings.position_embedding.weight")
    out["visual.conv1.weight"] = take("vision_model.embeddings.patch_embedding.weight")
    blocks("vision_model.encoder.layers", "visual.transformer.resblocks", vision_layers)
    out["visual.proj"] = take("visual_projection.weight").T
    out["logit_scale"] = take("logit_scale").reshape(())
    left = sorted(k for k in hf.keys() - used if not k.endswith("position_ids"))  # buffers, not weights
    if left:
        raise ValueError(f"CLIPModel weights open_clip's CLIP has no place for: {', '.join(left[:5])}")
    return {name: tensor.float().contiguous() for name, tensor in out.items()}


def export_open_clip(folder: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Write ``open_clip_config.json`` and ``open_clip_model.safetensors`` into the CLIP root
    ``folder`` from its ``config.json``, ``model.safetensors`` and its image processor's settings;
    rewriting them gives the same bytes. ``repo_id``: the Hub repo the folder goes to, where
    ``hf-hub:`` finds the tokenizer (the folder itself is where ``local-dir:`` finds it).
    Returns the config file's path."""
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if config.get("model_type") != "clip":
        raise ValueError(
            f"{folder / 'config.json'}: model_type {config.get('model_type')!r}, expected 'clip' (a CLIP "
            "or SLIP root); an SSL encoder has no open_clip form"
        )
    processor = _image_processor_settings(folder)
    weights = folder / HF_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: the CLIP root has no safetensors weights to export")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        raise FileNotFoundError(
            f"{folder} has no tokenizer files (tokenizer.json / vocab.json) for open_clip"
        )
    meta = open_clip_config(config, processor, repo_id or folder.resolve().name)
    tensors = open_clip_state_dict(load_file(str(weights)), config)
    _write_atomically(
        folder / OPEN_CLIP_WEIGHTS, lambda p: save_file(tensors, str(p), metadata={"format": "pt"})
    )
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _write_atomically(folder / OPEN_CLIP_CONFIG, lambda p: p.write_text(text))
    return folder / OPEN_CLIP_CONFIG


def export_open_clip_if_clip(folder: str | os.PathLike, repo_id: str | None = None) -> Path | None:
    """:func:`export_open_clip` for a CLIP root, nothing for any other (what the trainer calls on
    every root it saves)."""
    return export_open_clip(folder, repo_id) if is_clip_root(folder) else None


def _image_processor_settings(folder: Path) -> dict[str, Any]:
    """The image processor's settings: ``preprocessor_config.json``, else the ``image_processor``
    entry of ``processor_config.json`` (where transformers 5 writes a whole ``CLIPProcessor``)."""
    if (folder / "preprocessor_config.json").is_file():
        return _read_json(folder / "preprocessor_config.json")
    settings = _read_json(folder / "processor_config.json").get("image_processor")
    if not isinstance(settings, dict):
        raise ValueError(f"{folder / 'processor_config.json'}: no image_processor settings")
    return settings


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (not a complete CLIP root)") from None
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _write_atomically(path: Path, write) -> None:
    """Complete or absent: a kill mid-write leaves the old file (or none), never half a file."""
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genview export-open-clip",
        description="Add open_clip's files (open_clip_config.json, open_clip_model.safetensors) to a CLIP root, "
        "so it loads with open_clip's local-dir: / hf-hub: and CLIP_benchmark too.",
    )
    parser.add_argument(
        "root", help="a CLIP or SLIP run's output root (config.json, model.safetensors, processor)"
    )
    parser.add_argument(
        "--repo_id",
        default=None,
        help="the Hub repo the folder is pushed to, where open_clip's hf-hub: reads the tokenizer "
        "(default: the folder's name)",
    )
    args = parser.parse_args(argv)
    print(f"wrote {export_open_clip(args.root, args.repo_id)} and {OPEN_CLIP_WEIGHTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
