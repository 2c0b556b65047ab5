"""The GPU path of generation: bf16/fp16 pipelines and encoder on CUDA give a complete, sane dataset."""

import numpy as np
import pytest
import torch
from datasets import load_dataset

from genview_hf.generation import NoisePolicy, ViewGenerationConfig, generate_views, load_components
from genview_hf.testing import tiny_path
from genview_hf.testing.samples import shapes

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_run_on_cuda(tmp_path, precision, dtype):
    if not torch.cuda.is_available():
        pytest.fail("this test needs a CUDA device: run it on the GPU machine with pytest -m gpu")
    config = ViewGenerationConfig(
        output_dir=str(tmp_path), unclip_model=str(tiny_path("unclip-img2img")),
        text2img_model=str(tiny_path("text2img")), modes=["ic", "tc", "itc"],
        num_inference_steps=2, height=32, width=32, batch_size=4, shard_size=4, fg_sample_size=8,
        mixed_precision=precision,
    )  # fmt: skip
    components = load_components(config, "cuda")
    assert components.unclip.unet.dtype == dtype and components.encoder.dtype == dtype
    assert components.encoder.device.type == "cuda"
    generate_views(shapes(num_rows=8, image_size=32), config, components=components)
    views = load_dataset(str(tmp_path), split="train")
    assert len(views) == 8
    for row in views:
        assert row["noise_level"] == NoisePolicy()(row["fg_ratio"])
        for mode in ("ic", "tc", "itc"):
            array = np.asarray(row[f"view_{mode}"])
            assert array.shape == (32, 32, 3) and array.std() > 0  # no NaN-black images
