"""genview_hf: generative positive views and quality-driven contrastive learning on the HF stack."""

__version__ = "0.1.0"

__all__ = ["__version__"]
