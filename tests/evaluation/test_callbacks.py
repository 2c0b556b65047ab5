"""The kNN monitor callback inside a real Trainer run, and the run's pictures."""

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage
from torch import nn
from transformers import Trainer, TrainingArguments

from genview_hf.evaluation import KNNMonitorCallback, plot_knn_curve, plot_pair_grid, plot_weight_histograms
from genview_hf.testing import tiny_clip, tiny_vit
from tolerances import reduction_tolerance


def stripes(label: int, seed: int) -> PILImage.Image:
    """Class 0: horizontal stripes; class 1: vertical; a little noise."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    if label == 0:
        pixels[::4] = 255
    else:
        pixels[:, ::4] = 255
    return PILImage.fromarray(np.clip(pixels + rng.integers(0, 30, pixels.shape), 0, 255).astype(np.uint8))


def labelled(n: int = 20) -> Dataset:
    labels = [index % 2 for index in range(n)]
    return Dataset.from_dict(
        {"image": [stripes(label, index) for index, label in enumerate(labels)], "label": labels},
        features=Features({"image": Image(), "label": ClassLabel(names=["horizontal", "vertical"])}),
    )


class Wrapper(nn.Module):
    """A stand-in for the SSL wrapper: encoder under ``backbone``, a loss from its pooled output."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixel_values):
        return {"loss": self.backbone(pixel_values=pixel_values).pooler_output.pow(2).mean()}


class Pixels(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, index):
        return {"pixel_values": torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(index))}


def train(tmp_path, callback, attach: bool):
    vit, processor = tiny_vit()
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=Wrapper(vit),
        args=args,
        train_dataset=Pixels(),
        processing_class=processor,
        callbacks=None if attach else [callback],
    )
    if attach:
        callback.attach(trainer)
    trainer.train()
    return trainer


@pytest.mark.parametrize("attach", [True, False])
def test_knn_monitor_logs_into_the_trainer_logs(tmp_path, attach):
    callback = KNNMonitorCallback(labelled(), every_n_steps=2, k=5)
    trainer = train(tmp_path, callback, attach)
    logged = [
        (entry["step"], entry["knn_top1"]) for entry in trainer.state.log_history if "knn_top1" in entry
    ]
    assert [step for step, _ in logged] == [2, 4]
    # the value joins the trainer's own entry for that step: the loss is never lost
    assert all("loss" in entry for entry in trainer.state.log_history if "knn_top1" in entry)
    assert logged == callback.history
    assert all(0.0 <= value <= 1.0 for _, value in logged)
    assert trainer.model.training  # the monitor put the model back in training mode


def test_knn_monitor_measures_the_encoder_of_clip_and_wrappers():
    dataset = labelled()
    clip, processor = tiny_clip()
    callback = KNNMonitorCallback(dataset, image_processor=processor.image_processor, k=5)
    clip.train()
    assert 0.0 <= callback.measure(clip) <= 1.0
    assert clip.training
    vit, vit_processor = tiny_vit()
    on_wrapper = KNNMonitorCallback(dataset, image_processor=vit_processor, k=5).measure(Wrapper(vit))
    on_backbone = KNNMonitorCallback(dataset, image_processor=vit_processor, k=5).measure(vit)
    assert on_wrapper == on_backbone


def test_knn_monitor_bad_input_is_named():
    unlabelled = labelled().remove_columns("label")
    with pytest.raises(KeyError, match="no 'label' column"):
        KNNMonitorCallback(unlabelled)
    with pytest.raises(ValueError, match="every_n_steps"):
        KNNMonitorCallback(labelled(), every_n_steps=0)
    vit, _ = tiny_vit()
    with pytest.raises(ValueError, match="image processor"):
        KNNMonitorCallback(labelled()).measure(vit)


def assert_png(path):
    assert path.exists() and path.stat().st_size > 1000
    with PILImage.open(path) as image:
        assert image.format == "PNG" and image.width > 100


