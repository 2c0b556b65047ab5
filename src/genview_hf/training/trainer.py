"""``GenViewTrainer``: quality-driven SSL and CLIP/SLIP training through ``transformers.Trainer``.

The model (``GenViewModel`` / ``GenViewCLIPModel``) computes its own loss from a collated
batch; the Trainer adds what belongs to the run: the quality weights of the ``frozen`` mode
(a frozen vision model's token map), dropping masks in mode ``off``, the momentum update
(``MomentumCallback``), logging of the weights and the logit scale, the plain-transformers
export of the encoder at the output root and the Hub push with a card.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from .. import hub
from ..modeling import GenViewCLIPModel, GenViewModel
from ..modeling.features import encode_image, principal_direction, token_map, vision_tower
from ..quality import image_text_quality_weights, multi_view_quality_weights, quality_weights
from .arguments import GenViewTrainingArguments
from .callbacks import MomentumCallback

PAIR_MASK_KEYS = ("masks_1", "masks_2")  # what the stored mode reads
MASK_KEYS = PAIR_MASK_KEYS + ("masks_orig", "masks_real")
CHECKPOINT_WEIGHTS = "model.safetensors"
HISTOGRAM_WINDOW = 64  # batches of weights kept for the logged quantiles and histogram
# Files at the output root that are not the exported encoder (kept out of the Hub push).
PUSH_IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.pth", "*.bin", "*.pt"]


def load_direction(path: str | Path) -> torch.Tensor:
    """A foreground direction: the scorer folder a views dataset was generated with
    (``genview_hf.generation.foreground``), or a .safetensors / .pt / .npy / .json vector."""
    path = Path(path)
    if path.is_dir():
        from ..foreground import ForegroundScorer

        value = ForegroundScorer.load(path).direction
    elif path.suffix == ".safetensors":
        value = safetensors.torch.load_file(str(path))["direction"]
    elif path.suffix == ".pt":
        value = torch.load(path, map_location="cpu", weights_only=True)
    elif path.suffix == ".npy":
        import numpy as np

        value = torch.from_numpy(np.load(path))
    elif path.suffix == ".json":
        value = torch.tensor(json.loads(path.read_text()))
    else:
        raise ValueError(
            f"{path}: a foreground direction is a scorer folder or a .safetensors/.pt/.npy/.json file"
        )
    value = torch.as_tensor(value, dtype=torch.float32).flatten()
    if value.numel() == 0 or not torch.isfinite(value).all():
        raise ValueError(f"{path}: the foreground direction is empty or not finite")
    return value


class GenViewTrainer(Trainer):
    """A ``Trainer`` for ``GenViewModel`` / ``GenViewCLIPModel``.

    Args (beyond ``Trainer``'s):
        quality_model: the frozen vision model of ``quality_mode="frozen"`` (any HF vision model;
            a CLIPModel's vision tower is used). Put in eval mode, no grad, bf16 on GPU.
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
        is_clip = isinstance(model, GenViewCLIPModel)
        if is_clip != args.is_clip:
            raise ValueError(f"method {args.method!r} does not match the model {type(model).__name__}")
        if not is_clip and model.config.method != args.method:
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
        self.loss_is_scaled_for_ga = False
        self.can_return_loss = True
        self.label_names = []
        self.momentum_callback = MomentumCallback()
        self.add_callback(self.momentum_callback)
        self.quality_model = self._prepare_quality_model(quality_model)
        self.quality_direction = quality_direction
        self._weights_seen: list[torch.Tensor] = []  # the last HISTOGRAM_WINDOW batches' weights
        self._weight_totals: list | None = None  # sum, count, min, max since the last log
        self._logit_scale: torch.Tensor | None = None

    # ------------------------------------------------------------------ quality weights
    def _prepare_quality_model(self, quality_model: nn.Module | None) -> nn.Module | None:
        if quality_model is None or self.args.quality_mode != "frozen":
            return None
        if self.args.multi_positive:
            if not hasattr(quality_model, "get_text_features"):
                raise ValueError(
                    "GenView++ image-text weights need a frozen CLIP model (image and text towers)"
                )
        else:
            quality_model = vision_tower(quality_model)
        quality_model = quality_model.eval().requires_grad_(False)
        dtype = torch.bfloat16 if self.args.device.type == "cuda" else torch.float32
        return quality_model.to(self.args.device, dtype)

    def _fit(self, pixels: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """Pixels resized to the frozen model's ``image_size`` (when it has one), in its dtype."""
        parameter = next(model.parameters())
        size = getattr(model.config, "image_size", None)
        if isinstance(size, int) and pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels.float(), size=(size, size), mode="bilinear", align_corners=False)
        return pixels.to(parameter.device, parameter.dtype)

    @torch.no_grad()
    def frozen_quality_weights(
        self, pixel_values_1: torch.Tensor, pixel_values_2: torch.Tensor
    ) -> torch.Tensor:
        """Pair weights (N,) from the frozen model's token maps of the two views (N, 3, H, W) (GenView's default).

        Both views go through the frozen model in one pass (eval mode: no batch statistics).
        """
        model = vision_tower(self.quality_model)
        n = pixel_values_1.shape[0]
        pixels = self._fit(torch.cat([pixel_values_1, pixel_values_2]), model)  # (2N, 3, h, w)
        _, tokens = encode_image(model, pixels, with_tokens=True)
        tokens = tokens.float()  # (2N, T, C)
        direction = self.quality_direction
        if direction is None:
            direction = principal_direction(tokens)
        return quality_weights(tokens[:n], tokens[n:], direction.to(tokens.device), gamma=self.args.gamma)

    @torch.no_grad()
    def frozen_multi_positive_weights(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """GenView++ weights from a frozen CLIP: image-text (N, V) and image-image (N, V, V)."""
        clip = self.quality_model
        vision = clip.vision_model
        pixels = inputs["pixel_values"]
        n, v = pixels.shape[:2]
        outputs = vision(pixel_values=self._fit(pixels.flatten(0, 1), vision))
        tokens = token_map(outputs.last_hidden_state).float()
        tokens = tokens.reshape(n, v, *tokens.shape[1:])
        image_embeds = clip.visual_projection(outputs.pooler_output).float().reshape(n, v, -1)
        text_embeds = clip.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
        ).pooler_output.float()
        real = vision(pixel_values=self._fit(inputs["pixel_values_real"], vision)).last_hidden_state
        real_tokens = token_map(real).float()
        direction = self.quality_direction
        if direction is None:
            direction = principal_direction(torch.cat([tokens.flatten(0, 1), real_tokens]))
        direction = direction.to(tokens.device)
        gamma = self.args.multi_positive_gamma
        image_image = multi_view_quality_weights(tokens, direction, gamma)
        image_text = image_text_quality_weights(
            image_embeds, text_embeds, tokens, real_tokens, direction, gamma
        )
        return image_text, image_image

    def _model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = dict(inputs)
        mode = self.args.quality_mode
        if self.args.is_clip:
            inputs["temperature"] = self.args.temperature if self.args.temperature is not None else 0.1
            inputs["ssl_scale"] = self.args.ssl_scale
            inputs["loss_coefficients"] = tuple(self.args.loss_coefficients)
            inputs["quality_gamma"] = self.args.multi_positive_gamma
            multi = inputs["pixel_values"].dim() == 5
            if mode != "stored" or not multi:
                for key in MASK_KEYS + ("masks",):
                    inputs.pop(key, None)
            if mode == "stored" and multi and inputs.get("masks") is None:
                raise ValueError(
                    "quality_mode='stored' needs masks in the batch: the dataset has no mask columns"
                )
            if mode == "frozen" and multi:
                inputs["weights"], inputs["ssl_weights"] = self.frozen_multi_positive_weights(inputs)
            elif mode == "frozen" and self.args.method == "slip":
                inputs["ssl_weights"] = self.frozen_quality_weights(
                    inputs["pixel_values_1"], inputs["pixel_values_2"]
                )
            return inputs
        if mode == "off":
            for key in MASK_KEYS:
                inputs.pop(key, None)
        elif mode == "stored":
            missing = [key for key in PAIR_MASK_KEYS if inputs.get(key) is None]
            if missing:
                raise ValueError(
                    f"quality_mode='stored' needs {' and '.join(missing)} in the batch: the dataset has no mask "
                    "columns (use quality_mode='frozen' or 'off')"
                )
            inputs["quality_gamma"] = self.args.gamma
        else:  # frozen
            for key in MASK_KEYS:
                inputs.pop(key, None)
            inputs["weights"] = self.frozen_quality_weights(
                inputs["pixel_values_1"], inputs["pixel_values_2"]
            )
        inputs["temperature"] = self.args.temperature
        return inputs

    # ------------------------------------------------------------------ loss, eval, logs
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """transformers' choice (no decay on biases and norms), and none on CLIP's logit scale
        either, as in CLIP / SLIP / open_clip (decay would pull the temperature toward 1)."""
        return [name for name in super().get_decay_parameter_names(model) if not name.endswith("logit_scale")]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**self._model_inputs(inputs))
        loss = outputs.loss
        if model.training:
            self._record(outputs)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Eval loss without labels; no logits are gathered (the embeddings are not predictions)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    @torch.no_grad()
    def _record(self, outputs) -> None:
        """Keep the step's weights and logit scale on the device: no host sync until the next log."""
        if outputs.weights is not None:
            weights = outputs.weights.detach().float().flatten()
            self._weights_seen.append(weights)
            del self._weights_seen[:-HISTOGRAM_WINDOW]
            total = self._weight_totals
            if total is None:
                self._weight_totals = [weights.sum(), weights.numel(), weights.min(), weights.max()]
            else:
                total[0], total[1] = total[0] + weights.sum(), total[1] + weights.numel()
                total[2], total[3] = (
                    torch.minimum(total[2], weights.min()),
                    torch.maximum(total[3], weights.max()),
                )
        if getattr(outputs, "logit_scale", None) is not None:
            self._logit_scale = outputs.logit_scale

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
        """A ``checkpoint-*``: the wrapper's config and its full state dict under its own names.

        ``save_pretrained`` would rename submodule weights to their legacy layout (transformers 5
        conversions), which a plain ``load_state_dict`` on resume no longer matches; the raw
        state dict (heads, momentum encoder, queue included) resumes exactly.
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
        path = Path(resume_from_checkpoint) / CHECKPOINT_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {CHECKPOINT_WEIGHTS}: not a GenView checkpoint"
            )
        state_dict = safetensors.torch.load_file(str(path))
        self.unwrapped().load_state_dict(state_dict, strict=True)

    # ------------------------------------------------------------------ export and push
    def unwrapped(self) -> GenViewModel | GenViewCLIPModel:
        return self.accelerator.unwrap_model(self.model)

    def encoder(self) -> nn.Module:
        """The plain transformers encoder to publish (LoRA merged into a copy)."""
        model = self.unwrapped()
        encoder = model.clip if isinstance(model, GenViewCLIPModel) else model.backbone
        if hasattr(encoder, "merge_and_unload"):  # a PEFT model
            encoder = copy.deepcopy(encoder).merge_and_unload()
        return encoder

    def save_encoder(self, output_dir: str | None = None, metrics: dict[str, float] | None = None) -> Path:
        """Write the plain encoder (+ processor, + card) at ``output_dir`` (default: the output root).

        SSL: the backbone's own AutoModel class; CLIP/SLIP: the ``CLIPModel`` + ``CLIPProcessor``.
        safetensors only; loadable without genview_hf and without ``trust_remote_code``.
        """
        output_dir = Path(output_dir or self.args.output_dir)
        if self.args.should_save:
            output_dir.mkdir(parents=True, exist_ok=True)
            encoder = self.encoder()
            encoder.save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            card = self.model_card(metrics, model_class=type(encoder).__name__)
            (output_dir / "README.md").write_text(card, encoding="utf-8")
        self.accelerator.wait_for_everyone()
        return output_dir

    def model_card(self, metrics: dict[str, float] | None = None, model_class: str | None = None) -> str:
        args = self.args
        is_clip = args.is_clip
        hyper = {
            "method": args.method,
            "quality_mode": args.quality_mode,
            "gamma": args.gamma,
            "temperature": args.temperature if args.temperature is not None else "method default",
            "learning_rate": args.learning_rate,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "num_train_epochs": args.num_train_epochs,
            "max_steps": args.max_steps,
            "generated_view_prob": args.generated_view_prob,
            "image_size": args.image_size,
            "use_peft": args.use_peft,
        }
        if not is_clip:
            hyper.update(momentum=args.momentum, momentum_end=args.momentum_end, queue_size=args.queue_size)
        if metrics:
            metrics_table = hub.markdown_table([{"metric": k, "value": v} for k, v in metrics.items()])
        else:
            metrics_table = "_No evaluation was run with this training._"
        repo_name = args.hub_model_id or Path(args.output_dir).name
        return hub.render_card(
            "model_card",
            repo_name=repo_name,
            pipeline_tag="zero-shot-image-classification" if is_clip else "image-feature-extraction",
            base_model=args.model_name_or_path,
            dataset=args.dataset_name,
            method=args.method,
            quality_mode=args.quality_mode,
            model_class=model_class or type(self.encoder()).__name__,
            hyperparameters=hub.markdown_table([{"setting": k, "value": v} for k, v in hyper.items()]),
            metrics=metrics_table,
            usage=_usage(is_clip, repo_name),
        )

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """No repository at start: the root is pushed once, finished (``push_to_hub``)."""

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints are training state, not the published model: never pushed."""

    def push_to_hub(self, commit_message: str | None = "End of training", api=None, **kwargs) -> str | None:
        """Push the exported root (encoder, processor, card) with ``genview_hf.hub.push_folder``."""
        if not self.is_world_process_zero():
            return None
        repo_id = self.args.hub_model_id or Path(self.args.output_dir).name
        folder = Path(self.args.output_dir)
        if not (folder / "config.json").exists():
            self.save_encoder(str(folder))
        return hub.push_folder(
            folder,
            repo_id,
            private=bool(self.args.hub_private_repo),
            revision=self.args.hub_revision if hasattr(self.args, "hub_revision") else None,
            commit_message=commit_message,
            ignore_patterns=PUSH_IGNORE,
            api=api,
        )


def _usage(is_clip: bool, repo_name: str) -> str:
    if is_clip:
        return (
            "```python\nfrom transformers import pipeline\n\n"
            f'classifier = pipeline("zero-shot-image-classification", model="{repo_name}")\n'
            'classifier(image, candidate_labels=["a photo of a cat", "a photo of a dog"])\n```'
        )
    return (
        "```python\nfrom transformers import AutoImageProcessor, AutoModel\n\n"
        f'processor = AutoImageProcessor.from_pretrained("{repo_name}")\n'
        f'model = AutoModel.from_pretrained("{repo_name}")\n'
        'features = model(**processor(images=image, return_tensors="pt")).pooler_output\n```'
    )


__all__ = ["GenViewTrainer", "load_direction", "principal_direction"]
