"""Foreground scorer: the first principal direction of an image encoder's patch tokens, thresholded.

Fit (once per dataset, on a sample): patch tokens after the final layer norm, CLS dropped, are
projected on the first principal component ``v`` of the sample's tokens: the top eigenvector of
their mean-centred covariance, as the official GenView fit does (``tools/clip_pca/
extract_features_pca.py``, ``PCA``); the projection ``t . v`` and the threshold stay un-centred,
as there. Real CLIP tokens have a large mean (the official ViT-H mean vector has norm 19), which
would otherwise dominate the top eigenvector of ``X^T X``. ``v``'s sign is fixed so that the centre of the token grid projects
higher than its border ring (objects sit in the middle more often than at the edges). The
threshold ``alpha`` is the ``1 - fg_share`` quantile of all sample projections, so about
``fg_share`` (default 40%) of the tokens are foreground.

Per image: token k is foreground when ``tokens[k] @ v > alpha``; ``fg_ratio`` is the share of
foreground tokens. The artifacts (``v``, ``alpha``, ``fg_share``, the token grid) are saved as
``foreground.json`` + ``foreground.safetensors`` beside the dataset and reused for other splits.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ARTIFACT_JSON = "foreground.json"
ARTIFACT_TENSORS = "foreground.safetensors"
DEFAULT_FG_SHARE = 0.4  # GenView: about 40% of tokens are foreground


def _stretch(mask: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    """A square token mask resized to ``image_size``'s aspect ratio (short side kept)."""
    width, height = image_size
    side = min(mask.size)
    target = (max(side, round(side * width / height)), max(side, round(side * height / width)))
    return mask if target == mask.size else mask.resize(target, Image.Resampling.NEAREST)


