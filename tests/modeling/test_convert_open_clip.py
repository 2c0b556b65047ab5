"""The open_clip / timm ConvNeXt -> ``ConvNextModel`` conversion, checked without timm: random
weights under timm's names, a reference forward of timm's ConvNeXt written here in plain torch,
the converted model's outputs equal to it (``last_hidden_state``: the stage-4 map before the
head norm, which the frozen quality mode reads)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, ConvNextModel
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from genview_hf.modeling.convert_open_clip import convert_state_dict, main
from genview_hf.training import FrozenQualityModel
from tolerances import reduction_tolerance
from training_helpers import make_args, make_trainer

WIDTHS, DEPTHS, PATCH, PROJECTION = (8, 16), (2, 2), 4, 5


def _conv_tolerance(expected: torch.Tensor) -> dict[str, float]:
    """Two ConvNeXt implementations on the same float32 weights: ~10,000-term sums per output."""
    return reduction_tolerance(torch.float32, 10_000, expected.abs().max())


def _timm_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of a 2-stage timm ConvNeXt (timm's key names), CLIP projection included."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.3):
        return scale * torch.randn(*shape, generator=g)

    def norm(prefix, width):  # LayerNorm weights away from (1, 0) so a missed one shows
        return {f"{prefix}.weight": 1 + rand(width), f"{prefix}.bias": rand(width)}

    state = {"stem.0.weight": rand(WIDTHS[0], 3, PATCH, PATCH), "stem.0.bias": rand(WIDTHS[0])}
    state |= norm("stem.1", WIDTHS[0])
    for stage, (width, depth) in enumerate(zip(WIDTHS, DEPTHS)):
        if stage > 0:
            state |= norm(f"stages.{stage}.downsample.0", WIDTHS[stage - 1])
            state[f"stages.{stage}.downsample.1.weight"] = rand(width, WIDTHS[stage - 1], 2, 2)
            state[f"stages.{stage}.downsample.1.bias"] = rand(width)
        for block in range(depth):
            prefix = f"stages.{stage}.blocks.{block}"
            state[f"{prefix}.conv_dw.weight"] = rand(width, 1, 7, 7)
            state[f"{prefix}.conv_dw.bias"] = rand(width)
            state |= norm(f"{prefix}.norm", width)
            state[f"{prefix}.mlp.fc1.weight"] = rand(4 * width, width)
            state[f"{prefix}.mlp.fc1.bias"] = rand(4 * width)
            state[f"{prefix}.mlp.fc2.weight"] = rand(width, 4 * width)
            state[f"{prefix}.mlp.fc2.bias"] = rand(width)
            state[f"{prefix}.gamma"] = 0.5 + rand(width)
    state |= norm("head.norm", WIDTHS[-1])
    state["head.fc.weight"] = rand(PROJECTION, WIDTHS[-1])
    state["head.fc.bias"] = torch.zeros(PROJECTION)
    return state


def _channels_first_norm(x, state, prefix):
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], state[f"{prefix}.weight"], state[f"{prefix}.bias"], 1e-6).permute(0, 3, 1, 2)  # fmt: skip


def _timm_forward(state, pixels):
    """timm's ConvNeXt (patch stem, LN, channels-last blocks): (stage-4 map, head norm of its mean)."""
    x = F.conv2d(pixels, state["stem.0.weight"], state["stem.0.bias"], stride=PATCH)
    x = _channels_first_norm(x, state, "stem.1")
    for stage, depth in enumerate(DEPTHS):
        if stage > 0:
            x = _channels_first_norm(x, state, f"stages.{stage}.downsample.0")
            down = f"stages.{stage}.downsample.1"
            x = F.conv2d(x, state[f"{down}.weight"], state[f"{down}.bias"], stride=2)
        for block in range(depth):
            p = f"stages.{stage}.blocks.{block}"
            y = F.conv2d(
                x, state[f"{p}.conv_dw.weight"], state[f"{p}.conv_dw.bias"], padding=3, groups=x.shape[1]
            )
            y = y.permute(0, 2, 3, 1)  # (N, h, w, C)
            y = F.layer_norm(y, y.shape[-1:], state[f"{p}.norm.weight"], state[f"{p}.norm.bias"], 1e-6)
            y = F.linear(F.gelu(F.linear(y, state[f"{p}.mlp.fc1.weight"], state[f"{p}.mlp.fc1.bias"])), state[f"{p}.mlp.fc2.weight"], state[f"{p}.mlp.fc2.bias"])  # fmt: skip
            x = x + (y * state[f"{p}.gamma"]).permute(0, 3, 1, 2)
    pooled = F.layer_norm(
        x.mean((2, 3)), x.shape[1:2], state["head.norm.weight"], state["head.norm.bias"], 1e-6
    )
    return x, pooled


def _open_clip_layout(state):
    """The same tower as open_clip stores it: the trunk under visual.trunk., its projection and a text tower beside."""
    trunk = {f"visual.trunk.{key}": value for key, value in state.items() if not key.startswith("head.fc")}
    return trunk | {
        "visual.head.proj.weight": state["head.fc.weight"],
        "transformer.resblocks.0.attn.in_proj_weight": torch.randn(12, 4),
        "logit_scale": torch.tensor(4.6),
    }


