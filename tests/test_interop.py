"""Real clients on what the project writes: open_clip 3.3.0, CLIP_benchmark 1.6.2 and timm, in their
own venv (``make interop``: torch 2.14.1 from the index, which cannot share the project's venv).

- open_clip loads the demo's CLIP root (``local-dir:``) and gives transformers' embeddings;
- CLIP_benchmark's ``eval`` command, unmodified, scores that root on the demo's test images and
  prompts as ``genview evaluate`` does (at most one image apart);
- the paper's frozen quality encoder architecture (timm ``convnext_base.clip_laion2b_augreg``,
  random weights) converts through ``convert_open_clip`` and gives timm's features;
- the views dataset, the controlled set and the model roots load there too.

Deselected from the default suite (marker ``interop``); the clients are imported inside the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.interop

EPS = torch.finfo(torch.float32).eps


def _clip_root(demo) -> Path:
    root = demo[0] / "clip"
    assert (root / "open_clip_config.json").is_file(), "the demo's CLIP root has no open_clip export"
    return root


def _test_split():
    """The demo's CLIP test split (the sample set's), rows with a caption no other row has: with a
    repeated caption two texts tie exactly, and the tools break ties differently (CLIP_benchmark by
    index in ``topk``, genview_hf against the query), which is a rule, not a disagreement."""
    from genview_hf.testing.samples import load_sample

    test = load_sample("shapes", split="test")
    counts: dict[str, int] = {}
    for caption in test["caption"]:
        counts[caption] = counts.get(caption, 0) + 1
    return test.select([i for i, caption in enumerate(test["caption"]) if counts[caption] == 1])


def test_open_clip_loads_the_demo_clip_root_and_gives_the_transformers_embeddings(demo):
    """float32, the same pixels and token ids into both models; tolerance: eps times the longest
    reduction on the way (the MLP width) times the layers, times the embeddings' scale."""
    import open_clip
    from transformers import CLIPModel, CLIPTokenizer

    root = _clip_root(demo)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{root}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{root}")
    hf = CLIPModel.from_pretrained(root).eval()
    model.eval()
    test = _test_split().select(range(8))
    pixels = torch.stack([preprocess(image.convert("RGB")) for image in test["image"]])  # (8, 3, 32, 32)
    texts = [*test["caption"], "a photo of the small circle.", "itap of a star."]
    ids = tokenizer(texts)
    hf_tokens = CLIPTokenizer.from_pretrained(root)(
        texts, padding="max_length", max_length=ids.shape[1], return_tensors="pt"
    )
    assert torch.equal(ids, hf_tokens.input_ids)  # open_clip reads the root's own tokenizer
    with torch.no_grad():
        image, text = model.encode_image(pixels), model.encode_text(ids)
        hf_image = hf.get_image_features(pixel_values=pixels).pooler_output
        hf_text = hf.get_text_features(**hf_tokens).pooler_output
    config = hf.config
    depth = config.vision_config.num_hidden_layers + config.text_config.num_hidden_layers
    width = max(config.vision_config.intermediate_size, config.text_config.intermediate_size, ids.shape[1])
    scale = max(1.0, hf_image.abs().max().item(), hf_text.abs().max().item())
    atol = 8 * EPS * width * depth * scale
    torch.testing.assert_close(image, hf_image, rtol=0, atol=atol)
    torch.testing.assert_close(text, hf_text, rtol=0, atol=atol)
    assert model.logit_scale.item() == hf.logit_scale.item()


def _write_wds(folder: Path, dataset, *, retrieval: bool, class_names=(), templates=()) -> None:
    """``dataset`` in CLIP_benchmark's webdataset layout (one shard of PNG + cls / txt per row)."""
    (folder / "test").mkdir(parents=True)
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for row, example in enumerate(dataset):
            image = BytesIO()
            example["image"].convert("RGB").save(image, format="PNG")  # lossless: the same pixels
            fields = {"png": image.getvalue()}
            fields["txt" if retrieval else "cls"] = (
                example["caption"] if retrieval else str(example["label"])
            ).encode()
            for ext, data in fields.items():
                info = tarfile.TarInfo(f"{row:05d}.{ext}")
                info.size = len(data)
                tar.addfile(info, BytesIO(data))
    (folder / "test" / "nshards.txt").write_text("1\n")
    if retrieval:
        (folder / "dataset_type.txt").write_text("retrieval\n")
    else:
        (folder / "classnames.txt").write_text("\n".join(class_names) + "\n")
        # CLIP_benchmark's templates put the class name at {c}
        (folder / "zeroshot_classification_templates.txt").write_text(
            "\n".join(t.replace("{}", "{c}") for t in templates) + "\n"
        )


