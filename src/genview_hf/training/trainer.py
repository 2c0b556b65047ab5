"""``GenViewTrainer``: quality-driven SSL and CLIP/SLIP training through ``transformers.Trainer``.

Each step reads, top to bottom, in ``compute_loss``:

1. the model embeds the batch (``GenViewModel`` / ``GenViewCLIPModel``: state and forward
   passes, no loss);
2. ``quality_weights`` weights its positive pairs, one branch per quality mode
   (``training.quality_modes``);
3. ``objective`` is the method's loss, one ``if`` per method, calling the pure ``losses.*``
   with hyperparameters from the arguments.

Around that: the momentum update (``MomentumCallback``), logging of the weights and the logit
scale, checkpoints that hold the training wrapper (``checkpoint-*``, loadable with
``AutoModel`` after ``import genview_hf``), and an output root that holds the plain
transformers encoder, its processor and a model card (``save_model``, ``create_model_card``,
``push_to_hub`` and every ``hub_strategy`` keep that layout).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers import trainer as hf_trainer
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME, PushInProgress
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .. import hub, losses
from ..data.collators import QUALITY_INPUTS, READ_COLUMNS, RowIndexed
from ..data.views import ROW_INDEX
from ..methods import get_method
from ..modeling import GenViewCLIPModel, GenViewModel
from ..modeling.export_open_clip import export_open_clip_if_clip
from ..preflight import disk_full_named
from .arguments import GenViewTrainingArguments
from .callbacks import (
    FixedLearningRateCallback,
    LogitScaleClampCallback,
    MomentumCallback,
    TrainingFiguresCallback,
    fix_learning_rate,
)
from .frozen_quality import FrozenQualityModel, run_direction
from .quality_modes import PairWeighting, QualityWeights, quality_weights

CHECKPOINT_WEIGHTS = "model.safetensors"
# quality_weighting="row_memory": the rows' qualities (the same memory on every process), in every checkpoint
ROW_MEMORY_FILE = "quality_row_memory.safetensors"
logger = logging.getLogger(__name__)
HISTOGRAM_WINDOW = 64  # batches of weights kept for the logged quantiles and histogram


class GenViewTrainer(Trainer):
    """A ``Trainer`` for ``GenViewModel`` / ``GenViewCLIPModel``.

    Args (beyond ``Trainer``'s):
        quality_model: the frozen vision model of ``quality_mode="frozen"`` (any HF vision
            model loaded with ``from_pretrained``, whose folder gives its image processor; a
            CLIPModel for GenView++). Put in eval mode, no grad, bf16 on GPU.
        quality_direction: (C,) foreground direction for the frozen model's tokens; None:
            ``args.quality_direction`` decides (``training.frozen_quality.run_direction``): by
            default one fitted once on the training set and kept in ``output_dir/quality_direction/``.
    """

    args: GenViewTrainingArguments

    def __init__(
        self,
        model: GenViewModel | GenViewCLIPModel,
        args: GenViewTrainingArguments,
        *trainer_args: Any,
        quality_model: nn.Module | None = None,
        quality_direction: torch.Tensor | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        if not isinstance(args, GenViewTrainingArguments):
            raise TypeError(f"GenViewTrainer needs GenViewTrainingArguments, got {type(args).__name__}")
        if model.config.method != args.method:
            raise ValueError(
                f"args.method is {args.method!r} but the model was built for {model.config.method!r}"
            )
        if args.quality_mode == "frozen" and quality_model is None:
            raise ValueError(
                "quality_mode='frozen' needs a quality_model (or use quality_mode='stored' or 'off')"
            )
        if args.per_device_train_batch_size < 2:
            raise ValueError(
                "per_device_train_batch_size must be >= 2 (batch norm and in-batch negatives need pairs)"
            )
        shuffle_bn = getattr(model.config, "shuffle_bn", False)
        if args.sync_batchnorm and shuffle_bn:
            raise ValueError(
                "sync_batchnorm and shuffle_bn together: SyncBatchNorm pools the keys' statistics over every "
                "process again; switch one off"
            )
        sync_batchnorm = not shuffle_bn if args.sync_batchnorm is None else args.sync_batchnorm
        if sync_batchnorm and args.world_size > 1 and torch.cuda.is_available():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        if args.world_size == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError(
                f"launched with WORLD_SIZE={os.environ['WORLD_SIZE']} but the Trainer is not distributed "
                f"({self.accelerator.distributed_type}): each process would train alone. On CPU pass --use_cpu."
            )
        global_batch = args.per_device_train_batch_size * args.world_size
        rows = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None
        if args.dataloader_drop_last and rows is not None and rows < global_batch:
            raise ValueError(
                f"the training set has {rows} rows, fewer than one batch of {global_batch} "
                f"(per_device_train_batch_size {args.per_device_train_batch_size} x {args.world_size} processes): "
                "with dataloader_drop_last every batch would be dropped and nothing trained"
            )
        # transformers 5 with a custom loss: no loss kwargs, the Trainer divides by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.can_return_loss = True
        self.label_names = []
        self.momentum_callback = MomentumCallback()
        self.add_callback(self.momentum_callback)
        self._first_nonfinite_step: torch.Tensor | None = None  # see _check_finite
        self._nonfinite_unread = False
        self.add_callback(NonFiniteLossCallback(self))
        if isinstance(model, GenViewCLIPModel):
            self.add_callback(LogitScaleClampCallback())
        if args.fixed_predictor_lr:
            self.add_callback(FixedLearningRateCallback())
        if args.training_figures:
            self.add_callback(TrainingFiguresCallback(self))
        self.frozen_quality = None
        if args.quality_mode == "frozen":
            collator = self.data_collator  # the statistics its pixels carry, undone for the frozen model
            self.frozen_quality = FrozenQualityModel(
                quality_model,
                input_mean=getattr(collator, "mean", None),
                input_std=getattr(collator, "std", None),
                multi_positive=args.multi_positive,
                device=args.device,
            )
            if quality_direction is None and args.quality_foreground == "direction":
                # fitted once (or read back), not per batch unless asked; the stored masks need none
                quality_direction = run_direction(self.frozen_quality, self.train_dataset, args)
            self.frozen_quality.direction = quality_direction
        self.pair_weighting = PairWeighting(args.quality_weighting)  # row_memory: its rows' memory
        self._last_weighted: tuple[dict[str, Any], QualityWeights] | None = None  # for the pair figure
        self._weights_seen: list[torch.Tensor] = []  # the last HISTOGRAM_WINDOW batches' weights
        self._weight_totals: list | None = None  # sum, count, min, max since the last log
        self._logit_scale: torch.Tensor | None = None
        self._seed_augmentation()

    def _seed_augmentation(self) -> None:
        """Make a GenView collator's augmentation resumable: its rows carry their index, it gets the
        run seed (unless it has one) and, at each epoch, the epoch; each row's views are then a pure
        function of (seed, epoch, index), which a resume and DataLoader workers leave unchanged."""
        collator = self.data_collator
        if not hasattr(collator, "set_epoch"):
            return  # another collator (pre-made tensors): its randomness is its own
        if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
            raise ValueError(
                "dataloader_persistent_workers keeps the workers' copies of the collator from the first epoch, "
                "so every epoch would repeat the first one's augmentations: leave it off"
            )
        if collator.seed is None:
            collator.seed = self.args.seed
        self.train_dataset = _row_indexed(self.train_dataset)
        if isinstance(self.eval_dataset, dict):
            self.eval_dataset = {name: _row_indexed(split) for name, split in self.eval_dataset.items()}
        else:
            self.eval_dataset = _row_indexed(self.eval_dataset)
        self.add_callback(CollatorEpochCallback(collator))

    # ------------------------------------------------------------------ one step
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The masks feed the quality weights, not the model.
        model_inputs = {
            key: value for key, value in inputs.items() if not key.startswith(("masks", QUALITY_INPUTS))
        }
        outputs = model(**model_inputs, output_tokens=self.args.quality_mode == "stored")
        weights = self.quality_weights(inputs, outputs)
        loss = self.objective(outputs, weights)
        if model.training:
            self._check_finite(loss, outputs, weights)
            if get_method(self.args.method).queue:
                # After the loss has read the queue: MoCo v2 enqueues its keys, LeOCLR its first crop's.
                self.unwrapped().enqueue(
                    outputs.targets_2 if self.args.method == "mocov2" else outputs.targets_1
                )
            self._record(inputs, outputs, weights)
        return (loss, outputs) if return_outputs else loss

    def _check_finite(self, loss: torch.Tensor, outputs: Any, weights: QualityWeights | None) -> None:
        """Stop at a NaN or infinite loss, naming the step and what is not finite, before it reaches
        the parameters, the queue or a checkpoint.

        The first step whose loss is not finite is recorded on the device (no sync); the host reads
        that record every ``nan_check_steps`` steps (one sync; every step by default, so the run stops
        before the bad update) and before every log, save and evaluation (``NonFiniteLossCallback``).
        """
        step = self.state.global_step + 1
        bad = ~torch.isfinite(loss.detach())  # () bool, on the device
        first = self._first_nonfinite_step  # () long: the first non-finite step, 0 while there is none
        if first is None:
            first = torch.zeros((), dtype=torch.long, device=loss.device)
        self._first_nonfinite_step = torch.where(bad & (first == 0), step, first)
        self._nonfinite_unread = True
        if step % self.args.nan_check_steps == 0 or step >= self.state.max_steps:
            self.raise_if_nonfinite(loss, outputs, weights)

    def raise_if_nonfinite(
        self, loss: torch.Tensor | None = None, outputs: Any = None, weights: QualityWeights | None = None
    ) -> None:
        """Read the non-finite loss record on the host (one sync) and stop if a step since the start
        had one; ``loss``, ``outputs``, ``weights``: the current step's, whose non-finite parts are named."""
        if not self._nonfinite_unread:  # nothing recorded since the last read
            return
        first = int(self._first_nonfinite_step)
        self._nonfinite_unread = False
        if first == 0:
            return
        now, epoch = self.state.global_step + 1, int(self.state.epoch or 0)
        culprits = []
        if loss is not None and not bool(torch.isfinite(loss)):
            parts = {"quality weights": vars(weights) if weights is not None else {}, "embeddings": outputs}
            culprits = [
                f"the {part} ({', '.join(bad)})"
                for part, tensors in parts.items()
                if (bad := [name for name, value in tensors.items() if _not_finite(value)])
            ]
        if first == now and loss is not None:  # this step's own: caught before its optimizer step
            found, after = f" (epoch {epoch}): the loss is {loss.item()}", "The parameters were not updated"
        else:
            last_update = now - 1 if loss is not None else now  # from compute_loss: before step now's update
            checks = f"epoch {epoch}, nan_check_steps={self.args.nan_check_steps}"
            found = f": the loss was not finite (found at step {now}, {checks})"
            after = (
                f"The parameters took the updates of steps {first} to {last_update}: resume from a checkpoint "
                f"saved before step {first} (nan_check_steps=1 stops before the first bad update)"
            )
        raise FloatingPointError(
            f"step {first}{found}"
            + (f"; not finite: {' and '.join(culprits)}" if culprits else "")
            + f". {after}: check the batch's data (and a quality model's token maps or the stored masks, "
            "whose values outside [0, 1] make the weights NaN), or lower the learning rate"
        )

    def quality_weights(self, inputs: dict[str, Any], outputs: Any) -> QualityWeights | None:
        """This batch's quality weights under ``args.quality_mode`` (see ``training.quality_modes``)."""
        return quality_weights(
            self.args.quality_mode,
            inputs,
            outputs,
            frozen=self.frozen_quality,
            gamma=self.args.gamma,
            multi_positive=self.args.multi_positive,
            original_pairs=self.args.method == "leoclr",
            center=self.args.quality_center,
            foreground=self.args.quality_foreground,
            weighting=self.pair_weighting,
            progress=self.state.global_step / max(1, self.state.max_steps),
        )

    def objective(self, out: Any, weights: QualityWeights | None) -> torch.Tensor:
        """The method's loss of one batch's embeddings; quality weights multiply each pair's term."""
        args = self.args
        method, tau = args.method, args.temperature
        pairs = weights.pairs if weights is not None else None
        if method == "mocov3":
            # Symmetric InfoNCE against momentum keys gathered across processes, scaled by 2 tau (official code).
            return 2 * tau * _symmetric(partial(losses.info_nce_loss, temperature=tau), out, pairs)
        if method == "mocov2":
            # Against the queue as it was before this batch.
            info_nce = partial(losses.info_nce_loss, queue=out.queue, temperature=tau)
            return _term(info_nce, out.queries_1, out.targets_2, out.hallucinated_1, pairs)
        if method == "leoclr":
            # Each crop's term weighted by the quality of its (original, crop) pair, the pair it contrasts.
            original_pairs = weights.original_pairs if weights is not None else None
            return losses.leoclr_loss(
                out.queries_1, out.targets_1, out.targets_2, out.queue, tau, original_pairs
            )
        if method == "simsiam":
            return 0.5 * _symmetric(losses.negative_cosine_loss, out, pairs)
        if method == "byol":
            return _symmetric(losses.byol_loss, out, pairs)
        if method == "simclr":
            # Negatives from every process are gathered inside the loss.
            return losses.nt_xent_loss(out.queries_1, out.queries_2, temperature=tau, weights=pairs)
        if args.multi_positive:  # GenView++ (clip or slip): c0 L_ii + c1 L_ii_QD + c2 L_it + c3 L_it_QD
            c0, c1, c2, c3 = args.loss_coefficients
            image_image = losses.multi_positive_loss  # (views (N, V, D), tau, weights (N, V, V))
            image_text = partial(
                losses.multi_positive_clip_loss, out.image_embeds, out.text_embeds, out.logit_scale
            )
            l_ii, l_it = image_image(out.view_embeds, tau), image_text()
            if weights is None:  # unweighted, the QD terms are the plain ones
                return (c0 + c1) * l_ii + (c2 + c3) * l_it
            l_ii_qd = image_image(out.view_embeds, tau, weights.image_image)
            return c0 * l_ii + c1 * l_ii_qd + c2 * l_it + c3 * image_text(weights.image_text)
        if method == "clip":
            # Negatives from every process are gathered (with gradient) inside the loss.
            return losses.clip_loss(out.image_embeds, out.text_embeds, out.logit_scale)
        if method == "slip":
            return losses.slip_loss(
                out.image_embeds,
                out.text_embeds,
                out.logit_scale,
                out.ssl_embeds_1,
                out.ssl_embeds_2,
                ssl_scale=args.ssl_scale,
                ssl_temperature=tau,
                ssl_weights=pairs,
            )
        raise ValueError(f"unknown method {method!r}")  # guarded by the arguments

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Eval loss without labels; no logits are gathered (the embeddings are not predictions)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """transformers' optimizer; with ``fixed_predictor_lr`` (SimSiam's ``--fix-pred-lr``) the
        predictor's parameters get param groups of their own that keep the base learning rate."""
        created_here = self.optimizer is None
        optimizer = super().create_optimizer(model)
        predictor = getattr(self.unwrapped(), "predictor", None)
        if created_here and self.args.fixed_predictor_lr and predictor is not None:
            fix_learning_rate(optimizer, predictor.parameters())
        return optimizer

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """transformers' choice (no decay on biases and norms), and none on CLIP's logit scale
        either, as in CLIP / SLIP / open_clip (decay would pull the temperature toward 1)."""
        return [name for name in super().get_decay_parameter_names(model) if not name.endswith("logit_scale")]

    # ------------------------------------------------------------------ logs
    @torch.no_grad()
    def _record(self, inputs: dict[str, Any], outputs: Any, weights: QualityWeights | None) -> None:
        """Keep the step's weights and logit scale on the device: no host sync until the next log."""
        if weights is not None:
            flat = weights.logged().detach().float().flatten()
            self._weights_seen.append(flat)
            del self._weights_seen[:-HISTOGRAM_WINDOW]
            total = self._weight_totals
            if total is None:
                self._weight_totals = [flat.sum(), flat.numel(), flat.min(), flat.max()]
            else:
                total[0], total[1] = total[0] + flat.sum(), total[1] + flat.numel()
                total[2], total[3] = torch.minimum(total[2], flat.min()), torch.maximum(total[3], flat.max())
            self._last_weighted = (inputs, weights)  # references: the pairs are picked when drawn
        if getattr(outputs, "logit_scale", None) is not None:
            self._logit_scale = outputs.logit_scale.detach()

    @property
    def last_weighted_pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(first images, second images, weights) of the last weighted training batch, for the pair
        figure: GenView, LeOCLR and GenView++ pairs (``QualityWeights.figure_pairs``); None before one."""
        if self._last_weighted is None:
            return None
        inputs, weights = self._last_weighted
        return weights.figure_pairs(inputs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: the weights since the last one, the latest logit scale
            if self._weight_totals is not None:
                total, count, low, high = self._weight_totals
                logs.update(weight_mean=total.item() / count, weight_min=low.item(), weight_max=high.item())
                # The weight histogram, as quantiles (scalars travel through every logger).
                weights = torch.cat(self._weights_seen).cpu()
                for q in (0.1, 0.5, 0.9):
                    logs[f"weight_q{int(q * 100)}"] = torch.quantile(weights, q).item()
                self._log_histogram(weights)
            if self._logit_scale is not None:
                logs["logit_scale"] = float(self._logit_scale)
            if self.momentum_callback.last_momentum is not None:
                logs["momentum"] = self.momentum_callback.last_momentum
            self._weight_totals, self._logit_scale = None, None
            self._weights_seen.clear()
        super().log(logs, start_time)

    def _log_histogram(self, weights: torch.Tensor) -> None:
        """The weight histogram to TensorBoard when that logger is on."""
        for callback in self.callback_handler.callbacks:
            writer = getattr(callback, "tb_writer", None)
            if writer is not None:
                writer.add_histogram("train/quality_weights", weights.numpy(), self.state.global_step)

    def _set_signature_columns_if_needed(self) -> None:
        """The columns ``remove_unused_columns`` keeps (as TRL's trainers name theirs): the model's
        inputs (the stock signature) and what the collators read (``data.collators.READ_COLUMNS``)."""
        if self._signature_columns is None:
            super()._set_signature_columns_if_needed()
            self._signature_columns = [*self._signature_columns, *READ_COLUMNS]

    # ------------------------------------------------------------------ checkpoints
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """A ``checkpoint-*``: the wrapper's config and its state dict under the module's own names.

        ``save_pretrained`` would write some backbones in transformers' legacy layout (ViT's
        ``attention.attention.query``), which the stock resume (a non-strict ``load_state_dict``)
        silently skips and which no longer matches a LoRA-adapted backbone; the raw state dict
        (heads, momentum encoder, queue, adapters) resumes exactly and still loads with
        ``AutoModel.from_pretrained``.
        """
        if not self.args.should_save:
            return
        output_dir = Path(output_dir or self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        model = self.unwrapped()
        model.config.save_pretrained(output_dir)
        state_dict = model.state_dict() if state_dict is None else state_dict
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in state_dict.items()}
        safetensors.torch.save_file(tensors, str(output_dir / CHECKPOINT_WEIGHTS), metadata={"format": "pt"})
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(_without_tokens(self.args), output_dir / TRAINING_ARGS_NAME)  # checkpoints get shared

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Strictly, from the files ``_save`` writes. Refused, with the reason: an exported encoder
        (the output root), a save cut short (``missing_checkpoint_files``), another method's checkpoint."""
        folder = Path(resume_from_checkpoint)
        wrapper = self.unwrapped()
        model_type = _saved_model_type(folder)
        if model_type is not None and model_type != wrapper.config.model_type:
            raise ValueError(
                f"{folder} holds an exported {model_type!r} encoder (a run's output root), not a training "
                f"checkpoint: resume from one of its {PREFIX_CHECKPOINT_DIR}-* folders"
            )
        missing = missing_checkpoint_files(folder)
        if missing:
            raise FileNotFoundError(
                f"{folder} is not a complete GenView checkpoint (no {', '.join(missing)}; a kill during a save "
                "leaves one so): resume from an earlier one, or with resume_from_checkpoint=true, which picks "
                "the newest complete one"
            )
        saved = type(wrapper.config).from_pretrained(folder)
        if saved.method != wrapper.config.method:
            raise ValueError(
                f"{folder} is a checkpoint of method {saved.method!r}; this run trains {wrapper.config.method!r}: "
                "resume with the checkpoint's method or start a new output_dir"
            )
        wrapper.load_state_dict(safetensors.torch.load_file(str(folder / CHECKPOINT_WEIGHTS)), strict=True)
        self._load_row_memory(folder)

    def _save_row_memory(self, folder: Path) -> None:
        """The row memory (``quality_weighting="row_memory"``; every process holds the same) into the
        checkpoint ``folder``."""
        memory = self.pair_weighting.memory
        if memory is not None and self.args.should_save:
            folder.mkdir(parents=True, exist_ok=True)
            safetensors.torch.save_file(memory.state_dict(), str(folder / ROW_MEMORY_FILE))

    def _load_row_memory(self, folder: Path) -> None:
        """The row memory ``_save_row_memory`` kept; a checkpoint without it (written before the memory
        was saved, or with another weighting) is named, and the memory starts empty."""
        memory = self.pair_weighting.memory
        if memory is None:
            return
        file = folder / ROW_MEMORY_FILE
        if not file.is_file():
            logger.warning(
                "%s is missing: quality_weighting='row_memory' starts empty, forgetting the rows' "
                "qualities seen before the checkpoint",
                file,
            )
            return
        memory.load_state_dict(safetensors.torch.load_file(str(file)))

    def _save_checkpoint(self, model, trial) -> None:
        # The card at the output root follows the run (as TRL's trainers do). A full disk is named.
        with disk_full_named(self.args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"):
            self.create_model_card()
            super()._save_checkpoint(model, trial)

    # ------------------------------------------------------------------ the published root
    def unwrapped(self) -> GenViewModel | GenViewCLIPModel:
        return self.accelerator.unwrap_model(self.model)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``checkpoint-*`` folders get the training wrapper (exact resume); any other folder, the
        output root by default, the plain encoder and its processor: SSL the backbone's own
        ``AutoModel`` class, CLIP/SLIP the ``CLIPModel`` (+ ``CLIPProcessor``), safetensors only,
        loadable without genview_hf and without ``trust_remote_code``."""
        output_dir = output_dir or self.args.output_dir
        if Path(output_dir).name.startswith(PREFIX_CHECKPOINT_DIR):
            super().save_model(output_dir, _internal_call)
            self._save_row_memory(Path(output_dir))
            return
        if self.args.should_save:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            self.unwrapped().export_encoder().save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            # open_clip's files; hf-hub: reads the tokenizer from the repo the Trainer pushes to (owner/name)
            export_open_clip_if_clip(
                output_dir, repo_id=getattr(self, "hub_model_id", None) or self.args.hub_model_id
            )

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | list[str] | None = None,
        tags: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write ``README.md`` at the output root: Hub metadata, settings, last metrics, figures."""
        if not self.is_world_process_zero():
            return
        args = self.args
        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if dataset_name is not None:
            self._card_datasets = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
        method, wrapper = get_method(args.method), self.unwrapped()
        hyperparameters = {
            "method": args.method,
            "quality_mode": args.quality_mode,
            "gamma": args.gamma,
            "quality_foreground": args.quality_foreground,
            "quality_views": args.quality_views,
            "quality_center": args.quality_center,
            "quality_weighting": args.quality_weighting,
            "temperature": args.temperature,
            "learning_rate": args.learning_rate,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "num_train_epochs": args.num_train_epochs,
            "max_steps": args.max_steps,
            "generated_view_prob": args.generated_view_prob,
            "image_size": args.image_size,
            "use_peft": _is_adapted(wrapper),
        }
        if method.momentum_encoder:
            hyperparameters.update(momentum=args.momentum, momentum_end=args.momentum_end)
        if method.queue:
            hyperparameters["queue_size"] = wrapper.config.queue_size
        if args.multi_positive:
            hyperparameters["loss_coefficients"] = args.loss_coefficients
        card = hub.model_card(
            model_name=model_name or (args.hub_model_id or output_dir.name).split("/")[-1],
            model_class=_encoder_class(wrapper),
            pipeline_tag="zero-shot-image-classification"
            if args.is_image_text
            else "image-feature-extraction",
            method=args.method,
            method_paper=method.paper,
            quality_mode=args.quality_mode,
            architecture_from=wrapper.config._name_or_path,
            base_model=wrapper.config._name_or_path
            if getattr(wrapper.config, "pretrained_encoder", False)
            else None,
            datasets=getattr(self, "_card_datasets", []),
            hyperparameters=hyperparameters,
            metrics=_last_metrics(self.state.log_history),
            figures=sorted(path.name for path in output_dir.glob("*.png")),
            tags=[tags] if isinstance(tags, str) else tags,
        )
        card.save(output_dir / "README.md")

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """``hub_strategy`` every_save / checkpoint / all_checkpoints. The stock push copies the
        checkpoint's model files (here the training wrapper) over the output root before uploading
        it (``tests/training/test_trainer.py`` checks that it still does); here the root gets the plain encoder
        and its card. The rest is the stock push's: ``on_push_begin``, the step or epoch commit
        message, the checkpoint folder as ``last-checkpoint`` / ``checkpoint-N``."""
        if not self.is_world_process_zero() or self.args.hub_strategy == "end":
            return
        if (
            not self.args.hub_always_push
            and self.push_in_progress is not None
            and not self.push_in_progress.is_done()
        ):
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        self.save_model(_internal_call=True)
        self.create_model_card()
        if self.args.save_strategy == "steps":
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch)}"
        upload = partial(
            hf_trainer.hf_api().upload_folder,
            repo_id=self.hub_model_id,
            token=self.args.hub_token,
            run_as_future=True,
            revision=self.args.hub_revision,
        )
        jobs = [
            upload(
                folder_path=self.args.output_dir,
                commit_message=message,
                ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*"],
            )
        ]
        if self.args.hub_strategy in ("checkpoint", "all_checkpoints"):
            path_in_repo = (
                "last-checkpoint" if self.args.hub_strategy == "checkpoint" else Path(checkpoint_folder).name
            )
            jobs.append(
                upload(
                    folder_path=checkpoint_folder,
                    path_in_repo=path_in_repo,
                    commit_message=message + ", checkpoint",
                )
            )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)