@pytest.mark.parametrize("layout", ["timm", "open_clip"])
def test_converted_model_is_the_timm_convnext(layout):
    state = _timm_state_dict()
    model, processor = convert_state_dict(
        state if layout == "timm" else _open_clip_layout(state), image_size=32
    )
    assert isinstance(model, ConvNextModel) and not model.training
    assert model.config.hidden_sizes == list(WIDTHS) and model.config.depths == list(DEPTHS)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(pixel_values=pixels)
        stage4, pooled = _timm_forward(state, pixels)
    assert out.last_hidden_state.shape == (2, WIDTHS[-1], 4, 4)
    # transformers' ConvNeXt against the timm-layout reference: other kernels for the same
    # convolutions, ~10,000-term float32 sums per output through the stages
    torch.testing.assert_close(out.last_hidden_state, stage4, **_conv_tolerance(stage4))
    torch.testing.assert_close(out.pooler_output, pooled, **_conv_tolerance(pooled))
    assert tuple(processor.image_mean) == tuple(OPENAI_CLIP_MEAN)
    assert tuple(processor.image_std) == tuple(OPENAI_CLIP_STD)


def test_every_weight_matters():
    """A key the mapping dropped would leave a random weight: perturbing any converted weight moves the output."""
    state = _timm_state_dict()
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model, _ = convert_state_dict(state, image_size=32)
    with torch.no_grad():
        reference = model(pixel_values=pixels)
        for name, parameter in model.named_parameters():
            parameter.add_(0.5)
            moved = model(pixel_values=pixels)
            parameter.sub_(0.5)
            changed = not torch.allclose(moved.pooler_output, reference.pooler_output)
            changed |= not torch.allclose(moved.last_hidden_state, reference.last_hidden_state)
            assert changed, name


def test_bad_state_dicts_are_named():
    with pytest.raises(ValueError, match="visual.trunk"):
        convert_state_dict({"conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="mlp.grn.weight"):  # ConvNeXt V2 has no ConvNextModel weight
        convert_state_dict(_timm_state_dict() | {"stages.0.blocks.0.mlp.grn.weight": torch.zeros(8)})
    state = _timm_state_dict()
    state["stages.0.blocks.0.conv_dw.weight"] = torch.zeros(8, 1, 5, 5)
    with pytest.raises(ValueError, match="7x7"):
        convert_state_dict(state)


@pytest.mark.parametrize("file_name", ["open_clip_pytorch_model.bin", "model.safetensors"])
def test_cli_writes_a_folder_plain_transformers_loads(tmp_path, file_name):
    state = _open_clip_layout(_timm_state_dict())
    source = tmp_path / "source"
    source.mkdir()
    if file_name.endswith(".bin"):
        torch.save(state, source / file_name)
    else:
        from safetensors.torch import save_file

        save_file({key: value.contiguous() for key, value in state.items()}, str(source / file_name))
    assert main([str(source), str(tmp_path / "converted"), "--image_size", "32"]) == 0
    model = AutoModel.from_pretrained(tmp_path / "converted")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "converted")
    assert isinstance(model, ConvNextModel) and model.config.image_size == 32
    # OpenCLIP's evaluation preprocessing: shortest side to 32 (bicubic), centre crop, CLIP statistics
    array = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    resized = image.resize((51, 32), Image.Resampling.BICUBIC)  # 64 * 32 / 40 = 51.2
    left = (51 - 32) // 2
    crop = np.asarray(resized.crop((left, 0, left + 32, 32)), dtype=np.float32) / 255.0
    expected = (crop - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    pixels = processor(images=image, return_tensors="pt").pixel_values
    torch.testing.assert_close(
        pixels[0], torch.from_numpy(expected.transpose(2, 0, 1)).float(), atol=2e-2, rtol=0
    )
    with torch.no_grad():
        stage4, _ = _timm_forward(_timm_state_dict(), pixels)
        torch.testing.assert_close(
            model(pixel_values=pixels).last_hidden_state, stage4, **_conv_tolerance(stage4)
        )


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds none of"):
        main([str(tmp_path), str(tmp_path / "out")])
    with pytest.raises(FileNotFoundError, match="not-a-repo/nothing"):
        main(["not-a-repo/nothing", str(tmp_path / "out")])


def test_the_converted_folder_is_a_quality_model(tmp_path):
    """``--quality_model <converted folder>``: the frozen mode reads the stage-4 map before the head
    norm, re-normalised with OpenCLIP's statistics, fits its direction on it and weights the pairs."""
    state = _open_clip_layout(_timm_state_dict())
    torch.save(state, tmp_path / "open_clip_pytorch_model.bin")
    main([str(tmp_path / "open_clip_pytorch_model.bin"), str(tmp_path / "convnext"), "--image_size", "32"])
    args = make_args(
        tmp_path / "run",
        "mocov3",
        quality_mode="frozen",
        quality_model=str(tmp_path / "convnext"),
        max_steps=2,
    )
    trainer = make_trainer(args)
    assert trainer.frozen_quality.direction.shape == (WIDTHS[-1],)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(entry["weight_min"] < entry["weight_max"] for entry in logs)  # weights that differ
    # the tokens: the timm reference's stage-4 map, flattened to (N, T, C), on ImageNet-normalised views
    imagenet_mean, imagenet_std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    frozen = FrozenQualityModel(
        AutoModel.from_pretrained(tmp_path / "convnext"), input_mean=imagenet_mean, input_std=imagenet_std
    )
    crops = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    views = (crops - imagenet_mean.view(3, 1, 1)) / imagenet_std.view(3, 1, 1)
    maps = frozen.token_maps({"pixel_values_1": views, "pixel_values_2": views}, multi_positive=False)
    clip_pixels = (crops - torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)) / torch.tensor(OPENAI_CLIP_STD).view(
        3, 1, 1
    )
    with torch.no_grad():
        stage4, _ = _timm_forward(_timm_state_dict(), clip_pixels.float())
    expected = stage4.flatten(2).transpose(1, 2)
    torch.testing.assert_close(maps.views[:, 0], expected, **_conv_tolerance(expected))