def test_weight_histograms_from_tensors_arrays_and_logs(tmp_path):
    generator = torch.Generator().manual_seed(0)
    per_step = [
        torch.softmax(torch.randn(32, generator=generator) * (1 + step), 0) * 32 for step in range(10)
    ]
    assert_png(plot_weight_histograms(per_step, tmp_path / "from_tensors.png", steps=range(0, 100, 10)))
    arrays = {step: weights.numpy() for step, weights in zip(range(0, 100, 10), per_step)}
    assert_png(plot_weight_histograms(arrays, tmp_path / "from_mapping.png"))
    log = [
        {"step": step, "quality_weights": weights.tolist(), "loss": 1.0} for step, weights in arrays.items()
    ]
    assert_png(plot_weight_histograms(log + [{"step": 200, "loss": 0.5}], tmp_path / "from_log.png"))
    # GenViewTrainer's own log keys: quantile summaries per logging step.
    summaries = [
        {
            "step": s,
            "weight_min": 0.2,
            "weight_q10": 0.5,
            "weight_q50": 1.0,
            "weight_q90": 1.6,
            "weight_max": 3.0,
        }
        for s in (10, 20, 30)
    ]
    assert_png(plot_weight_histograms(summaries, tmp_path / "from_quantiles.png"))
    with pytest.raises(ValueError, match="no quality weights"):
        plot_weight_histograms([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="3 steps for 10"):
        plot_weight_histograms(per_step, tmp_path / "bad.png", steps=[1, 2, 3])
    with pytest.raises(ValueError, match="empty weight array at step 1"):
        plot_weight_histograms([torch.ones(3), torch.ones(0)], tmp_path / "bad.png")


def test_pair_grid_and_knn_curve(tmp_path):
    first = [stripes(index % 2, index) for index in range(8)]
    second = [torch.rand(3, 32, 32) for _ in range(8)]  # tensors (CHW, [0, 1]) work as well as PIL images
    weights = torch.linspace(0.2, 1.8, 8)
    assert_png(plot_pair_grid(first, second, weights, tmp_path / "pairs.png", n=3))
    with pytest.raises(ValueError, match="8 first views, 7 second views, 8 weights"):
        plot_pair_grid(first, second[:7], weights, tmp_path / "bad.png")
    log = [{"step": 10, "knn_top1": 0.2}, {"step": 10, "loss": 1.0}, {"step": 20, "knn_top1": 0.4}]
    assert_png(plot_knn_curve(log, tmp_path / "knn_from_log.png"))
    assert_png(plot_knn_curve([(10, 0.2), (20, 0.4)], tmp_path / "knn_from_history.png"))
    with pytest.raises(ValueError, match="no kNN values"):
        plot_knn_curve([{"step": 1, "loss": 1.0}], tmp_path / "bad.png")


@pytest.mark.parametrize("pooling", ["auto", "mean"])
def test_genview_evaluate_scores_the_features_the_monitor_saw(tmp_path, pooling):
    """One pooling rule: the exported root, read by evaluation's loader, gives the features the
    monitor read from the training wrapper (also with a non-default pooling, recorded on export)."""
    from genview_hf.evaluation import extract_features
    from training_helpers import make_args, make_trainer

    trainer = make_trainer(make_args(tmp_path, "mocov3", max_steps=1), pooling=pooling)
    trainer.train()
    trainer.save_model()
    dataset = labelled(10)
    monitor = KNNMonitorCallback(dataset, dataset, every_n_steps=1)
    bank, _ = monitor.features(trainer.model, trainer.processing_class)
    scored = extract_features(str(tmp_path), dataset, progress=False)
    # the same tiny ViT on other batch sizes: each feature sums ~1,000 float32 terms through its layers
    torch.testing.assert_close(scored, bank, **reduction_tolerance(torch.float32, 1_000, bank.abs().max()))
    expected = {"auto": "cls", "mean": "mean"}[pooling]
    assert trainer.model.pooling == expected
