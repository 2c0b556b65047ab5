"""Tests of genview_hf.evaluation.features: which features each kind of encoder gives, the same
features from a folder, a wrapper and any batching, the cache keyed by weights and dataset, bad input named."""

import pytest
import torch
from datasets import Dataset
from torch import nn

from _evaluation_fixtures import cell_dataset, cell_image
from genview_hf.evaluation import (
    extract_features,
    load_encoder,
)
from genview_hf.evaluation.features import feature_cache_key
from genview_hf.testing import (
    tiny_clip,
    tiny_clip_vision_with_projection,
    tiny_resnet,
    tiny_vit,
)
from tolerances import reduction_tolerance


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
