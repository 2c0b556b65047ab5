"""Offline view generation: foreground scorer, policies, the batched map function and the driver.

Light to import: the pipelines (diffusers) load only when a run starts.
"""

from ..foreground import ForegroundScorer
from .config import TINY, ViewGenerationConfig
from .driver import generate_views, load_input
from .encoder import ClipTokenEncoder
from .policies import GuidancePolicy, LMComplexityScorer, NoisePolicy, caption_complexity, count_constraints
from .views import ViewGenerator, decode_image, row_seed

__all__ = [
    "TINY",
    "ClipTokenEncoder",
    "ForegroundScorer",
    "GuidancePolicy",
    "LMComplexityScorer",
    "NoisePolicy",
    "ViewGenerationConfig",
    "ViewGenerator",
    "caption_complexity",
    "count_constraints",
    "decode_image",
    "generate_views",
    "load_input",
    "row_seed",
]
