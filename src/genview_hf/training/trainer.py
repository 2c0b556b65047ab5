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

import os
from functools import partial
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from transformers import Trainer
from transformers import trainer as hf_trainer
from transformers.trainer import TRAINING_ARGS_NAME, PushInProgress
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .. import hub, losses
from ..methods import get_method
from ..modeling import GenViewCLIPModel, GenViewModel
from .arguments import GenViewTrainingArguments
from .callbacks import MomentumCallback, TrainingFiguresCallback
from .quality_modes import FrozenQualityModel, QualityWeights, quality_weights

CHECKPOINT_WEIGHTS = "model.safetensors"
HISTOGRAM_WINDOW = 64  # batches of weights kept for the logged quantiles and histogram


class GenViewTrainer(Trainer):
    """A ``Trainer`` for ``GenViewModel`` / ``GenViewCLIPModel``.

    Args (beyond ``Trainer``'s):
        quality_model: the frozen vision model of ``quality_mode="frozen"`` (any HF vision
            model; a CLIPModel for GenView++). Put in eval mode, no grad, bf16 on GPU.
        quality_direction: (C,) foreground direction for the frozen model's tokens; None: the
            first principal component of each batch's tokens.
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
        if args.sync_batchnorm and args.world_size > 1 and torch.cuda.is_available():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        if args.world_size == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError(
                f"launched with WORLD_SIZE={os.environ['WORLD_SIZE']} but the Trainer is not distributed "
                f"({self.accelerator.distributed_type}): each process would train alone. On CPU pass --use_cpu."
            )
        # transformers 5 with a custom loss: no loss kwargs, the Trainer divides by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.can_return_loss = True
        self.label_names = []
        self.momentum_callback = MomentumCallback()
        self.add_callback(self.momentum_callback)
        if args.training_figures:
            self.add_callback(TrainingFiguresCallback(self))
        self.frozen_quality = None
        if args.quality_mode == "frozen":
            self.frozen_quality = FrozenQualityModel(
                quality_model, quality_direction, multi_positive=args.multi_positive, device=args.device
            )
        self.last_weighted_pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._weights_seen: list[torch.Tensor] = []  # the last HISTOGRAM_WINDOW batches' weights
        self._weight_totals: list | None = None  # sum, count, min, max since the last log
        self._logit_scale: torch.Tensor | None = None

    # ------------------------------------------------------------------ one step
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The masks feed the quality weights, not the model.
        model_inputs = {key: value for key, value in inputs.items() if not key.startswith("masks")}
        outputs = model(**model_inputs, output_tokens=self.args.quality_mode == "stored")
        weights = self.quality_weights(inputs, outputs)
        loss = self.objective(outputs, weights)
        if model.training:
            if get_method(self.args.method).queue:
                # After the loss has read the queue: MoCo v2 enqueues its keys, LeOCLR its first crop's.
                self.unwrapped().enqueue(
                    outputs.targets_2 if self.args.method == "mocov2" else outputs.targets_1
                )
            self._record(inputs, outputs, weights)
        return (loss, outputs) if return_outputs else loss

    def quality_weights(self, inputs: dict[str, Any], outputs: Any) -> QualityWeights | None:
        """This batch's quality weights under ``args.quality_mode`` (see ``training.quality_modes``)."""
        return quality_weights(
            self.args.quality_mode,
            inputs,
            outputs,
            frozen=self.frozen_quality,
            gamma=self.args.quality_gamma,
            multi_positive=self.args.multi_positive,
        )

    def objective(self, out: Any, weights: QualityWeights | None) -> torch.Tensor:
        """The method's loss of one batch's embeddings; quality weights multiply each pair's term."""
        args = self.args
        method, tau = args.method, args.loss_temperature
        pairs = weights.pairs if weights is not None else None
        if method == "mocov3":
            # Symmetric InfoNCE against momentum keys gathered across processes, scaled by 2 tau (official code).
            return 2 * tau * _symmetric(partial(losses.info_nce_loss, temperature=tau), out, pairs)
        if method == "mocov2":
            # Against the queue as it was before this batch.
            info_nce = partial(losses.info_nce_loss, queue=out.queue, temperature=tau)
            return _term(info_nce, out.queries_1, out.targets_2, out.hallucinated_1, pairs)
        if method == "leoclr":
            return losses.leoclr_loss(out.queries_1, out.targets_1, out.targets_2, out.queue, tau, pairs)
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
                out.image_embeds, out.text_embeds, out.logit_scale, out.ssl_embeds_1, out.ssl_embeds_2,
                ssl_scale=args.ssl_scale, ssl_temperature=tau, ssl_weights=pairs,
            )  # fmt: skip
        raise ValueError(f"unknown method {method!r}")  # guarded by the arguments

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Eval loss without labels; no logits are gathered (the embeddings are not predictions)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

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
            if weights.pairs is not None and "pixel_values_1" in inputs:  # for the pair figure
                self.last_weighted_pairs = (inputs["pixel_values_1"], inputs["pixel_values_2"], weights.pairs)
        if getattr(outputs, "logit_scale", None) is not None:
            self._logit_scale = outputs.logit_scale.detach()

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
        torch.save(self.args, output_dir / TRAINING_ARGS_NAME)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Strictly, from the files ``_save`` writes; a checkpoint of another method is refused."""
        path = Path(resume_from_checkpoint) / CHECKPOINT_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {CHECKPOINT_WEIGHTS}: not a GenView checkpoint"
            )
        wrapper = self.unwrapped()
        saved = type(wrapper.config).from_pretrained(resume_from_checkpoint)
        if getattr(saved, "method", None) != wrapper.config.method:
            raise ValueError(
                f"{resume_from_checkpoint} is a checkpoint of method {getattr(saved, 'method', None)!r}; "
                f"this run trains {wrapper.config.method!r}"
            )
        wrapper.load_state_dict(safetensors.torch.load_file(str(path)), strict=True)

    def _save_checkpoint(self, model, trial) -> None:
        # The card at the output root follows the run (as TRL's trainers do).
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
            return
        if self.args.should_save:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            self.unwrapped().export_encoder().save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

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
        method = get_method(args.method)
        hyperparameters = {
            "method": args.method,
            "quality_mode": args.quality_mode,
            "gamma": args.quality_gamma,
            "temperature": args.loss_temperature,
            "learning_rate": args.learning_rate,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "num_train_epochs": args.num_train_epochs,
            "max_steps": args.max_steps,
            "generated_view_prob": args.generated_view_prob,
            "image_size": args.image_size,
            "use_peft": args.use_peft,
        }
        if method.momentum_encoder:
            hyperparameters.update(momentum=args.momentum, momentum_end=args.momentum_end)
        if method.queue:
            hyperparameters["queue_size"] = args.queue_size
        if args.multi_positive:
            hyperparameters["loss_coefficients"] = args.loss_coefficients
        card = hub.model_card(
            model_name=model_name or (args.hub_model_id or output_dir.name).split("/")[-1],
            model_class=_encoder_class(self.unwrapped()),
            pipeline_tag="zero-shot-image-classification"
            if args.is_image_text
            else "image-feature-extraction",
            method=args.method,
            method_paper=method.paper,
            quality_mode=args.quality_mode,
            architecture_from=args.model_name_or_path,
            base_model=None if args.from_scratch else args.model_name_or_path,
            datasets=getattr(self, "_card_datasets", []),
            hyperparameters=hyperparameters,
            metrics=_last_metrics(self.state.log_history),
            figures=sorted(path.name for path in output_dir.glob("*.png")),
            tags=[tags] if isinstance(tags, str) else tags,
        )
        card.save(output_dir / "README.md")

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """``hub_strategy`` every_save / checkpoint / all_checkpoints: the stock version copies the
        checkpoint's weights (the training wrapper) over the output root before uploading it;
        here the root gets the plain encoder and card instead, and the checkpoint folder itself
        is uploaded as ``last-checkpoint`` / ``checkpoint-N`` where the strategy asks."""
        if not self.is_world_process_zero() or self.args.hub_strategy == "end":
            return
        if (
            not self.args.hub_always_push
            and self.push_in_progress is not None
            and not self.push_in_progress.is_done()
        ):
            return
        self.save_model()
        self.create_model_card()
        api = hf_trainer.hf_api()
        message = f"Training in progress, step {self.state.global_step}"
        upload = partial(
            api.upload_folder, repo_id=self.hub_model_id, token=self.args.hub_token, run_as_future=True,
            revision=self.args.hub_revision,
        )  # fmt: skip
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


def _term(loss_fn, queries, targets, hallucinated, weights) -> torch.Tensor:
    """``loss_fn(queries, targets)``, plus the Hallucinator's extra positives against the same targets."""
    loss = loss_fn(queries, targets, weights=weights)
    if hallucinated is not None:
        loss = loss + loss_fn(hallucinated, targets, weights=weights)
    return loss


def _symmetric(loss_fn, out: Any, weights) -> torch.Tensor:
    """Both directions of a pair: view 1's queries to view 2's targets, and back."""
    return _term(loss_fn, out.queries_1, out.targets_2, out.hallucinated_1, weights) + _term(
        loss_fn, out.queries_2, out.targets_1, out.hallucinated_2, weights
    )


def _encoder_class(model: GenViewModel | GenViewCLIPModel) -> str:
    """The class name of what ``export_encoder`` writes (a LoRA-adapted encoder is merged there)."""
    encoder = model.clip if isinstance(model, GenViewCLIPModel) else model.backbone
    return type(encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder).__name__


def _last_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The latest value of each card-worthy metric in the Trainer's log history."""
    keys = ("train_loss", "train_runtime", "eval_loss", "knn_top1")
    latest: dict[str, float] = {}
    for entry in log_history:
        latest.update({key: round(float(entry[key]), 4) for key in keys if key in entry})
    return latest
