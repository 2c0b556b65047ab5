"""Model pieces: the SSL wrapper and the CLIP wrapper (PretrainedConfig + PreTrainedModel), the
Hallucinator, and the backbone feature readers they share.

    configuration_genview   GenViewConfig, GenViewCLIPConfig, method names, paper head shapes
    modeling_genview        GenViewModel: backbone + heads + momentum encoder + queue (SSL, LeOCLR)
    modeling_genview_clip   GenViewCLIPModel: CLIPModel + SLIP head, GenView++ multi-positive
    hallucinator            Hallucinator: feature-space hard positives
    features                pooled features, patch tokens, masks on the token grid, batch direction
    common                  the shared output, PreTrainedModel base and MLP head builder
"""

from .common import GenViewOutput
from .configuration_genview import CLIP_METHODS, SSL_METHODS, GenViewCLIPConfig, GenViewConfig
from .features import encode_image
from .hallucinator import Hallucinator
from .modeling_genview import GenViewModel
from .modeling_genview_clip import GenViewCLIPModel

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
