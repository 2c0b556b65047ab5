"""A CLIP root's open_clip files, checked without open_clip: the files the trainer writes beside
the transformers ones are complete (every weight of open_clip's ``CLIP`` for the config, shaped as
the config says), a reference forward of open_clip's ``CLIP`` written here in plain torch on the
exported weights gives the ``CLIPModel``'s embeddings, a rerun writes the same bytes, a SLIP root
exports its ``CLIPModel`` and an SSL root none. open_clip and CLIP_benchmark themselves load the
files in ``test_interop.py`` (``make interop``)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import CLIPModel, CLIPTokenizer

from genview_hf.cli import main as genview
from genview_hf.modeling.export_open_clip import (
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    export_open_clip,
    open_clip_config,
)
from training_helpers import make_args, make_trainer


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory):
    """A CLIP root as the trainer saves it, after one step (weights away from their init)."""
    root = tmp_path_factory.mktemp("clip_root")
    trainer = make_trainer(make_args(root, "clip", max_steps=1))
    trainer.train()
    trainer.save_model()
    return root


def _expected_shapes(model_cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every weight of open_clip's ``CLIP`` (standard text and vision transformers) and its shape,
    from the config alone."""
    text, vision, embed = model_cfg["text_cfg"], model_cfg["vision_cfg"], model_cfg["embed_dim"]
    grid = vision["image_size"] // vision["patch_size"]

    def blocks(prefix, width, layers, ratio):
        hidden = int(width * ratio)
        shapes = {}
        for i in range(layers):
            b = f"{prefix}.{i}"
            shapes |= {f"{b}.attn.in_proj_weight": (3 * width, width), f"{b}.attn.in_proj_bias": (3 * width,)}
            shapes |= {f"{b}.attn.out_proj.weight": (width, width), f"{b}.attn.out_proj.bias": (width,)}
            shapes |= {f"{b}.mlp.c_fc.weight": (hidden, width), f"{b}.mlp.c_fc.bias": (hidden,)}
            shapes |= {f"{b}.mlp.c_proj.weight": (width, hidden), f"{b}.mlp.c_proj.bias": (width,)}
            for norm in ("ln_1", "ln_2"):
                shapes |= {f"{b}.{norm}.weight": (width,), f"{b}.{norm}.bias": (width,)}
        return shapes

    tw, vw = text["width"], vision["width"]
    shapes = {
        "token_embedding.weight": (text["vocab_size"], tw),
        "positional_embedding": (text["context_length"], tw),
        "ln_final.weight": (tw,),
        "ln_final.bias": (tw,),
        "text_projection": (tw, embed),
        "logit_scale": (),
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (grid * grid + 1, vw),
        "visual.conv1.weight": (vw, 3, vision["patch_size"], vision["patch_size"]),
        "visual.proj": (vw, embed),
    }
    for norm in ("ln_pre", "ln_post"):
        shapes |= {f"visual.{norm}.weight": (vw,), f"visual.{norm}.bias": (vw,)}
    shapes |= blocks("transformer.resblocks", tw, text["layers"], text["mlp_ratio"])
    shapes |= blocks("visual.transformer.resblocks", vw, vision["layers"], vision["mlp_ratio"])
    return shapes


def test_the_trainer_writes_complete_open_clip_files_beside_the_transformers_ones(clip_root):
    meta = json.loads((clip_root / OPEN_CLIP_CONFIG).read_text())
    weights = load_file(str(clip_root / OPEN_CLIP_WEIGHTS))
    shapes = {name: tuple(tensor.shape) for name, tensor in weights.items()}
    assert shapes == _expected_shapes(meta["model_cfg"])
    assert all(tensor.dtype == torch.float32 for tensor in weights.values())
    model_cfg, hf = meta["model_cfg"], json.loads((clip_root / "config.json").read_text())
    assert model_cfg["quick_gelu"] == (hf["text_config"]["hidden_act"] == "quick_gelu")
    tokenizer = CLIPTokenizer.from_pretrained(clip_root)
    # the tiny tokenizer's end-of-text id is not its highest: pooled at the first one, not by argmax
    assert model_cfg["text_cfg"]["pool_type"] == "eos"
    assert model_cfg["text_cfg"]["eos_id"] == tokenizer.eos_token_id
    assert model_cfg["text_cfg"]["hf_tokenizer_name"]  # open_clip reads the root's own tokenizer
    assert meta["preprocess_cfg"]["size"] == hf["vision_config"]["image_size"]
    assert CLIPModel.from_pretrained(clip_root) is not None  # the transformers files still load


