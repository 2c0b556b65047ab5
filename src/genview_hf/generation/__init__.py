"""Offline view generation: foreground scorer, policies, the batched map function and the driver.

Light to import: the pipelines (diffusers) load only when a run starts. The command is the
recipe ``recipes/generate_views.py`` (``genview generate``).
"""

from ..foreground import ForegroundScorer
from .components import Components, load_components
from .config import ViewGenerationConfig
from .driver import generate_views
from .encoder import ClipTokenEncoder
from .policies import GuidancePolicy, LMComplexityScorer, NoisePolicy, caption_complexity, count_constraints
from .views import ViewGenerator, row_seed

__all__ = [
    "ClipTokenEncoder",
    "Components",
    "ForegroundScorer",
    "GuidancePolicy",
    "LMComplexityScorer",
    "NoisePolicy",
    "ViewGenerationConfig",
    "ViewGenerator",
    "caption_complexity",
    "count_constraints",
    "generate_views",
    "load_components",
    "row_seed",
]
