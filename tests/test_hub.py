"""The model card (Hub metadata, text, usage snippets that run, room for evaluation) and pushes."""

import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image
from transformers import AutoConfig

from genview_hf import hub
from genview_hf.evaluation.card import add_eval_results_to_card, eval_results_from_dict
from genview_hf.modeling.features import pool, resolve_pooling
from genview_hf.testing import tiny_path

SSL = dict(
    model_name="vit-mocov3-genview",
    model_class="ViTModel",
    pipeline_tag="image-feature-extraction",
    method="mocov3",
    method_paper="Chen, Xie & He 2021, An Empirical Study of Training Self-Supervised Vision Transformers",
    quality_mode="frozen",
    architecture_from="google/vit-base-patch16-224",
    base_model=None,
    datasets=["someone/imagenet-views", "sample:shapes"],
    hyperparameters={"learning_rate": 0.00015, "gamma": 1.0},
)
CLIP = dict(
    SSL,
    model_name="clip-slip-genview",
    model_class="CLIPModel",
    pipeline_tag="zero-shot-image-classification",
    method="slip",
    method_paper="Mu et al. 2022, SLIP: Self-supervision meets Language-Image Pre-training",
    quality_mode="stored",
    architecture_from="openai/clip-vit-base-patch16",
    base_model="openai/clip-vit-base-patch16",
    datasets=["sample:captions"],
)


def saved(card: ModelCard, folder) -> ModelCard:
    """Save ``card`` as ``<folder>/README.md`` and read it back with the Hub's parser."""
    folder.mkdir(parents=True, exist_ok=True)
    card.save(folder / "README.md")
    return ModelCard.load(folder / "README.md")


def usage_code(card: ModelCard) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert sum("from transformers import" in block for block in blocks) == 1, "one transformers usage snippet"
    return blocks[0]


def test_trained_from_scratch_card_metadata(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me" / "local_views").mkdir(parents=True)  # looks like owner/name, but is a local folder
    datasets = ["someone/imagenet-views", "me/local_views", str(tmp_path), "sample:shapes"]
    card = saved(hub.model_card(**dict(SSL, datasets=datasets, tags=["vit", "genview"])), tmp_path / "model")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-feature-extraction"
    assert data["license"] == "apache-2.0"
    assert data["model_name"] == "vit-mocov3-genview"
    assert data["tags"] == ["genview", "contrastive-learning", "self-supervised-learning", "mocov3", "vit"]
    assert data["datasets"] == ["someone/imagenet-views"]  # local folders and sample sets stay out
    assert "base_model" not in data
    for name in ("me/local_views", str(tmp_path), "sample:shapes"):
        assert f"`{name}`" in card.text
    assert "[someone/imagenet-views](https://huggingface.co/datasets/someone/imagenet-views)" in card.text
    assert "Architecture from `google/vit-base-patch16-224`, weights trained from scratch" in card.text
    assert card.text.startswith("\n# vit-mocov3-genview\n")
    assert "**mocov3** (Chen, Xie & He 2021" in card.text and "Quality mode: `frozen`" in card.text
    sentence = (
        "it loads with `from_pretrained`, without installing `genview_hf` and without `trust_remote_code`"
    )
    assert sentence in " ".join(card.text.split())  # whatever the line breaks
    assert "| learning_rate | 0.00015 |" in card.text and "| gamma | 1.0 |" in card.text
    assert "GenView++" not in card.text  # image-only training cites GenView alone


def test_fine_tuned_clip_card_metadata(tmp_path):
    card = saved(hub.model_card(**dict(CLIP, license="mit")), tmp_path / "clip")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "zero-shot-image-classification" and data["license"] == "mit"
    assert data["base_model"] == "openai/clip-vit-base-patch16"
    assert data["tags"] == ["genview", "contrastive-learning", "image-text", "open_clip", "slip"]
    assert "datasets" not in data  # only a sample set: nothing the Hub can link
    assert (
        "Fine-tuned from [openai/clip-vit-base-patch16](https://huggingface.co/openai/clip-vit-base-patch16)"
        in (card.text)
    )
    assert "https://arxiv.org/abs/2403.12003" in card.text and "https://arxiv.org/abs/2509.23770" in card.text


def test_base_model_from_a_local_folder_stays_out_of_the_metadata(tmp_path):
    local = str(tiny_path("vit"))
    card = saved(hub.model_card(**dict(SSL, base_model=local)), tmp_path / "model")
    assert card.data.base_model is None
    assert f"Fine-tuned from `{local}`" in card.text


@pytest.mark.parametrize("fields", [SSL, dict(CLIP, figures=["weights.png"], metrics={"eval_loss": 1.0})])
def test_no_template_syntax_left(fields, tmp_path):
    content = saved(hub.model_card(**fields), tmp_path / "model").content
    for syntax in ("{{", "}}", "{%", "%}", "{#"):
        assert syntax not in content


def test_metrics_and_figures(tmp_path):
    figures = ["weights.png", "plots/knn_curve.png"]
    card = hub.model_card(**dict(SSL, metrics={"eval_loss": 0.123456, "knn_top1": 0.5}, figures=figures))
    card = saved(card, tmp_path / "model")
    assert "| eval_loss | 0.1235 |" in card.text and "| knn_top1 | 0.5 |" in card.text
    assert "No evaluation ran" not in card.text
    assert "![weights](weights.png)" in card.text and "![knn curve](plots/knn_curve.png)" in card.text

    plain = saved(hub.model_card(**SSL), tmp_path / "plain")
    assert "_No evaluation ran during training._" in plain.text
    assert "## Figures" not in plain.text and "![" not in plain.text


def test_image_feature_snippet_runs_and_pools_as_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (48, 40), (200, 30, 30)).save("photo.jpg")
    for name in ("vit", "resnet"):
        folder = str(tiny_path(name))
        code = usage_code(hub.model_card(**dict(SSL, model_name=folder)))
        assert "AutoImageProcessor.from_pretrained" in code and "pipeline(" not in code
        scope = {}
        exec(code, scope)  # the snippet as a user would paste it, on a tiny local model
        outputs = scope["model"](**scope["inputs"])
        expected = pool(outputs, resolve_pooling(AutoConfig.from_pretrained(folder)))  # (1, C)
        torch.testing.assert_close(scope["features"], expected)


