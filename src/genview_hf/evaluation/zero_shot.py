"""Zero-shot classification for CLIP-type encoders with prompt-template ensembles.

Each class's text embedding is the mean of its L2-normalised embeddings over the templates,
normalised again (Radford et al. 2021); an image is assigned the class of highest cosine
similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .features import Encoder, autocast, class_names_of, extract_features, labels_of, load_encoder
from .metrics import compute

# The 7-template ensemble CLIP's authors selected for ImageNet (CLIP repo, "Prompt_Engineering_for_ImageNet").
DEFAULT_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def require_clip(encoder: Encoder, purpose: str) -> None:
    if not encoder.is_clip:
        raise TypeError(
            f"{purpose} needs a CLIP-type encoder (a model with get_image_features and get_text_features, "
            f"e.g. CLIPModel); got {type(encoder.model).__name__}"
        )


@torch.no_grad()
def encode_texts(
    encoder: Encoder, texts: list[str], *, batch_size: int = 256, progress: bool = False
) -> torch.Tensor:
    """L2-normalised text embeddings (float32, CPU), batched; every text must be a non-empty string."""
    require_clip(encoder, "text encoding")
    for row, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {row}: expected a non-empty string, got {text!r}")
    model = encoder.model
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in tqdm(
            range(0, len(texts), batch_size), desc="text features", disable=not progress, leave=False
        ):
            with autocast(encoder.device):
                chunks.append(encoder.text_features(list(texts[start : start + batch_size])).float().cpu())
    finally:
        model.train(was_training)
    return F.normalize(torch.cat(chunks), dim=1)


def zero_shot_classifier(
    model,
    class_names: list[str],
    templates: tuple[str, ...] | list[str] = DEFAULT_TEMPLATES,
    *,
    processor=None,
) -> torch.Tensor:
    """``(C, D)`` class embeddings: per class, the normalised mean of normalised template embeddings."""
    encoder = load_encoder(model, processor)
    require_clip(encoder, "zero-shot classification")
    if not class_names:
        raise ValueError("zero-shot classification needs class names")
    if not templates or any("{}" not in template for template in templates):
        raise ValueError(f"every template needs a '{{}}' where the class name goes; got {list(templates)}")
    prompts = [template.format(name) for name in class_names for template in templates]
    embeddings = encode_texts(encoder, prompts).view(len(class_names), len(templates), -1)
    return F.normalize(embeddings.mean(dim=1), dim=1)


def zero_shot_evaluate(
    model,
    dataset,
    *,
    processor=None,
    class_names: list[str] | None = None,
    templates: tuple[str, ...] | list[str] = DEFAULT_TEMPLATES,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 64,
    num_workers: int = 0,
    cache_dir=None,
    progress: bool = True,
    prefix: str = "zero_shot_",
) -> dict[str, float]:
    """``{zero_shot_top1, zero_shot_top5, zero_shot_mean_per_class_accuracy}`` on a labelled dataset.

    ``class_names`` default to the names of a ``ClassLabel`` label column.
    """
    encoder = load_encoder(model, processor)
    require_clip(encoder, "zero-shot classification")
    labels = labels_of(dataset, label_column, "zero-shot classification")
    class_names = class_names or class_names_of(dataset, label_column)
    if not class_names:
        raise ValueError(
            f"zero-shot classification needs class names: column {label_column!r} is not a ClassLabel; "
            "pass class_names"
        )
    if int(labels.max()) >= len(class_names):
        raise ValueError(f"label {int(labels.max())} has no class name ({len(class_names)} names given)")
    classifier = zero_shot_classifier(encoder, class_names, templates)
    image_features = extract_features(
        encoder,
        dataset,
        image_column=image_column,
        batch_size=batch_size,
        num_workers=num_workers,
        cache_dir=cache_dir,
        progress=progress,
    )
    ranked = zero_shot_predict(image_features, classifier)
    scores = compute("classification", predictions=ranked.tolist(), references=labels.tolist())
    return {f"{prefix}{name}": value for name, value in scores.items()}


def zero_shot_predict(image_features: torch.Tensor, classifier: torch.Tensor, top: int = 5) -> torch.Tensor:
    """``(N, min(top, C))`` class indices ranked by cosine similarity, best first."""
    logits = F.normalize(image_features.float(), dim=1) @ classifier.T
    return logits.topk(min(top, classifier.shape[0]), dim=1).indices
