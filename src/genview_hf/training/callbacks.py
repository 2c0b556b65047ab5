"""Callbacks of GenView training: the momentum (EMA) update of the key/target encoder, CLIP's
logit-scale clamp, SimSiam's fixed predictor learning rate, and the figures every run leaves
beside its encoder (what the quality weights preferred)."""

from __future__ import annotations

import math
from pathlib import Path

from transformers import TrainerCallback


def momentum_at(
    step: int, total_steps: int, base: float, end: float = 1.0, schedule: str = "cosine"
) -> float:
    """Momentum after ``step`` of ``total_steps`` optimizer steps.

    cosine (BYOL, MoCo v3): m = end - (end - base) * (cos(pi * step / total) + 1) / 2, so it
    starts at ``base`` and reaches ``end`` at the last step; constant (MoCo v2): ``base``.
    """
    if schedule == "constant" or total_steps <= 0:
        return base
    if schedule != "cosine":
        raise ValueError(f"unknown momentum schedule {schedule!r}: expected cosine or constant")
    progress = min(max(step / total_steps, 0.0), 1.0)
    return end - (end - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class MomentumCallback(TrainerCallback):
    """EMA update of the momentum encoder after every optimizer step.

    ``on_step_end`` runs once per optimizer step (after the gradient accumulation cycle), so
    the update count follows optimizer steps, not micro-batches. After optimizer step k
    (0-based) the momentum is m(k). The official MoCo v3 code updates at the start of
    iteration k + 1 with m(k + 1): the same updates with the schedule one step later, a
    difference of one step in K.
    """

    def __init__(self) -> None:
        self.last_momentum: float | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or not getattr(model, "has_momentum_encoder", False):
            return control
        momentum = momentum_at(
            state.global_step - 1, state.max_steps, args.momentum, args.momentum_end, args.momentum_schedule
        )
        model.momentum_update(momentum)
        self.last_momentum = momentum
        return control


class LogitScaleClampCallback(TrainerCallback):
    """CLIP's log-scale clamped in place to [0, ln 100] right after every optimizer step, as open_clip
    (``src/open_clip_train/train.py``) and SLIP (``main.py``) do; the forward uses ``exp()``
    unclamped, so the gradient can still bring a scale back below the bound."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        clamp = getattr(model, "clamp_logit_scale", None)
        if clamp is not None:
            clamp()
        return control


FIXED_LR = "fixed_lr"  # param-group flag: the group keeps its initial learning rate


def fix_learning_rate(optimizer, parameters) -> None:
    """Move ``parameters`` into param groups of their own, flagged ``fixed_lr`` (same settings as the
    groups they leave). Call it before the first step, when the optimizer has no state."""
    chosen = {id(p) for p in parameters}
    for group in list(optimizer.param_groups):
        moved = [p for p in group["params"] if id(p) in chosen]
        if not moved:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in chosen]
        settings = {key: value for key, value in group.items() if key != "params"}
        optimizer.add_param_group({**settings, "params": moved, FIXED_LR: True})


class FixedLearningRateCallback(TrainerCallback):
    """The param groups flagged ``fixed_lr`` step with their initial learning rate, whatever the
    schedule: SimSiam's ``--fix-pred-lr`` (``main_simsiam.py`` ``adjust_learning_rate``; GenView's
    ``SimSiamHook``). Set just before each optimizer step; the scheduler still drives the others."""

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:
            for group in optimizer.param_groups:
                if group.get(FIXED_LR):
                    group["lr"] = group.get("initial_lr", args.learning_rate)
        return control


class TrainingFiguresCallback(TrainerCallback):
    """At the end of training, PNGs in the output root (the model card links them):

    - ``weights.png``: the distribution of the quality weights over training (logged quantiles);
    - ``pairs.png``: the highest- and lowest-weighted positive pairs of the last weighted batch;
    - ``knn.png``: the kNN monitor's curve, when it ran.

    A diagnostic for real data, where no clean / false labels exist: it shows what the weights
    prefer. Added by ``GenViewTrainer`` when ``args.training_figures`` is on.
    """

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.write(Path(args.output_dir))
        return control

    def write(self, folder: Path) -> list[Path]:
        from ..evaluation.plots import plot_knn_curve, plot_pair_grid, plot_weight_quantiles

        history, written = self.trainer.state.log_history, []
        if any("weight_q50" in entry for entry in history):
            written.append(plot_weight_quantiles(history, folder / "weights.png"))
        if self.trainer.last_weighted_pairs is not None:
            written.append(plot_pair_grid(*self.trainer.last_weighted_pairs, folder / "pairs.png"))
        if any("knn_top1" in entry for entry in history):
            written.append(plot_knn_curve(history, folder / "knn.png"))
        return written