def missing_checkpoint_files(folder: str | Path) -> list[str]:
    """What a resume reads that ``folder`` lacks. ``trainer_state.json`` is written last, so a
    checkpoint a kill cut short lacks it."""
    required = ("config.json", CHECKPOINT_WEIGHTS, TRAINER_STATE_NAME)
    return [name for name in required if not (Path(folder) / name).is_file()]


def _saved_model_type(folder: Path) -> str | None:
    """The ``model_type`` of ``folder/config.json`` (None when absent or unreadable)."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def _without_tokens(args: GenViewTrainingArguments) -> GenViewTrainingArguments:
    """A copy of ``args`` with every ``*_token`` setting (``hub_token``) cleared."""
    clean = copy.copy(args)
    for name in vars(args):
        if name.endswith("_token"):
            setattr(clean, name, None)
    return clean


class CollatorEpochCallback(TrainerCallback):
    """Gives the collator the epoch before each epoch's DataLoader starts (its workers copy it then)."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_epoch(int(state.epoch or 0))  # a resumed state holds the epoch it stopped in


class NonFiniteLossCallback(TrainerCallback):
    """Reads the trainer's non-finite loss record before a log, save or evaluation (and at the end),
    so that with ``nan_check_steps`` > 1 no checkpoint or logged figure comes from a non-finite step."""

    def __init__(self, trainer: GenViewTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        due = control.should_log or control.should_save or control.should_evaluate
        if due or control.should_training_stop:
            self.trainer.raise_if_nonfinite()

    on_epoch_end = on_step_end


def _not_finite(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()


def _row_indexed(dataset: Any) -> Any:
    """A map-style dataset whose rows carry their index (``RowIndexed``) unless they already do;
    others (None, iterable datasets) as they are."""
    if dataset is None or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        return dataset
    if isinstance(dataset, RowIndexed) or ROW_INDEX in (getattr(dataset, "column_names", None) or []):
        return dataset
    return RowIndexed(dataset)


def _term(loss_fn, queries, targets, hallucinated, weights) -> torch.Tensor:
    """``loss_fn(queries, targets)``; with the Hallucinator's extra positives, the mean over the
    extended batch ``[q; h]`` against ``[k; k]``: ``0.5 * (L(q) + L(h))``, as the official code
    averages its one loss over the 2N rows (Wu et al. 2023, ``DDP_moco.py``, ``DDP_simsiam.py``)."""
    loss = loss_fn(queries, targets, weights=weights)
    if hallucinated is not None:
        loss = 0.5 * (loss + loss_fn(hallucinated, targets, weights=weights))
    return loss


def _symmetric(loss_fn, out: Any, weights) -> torch.Tensor:
    """Both directions of a pair: view 1's queries to view 2's targets, and back."""
    return _term(loss_fn, out.queries_1, out.targets_2, out.hallucinated_1, weights) + _term(
        loss_fn, out.queries_2, out.targets_1, out.hallucinated_2, weights
    )


def _encoder(model: GenViewModel | GenViewCLIPModel) -> nn.Module:
    return model.clip if isinstance(model, GenViewCLIPModel) else model.backbone


def _is_adapted(model: GenViewModel | GenViewCLIPModel) -> bool:
    """Whether the encoder carries LoRA adapters (``ModelArguments.use_peft``)."""
    return hasattr(_encoder(model), "get_base_model")


def _encoder_class(model: GenViewModel | GenViewCLIPModel) -> str:
    """The class name of what ``export_encoder`` writes (a LoRA-adapted encoder is merged there)."""
    encoder = _encoder(model)
    return type(encoder.get_base_model() if _is_adapted(model) else encoder).__name__


def _last_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The latest value of each card-worthy metric in the Trainer's log history."""
    keys = ("train_loss", "train_runtime", "eval_loss", "knn_top1")
    latest: dict[str, float] = {}
    for entry in log_history:
        latest.update({key: round(float(entry[key]), 4) for key in keys if key in entry})
    return latest
