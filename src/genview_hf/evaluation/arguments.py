"""``EvaluationArguments``: the settings of ``genview evaluate`` / ``recipes/evaluate_encoder.py``,
parsed beside ``ScriptArguments`` (the dataset and its columns: its train split feeds the kNN bank
and the linear probe, its test split is scored)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..modeling.features import Pooling
from .knn import KNN_K, KNN_TEMPERATURE
from .linear import LINEAR_EPOCHS, LINEAR_LRS
from .protocols import PROTOCOLS


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(
        metadata={"help": "Encoder folder (a training output root) or Hub id, loadable with AutoModel"}
    )
    protocols: list[str] = field(
        default_factory=lambda: ["knn", "linear"], metadata={"help": f"Any of {', '.join(PROTOCOLS)}"}
    )
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where eval_results.json goes"})
    templates: list[str] | None = field(
        default=None,
        metadata={"help": "Zero-shot prompt templates with {} for the class (default: CLIP's 7)"},
    )
    k: int = field(default=KNN_K, metadata={"help": "kNN neighbours (InstDisc/DINO: 20)"})
    temperature: float = field(
        default=KNN_TEMPERATURE, metadata={"help": "kNN vote temperature (InstDisc/DINO: 0.07)"}
    )
    linear_lrs: list[float] = field(
        default_factory=lambda: list(LINEAR_LRS), metadata={"help": "Linear-probe sweep"}
    )
    linear_epochs: int = field(default=LINEAR_EPOCHS, metadata={"help": "Linear-probe epochs (DINO: 100)"})
    pooling: Pooling = field(
        default="auto",
        metadata={
            "help": "auto (what training read), cls, mean or pooler (see genview_hf.evaluation.features)"
        },
    )
    batch_size: int = 64
    num_workers: int = 0
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N train rows"})
    max_test_samples: int | None = field(default=None, metadata={"help": "Keep the first N test rows"})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Feature cache (default: OUTPUT_DIR/feature_cache)"}
    )
    no_cache: bool = field(default=False, metadata={"help": "Do not read or write cached features"})
    update_card: bool = field(
        default=False, metadata={"help": "Add the results to MODEL_NAME_OR_PATH/README.md (a local folder)"}
    )
    device: str | None = field(
        default=None, metadata={"help": "cuda, cpu, ... (default: cuda when available)"}
    )
    seed: int = 0