def _clip_benchmark(root: Path, data: Path, task: str, output: Path) -> dict[str, float]:
    command = [
        str(Path(sys.executable).parent / "clip_benchmark"),
        "eval",
        "--model_type", "open_clip",
        "--model", f"local-dir:{root}",
        "--dataset", f"wds/{data.name}",
        "--dataset_root", str(data),
        "--task", task,
        "--no_amp",  # float32 as genview_hf scores (autocast on a CPU is bfloat16)
        "--recall_k", "1", "5", "10",
        "--num_workers", "0",
        "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(output.read_text())["metrics"]


def test_clip_benchmark_scores_the_demo_clip_root_as_genview_evaluate_does(demo, tmp_path):
    """The same images (PNG, lossless), class names, templates and captions. One image apart at
    most: the two tools preprocess with different resizers (transformers' CLIPImageProcessor,
    open_clip's torchvision transforms), so a near-tie between two candidates can swap."""
    from datasets import DatasetDict

    from genview_hf import cli
    from genview_hf.evaluation.zero_shot import DEFAULT_TEMPLATES

    root = _clip_root(demo)
    test = _test_split()
    names = test.features["label"].names
    DatasetDict(test=test).save_to_disk(str(tmp_path / "shapes"))
    argv = ["evaluate", "--model_name_or_path", str(root), "--dataset_name", str(tmp_path / "shapes")]
    argv += ["--protocols", "zero_shot", "retrieval", "--output_dir", str(tmp_path / "ours"), "--no_cache"]
    assert cli.main(argv) == 0
    ours = json.loads((tmp_path / "ours" / "eval_results.json").read_text())

    _write_wds(tmp_path / "zs", test, retrieval=False, class_names=names, templates=DEFAULT_TEMPLATES)
    _write_wds(tmp_path / "ret", test, retrieval=True)
    zs = _clip_benchmark(root, tmp_path / "zs", "zeroshot_classification", tmp_path / "zs.json")
    ret = _clip_benchmark(root, tmp_path / "ret", "zeroshot_retrieval", tmp_path / "ret.json")

    n = len(test)  # one caption per image: as many texts as images
    pairs = {
        "zero_shot_top1": zs["acc1"],
        "zero_shot_top5": zs["acc5"],
        **{f"i2t_R@{k}": ret[f"text_retrieval_recall@{k}"] for k in (1, 5, 10)},  # image -> text
        **{f"t2i_R@{k}": ret[f"image_retrieval_recall@{k}"] for k in (1, 5, 10)},  # text -> image
    }
    apart = {key: round(abs(ours[key] - theirs) * n, 6) for key, theirs in pairs.items()}
    print("genview_hf vs CLIP_benchmark (images apart):", apart)
    assert all(value <= 1 for value in apart.values()), (apart, ours, zs, ret)
    # a balanced-accuracy difference of one image: 1 / (classes * images of its class)
    smallest = min(test["label"].count(c) for c in set(test["label"]))
    mean_per_class = abs(ours["zero_shot_mean_per_class_accuracy"] - zs["mean_per_class_recall"])
    assert mean_per_class <= 1 / (len(set(test["label"])) * smallest) + 1e-9


def test_the_frozen_quality_encoder_architecture_converts_and_gives_timm_features():
    """timm's ``convnext_base.clip_laion2b_augreg`` (the GenView quality tower's trunk) with random
    weights, its layer scales and norms moved off their init so every block counts; float32.
    Tolerance: eps times the longest reduction (the MLP's 4 x 1024) times the features' scale."""
    import timm

    from genview_hf.modeling.convert_open_clip import convert_state_dict

    torch.manual_seed(0)
    reference = timm.create_model("convnext_base.clip_laion2b_augreg", pretrained=False).eval()
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if name.endswith("gamma"):
                parameter.uniform_(0.05, 0.2)
            elif "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    model, processor = convert_state_dict(reference.state_dict())
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = reference.forward_features(pixels)  # (2, 1024, 7, 7): the stage-4 map
        pooled = reference.forward_head(features, pre_logits=True)  # head norm of its mean
        out = model(pixel_values=pixels)
    assert out.last_hidden_state.shape == features.shape == (2, 1024, 7, 7)
    scale = max(1.0, features.abs().max().item())
    torch.testing.assert_close(out.last_hidden_state, features, rtol=0, atol=EPS * 4096 * scale)
    torch.testing.assert_close(
        out.pooler_output, pooled, rtol=0, atol=EPS * 4096 * max(1.0, pooled.abs().max().item())
    )
    assert processor.size == {"shortest_edge": 224}


def test_the_views_dataset_the_controlled_set_and_the_model_roots_load_here(demo):
    from datasets import load_dataset, load_from_disk
    from transformers import AutoImageProcessor, AutoModel, pipeline

    output_dir, _ = demo
    views = load_dataset(str(output_dir / "views"), split="train")
    assert len(views) == 16 and "view_ic" in views.column_names
    controlled = load_from_disk(str(output_dir / "controlled"))
    assert set(controlled) == {"train", "test"}
    for name in ("model", "model_off"):
        model = AutoModel.from_pretrained(output_dir / name)
        inputs = AutoImageProcessor.from_pretrained(output_dir / name)(
            images=views[0]["image"], return_tensors="pt"
        )
        with torch.no_grad():
            assert torch.isfinite(model(**inputs).last_hidden_state).all()
    classifier = pipeline("zero-shot-image-classification", model=str(_clip_root(demo)), device="cpu")
    scores = classifier(views[0]["image"], candidate_labels=["a circle", "a square"])
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-4
