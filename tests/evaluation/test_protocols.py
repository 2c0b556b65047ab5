"""Evaluation protocols on inputs of known structure: kNN, linear probe, zero-shot, retrieval, cards."""

import json
import re

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Sequence, Value
from huggingface_hub import ModelCard
from PIL import Image as PILImage
from torch import nn
from transformers import CLIPProcessor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from genview_hf.evaluation import (
    add_eval_results_to_card,
    evaluate_encoder,
    extract_features,
    knn_evaluate,
    linear_probe,
    load_encoder,
    retrieval_evaluate,
    retrieval_ranks,
    retrieval_scores,
    zero_shot_evaluate,
)
from genview_hf.evaluation.features import feature_cache_key
from genview_hf.evaluation.metrics import compute
from genview_hf.recipes.evaluate_encoder import cli as run_main
from genview_hf.testing import (
    tiny_clip,
    tiny_clip_tokenizer,
    tiny_clip_vision_with_projection,
    tiny_resnet,
    tiny_vit,
)
from genview_hf.testing.tiny_models import tiny_clip_image_processor
from tolerances import reduction_tolerance

GRID = 8  # 32 px images cut into 8 x 8 cells of 4 px
CELLS = GRID * GRID


# ----------------------------------------------------------------------------- known-structure data


def clusters(n_classes=10, n_train=400, n_test=200, dim=32, spread=0.5, seed=0):
    """Gaussian clusters around well separated centres: separable by construction."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=generator) * 4

    def sample(n):
        labels = torch.arange(n) % n_classes
        return centres[labels] + spread * torch.randn(n, dim, generator=generator), labels

    return (*sample(n_train), *sample(n_test))


def cell_image(cell: int, seed: int = 0) -> PILImage.Image:
    """A dark, slightly noisy 32 px image whose cell ``cell`` (of the 8 x 8 grid) is bright."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, size=(32, 32, 3), dtype=np.uint8)
    row, column = divmod(cell, GRID)
    pixels[4 * row : 4 * row + 4, 4 * column : 4 * column + 4] = 255
    return PILImage.fromarray(pixels)


def cell_dataset(cells, labels=None, captions=None, class_names=None):
    data = {"image": [cell_image(cell, seed=index) for index, cell in enumerate(cells)]}
    features = {"image": Image()}
    if labels is not None:
        data["label"] = list(labels)
        features["label"] = ClassLabel(names=class_names) if class_names else Value("int64")
    if captions is not None:
        data["caption"] = captions
        features["caption"] = Sequence(Value("string")) if isinstance(captions[0], list) else Value("string")
    return Dataset.from_dict(data, features=Features(features))


