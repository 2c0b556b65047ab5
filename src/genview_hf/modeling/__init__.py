"""Model pieces: the SSL wrapper (PretrainedConfig + PreTrainedModel), Hallucinator and LeOCLR parts."""

from .configuration_genview import CLIP_METHODS, SSL_METHODS, GenViewCLIPConfig, GenViewConfig
from .hallucinator import Hallucinator
from .modeling_genview import GenViewCLIPModel, GenViewModel, GenViewOutput, encode_image

__all__ = [
    "CLIP_METHODS",
    "SSL_METHODS",
    "GenViewCLIPConfig",
    "GenViewCLIPModel",
    "GenViewConfig",
    "GenViewModel",
    "GenViewOutput",
    "Hallucinator",
    "encode_image",
]
