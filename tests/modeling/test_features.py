"""Tests of genview_hf.modeling.features: ``encode_image`` gives the pooled features and the patch
tokens of every backbone family, and ``token_map`` drops the prefix tokens and refuses odd grids."""

import pytest
import torch

from genview_hf.modeling.features import encode_image, masks_to_tokens, token_map
from genview_hf.testing import tiny_resnet, tiny_vit


@pytest.mark.parametrize("builder", [tiny_vit, tiny_resnet])
def test_encode_image_gives_pooled_features_and_patch_tokens(builder):
    backbone, _ = builder()
    pooled, tokens = encode_image(backbone, torch.randn(2, 3, 32, 32), with_tokens=True)
    assert pooled.shape[0] == 2 and tokens.shape[0] == 2 and tokens.shape[-1] == pooled.shape[-1]
    assert int(tokens.shape[1] ** 0.5) ** 2 == tokens.shape[1]


def test_token_map_drops_the_prefix_tokens_and_rejects_odd_grids():
    assert token_map(torch.zeros(2, 17, 8)).shape == (2, 16, 8)  # CLS + 4x4
    assert token_map(torch.zeros(2, 8, 3, 3)).shape == (2, 9, 8)
    with pytest.raises(ValueError, match="patch grid"):
        token_map(torch.zeros(2, 35, 8))
    with pytest.raises(ValueError, match="square token grid"):
        masks_to_tokens(torch.rand(2, 32, 32), 12)