class CellCLIP(nn.Module):
    """A CLIP-type model built to match: an image embeds as its 8 x 8 cell brightness map, a text
    naming ``c<i>`` as the one-hot of cell i, so image i and text "c<i>" align and nothing else does.
    ``matched=False`` gives each text a random embedding instead (seeded by the text): chance."""

    def __init__(self, tokenizer, matched: bool = True):
        super().__init__()
        self.tokenizer = tokenizer
        self.matched = matched
        self.scale = nn.Parameter(torch.ones(()))

    def get_image_features(self, pixel_values):
        cells = nn.functional.avg_pool2d(pixel_values.mean(dim=1, keepdim=True), 32 // GRID).flatten(1)
        return BaseModelOutputWithPooling(
            pooler_output=self.scale * (cells - cells.mean(dim=1, keepdim=True))
        )

    def get_text_features(self, input_ids, attention_mask=None):
        embeddings = []
        for text in self.tokenizer.batch_decode(input_ids, skip_special_tokens=True):
            if self.matched:
                embeddings.append(
                    nn.functional.one_hot(
                        torch.tensor(int(re.search(r"c(\d+)", text.replace(" ", ""))[1])), CELLS
                    )
                )
            else:
                generator = torch.Generator().manual_seed(sum(map(ord, text)) * 7919 + len(text))
                embeddings.append(torch.randn(CELLS, generator=generator))
        return BaseModelOutputWithPooling(pooler_output=self.scale * torch.stack(embeddings).float())


@pytest.fixture(scope="module")
def clip_processor():
    return CLIPProcessor(image_processor=tiny_clip_image_processor(), tokenizer=tiny_clip_tokenizer())


def cell_clip(processor, matched=True):
    return load_encoder(CellCLIP(processor.tokenizer, matched=matched), processor)


# ----------------------------------------------------------------------------- metrics modules


def test_metric_modules_load_offline_by_path():
    scores = compute(
        "classification",
        predictions=[[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 1, 0, 3, 4]],
        references=[0, 0, 2],
    )
    assert scores["top1"] == pytest.approx(2 / 3)
    assert scores["top5"] == 1.0
    assert scores["mean_per_class_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    ranks = compute("retrieval", predictions=[1, 1, 3, 20])
    assert ranks == {"R@1": 0.5, "R@5": 0.75, "R@10": 0.75, "mean_rank": 6.25, "median_rank": 2.0}
    with pytest.raises(ValueError, match="unknown metric"):
        compute("accuracy", predictions=[0], references=[0])


# ----------------------------------------------------------------------------- kNN and linear probe


def test_knn_separable_clusters_are_perfect_and_shuffled_labels_fall_to_chance():
    train_x, train_y, test_x, test_y = clusters()
    scores = knn_evaluate(train_x, train_y, test_x, test_y)
    assert scores["knn_top1"] == 1.0 and scores["knn_mean_per_class_accuracy"] == 1.0
    shuffled = train_y[torch.randperm(len(train_y))]
    control = knn_evaluate(train_x, shuffled, test_x, test_y)
    assert abs(control["knn_top1"] - 0.1) < 0.08  # chance = 1 / 10 classes


def test_knn_votes_are_temperature_weighted():
    # One close neighbour of class 1 against two farther ones of class 0: with k=3 a sharp
    # temperature lets the close neighbour win; a flat one lets the majority win.
    train = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.05]])
    sharp = knn_evaluate(train, labels, query, torch.tensor([1]), k=3, temperature=0.07)
    flat = knn_evaluate(train, labels, query, torch.tensor([1]), k=3, temperature=100.0)
    assert sharp["knn_top1"] == 1.0 and flat["knn_top1"] == 0.0


