"""Model state: the SSL wrapper and the CLIP wrapper (PretrainedConfig + PreTrainedModel), the
Hallucinator, and the backbone feature readers they share. The losses are the trainer's.

    configuration_genview   GenViewConfig, GenViewCLIPConfig (head shapes from ``genview_hf.methods``)
    modeling_genview        GenViewModel: backbone + heads + momentum encoder + queue (SSL, LeOCLR)
    modeling_genview_clip   GenViewCLIPModel: CLIPModel + SLIP head, GenView++ multi-positive
    hallucinator            Hallucinator: feature-space hard positives
    shuffle_bn              MoCo's shuffling BN for the momentum encoder's keys (MoCo v2, LeOCLR)
    features                the pooling rule, patch tokens, masks on the token grid, batch direction
    common                  the shared PreTrainedModel base and MLP head builder
    export_open_clip        a CLIP root's open_clip files (open_clip / CLIP_benchmark load the root)
    convert_open_clip       an open_clip / timm ConvNeXt tower -> ConvNextModel (the frozen quality encoder)

Importing this package registers both wrappers with ``AutoConfig`` / ``AutoModel``, so a
``checkpoint-*`` folder loads with ``AutoModel.from_pretrained``.
"""

from transformers import AutoConfig, AutoModel

from .configuration_genview import GenViewCLIPConfig, GenViewConfig
from .features import encode_image, image_features, resolve_pooling
from .hallucinator import Hallucinator
from .modeling_genview import GenViewModel, GenViewSSLOutput
from .modeling_genview_clip import GenViewCLIPModel, GenViewCLIPOutput

for _config, _model in ((GenViewConfig, GenViewModel), (GenViewCLIPConfig, GenViewCLIPModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)

__all__ = [
    "GenViewCLIPConfig",
    "GenViewCLIPModel",
    "GenViewCLIPOutput",
    "GenViewConfig",
    "GenViewModel",
    "GenViewSSLOutput",
    "Hallucinator",
    "encode_image",
    "image_features",
    "resolve_pooling",
]
