"""The GPU path of genview_hf.evaluation.protocols and the kNN monitor: the protocols and the
monitor run on CUDA. Run on a machine with a GPU: ``pytest -m gpu tests/evaluation``."""

import pytest
import torch

from genview_hf.evaluation import KNNMonitorCallback, evaluate_encoder
from genview_hf.testing import tiny_clip
from genview_hf.testing.samples import load_sample

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


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
