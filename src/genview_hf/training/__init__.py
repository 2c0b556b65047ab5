"""Training: ``GenViewTrainingArguments``, ``GenViewTrainer``, the momentum callback and ``run.main``."""

from .arguments import GenViewTrainingArguments
from .callbacks import MomentumCallback, momentum_at
from .trainer import GenViewTrainer

__all__ = ["GenViewTrainer", "GenViewTrainingArguments", "MomentumCallback", "momentum_at"]