def _reference_open_clip(weights, model_cfg, pixels, input_ids):
    """open_clip ``CLIP.encode_image`` / ``encode_text`` in plain torch (pre-norm residual blocks,
    packed q/k/v, class token, ``ln_post`` on it, ``x @ proj``; causal text, pooled at ``eos_id``)."""
    act = (lambda x: x * torch.sigmoid(1.702 * x)) if model_cfg["quick_gelu"] else F.gelu

    def ln(x, name, eps):
        return F.layer_norm(x, x.shape[-1:], weights[f"{name}.weight"], weights[f"{name}.bias"], eps)

    def transformer(x, prefix, layers, heads, eps, causal):
        n, length, width = x.shape
        for i in range(layers):
            b = f"{prefix}.{i}"
            h = ln(x, f"{b}.ln_1", eps)
            q, k, v = F.linear(
                h, weights[f"{b}.attn.in_proj_weight"], weights[f"{b}.attn.in_proj_bias"]
            ).chunk(3, -1)
            q, k, v = (t.view(n, length, heads, width // heads).transpose(1, 2) for t in (q, k, v))
            h = (
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                .transpose(1, 2)
                .reshape(n, length, width)
            )
            x = x + F.linear(h, weights[f"{b}.attn.out_proj.weight"], weights[f"{b}.attn.out_proj.bias"])
            h = act(
                F.linear(
                    ln(x, f"{b}.ln_2", eps), weights[f"{b}.mlp.c_fc.weight"], weights[f"{b}.mlp.c_fc.bias"]
                )
            )
            x = x + F.linear(h, weights[f"{b}.mlp.c_proj.weight"], weights[f"{b}.mlp.c_proj.bias"])
        return x

    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    v_eps, t_eps = vision["norm_kwargs"]["eps"], text["norm_kwargs"]["eps"]
    x = (
        F.conv2d(pixels, weights["visual.conv1.weight"], stride=vision["patch_size"])
        .flatten(2)
        .transpose(1, 2)
    )
    cls = weights["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = ln(torch.cat([cls, x], 1) + weights["visual.positional_embedding"], "visual.ln_pre", v_eps)
    x = transformer(
        x,
        "visual.transformer.resblocks",
        vision["layers"],
        vision["width"] // vision["head_width"],
        v_eps,
        False,
    )
    image = ln(x[:, 0], "visual.ln_post", v_eps) @ weights["visual.proj"]
    x = weights["token_embedding.weight"][input_ids] + weights["positional_embedding"][: input_ids.shape[1]]
    x = ln(
        transformer(x, "transformer.resblocks", text["layers"], text["heads"], t_eps, True), "ln_final", t_eps
    )
    eos = (input_ids == text["eos_id"]).int().argmax(dim=-1)
    return image, x[torch.arange(len(x)), eos] @ weights["text_projection"]


def test_a_reference_open_clip_forward_on_the_export_gives_the_clipmodel_embeddings(clip_root):
    """float32 throughout; tolerance: eps times the longest reduction on the way to an embedding
    (a width-sized dot product, over each layer), times the values' scale (~1 after the norms)."""
    meta = json.loads((clip_root / OPEN_CLIP_CONFIG).read_text())
    weights = load_file(str(clip_root / OPEN_CLIP_WEIGHTS))
    model = CLIPModel.from_pretrained(clip_root).eval()
    tokenizer = CLIPTokenizer.from_pretrained(clip_root)
    size = meta["preprocess_cfg"]["size"]
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    context = meta["model_cfg"]["text_cfg"]["context_length"]
    texts = ["a red circle", "a photo of the small blue square.", "x"]
    tokens = tokenizer(
        texts, padding="max_length", max_length=context, return_tensors="pt"
    )  # as open_clip pads
    with torch.no_grad():
        image, text = _reference_open_clip(weights, meta["model_cfg"], pixels, tokens.input_ids)
        hf_image = model.get_image_features(pixel_values=pixels).pooler_output
        hf_text = model.get_text_features(**tokens).pooler_output
    cfg = meta["model_cfg"]
    depth = cfg["vision_cfg"]["layers"] + cfg["text_cfg"]["layers"]
    width = max(cfg["vision_cfg"]["width"] * cfg["vision_cfg"]["mlp_ratio"], context)
    atol = (
        8
        * torch.finfo(torch.float32).eps
        * width
        * depth
        * max(1.0, hf_image.abs().max(), hf_text.abs().max())
    )
    torch.testing.assert_close(image, hf_image, rtol=0, atol=atol)
    torch.testing.assert_close(text, hf_text, rtol=0, atol=atol)
    assert not torch.allclose(text[0], text[1], atol=100 * atol)  # the texts are told apart
    assert weights["logit_scale"].item() == pytest.approx(model.logit_scale.item(), abs=0)


def test_the_export_is_idempotent_and_the_command_rewrites_the_same_bytes(clip_root, capsys):
    before = {name: (clip_root / name).read_bytes() for name in (OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS)}
    export_open_clip(clip_root)
    assert genview(["export-open-clip", str(clip_root)]) == 0
    assert OPEN_CLIP_CONFIG in capsys.readouterr().out
    after = {name: (clip_root / name).read_bytes() for name in before}
    assert after == before
    assert not list(clip_root.glob(".*.partial"))


def test_a_hub_repo_id_names_the_tokenizer_for_hf_hub(clip_root, tmp_path):
    config = json.loads((clip_root / "config.json").read_text())
    processor = json.loads((clip_root / OPEN_CLIP_CONFIG).read_text())["preprocess_cfg"]
    image_processor = {"image_mean": processor["mean"], "image_std": processor["std"], "resample": 3}
    meta = open_clip_config(config, image_processor, "owner/tiny-clip")
    assert meta["model_cfg"]["text_cfg"]["hf_tokenizer_name"] == "owner/tiny-clip"


def test_a_slip_root_exports_its_clip_and_an_ssl_root_none(tmp_path):
    slip = make_trainer(make_args(tmp_path / "slip", "slip", max_steps=1))
    slip.train()
    slip.save_model()
    weights = load_file(str(tmp_path / "slip" / OPEN_CLIP_WEIGHTS))
    meta = json.loads((tmp_path / "slip" / OPEN_CLIP_CONFIG).read_text())
    assert {name: tuple(t.shape) for name, t in weights.items()} == _expected_shapes(meta["model_cfg"])
    clip = slip.model.clip.state_dict()  # the image tower is the CLIPModel's, weight for weight
    assert torch.equal(weights["visual.conv1.weight"], clip["vision_model.embeddings.patch_embedding.weight"])
    assert torch.equal(weights["visual.proj"], clip["visual_projection.weight"].T)
    q, k, v = weights["visual.transformer.resblocks.1.attn.in_proj_weight"].chunk(3)
    assert torch.equal(k, clip["vision_model.encoder.layers.1.self_attn.k_proj.weight"])
    assert not any(name.startswith("ssl_head") for name in weights)  # the SSL head is training-only

    ssl = make_trainer(make_args(tmp_path / "ssl", "mocov3", max_steps=1))
    ssl.save_model()
    assert not (tmp_path / "ssl" / OPEN_CLIP_CONFIG).exists()
    with pytest.raises(ValueError, match="model_type 'vit'.*no open_clip form"):
        export_open_clip(tmp_path / "ssl")


def test_settings_open_clip_cannot_express_are_refused_by_name(clip_root):
    config = json.loads((clip_root / "config.json").read_text())
    image_processor = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    bad = json.loads(json.dumps(config))
    bad["text_config"]["hidden_act"] = bad["vision_config"]["hidden_act"] = "gelu_new"
    with pytest.raises(ValueError, match="hidden_act"):
        open_clip_config(bad, image_processor, "x")
    size = config["vision_config"]["image_size"]
    with pytest.raises(ValueError, match="shortest side"):
        open_clip_config(config, {**image_processor, "size": {"shortest_edge": size + 8}}, "x")
    with pytest.raises(ValueError, match="resample 0"):
        open_clip_config(config, {**image_processor, "resample": 0}, "x")
    assert math.isclose(
        open_clip_config(config, image_processor, "x")["model_cfg"]["vision_cfg"]["mlp_ratio"],
        config["vision_config"]["intermediate_size"] / config["vision_config"]["hidden_size"],
    )