def test_linear_probe_separable_clusters_and_shuffled_control():
    train_x, train_y, test_x, test_y = clusters(dim=16)
    scores = linear_probe(train_x, train_y, test_x, test_y, epochs=20)
    assert scores["linear_top1"] == 1.0 and scores["linear_mean_per_class_accuracy"] == 1.0
    assert scores["linear_best_lr"] in (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
    shuffled = train_y[torch.randperm(len(train_y))]
    control = linear_probe(train_x, shuffled, test_x, test_y, epochs=20)
    assert abs(control["linear_top1"] - 0.1) < 0.08


def test_linear_probe_picks_the_learning_rate_on_held_out_data():
    # Only a large learning rate gets anywhere in 2 epochs on this overlapping problem.
    train_x, train_y, test_x, test_y = clusters(n_classes=4, spread=3.0, dim=8)
    scores = linear_probe(train_x, train_y, test_x, test_y, lrs=[1e-6, 1.0], epochs=2)
    assert scores["linear_best_lr"] == 1.0
    assert 0.3 < scores["linear_held_out_top1"] <= 1.0


def test_knn_and_linear_need_labels():
    train_x, train_y, test_x, test_y = clusters()
    with pytest.raises(ValueError, match="labels are missing"):
        knn_evaluate(train_x, None, test_x, test_y)
    with pytest.raises(ValueError, match="400 features but 3 labels"):
        linear_probe(train_x, train_y[:3], test_x, test_y)
    unlabelled = cell_dataset(range(8))
    vit, processor = tiny_vit()
    for protocol in ("knn", "linear"):
        with pytest.raises(KeyError, match="no 'label' column"):
            evaluate_encoder(
                vit, unlabelled, train_dataset=unlabelled, protocols=[protocol], processor=processor
            )
    with pytest.raises(ValueError, match="need a labelled train_dataset"):
        evaluate_encoder(vit, unlabelled, protocols=["knn"], processor=processor)
    minus_one = cell_dataset(range(4), labels=[0, 1, -1, 0])
    with pytest.raises(ValueError, match="row 2"):
        evaluate_encoder(vit, minus_one, train_dataset=minus_one, protocols=["knn"], processor=processor)


def test_unknown_protocol_is_named():
    vit, processor = tiny_vit()
    with pytest.raises(ValueError, match="knnn"):
        evaluate_encoder(vit, cell_dataset(range(2)), protocols=["knnn"], processor=processor)


# ----------------------------------------------------------------------------- features


def test_feature_rule_per_encoder_kind():
    dataset = cell_dataset(range(6))
    clip, clip_processor_ = tiny_clip()
    assert extract_features(clip, dataset, processor=clip_processor_, progress=False).shape == (6, 16)
    tower, tower_processor = tiny_clip_vision_with_projection()
    projected = extract_features(tower, dataset, processor=tower_processor, progress=False)
    assert projected.shape == (6, 16)  # image_embeds
    resnet, resnet_processor = tiny_resnet()
    flat = extract_features(resnet, dataset, processor=resnet_processor, progress=False)
    assert flat.shape == (6, 16)  # pooler_output (6, 16, 1, 1) flattened
    vit, vit_processor = tiny_vit()
    auto = extract_features(vit, dataset, processor=vit_processor, progress=False)
    pooler = extract_features(vit, dataset, processor=vit_processor, pooling="pooler", progress=False)
    mean = extract_features(vit, dataset, processor=vit_processor, pooling="mean", progress=False)
    pixels = vit_processor(images=[image.convert("RGB") for image in dataset["image"]], return_tensors="pt")
    with torch.no_grad():
        output = vit(**pixels)
    # ViT: its CLS token, as in training (the dense + tanh pooler is never trained by SSL)
    torch.testing.assert_close(auto, output.last_hidden_state[:, 0])
    torch.testing.assert_close(pooler, output.pooler_output)
    torch.testing.assert_close(mean, output.last_hidden_state.mean(dim=1))
    vit.config.genview_pooling = "mean"  # an encoder genview_hf exported records its pooling
    recorded = extract_features(vit, dataset, processor=vit_processor, progress=False)
    torch.testing.assert_close(recorded, mean)


def test_features_of_a_folder_a_wrapper_and_batches_agree(tmp_path):
    vit, processor = tiny_vit()
    dataset = cell_dataset(range(7))
    by_folder = extract_features(vit.name_or_path, dataset, batch_size=3, progress=False)

    class Wrapper(nn.Module):  # the GenView SSL wrapper keeps its encoder under .backbone
        def __init__(self):
            super().__init__()
            self.backbone = vit
            self.head = nn.Linear(32, 4)

    by_wrapper = extract_features(Wrapper(), dataset, processor=processor, batch_size=7, progress=False)
    within = reduction_tolerance(torch.float32, 1_000, by_folder.abs().max())  # batches of 3 against one of 7
    torch.testing.assert_close(by_folder, by_wrapper, **within)

    clip, clip_processor_ = tiny_clip()

    class CLIPWrapper(nn.Module):  # GenViewCLIPModel keeps its CLIPModel under .clip
        def __init__(self):
            super().__init__()
            self.clip = clip

    by_clip_wrapper = extract_features(CLIPWrapper(), dataset, processor=clip_processor_, progress=False)
    by_clip = extract_features(clip, dataset, processor=clip_processor_, progress=False)
    torch.testing.assert_close(by_clip_wrapper, by_clip, rtol=0, atol=0)  # the same module, the same batches
    assert load_encoder(CLIPWrapper(), clip_processor_).is_clip


def test_feature_cache_is_keyed_by_weights_and_dataset(tmp_path):
    vit, processor = tiny_vit()
    dataset = cell_dataset(range(5))
    first = extract_features(vit, dataset, processor=processor, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    with torch.no_grad():  # same weights and data: read back from the file, the model is not called
        vit.forward = None
        again = extract_features(vit, dataset, processor=processor, cache_dir=tmp_path, progress=False)
    del vit.forward
    torch.testing.assert_close(first, again)
    key = feature_cache_key(load_encoder(vit, processor), dataset, "image")
    with torch.no_grad():
        vit.embeddings.patch_embeddings.projection.weight.add_(0.1)
    assert feature_cache_key(load_encoder(vit, processor), dataset, "image") != key
    other = cell_dataset(range(1, 6))
    assert feature_cache_key(load_encoder(vit, processor), other, "image") != key


def test_feature_extraction_bad_input_is_named():
    vit, processor = tiny_vit()
    with pytest.raises(KeyError, match="'picture'"):
        extract_features(vit, cell_dataset(range(2)), processor=processor, image_column="picture")
    bad = Dataset.from_dict({"image": ["not an image", "x"]})
    with pytest.raises(ValueError, match="row 0, column .image.: no image file"):
        extract_features(vit, bad, processor=processor, progress=False)
    with pytest.raises(ValueError, match="pass its image processor"):
        extract_features(nn.Linear(2, 2), cell_dataset(range(2)))
    greyscale = Dataset.from_dict({"image": [cell_image(3).convert("L"), cell_image(4).convert("RGBA")]})
    assert extract_features(vit, greyscale, processor=processor, progress=False).shape == (2, 32)


# ----------------------------------------------------------------------------- zero-shot


def test_zero_shot_matched_clip_is_perfect_and_random_is_chance(clip_processor):
    classes = 16
    labels = [index % classes for index in range(64)]
    dataset = cell_dataset(labels, labels=labels, class_names=[f"c{i}" for i in range(classes)])
    perfect = zero_shot_evaluate(cell_clip(clip_processor), dataset, progress=False)
    assert perfect == {"zero_shot_top1": 1.0, "zero_shot_top5": 1.0, "zero_shot_mean_per_class_accuracy": 1.0}
    chance = zero_shot_evaluate(cell_clip(clip_processor, matched=False), dataset, progress=False)
    assert chance["zero_shot_top1"] < 3 / classes
    assert chance["zero_shot_top5"] < 0.6  # chance: 5 / 16


def test_zero_shot_on_the_real_tiny_clip_runs_the_whole_path(tmp_path):
    clip, processor = tiny_clip()
    labels = [index % 4 for index in range(8)]
    dataset = cell_dataset(labels, labels=labels, class_names=["cat", "dog", "car", "tree"])
    scores = zero_shot_evaluate(
        clip, dataset, processor=processor, templates=["a photo of a {}."], progress=False
    )
    assert set(scores) == {"zero_shot_top1", "zero_shot_mean_per_class_accuracy"}  # 4 classes: no top-5
    assert 0.0 <= scores["zero_shot_top1"] <= 1.0


def test_zero_shot_bad_input_is_named(clip_processor):
    vit, processor = tiny_vit()
    dataset = cell_dataset([0, 1], labels=[0, 1], class_names=["c0", "c1"])
    with pytest.raises(TypeError, match="CLIP-type encoder.*ViTModel"):
        zero_shot_evaluate(vit, dataset, processor=processor)
    with pytest.raises(TypeError, match="CLIP-type encoder"):
        evaluate_encoder(vit, dataset, protocols=["zero_shot"], processor=processor)
    plain_labels = cell_dataset([0, 1], labels=[0, 1])
    with pytest.raises(ValueError, match="class names"):
        zero_shot_evaluate(cell_clip(clip_processor), plain_labels)
    with pytest.raises(ValueError, match="class names"):  # checked before the kNN features are computed
        evaluate_encoder(
            cell_clip(clip_processor),
            plain_labels,
            train_dataset=plain_labels,
            protocols=["knn", "zero_shot"],
        )
    with pytest.raises(ValueError, match="'{}'"):
        zero_shot_evaluate(cell_clip(clip_processor), dataset, templates=["no slot"])


# ----------------------------------------------------------------------------- retrieval


def test_retrieval_matched_clip_is_perfect_and_random_is_chance(clip_processor):
    dataset = cell_dataset(range(CELLS), captions=[f"an image with c{i} lit" for i in range(CELLS)])
    perfect = retrieval_evaluate(cell_clip(clip_processor), dataset, progress=False)
    for direction in ("i2t", "t2i"):
        assert perfect[f"{direction}_R@1"] == 1.0
        assert perfect[f"{direction}_mean_rank"] == 1.0 and perfect[f"{direction}_median_rank"] == 1.0
    chance = retrieval_evaluate(cell_clip(clip_processor, matched=False), dataset, progress=False)
    for direction in ("i2t", "t2i"):
        assert chance[f"{direction}_R@1"] < 0.1  # chance: 1 / 64
        assert chance[f"{direction}_R@10"] < 0.35  # chance: 10 / 64
        assert 20 < chance[f"{direction}_mean_rank"] < 45  # chance: 32.5


def test_retrieval_with_several_captions_per_image(clip_processor):
    captions = [[f"c{i}", f"a photo of c{i}"] for i in range(8)]
    dataset = cell_dataset(range(8), captions=captions)
    scores = retrieval_evaluate(cell_clip(clip_processor), dataset, progress=False)
    assert scores["i2t_R@1"] == 1.0 and scores["t2i_R@1"] == 1.0


def test_retrieval_ranks_count_ties_against_the_query():
    images = torch.ones(4, 3)
    texts = torch.ones(4, 3)  # a collapsed encoder: every score ties
    i2t, t2i = retrieval_ranks(images, texts)
    assert i2t.tolist() == [4, 4, 4, 4] and t2i.tolist() == [4, 4, 4, 4]
    images = torch.eye(3)
    texts = torch.tensor([[0.1, 1.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])  # captions 0 and 1 swapped
    i2t, t2i = retrieval_ranks(images, texts)
    assert i2t.tolist() == [2, 2, 1] and t2i.tolist() == [2, 2, 1]


def test_retrieval_bad_input_is_named(clip_processor):
    with pytest.raises(ValueError, match="5 images but 4 captions"):
        retrieval_scores(torch.randn(5, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="image 2 has no caption"):
        retrieval_scores(torch.randn(3, 8), torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="row 1"):
        retrieval_evaluate(cell_clip(clip_processor), cell_dataset(range(2), captions=["c0", "  "]))
    with pytest.raises(KeyError, match="'caption'"):
        retrieval_evaluate(cell_clip(clip_processor), cell_dataset(range(2)))
    vit, processor = tiny_vit()
    with pytest.raises(TypeError, match="CLIP-type encoder"):
        retrieval_evaluate(vit, cell_dataset(range(2), captions=["c0", "c1"]), processor=processor)


# ----------------------------------------------------------------------------- card and results


def write_card(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- genview\n---\n"
        "# tiny-genview\n\n## Results\n\n<!-- genview-eval:start -->\n_none yet_\n<!-- genview-eval:end -->\n\n"
        "## Usage\n\nText after the table stays.\n"
    )


def test_card_metadata_round_trips_through_the_hub_parser(tmp_path):
    folder = tmp_path / "model"
    write_card(folder)
    results = {
        "knn_top1": 0.75,
        "knn_top5": 0.95,
        "linear_best_lr": 0.1,
        "i2t_R@1": 0.5,
        "t2i_median_rank": 2.0,
    }
    add_eval_results_to_card(
        folder, results, dataset_name="digits", dataset_split="test", figures=["knn_curve.png"]
    )
    card = ModelCard.load(folder / "README.md")  # the Hub's parser, from the file
    found = {(r.task_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert found == {
        ("image-classification", "kNN top-1 accuracy"): 0.75,
        ("image-classification", "kNN top-5 accuracy"): 0.95,
        ("image-text-retrieval", "image-to-text R@1"): 0.5,
        ("image-text-retrieval", "text-to-image median rank"): 2.0,
    }
    assert {r.dataset_name for r in card.data.eval_results} == {"digits"}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert card.data.model_name == "model" and card.data.license == "apache-2.0"
    assert (
        "| Image classification (frozen features) | digits | test | kNN top-1 accuracy | 75.00% |"
        in card.text
    )
    assert "![knn curve](knn_curve.png)" in card.text and "_none yet_" not in card.text
    assert "Text after the table stays." in card.text
    # Measured again: the new value replaces the old, other results and figures stay.
    card = add_eval_results_to_card(folder, {"knn_top1": 0.8}, dataset_name="digits", dataset_split="test")
    found = {(r.task_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert found[("image-classification", "kNN top-1 accuracy")] == 0.8 and len(found) == 4
    assert card.text.count("<!-- genview-eval:start -->") == 1 and "knn_curve.png" in card.text


def test_card_without_markers_gets_an_evaluation_section(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    ModelCard("---\nlicense: mit\n---\n# A model\n").save(folder / "README.md")
    card = add_eval_results_to_card(folder, {"zero_shot_top1": 0.5}, dataset_name="digits", model_name="m")
    assert (
        "## Evaluation" in card.text
        and card.data.eval_results[0].task_type == "zero-shot-image-classification"
    )
    with pytest.raises(FileNotFoundError, match="no model card"):
        add_eval_results_to_card(tmp_path / "nowhere", {"knn_top1": 0.5}, dataset_name="digits")
    with pytest.raises(ValueError, match="no card-worthy metrics"):
        add_eval_results_to_card(folder, {"linear_best_lr": 0.1}, dataset_name="digits")


def test_evaluate_command_on_a_clip_folder_writes_results_and_card(tmp_path, clip_processor):
    clip, processor = tiny_clip()
    folder = tmp_path / "clip"
    clip.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_card(folder)
    names = [f"c{i}" for i in range(4)]

    def split(offset):
        labels = [i % 4 for i in range(8)]
        return cell_dataset(
            [label + offset for label in labels],
            labels=labels,
            captions=[f"c{i}" for i in range(8)],
            class_names=names,
        )

    DatasetDict({"train": split(0), "test": split(0)}).save_to_disk(tmp_path / "data")
    argv = f"--model_name_or_path {folder} --dataset_name {tmp_path / 'data'} --output_dir {tmp_path / 'out'}".split()
    argv += "--protocols knn linear zero-shot retrieval --linear_epochs 2 --update_card".split()
    assert run_main(argv) == 0
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    for key in ("knn_top1", "linear_top1", "zero_shot_top1", "i2t_R@1", "t2i_mean_rank"):
        assert key in results
    assert 0.0 <= results["knn_top1"] <= 1.0 and 0.0 <= results["i2t_R@1"] <= 1.0
    assert results["protocols"] == ["knn", "linear", "zero_shot", "retrieval"]
    assert list((tmp_path / "out" / "feature_cache").glob("*.safetensors"))
    card = ModelCard.load(folder / "README.md")
    assert {r.task_type for r in card.data.eval_results} == {
        "image-classification",
        "zero-shot-image-classification",
        "image-text-retrieval",
    }
    with pytest.raises(KeyError, match="no split 'validation'"):
        run_main(argv[:6] + ["--dataset_test_split", "validation"])
