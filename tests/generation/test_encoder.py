"""Tests of genview_hf.generation.encoder (``ClipTokenEncoder``) and unCLIP's conditioning: what the official scripts condition on (the pipeline given the PIL image,
so its own feature extractor's resize and centre crop), while the scorer's tokens and masks keep the
whole field of view."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genview_hf.generation import ClipTokenEncoder
from genview_hf.testing import tiny_path
from genview_hf.testing.tiny_diffusion import tiny_unclip_img2img
from tolerances import reduction_tolerance


@pytest.fixture(scope="module")
def pipe():
    return tiny_unclip_img2img(tiny_path("unclip-img2img"))


def _picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _pipeline_embeds(pipe, images):
    """StableUnCLIPImg2ImgPipeline._encode_image on PIL images: feature_extractor, then image_encoder."""
    pixels = pipe.feature_extractor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        return pipe.image_encoder(pixels).image_embeds


def test_conditioning_is_what_the_pipeline_encodes_and_tokens_cover_the_whole_image(pipe):
    encoder = ClipTokenEncoder(pipe.image_encoder, pipe.feature_extractor)
    images = [_picture(96, 72, 0), _picture(64, 64, 1), _picture(50, 100, 2)]  # 4:3, square, 1:2
    tokens, embeds = encoder(images)
    reference = _pipeline_embeds(pipe, images)  # one batch against images grouped by shape: float32 sums
    torch.testing.assert_close(
        embeds, reference, **reduction_tolerance(torch.float32, 1_000, reference.abs().max())
    )
    # the tokens see each whole image squashed to the square input (no crop): the stored mask's field of view
    side = pipe.image_encoder.config.image_size
    squashed = pipe.feature_extractor(
        images=[im.resize((side, side), Image.Resampling.BICUBIC) for im in images], return_tensors="pt"
    ).pixel_values
    with torch.no_grad():
        hidden = pipe.image_encoder(squashed).last_hidden_state
        expected = pipe.image_encoder.vision_model.post_layernorm(hidden[:, 1:])
    torch.testing.assert_close(tokens, expected, rtol=1e-3, atol=1e-3)  # PIL vs processor resize rounding
    # a squashed 4:3 image would condition on other pixels: the embeddings differ
    with torch.no_grad():
        assert not torch.allclose(pipe.image_encoder(squashed).image_embeds[0], embeds[0], atol=1e-4)


def test_square_images_share_one_forward(pipe):
    encoder = ClipTokenEncoder(pipe.image_encoder, pipe.feature_extractor)
    calls = []
    pipe.image_encoder.register_forward_hook(lambda module, args, output: calls.append(1))
    encoder([_picture(64, 64, 3), _picture(128, 128, 4)])
    assert len(calls) == 1
    encoder([_picture(64, 64, 3), _picture(96, 72, 5)])
    assert len(calls) == 3  # the 4:3 image needed its own conditioning pass
    encoder([_picture(96, 72, 5)], embeddings=False)  # the generated views' masks: tokens only
    assert len(calls) == 4


def test_generated_view_equals_the_pipeline_given_the_image(pipe):
    """The official generate scripts call pipe(image) with the PIL image; ours passes precomputed
    embeddings. Same seed, same noise level: the same view."""
    encoder = ClipTokenEncoder(pipe.image_encoder, pipe.feature_extractor)
    image = _picture(96, 72, 6)
    _, embeds = encoder([image])
    common = dict(
        num_inference_steps=2, guidance_scale=10.0, noise_level=100, height=64, width=64, output_type="np"
    )
    official = pipe(image=image, prompt="", generator=torch.Generator().manual_seed(7), **common).images
    ours = pipe(image_embeds=embeds, prompt=[""], generator=torch.Generator().manual_seed(7), **common).images
    # the same embeddings reach two UNet steps and the VAE (~10,000-term float32 sums per pixel)
    np.testing.assert_allclose(ours, official, **reduction_tolerance(torch.float32, 10_000))
