"""A kNN monitor for ``transformers.Trainer``: kNN top-1 on a small labelled split every N steps.

The encoder is the vision side (``get_image_features``) of a CLIP-type model (or of the one a
wrapper keeps under ``clip``, as GenViewCLIPModel does), else the SSL wrapper's backbone read with
the wrapper's pooling: the feature ``genview evaluate`` scores on the exported encoder. The split's
pixel values are computed once; each check encodes them with the current weights (eval mode,
no grad, bf16 on GPU), runs the weighted kNN of :mod:`.knn` and logs ``knn_top1``.

At each check it asks the trainer to log at that step and adds the value to that log entry
(``state.log_history``), beside the loss. Attach it with ``KNNMonitorCallback(...).attach(trainer)``
to put it first among the callbacks, so reporting callbacks (TensorBoard, W&B, ...) see the value
too; passed as a plain callback (``Trainer(callbacks=[...])``), reporters added before it do not.

It runs on the main process only, with the unsharded model the Trainer hands to callbacks:
fine for single-GPU and DDP runs, not for FSDP or DeepSpeed ZeRO-3, where parameters are sharded.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from .features import (
    Encoder,
    _split_processor,
    check_column,
    encode_pixels,
    labels_of,
    pixel_values,
    unwrap_encoder,
)
from .knn import KNN_K, KNN_TEMPERATURE, knn_predict


class KNNMonitorCallback(TrainerCallback):
    """Log kNN top-1 of the encoder being trained every ``every_n_steps`` optimizer steps.

    ``dataset`` is a small labelled split; ``query_dataset`` the images to classify (default:
    ``query_fraction`` of ``dataset`` held out, seeded). ``image_processor`` defaults to the
    trainer's ``processing_class``.
    """

    def __init__(
        self,
        dataset,
        query_dataset=None,
        *,
        every_n_steps: int = 100,
        image_processor: Any = None,
        image_column: str = "image",
        label_column: str = "label",
        k: int = KNN_K,
        temperature: float = KNN_TEMPERATURE,
        query_fraction: float = 0.2,
        batch_size: int = 64,
        pooling: str = "auto",
        metric_name: str = "knn_top1",
        seed: int = 0,
    ):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1; got {every_n_steps}")
        check_column(dataset, image_column, "the kNN monitor")
        labels_of(dataset, label_column, "the kNN monitor")
        if query_dataset is None:
            if len(dataset) < 2:
                raise ValueError(
                    "the kNN monitor needs at least 2 labelled examples to split into bank and queries"
                )
            split = dataset.train_test_split(test_size=query_fraction, seed=seed)
            dataset, query_dataset = split["train"], split["test"]
        self.bank_labels = labels_of(dataset, label_column, "the kNN monitor (bank)")
        self.query_labels = labels_of(query_dataset, label_column, "the kNN monitor (queries)")
        self.datasets = (dataset, query_dataset)
        self.every_n_steps = every_n_steps
        self.image_processor = image_processor
        self.image_column = image_column
        self.k, self.temperature = k, temperature
        self.batch_size = batch_size
        self.pooling = pooling
        self.metric_name = metric_name
        self.history: list[tuple[int, float]] = []
        self._batches: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._pending: dict[str, float] = {}

    def attach(self, trainer) -> KNNMonitorCallback:
        """Add this callback to ``trainer`` ahead of the others, so every reporter sees its value."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    def _pixel_batches(self, processing_class: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self._batches is None:
            processor = self.image_processor
            if processor is None:
                processor, _ = _split_processor(processing_class)
            if processor is None:
                raise ValueError("the kNN monitor needs an image processor: pass image_processor=")
            self.image_processor = processor
            self._batches = tuple(
                [
                    pixel_values(
                        dataset[start : start + self.batch_size][self.image_column],
                        processor,
                        column=self.image_column,
                        first_row=start,
                    )
                    for start in range(0, len(dataset), self.batch_size)
                ]
                for dataset in self.datasets
            )
        return self._batches

    def features(
        self, model: torch.nn.Module, processing_class: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(bank, query) features of ``model``'s encoder now, by the pooling rule ``genview
        evaluate`` applies to the exported encoder; the model's train/eval mode is kept."""
        bank_batches, query_batches = self._pixel_batches(processing_class)
        module, pooling = unwrap_encoder(model, self.pooling)  # a wrapper is read with its own pooling
        encoder = Encoder(module, self.image_processor, pooling=pooling)
        return encode_pixels(encoder, bank_batches), encode_pixels(encoder, query_batches)

    def measure(self, model: torch.nn.Module, processing_class: Any = None) -> float:
        """kNN top-1 (a fraction) of ``model``'s encoder now."""
        bank, queries = self.features(model, processing_class)
        ranked = knn_predict(bank, self.bank_labels, queries, k=self.k, temperature=self.temperature, top=1)
        return float((ranked[:, 0] == self.query_labels).float().mean())

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every_n_steps != 0 or not state.is_world_process_zero or model is None:
            return control
        value = self.measure(model, processing_class)
        self.history.append((state.global_step, value))
        self._pending = {self.metric_name: value}
        control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending and logs is not None:
            logs.update(self._pending)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(self._pending)
            self._pending = {}
        return control