def border_ring(grid: tuple[int, int]) -> torch.Tensor:
    """Boolean (h*w,) mask of the outermost ring of a token grid."""
    h, w = grid
    ring = torch.zeros(h, w, dtype=torch.bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return ring.flatten()


@dataclass
class ForegroundScorer:
    """The fitted foreground direction and threshold; turns token maps into masks and ratios."""

    direction: torch.Tensor  # (D,) unit vector
    threshold: float
    fg_share: float = DEFAULT_FG_SHARE
    grid: tuple[int, int] = (16, 16)
    num_fit_images: int = 0

    @classmethod
    def fit(
        cls,
        encode: Callable[[object], torch.Tensor],
        batches: Callable[[], Iterable[object]],
        grid: tuple[int, int],
        fg_share: float = DEFAULT_FG_SHARE,
    ) -> ForegroundScorer:
        """Fit on a sample: ``batches()`` yields batches (twice), ``encode(batch)`` -> (B, T, D) tokens."""
        if not 0.0 < fg_share < 1.0:
            raise ValueError(f"fg_share must be in (0, 1), got {fg_share}")
        total, gram, tokens_seen, count = None, None, 0, 0
        for batch in batches():  # pass 1: sums for the mean-centred covariance
            tokens = _check_tokens(encode(batch), grid).double()
            flat = tokens.reshape(-1, tokens.shape[-1])  # (B T, D)
            total = flat.sum(0) if total is None else total + flat.sum(0)
            gram = flat.T @ flat if gram is None else gram + flat.T @ flat
            tokens_seen += flat.shape[0]
            count += tokens.shape[0]
        if gram is None:
            raise ValueError("cannot fit the foreground scorer: the sample has no decodable image")
        mean = total / tokens_seen
        covariance = gram - tokens_seen * torch.outer(mean, mean)  # sum of (t - mean)(t - mean)^T
        _, vectors = torch.linalg.eigh(covariance)
        direction = vectors[:, -1].float()
        projections, ring = [], border_ring(grid)
        centre_minus_border = 0.0
        for batch in batches():  # pass 2: projections -> sign and threshold
            proj = _check_tokens(encode(batch), grid) @ direction
            centre_minus_border += (
                float((proj[:, ~ring].mean(1) - proj[:, ring].mean(1)).sum()) if (~ring).any() else 0.0
            )
            projections.append(proj.flatten().numpy())
        if centre_minus_border < 0:
            direction = -direction
        all_proj = np.concatenate(projections) * (-1.0 if centre_minus_border < 0 else 1.0)
        threshold = float(np.quantile(all_proj, 1.0 - fg_share))
        return cls(
            direction=direction,
            threshold=threshold,
            fg_share=fg_share,
            grid=tuple(grid),
            num_fit_images=count,
        )

    def token_masks(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, D) tokens -> (B, T) boolean foreground masks."""
        tokens = _check_tokens(tokens, self.grid)
        return (tokens @ self.direction.to(tokens.device)) > self.threshold

    def fg_ratio(self, masks: torch.Tensor) -> list[float]:
        return masks.float().mean(dim=1).tolist()

    def mask_images(self, masks: torch.Tensor, image_sizes: list[tuple[int, int]]) -> list[Image.Image]:
        """(B, T) masks -> mode-L images (0 background, 255 foreground), one per (width, height).

        The token grid is square while images need not be: each mask is stretched back to its
        image's aspect ratio, its short side at token resolution, so it lies over the whole image.
        """
        h, w = self.grid
        arrays = (masks.reshape(-1, h, w).to(torch.uint8) * 255).cpu().numpy()
        return [
            _stretch(Image.fromarray(array, mode="L"), size)
            for array, size in zip(arrays, image_sizes, strict=True)
        ]

    def save(self, folder: str | Path) -> None:
        """``foreground.safetensors`` then ``foreground.json``, each written whole or not at all (a
        temp file renamed): a kill never leaves a half-written artifact that :meth:`exists` accepts."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = folder / f".tmp-{ARTIFACT_TENSORS}-{os.getpid()}"
        save_file({"direction": self.direction.contiguous().cpu()}, str(tensors))
        os.replace(tensors, folder / ARTIFACT_TENSORS)
        meta = {
            "threshold": self.threshold,
            "fg_share": self.fg_share,
            "percentile": 100.0 * (1.0 - self.fg_share),
            "grid": list(self.grid),
            "num_fit_images": self.num_fit_images,
            "dim": int(self.direction.numel()),
        }
        text = folder / f".tmp-{ARTIFACT_JSON}-{os.getpid()}"
        text.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(text, folder / ARTIFACT_JSON)

    @classmethod
    def load(cls, folder: str | Path) -> ForegroundScorer:
        """The artifacts of ``folder``; a missing, truncated or incomplete file is named."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path, tensors_path = folder / ARTIFACT_JSON, folder / ARTIFACT_TENSORS
        for path in (meta_path, tensors_path):
            if not path.exists():
                raise FileNotFoundError(f"{folder} has no {path.name}: fit the foreground scorer first")
        try:
            meta = json.loads(meta_path.read_text())
            threshold, fg_share, grid = float(meta["threshold"]), float(meta["fg_share"]), tuple(meta["grid"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{meta_path} is not a foreground scorer's metadata ({type(error).__name__}: {error}): the file "
                "is truncated or was not written by ForegroundScorer.save; fit the scorer again"
            ) from None
        try:
            direction = load_file(str(tensors_path))["direction"]
        except Exception as error:  # safetensors raises its own error types for a damaged file
            raise ValueError(
                f"{tensors_path} holds no readable 'direction' tensor ({type(error).__name__}: {error}); "
                "fit the scorer again"
            ) from None
        return cls(
            direction=direction,
            threshold=threshold,
            fg_share=fg_share,
            grid=grid,
            num_fit_images=int(meta.get("num_fit_images", 0)),
        )

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / ARTIFACT_JSON).exists() and (Path(folder) / ARTIFACT_TENSORS).exists()


def _check_tokens(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    tokens = tokens.float().cpu()
    if tokens.ndim != 3 or tokens.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"expected (batch, {grid[0]}*{grid[1]} tokens, dim) patch tokens, got shape {tuple(tokens.shape)}"
        )
    if not torch.isfinite(tokens).all():
        raise ValueError("patch tokens contain NaN or inf")
    return tokens


def grid_from_tokens(num_tokens: int) -> tuple[int, int]:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{num_tokens} patch tokens do not form a square grid")
    return side, side
