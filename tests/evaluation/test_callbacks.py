"""Tests of genview_hf.evaluation.callbacks: the kNN monitor callback inside a real Trainer run logs
into the Trainer's logs, measures the encoder of CLIP and of the wrappers, names bad input, and scores
the features ``genview evaluate`` scores."""

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from torch import nn
from transformers import Trainer, TrainingArguments

from _evaluation_fixtures import stripes
from genview_hf.evaluation import KNNMonitorCallback
from genview_hf.testing import tiny_clip, tiny_vit
from tolerances import reduction_tolerance


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
