"""Image->text and text->image retrieval: R@1/5/10 and mean/median rank of the first correct match.

Each image may have several captions (a list per row, as in COCO and Flickr30k). Ties count
against the query (rank = 1 + the number of wrong candidates scoring at least as high as the
best right one), so a collapsed encoder scores at the bottom, not the top.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .features import check_column, extract_features, load_encoder
from .metrics import compute
from .zero_shot import encode_texts, require_clip


@torch.no_grad()
def retrieval_ranks(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor | None = None,
    *,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(image->text ranks per image, text->image ranks per text), 1-based.

    ``text_to_image[j]`` is the image caption ``j`` describes; default: caption ``j`` describes
    image ``j`` (then the counts must match).
    """
    n_images, n_texts = len(image_features), len(text_features)
    if text_to_image is None:
        if n_images != n_texts:
            raise ValueError(
                f"retrieval: {n_images} images but {n_texts} captions; pass text_to_image "
                "(the image index of each caption) when images have several captions"
            )
        text_to_image = torch.arange(n_texts)
    text_to_image = torch.as_tensor(text_to_image, dtype=torch.long)
    if len(text_to_image) != n_texts:
        raise ValueError(f"retrieval: text_to_image has {len(text_to_image)} entries for {n_texts} captions")
    if n_images == 0 or n_texts == 0:
        raise ValueError("retrieval: no images or no captions")
    if int(text_to_image.min()) < 0 or int(text_to_image.max()) >= n_images:
        raise ValueError(f"retrieval: text_to_image points outside the {n_images} images")
    captions_per_image = torch.bincount(text_to_image, minlength=n_images)  # (I,)
    if captions_per_image.min() == 0:
        missing = int((captions_per_image == 0).nonzero()[0])
        raise ValueError(f"retrieval: image {missing} has no caption")
    images = F.normalize(image_features.float(), dim=1)  # (I, D)
    texts = F.normalize(text_features.float(), dim=1)  # (T, D)

    i2t = []
    for start in range(0, n_images, chunk_size):
        sim = images[start : start + chunk_size] @ texts.T  # (b, T)
        positive = text_to_image[None, :] == torch.arange(start, start + len(sim))[:, None]
        best = sim.masked_fill(~positive, float("-inf")).max(dim=1, keepdim=True).values
        i2t.append(1 + ((sim >= best) & ~positive).sum(dim=1))
    t2i = []
    for start in range(0, n_texts, chunk_size):
        sim = texts[start : start + chunk_size] @ images.T  # (b, I)
        target = text_to_image[start : start + len(sim)]
        right = sim.gather(1, target[:, None])
        wrong = torch.ones_like(sim, dtype=torch.bool).scatter_(1, target[:, None], False)
        t2i.append(1 + ((sim >= right) & wrong).sum(dim=1))
    return torch.cat(i2t), torch.cat(t2i)


def retrieval_scores(
    image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor | None = None
) -> dict[str, float]:
    """``{i2t_R@1, i2t_R@5, i2t_R@10, i2t_mean_rank, i2t_median_rank, t2i_...}`` from features."""
    i2t, t2i = retrieval_ranks(image_features, text_features, text_to_image)
    results = {}
    for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
        for name, value in compute("retrieval", predictions=ranks.tolist()).items():
            results[f"{direction}_{name}"] = value
    return results


def captions_of(dataset, caption_column: str) -> tuple[list[str], torch.Tensor]:
    """Flattened captions and the image index of each: a row's caption is a string or a list of them."""
    check_column(dataset, caption_column, "retrieval")
    texts, owner = [], []
    for row, value in enumerate(dataset[caption_column]):
        captions = [value] if isinstance(value, str) else value
        if not captions:
            raise ValueError(f"row {row}, column {caption_column!r}: no caption")
        for caption in captions:
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError(
                    f"row {row}, column {caption_column!r}: empty or non-text caption {caption!r}"
                )
            texts.append(caption)
            owner.append(row)
    return texts, torch.tensor(owner, dtype=torch.long)


def retrieval_evaluate(
    model,
    dataset,
    *,
    processor=None,
    image_column: str = "image",
    caption_column: str = "caption",
    batch_size: int = 64,
    num_workers: int = 0,
    cache_dir=None,
    progress: bool = True,
) -> dict[str, float]:
    """Image<->text retrieval over a dataset with an image column and a caption column."""
    encoder = load_encoder(model, processor)
    require_clip(encoder, "retrieval")
    texts, text_to_image = captions_of(dataset, caption_column)
    image_features = extract_features(
        encoder,
        dataset,
        image_column=image_column,
        batch_size=batch_size,
        num_workers=num_workers,
        cache_dir=cache_dir,
        progress=progress,
    )
    text_features = encode_texts(encoder, texts, progress=progress)
    return retrieval_scores(image_features, text_features, text_to_image)