def test_zero_shot_snippet_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (48, 40), (30, 200, 30)).save("photo.jpg")
    code = usage_code(hub.model_card(**dict(CLIP, model_name=str(tiny_path("clip")))))
    assert 'pipeline("zero-shot-image-classification"' in code and "AutoImageProcessor" not in code
    card_text = hub.model_card(**dict(CLIP, model_name="owner/clip-genview")).text
    assert 'open_clip.create_model_and_transforms("hf-hub:owner/clip-genview")' in card_text
    code = code.replace("\nclassifier(", "\npredictions = classifier(")
    scope = {}
    exec(code, scope)
    assert sorted(p["label"] for p in scope["predictions"]) == ["a photo of a cat", "a photo of a dog"]


def test_evaluation_results_go_into_the_card(tmp_path):
    folder = tmp_path / "model"
    saved(hub.model_card(**dict(SSL, figures=["weights.png"])), folder)
    card = add_eval_results_to_card(folder, {"knn_top1": 0.5}, dataset_name="x")
    card = ModelCard.load(folder / "README.md")
    [result] = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_name) == ("accuracy", 0.5, "x")
    assert card.data.model_name == "vit-mocov3-genview" and card.data.tags[0] == "genview"
    assert card.data.library_name == "transformers" and card.data.datasets == ["someone/imagenet-views"]
    block = card.text.split("<!-- genview-eval:start -->")[1].split("<!-- genview-eval:end -->")[0]
    assert "| 50.00% |" in block  # the card's own block, not an appended section
    assert "## Evaluation" not in card.text
    assert "![weights](weights.png)" in card.text and "## Method" in card.text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pipeline_tag": "image-classification"}, "pipeline_tag 'image-classification'"),
        ({"quality_mode": "fresh"}, "quality_mode 'fresh'"),
        ({"figures": ["/tmp/weights.png"]}, "figure '/tmp/weights.png'"),
        ({"figures": ["weights.jpg"]}, "figure 'weights.jpg'"),
    ],
)
def test_bad_fields_are_named(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        hub.model_card(**dict(SSL, **change))


def test_a_card_written_before_the_datasets_are_known_says_so():
    card = hub.model_card(**dict(SSL, datasets=[]))
    assert card.data.datasets is None and "Training data: not recorded." in card.text
    assert "\n\n- Architecture from" in card.text  # its own paragraph, not glued to the line above


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        # the Hub's answer: a bare name lands in the token owner's namespace
        return type("RepoUrl", (), {"repo_id": repo_id if "/" in repo_id else f"me/{repo_id}"})()

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return type("Commit", (), {"commit_url": "https://hub/commit/1"})()


def test_push_folder_needs_a_card_and_uploads_the_folder(tmp_path):
    api = FakeApi()
    with pytest.raises(FileNotFoundError, match="no README.md card"):
        hub.push_folder(tmp_path, "me/model", api=api)
    assert api.calls == []
    saved(hub.model_card(**SSL), tmp_path)
    url = hub.push_folder(
        tmp_path, "me/model", private=True, revision="v1", ignore_patterns=["checkpoint-*"], api=api
    )
    assert url == "https://hub/commit/1"
    assert [call[:2] for call in api.calls] == [
        ("create_repo", "me/model"),
        ("create_branch", "me/model"),
        ("upload_folder", "me/model"),
    ]
    assert api.calls[0][2]["private"] is True and api.calls[1][2]["branch"] == "v1"
    upload = api.calls[2][2]
    assert upload["folder_path"] == tmp_path and upload["revision"] == "v1"
    assert upload["ignore_patterns"] == ["checkpoint-*"]
    hub.push_folder(tmp_path, "bare-name", api=api)
    assert api.calls[-1][:2] == ("upload_folder", "me/bare-name")  # the id the Hub returned


def test_the_model_cards_have_hub_ids_only_and_a_model_index_derived_from_eval_results(demo):
    output_dir, _ = demo
    results = json.loads((output_dir / "eval_results.json").read_text())
    for name, metrics in (
        ("model", results),
        ("model_off", results["mocov3_off"]),
        ("clip", results["clip"]),
    ):
        card = ModelCard.load(output_dir / name / "README.md")
        data = card.data
        assert isinstance(data, ModelCardData)
        assert data.datasets is None and data.base_model is None  # local data, weights from a local folder
        model_name, parsed = model_index_to_eval_results(data.to_dict()["model-index"])
        assert model_name == data.model_name and parsed
        for result in parsed:
            assert not Path(result.dataset_type).is_absolute() and "/" not in result.dataset_type
            assert str(output_dir) not in result.dataset_name
        dataset = "sample:shapes" if name == "clip" else str(output_dir / "controlled")
        derived = eval_results_from_dict(
            {k: v for k, v in metrics.items() if not isinstance(v, dict)},
            dataset_name=dataset,
            dataset_split="test",
        )
        assert {(r.dataset_type, r.metric_name, r.metric_value) for r in parsed} == {
            (r.dataset_type, r.metric_name, r.metric_value) for r in derived
        }, name
    assert {r.dataset_type for r in eval_results_from_dict({"knn_top1": 0.5}, dataset_name="owner/set")} == {
        "owner/set"
    }
