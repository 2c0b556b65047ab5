"""The map function on its own: decoding, bad rows, full pipeline calls per noise level and guidance; and
which encoder the scorer gets."""

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from genview_hf.data.images import decode_image
from genview_hf.data.views import check_mask_shape
from genview_hf.generation import (
    ForegroundScorer,
    NoisePolicy,
    ViewGenerationConfig,
    ViewGenerator,
    load_components,
    row_seed,
)
from genview_hf.generation.views import FAILURE, pipeline_batches
from genview_hf.testing import tiny_clip_vision_with_projection, tiny_path
from genview_hf.testing.samples import shapes

UNCLIP = str(tiny_path("unclip-img2img"))
TEXT2IMG = str(tiny_path("text2img"))


def png_bytes(image, fmt="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return {"bytes": buffer.getvalue(), "path": None}


class Spy:
    """Wraps a pipeline and records each call's batch size, noise level and guidance."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        size = len(kwargs["prompt"])
        self.calls.append((size, kwargs.get("noise_level"), kwargs["guidance_scale"]))
        return self.pipe(**kwargs)


@pytest.fixture(scope="module")
def generator():
    config = ViewGenerationConfig(
        unclip_model=UNCLIP, text2img_model=TEXT2IMG, modes=["ic", "tc", "itc"], mixed_precision="no"
    )
    components = load_components(config)
    grid = components.encoder.grid
    dim = components.encoder.model.config.hidden_size
    # A fixed scorer (not fitted) whose threshold puts rows in several noise bins.
    direction = np.zeros(dim, np.float32)
    direction[0] = 1.0
    scorer = ForegroundScorer(direction=torch.from_numpy(direction), threshold=0.0, grid=grid)
    return ViewGenerator(
        encoder=components.encoder,
        scorer=scorer,
        modes=("ic", "tc", "itc"),
        unclip=Spy(components.unclip),
        text2img=Spy(components.text2img),
        num_inference_steps=2,
        height=32,
        width=32,
    )


def test_decode_generation_uses_converts_modes_and_rejects_garbage():
    """Generation reads images with the shared decode, at any size (``min_side=1``)."""
    rgb = Image.new("RGB", (12, 10), (10, 200, 30))
    for mode in ("L", "RGBA", "P", "CMYK", "LA", "I;16"):
        value = png_bytes(rgb.convert(mode), "TIFF" if mode == "CMYK" else "PNG")
        assert decode_image(value, "row 0", min_side=1).mode == "RGB"
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert decode_image(rgba, "row 0", min_side=1).getpixel((0, 0)) == (255, 255, 255)  # over white
    assert decode_image(Image.new("RGB", (1, 1)), "row 0", min_side=1).size == (1, 1)


def test_undecodable_and_missing_images_become_null_rows_with_a_reason(generator):
    data = shapes(num_rows=1, image_size=32)
    images = [png_bytes(data[0]["image"]), {"bytes": b"not an image", "path": None}, None]
    out = generator({"image": images, "caption": ["a circle"] * 3}, [0, 1, 2])
    assert out[FAILURE][0] == "" and out["image"][0] is not None
    assert out[FAILURE][1].startswith("row 1, column 'image': cannot decode the image")
    assert out[FAILURE][2].startswith("row 2, column 'image': the image is missing")
    assert out["image"][1:] == [None, None] and out["view_ic"][1:] == [None, None]
    assert out["view_tc"][1] is not None  # the caption is fine: its text-only view is still made


def test_batch_groups_rows_and_names_bad_rows(generator):
    data = shapes(num_rows=4, image_size=32)
    images = [png_bytes(im) for im in data["image"]]
    captions = list(data["caption"])
    images += [{"bytes": b"\x89PNG broken", "path": None}, png_bytes(Image.new("L", (4, 4), 90))]
    captions += ["a red circle", ""]
    generator.unclip.calls.clear()
    generator.text2img.calls.clear()
    out = generator({"image": images, "caption": captions}, list(range(6)))

    assert out["view_ic"][4] is None and out["mask"][4] is None and "cannot decode" in out[FAILURE][4]
    assert out["view_tc"][4] is not None  # the caption is fine: text-only view still made
    assert out["view_ic"][5].size == (32, 32)  # tiny greyscale image: upscaled for the encoder, converted
    assert out["view_tc"][5] is None and out["view_itc"][5] is None
    assert out[FAILURE][5] == "row 5, column 'caption': empty caption, no text-conditioned view"
    assert out[FAILURE][0] == ""
    for i in (0, 1, 2, 3, 5):
        assert out["noise_level"][i] == NoisePolicy()(out["fg_ratio"][i])
        assert out["mask"][i].mode == "L" and out["mask"][i].size == (8, 8)
        assert out["mask_ic"][i].mode == "L"
    assert out["seed"] == [row_seed(0, i) for i in range(6)]

    # One pipeline call per (noise level, guidance) group, covering each eligible row once.
    ic_calls = [c for c in generator.unclip.calls if c[2] == 10.0]
    levels = [out["noise_level"][i] for i in (0, 1, 2, 3, 5)]
    assert sorted(c[1] for c in ic_calls) == sorted(set(levels))
    assert sum(c[0] for c in ic_calls) == 5
    tc_groups = {out["guidance_scale"][i] for i in range(5)}
    assert sorted(c[2] for c in generator.text2img.calls) == sorted(tc_groups)


def test_masks_of_non_square_images_cover_the_whole_image(generator):
    wide = shapes(num_rows=1, image_size=48)["image"][0].resize((96, 48))
    out = generator({"image": [png_bytes(wide)], "caption": ["a circle"]}, [0])
    assert out["mask"][0].size == (16, 8)  # the 8x8 token grid stretched to the image's 2:1 aspect
    check_mask_shape(out["mask"][0].size, wide.size, "row 0")  # what training checks before it starts


def test_rows_do_not_depend_on_their_batch(generator):
    data = shapes(num_rows=3, image_size=32)
    batch = {"image": [png_bytes(im) for im in data["image"]], "caption": list(data["caption"])}
    whole = generator(batch, [0, 1, 2])
    generator.row_offset = 2
    alone = generator({k: v[2:] for k, v in batch.items()}, [0])
    generator.row_offset = 0
    for column in ("view_ic", "view_tc", "view_itc"):
        a, b = np.asarray(whole[column][2], np.int16), np.asarray(alone[column][0], np.int16)
        assert np.abs(a - b).max() <= 2, column


def test_overlong_caption_is_truncated_not_an_error(generator):
    data = shapes(num_rows=1, image_size=32)
    caption = "a red striped circle above a blue square on grass " * 40  # far past 77 tokens
    out = generator({"image": [png_bytes(data[0]["image"])], "caption": [caption]}, [0])
    assert out["view_tc"][0] is not None and out["view_itc"][0] is not None
    assert out[FAILURE] == [""] and out["caption_complexity"][0] == 4


def test_a_separate_scorer_encoder_leaves_unclip_its_own_embeddings(generator):
    """scorer_model: the scorer runs another encoder; unCLIP is still conditioned by its own."""
    from transformers import CLIPVisionModel

    from genview_hf.generation import ClipTokenEncoder

    own = generator.encoder
    torch.manual_seed(1)
    other = ClipTokenEncoder(CLIPVisionModel(own.model.config), own.processor)  # no projection head
    background = ForegroundScorer(  # every row background: noise level 0 whatever the encoder
        direction=generator.scorer.direction, threshold=float("inf"), grid=generator.scorer.grid
    )
    default = dataclasses.replace(generator, modes=("ic",), text2img=None, scorer=background)
    separate = dataclasses.replace(default, encoder=other)
    data = shapes(num_rows=2, image_size=32)
    batch = {"image": [png_bytes(im) for im in data["image"]]}
    a, b = default(batch, [0, 1]), separate(batch, [0, 1])
    assert b[FAILURE] == ["", ""] and b["noise_level"] == a["noise_level"] == [0, 0]
    for x, y in zip(a["view_ic"], b["view_ic"]):
        assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= 2


def test_the_scorer_encoder_is_unclips_own_by_default():
    """ic/itc: the pipeline's encoder object itself (one forward); tc only: the same weights, read
    from the unCLIP folder's image_encoder and feature_extractor subfolders."""
    both = load_components(ViewGenerationConfig(unclip_model=UNCLIP, modes=["ic"], mixed_precision="no"))
    assert both.encoder.model is both.unclip.image_encoder and both.text2img is None
    tc_only = load_components(
        ViewGenerationConfig(unclip_model=UNCLIP, text2img_model=TEXT2IMG, modes=["tc"], mixed_precision="no")
    )
    assert tc_only.unclip is None and tc_only.text2img is not None
    own, loaded = both.encoder.model.state_dict(), tc_only.encoder.model.state_dict()
    assert own.keys() == loaded.keys() and all(torch.equal(own[k], loaded[k]) for k in own)
    assert tc_only.encoder.grid == both.encoder.grid == (8, 8)


def test_scorer_model_takes_a_clip_vision_folder_or_an_unclip_repo(tmp_path):
    tower, _ = tiny_clip_vision_with_projection(tmp_path / "vision", image_size=48, seed=3)
    separate = load_components(
        ViewGenerationConfig(
            unclip_model=UNCLIP, scorer_model=str(tmp_path / "vision"), modes=["ic"], mixed_precision="no"
        )
    )
    assert separate.encoder.grid == (6, 6) and separate.encoder.model is not separate.unclip.image_encoder
    assert torch.equal(separate.encoder.model.visual_projection.weight, tower.visual_projection.weight)
    # an unCLIP repo as scorer_model: its image_encoder subfolder, loaded as a model of its own
    repo = load_components(
        ViewGenerationConfig(unclip_model=UNCLIP, scorer_model=UNCLIP, modes=["ic"], mixed_precision="no")
    )
    assert repo.encoder.model is not repo.unclip.image_encoder and repo.encoder.grid == (8, 8)
    assert torch.equal(
        repo.encoder.model.visual_projection.weight, repo.unclip.image_encoder.visual_projection.weight
    )


def test_pipeline_batches_are_full_calls_of_one_key():
    keys = {row: (level, 10.0) for row, level in enumerate([0, 100, 0, 0, 300, 100, 0, 0, 0, 100])}
    calls = pipeline_batches(keys, batch_size=2)
    assert sorted(row for _, rows in calls for row in rows) == list(range(10))  # each row once
    for key, rows in calls:
        assert all(keys[row] == key for row in rows) and rows == sorted(rows)
    # every call of a key is full but its last: level 0 has 6 rows, 100 has 3, 300 has 1
    assert [len(rows) for _, rows in calls] == [2, 2, 2, 2, 1, 1]


def test_a_shard_scored_first_makes_full_calls_and_the_rows_of_per_batch_grouping(generator):
    """One call over 16 rows (what the driver does with a shard) against map batches of 4 (the
    former grouping): the same rows, in fewer and fuller pipeline calls."""
    data = shapes(num_rows=16, image_size=32, seed=3)
    batch = {"image": [png_bytes(im) for im in data["image"]], "caption": list(data["caption"])}
    batch["image"][5] = {"bytes": b"corrupt", "path": None}  # a failed row shifts nothing
    small = dataclasses.replace(generator, batch_size=4)
    calls = {}
    results = {}
    for name in ("per_batch", "shard"):
        small.unclip.calls.clear()
        small.text2img.calls.clear()
        if name == "shard":
            results[name] = small(batch, list(range(16)))
        else:
            parts = []
            for start in range(0, 16, 4):
                small.row_offset = start
                parts.append(small({k: v[start : start + 4] for k, v in batch.items()}, list(range(4))))
            small.row_offset = 0
            results[name] = {k: [x for part in parts for x in part[k]] for k in parts[0]}
        calls[name] = [size for size, _, _ in small.unclip.calls + small.text2img.calls]
    per_batch, shard = results["per_batch"], results["shard"]
    assert sum(calls["shard"]) == sum(calls["per_batch"]) == 15 + 16 + 15  # ic, tc, itc views
    assert len(calls["shard"]) < len(calls["per_batch"])
    for column in ("fg_ratio", "noise_level", "guidance_scale", "caption_complexity", "seed"):
        assert shard[column] == per_batch[column], column
    assert [f.split(" (")[0] for f in shard[FAILURE]] == [f.split(" (")[0] for f in per_batch[FAILURE]]
    for column in ("mask", "view_ic", "view_tc", "view_itc", "mask_ic", "mask_tc", "mask_itc"):
        for row, (a, b) in enumerate(zip(shard[column], per_batch[column], strict=True)):
            assert (a is None) == (b is None), (column, row)
            if a is None:
                continue
            a, b = np.asarray(a, np.int16), np.asarray(b, np.int16)
            if column.startswith("mask"):
                assert np.array_equal(a, b), (column, row)
            else:  # other batch shapes round the last float bit differently, rarely one grey level
                assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.99, (column, row)
