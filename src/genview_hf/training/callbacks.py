"""Callbacks of GenView training: the momentum (EMA) update of the key/target encoder."""

from __future__ import annotations

import math

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
