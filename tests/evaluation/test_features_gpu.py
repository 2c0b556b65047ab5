"""The GPU path of genview_hf.evaluation.features: bf16 autocast features on CUDA agree with
float32 CPU ones. Run on a machine with a GPU: ``pytest -m gpu tests/evaluation``."""

import pytest
import torch
import torch.nn.functional as F

from genview_hf.evaluation import extract_features
from genview_hf.testing import tiny_clip, tiny_vit
from genview_hf.testing.samples import load_sample

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_bf16_features_on_gpu_match_float32_on_cpu(tmp_path):
    dataset = load_sample("digits", split="test")
    for build in (tiny_vit, tiny_clip):
        model, processor = build()
        cpu = extract_features(model, dataset, processor=processor, progress=False)
        gpu = extract_features(model.to("cuda"), dataset, processor=processor, progress=False, num_workers=2)
        assert gpu.dtype == torch.float32 and gpu.device.type == "cpu"
        cosine = F.cosine_similarity(cpu, gpu, dim=1)
        assert cosine.min() > 0.99, (
            f"{type(model).__name__}: bf16 features drift (min cosine {cosine.min():.4f})"
        )
