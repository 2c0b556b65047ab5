"""Training: ``GenViewTrainingArguments``, ``GenViewTrainer``, the quality modes, the callbacks
and the building blocks the recipes use.

    arguments       ModelArguments (encoder, heads, LoRA), GenViewTrainingArguments (the trainer's settings)
    trainer         GenViewTrainer: model -> quality weights -> the method's loss, checkpoints, the root
    quality_modes   frozen / stored / off: the mode names, the weight containers, the one dispatch, the
                    stored mode
    frozen_quality  the frozen mode's model and its foreground direction (fit, load, save)
    callbacks       the momentum (EMA) update, CLIP's logit-scale clamp, SimSiam's fixed predictor
                    learning rate, the training figures
    builders        load a model, prepare the views dataset, the collator, the quality model, the kNN monitor
"""

from .arguments import GenViewTrainingArguments, ModelArguments
from .callbacks import MomentumCallback, TrainingFiguresCallback, momentum_at
from .frozen_quality import FrozenQualityModel, load_direction
from .quality_modes import QualityWeights, quality_weights
from .trainer import GenViewTrainer

__all__ = [
    "FrozenQualityModel",
    "GenViewTrainer",
    "GenViewTrainingArguments",
    "ModelArguments",
    "MomentumCallback",
    "QualityWeights",
    "TrainingFiguresCallback",
    "load_direction",
    "momentum_at",
    "quality_weights",
]
