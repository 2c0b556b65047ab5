"""genview_hf: generative positive views and quality-driven contrastive learning on the HF stack.

``import genview_hf`` registers the training wrappers (``GenViewConfig`` / ``GenViewModel``,
``GenViewCLIPConfig`` / ``GenViewCLIPModel``) with transformers' ``AutoConfig`` / ``AutoModel``,
so a ``checkpoint-*`` folder loads with ``AutoModel.from_pretrained``; that imports torch and
transformers. The other public names load lazily: neither diffusers nor datasets is imported
until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import modeling as _modeling  # noqa: F401  (registers the wrappers with the Auto classes)

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_sample": "genview_hf.testing.samples",
    "ViewGenerationConfig": "genview_hf.generation",
    "generate_views": "genview_hf.generation",
    "GenViewConfig": "genview_hf.modeling",
    "GenViewModel": "genview_hf.modeling",
    "GenViewCLIPConfig": "genview_hf.modeling",
    "GenViewCLIPModel": "genview_hf.modeling",
    "GenViewTrainer": "genview_hf.training",
    "GenViewTrainingArguments": "genview_hf.training",
    "ModelArguments": "genview_hf.training",
    "ScriptArguments": "genview_hf.config",
    "evaluate_encoder": "genview_hf.evaluation",
    "quality_weights": "genview_hf.quality",
    "METHODS": "genview_hf.methods",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'genview_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
