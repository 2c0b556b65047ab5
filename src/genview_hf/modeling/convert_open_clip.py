"""GenView's frozen quality encoder as a plain transformers ``ConvNextModel``: a one-off conversion.

The official GenView code weights its pairs with the image tower of OpenCLIP ConvNeXt-Base-W
(``convnext_base_w``, ``laion2B-s13B-b82K-augreg``), read at 224 px: its tokens are the stage-4
map before the head norm (7 x 7 x 1024), which is ``ConvNextModel``'s ``last_hidden_state``. The
tower is a timm ``convnext_base`` trunk, the architecture transformers' ``ConvNextModel`` implements,
so its weights only need new names; the result loads with ``from_pretrained`` and needs neither
timm nor open_clip (timm imports torchvision, which cannot be imported everywhere):

    python -m genview_hf.modeling.convert_open_clip laion/CLIP-convnext_base_w-laion2B-s13B-b82K-augreg convnext_clip
    genview train --config ... --quality_model convnext_clip

Sources: an open_clip checkpoint (``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors``,
keys ``visual.trunk.*``), a timm one (the Hub's ``timm/convnext_base.clip_laion2b_augreg``,
bare timm keys), a local file or folder, or a Hub repo id. The CLIP projection (open_clip
``visual.head.proj``, timm ``head.fc``) and the text tower are left out: the frozen mode reads the
tokens, and ``pooler_output`` (head norm of the average-pooled map) is kept.

The processor is OpenCLIP's evaluation preprocessing at ``image_size``: shortest side resized to
``image_size`` (bicubic), centre crop, OpenAI CLIP mean / std.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

OPEN_CLIP_PREFIX = "visual.trunk."
GENVIEW_IMAGE_SIZE = 224  # the official GenView reads the tower at 224 px (7 x 7 tokens); CLIP trained at 256
# Looked for, in this order, in a folder or a Hub repo.
CHECKPOINT_FILES = (
    "open_clip_model.safetensors",
    "model.safetensors",
    "open_clip_pytorch_model.bin",
    "pytorch_model.bin",
)
# timm trunk name -> ConvNextModel name.
_RENAMES = (
    (r"stem\.0\.(weight|bias)", r"embeddings.patch_embeddings.\1"),
    (r"stem\.1\.(weight|bias)", r"embeddings.layernorm.\1"),
    (r"stages\.(\d+)\.downsample\.([01])\.(weight|bias)", r"encoder.stages.\1.downsampling_layer.\2.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.(weight|bias)", r"encoder.stages.\1.layers.\2.dwconv.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.norm\.(weight|bias)", r"encoder.stages.\1.layers.\2.layernorm.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.stages.\1.layers.\2.pwconv1.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.stages.\1.layers.\2.pwconv2.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.gamma", r"encoder.stages.\1.layers.\2.layer_scale_parameter"),
    (r"head\.norm\.(weight|bias)", r"layernorm.\1"),
)
_LEFT_OUT = re.compile(r"head\.(fc|pre_logits)\.")  # the classifier / CLIP projection after the head norm
_BLOCK = re.compile(r"stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.weight")


def trunk_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The timm ConvNeXt trunk of an open_clip (``visual.trunk.*``) or timm (bare keys) state dict."""
    if any(key.startswith(OPEN_CLIP_PREFIX) for key in state_dict):
        return {
            key[len(OPEN_CLIP_PREFIX) :]: value
            for key, value in state_dict.items()
            if key.startswith(OPEN_CLIP_PREFIX)
        }
    if "stem.0.weight" in state_dict:
        return dict(state_dict)
    shown = ", ".join(sorted(state_dict)[:5])
    raise ValueError(
        "not a ConvNeXt CLIP image tower: expected open_clip keys visual.trunk.* or timm keys stem.0.weight, "
        f"stages.*; the state dict starts with {shown or 'nothing'}"
    )


def convnext_config(
    trunk: Mapping[str, torch.Tensor], image_size: int = GENVIEW_IMAGE_SIZE
) -> ConvNextConfig:
    """The ``ConvNextConfig`` of a timm trunk, read from its weights' names and shapes."""
    depths: dict[int, int] = {}
    widths: dict[int, int] = {}
    for key, value in trunk.items():
        found = _BLOCK.fullmatch(key)
        if found is None:
            continue
        stage, block = int(found[1]), int(found[2])
        depths[stage] = max(depths.get(stage, 0), block + 1)
        widths[stage] = value.shape[0]
        if value.shape[-2:] != (7, 7):
            raise ValueError(
                f"{key}: ConvNextModel has 7x7 depthwise kernels, this one is {tuple(value.shape[-2:])}"
            )
    if sorted(depths) != list(range(len(depths))) or not depths:
        raise ValueError(f"the trunk's stages are {sorted(depths)}: expected stages 0, 1, ... with blocks")
    stages = range(len(depths))
    gammas = [key for key in trunk if key.endswith(".gamma")]
    if gammas and len(gammas) != sum(depths.values()):
        raise ValueError(
            f"{len(gammas)} of {sum(depths.values())} blocks have a layer scale (gamma): all or none"
        )
    return ConvNextConfig(
        num_channels=trunk["stem.0.weight"].shape[1],
        patch_size=trunk["stem.0.weight"].shape[-1],
        num_stages=len(depths),
        hidden_sizes=[widths[i] for i in stages],
        depths=[depths[i] for i in stages],
        hidden_act="gelu",  # timm's default nn.GELU (erf)
        layer_norm_eps=1e-6,  # timm's LayerNorm2d; ConvNextModel uses it for the head norm only
        layer_scale_init_value=1e-6 if gammas else 0.0,  # > 0 creates the parameters the weights fill
        image_size=image_size,
    )


