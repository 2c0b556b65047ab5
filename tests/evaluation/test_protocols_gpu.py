"""GPU path of evaluation: bf16 autocast features agree with float32 CPU ones; protocols run on CUDA.

Run on a machine with a GPU: ``pytest -m gpu tests/test_evaluation_gpu.py``.
"""

import pytest
import torch
import torch.nn.functional as F

from genview_hf.evaluation import KNNMonitorCallback, evaluate_encoder, extract_features
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


def test_protocols_and_monitor_on_gpu(tmp_path):
    train, test = load_sample("digits", split="train"), load_sample("digits", split="test")
    clip, processor = tiny_clip()
    results = evaluate_encoder(
        clip.to("cuda"),
        test,
        train_dataset=train,
        processor=processor,
        protocols=["knn", "linear", "zero_shot", "retrieval"],
        linear_epochs=5,
        cache_dir=tmp_path,
        progress=False,
    )
    assert all(0.0 <= results[key] <= 1.0 for key in ("knn_top1", "linear_top1", "zero_shot_top1", "i2t_R@1"))
    assert len(list(tmp_path.glob("*.safetensors"))) == 2  # train and test features, keyed apart
    monitor = KNNMonitorCallback(test.select(range(100)), image_processor=processor.image_processor)
    assert 0.0 <= monitor.measure(clip) <= 1.0