def hf_state_dict(trunk: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trunk's weights under ``ConvNextModel``'s names (float32); the head after the norm is left out."""
    converted = {}
    for key, value in trunk.items():
        if _LEFT_OUT.match(key):
            continue
        for pattern, replacement in _RENAMES:
            name, found = re.subn(f"^{pattern}$", replacement, key)
            if found:
                break
        else:
            raise ValueError(
                f"{key}: no ConvNextModel weight for this trunk key (not a ConvNeXt V1 CLIP tower?)"
            )
        if value.dim() == 4 and name.endswith(("pwconv1.weight", "pwconv2.weight")):
            value = value.flatten(1)  # timm conv_mlp: 1x1 convolutions, the same as ConvNextModel's linears
        converted[name] = value.float() if value.is_floating_point() else value
    return converted


def image_processor(image_size: int = GENVIEW_IMAGE_SIZE) -> ConvNextImageProcessor:
    """OpenCLIP's evaluation preprocessing: shortest side to ``image_size`` (bicubic), centre crop
    (``crop_pct`` 1), OpenAI CLIP statistics."""
    return ConvNextImageProcessor(
        size={"shortest_edge": image_size},
        crop_pct=1.0,
        resample=PILImageResampling.BICUBIC,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], image_size: int = GENVIEW_IMAGE_SIZE
) -> tuple[ConvNextModel, ConvNextImageProcessor]:
    """An open_clip or timm ConvNeXt state dict -> (``ConvNextModel`` in eval mode, its processor)."""
    trunk = trunk_state_dict(state_dict)
    model = ConvNextModel(convnext_config(trunk, image_size))
    try:
        model.load_state_dict(hf_state_dict(trunk), strict=True)
    except RuntimeError as error:
        raise ValueError(f"the trunk does not fill a ConvNextModel: {error}") from None
    return model.eval(), image_processor(image_size)


def checkpoint_file(source: str | Path) -> Path:
    """The checkpoint file of ``source``: a file, a folder holding one of ``CHECKPOINT_FILES``, or a
    Hub repo id (downloaded)."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        for name in CHECKPOINT_FILES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} holds none of {', '.join(CHECKPOINT_FILES)}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in CHECKPOINT_FILES:
        try:
            return Path(hf_hub_download(str(source), name))
        except EntryNotFoundError:
            continue
    raise FileNotFoundError(
        f"{source}: no local file or folder, and the Hub repo has none of {', '.join(CHECKPOINT_FILES)} "
        "(or, offline, none of them is cached)"
    )


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch pickle (.bin / .pt / .pth; a ``state_dict`` entry unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


def convert(source: str | Path, output_dir: str | Path, image_size: int = GENVIEW_IMAGE_SIZE) -> Path:
    """Convert ``source`` (see :func:`checkpoint_file`) and write the model and processor to ``output_dir``."""
    model, processor = convert_state_dict(load_checkpoint(checkpoint_file(source)), image_size)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genview_hf.modeling.convert_open_clip",
        description="Write an OpenCLIP / timm ConvNeXt image tower as a transformers ConvNextModel folder "
        "(GenView's frozen quality encoder, for --quality_model).",
    )
    parser.add_argument(
        "source",
        help="checkpoint file, folder or Hub repo id, e.g. laion/CLIP-convnext_base_w-laion2B-s13B-b82K-augreg "
        "or timm/convnext_base.clip_laion2b_augreg",
    )
    parser.add_argument(
        "output_dir", help="folder to write (config, model.safetensors, preprocessor_config.json)"
    )
    parser.add_argument(
        "--image_size",
        type=int,
        default=GENVIEW_IMAGE_SIZE,
        help="input size of the processor and config (GenView: 224, 7x7 tokens; the CLIP was trained at 256)",
    )
    args = parser.parse_args(argv)
    print(f"wrote {convert(args.source, args.output_dir, args.image_size)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
