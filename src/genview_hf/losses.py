"""Contrastive objectives with optional per-pair weights (GenView's quality-driven loss).

Pure tensor functions: embeddings (and weights) in, a scalar loss out. Conventions shared by
every function here:

- **Embeddings are L2-normalised inside the loss** (``F.normalize``, so a zero vector stays zero
  and never produces NaN). Passing already-normalised embeddings is fine.
- **float32 where it matters**: bf16 / fp16 inputs are cast to float32 (float64 stays float64)
  before normalisation; softmax, log-sum-exp and every reduction run in float32; gradients
  flow back in the input's dtype. Under autocast only the similarity products follow the
  autocast dtype (tensor cores, float32 accumulation; see ``_similarity``); outside autocast
  everything is float32.
- **Weights** are per positive pair, shape ``(N,)`` (``(N, V, V)`` or ``(N, V)`` for the
  multi-positive forms). The weighted loss is ``mean(w * per_pair_loss)``; weights are
  detached inside the loss (no gradient ever reaches them) and are not renormalised, so
  mean-1 weights (what :mod:`genview_hf.quality` returns) keep the loss on the usual scale.
  ``weights=None`` runs the plain unweighted computation (``F.cross_entropy`` with mean
  reduction, or a plain mean): exactly the standard loss, not a multiplication by ones.
- **Across processes**: the keyword ``gather`` controls negatives from other processes.
  ``None`` (default) = automatic: gather when ``torch.distributed`` is initialised with more
  than one process; ``True`` = gather (a no-op when not distributed); ``False`` = local
  batch only (use it for a loss computed on one process only, e.g. on the main process at
  evaluation, or the other processes would wait forever). Gathers keep the gradient
  (local-loss style, see :mod:`genview_hf.distributed`) except momentum keys, which are
  gathered without gradient. Each process's loss covers its own rows; DDP's gradient average
  then equals the gradient of the single-process loss on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import gather_with_offset, is_distributed

__all__ = [
    "byol_loss",
    "clip_loss",
    "info_nce_loss",
    "leoclr_loss",
    "multi_positive_clip_loss",
    "multi_positive_loss",
    "negative_cosine_loss",
    "nt_xent_loss",
    "slip_loss",
]


# ----------------------------------------------------------------------------- helpers


def _dims(shape: tuple[int, ...] | torch.Size) -> str:
    """A shape as Python writes a tuple: ``(4,)``, ``(4, 8)``."""
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _shape(x: torch.Tensor) -> str:
    return _dims(x.shape)


def _check_rank(name: str, x: torch.Tensor, rank: int, layout: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{name} must have shape {layout}, got shape {_shape(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {_shape(x)}): a loss needs at least one pair")


def _check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {_shape(a)} but {name_b} has shape {_shape(b)}: they must match"
        )


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Two (N, D) floating-point embeddings of the same shape."""
    _check_rank(name_a, a, 2, "(N, D)")
    _check_rank(name_b, b, 2, "(N, D)")
    _check_same_shape(name_a, a, name_b, b)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _prepare_weights(
    weights: torch.Tensor, shape: tuple[int, ...], what: str, like: torch.Tensor
) -> torch.Tensor:
    """Detached weights of the expected shape in the compute dtype, or a clear error naming both shapes."""
    if not isinstance(weights, torch.Tensor):
        weights = torch.as_tensor(weights)
    if tuple(weights.shape) != tuple(shape):
        raise ValueError(f"weights has shape {_shape(weights)} but expected {_dims(shape)} ({what})")
    return weights.detach().to(device=like.device, dtype=_compute_dtype(like))


def _pair_weights(weights: torch.Tensor | None, name: str, x: torch.Tensor) -> torch.Tensor | None:
    """(N,) weights, one per row of ``x`` (N, D), prepared as by ``_prepare_weights``; None stays None."""
    if weights is None:
        return None
    return _prepare_weights(weights, (x.shape[0],), f"one per pair; {name} has shape {_shape(x)}", x)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else (bf16, fp16, fp32) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _normalize(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return F.normalize(x.to(dtype), dim=-1)


def _similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T in the compute dtype of ``a``.

    Under autocast the product runs in the autocast dtype (bf16 / fp16 tensor cores, float32
    accumulation), as in the official MoCo v3 and open_clip code under AMP; its result is cast
    back so that softmax, log-sum-exp and reductions always run in float32 (or float64).
    """
    return (a @ b.T).to(a.dtype)


def _should_gather(gather: bool | None) -> bool:
    return is_distributed() if gather is None else bool(gather)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return F.cross_entropy(logits, labels)
    return (F.cross_entropy(logits, labels, reduction="none") * weights).mean()


def _weighted_mean(per_pair: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean(w * per_pair) over the (N,) pairs, or the plain mean without weights."""
    if weights is None:
        return per_pair.mean()
    return (per_pair * weights).mean()


def _cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(N,) cosine similarity of each row of ``p`` with ``stopgrad(z)``, both (N, D)."""
    dtype = _compute_dtype(p)
    return (_normalize(p, dtype) * _normalize(z.detach(), dtype)).sum(dim=-1)


def _scale_tensor(logit_scale, like: torch.Tensor) -> torch.Tensor:
    """The logit scale as a 0-dim tensor in the loss's compute dtype (keeps its gradient)."""
    if isinstance(logit_scale, torch.Tensor):
        scale = logit_scale.to(device=like.device)
    else:
        scale = torch.as_tensor(logit_scale, device=like.device, dtype=like.dtype)
    if scale.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar, got shape {_shape(scale)}")
    return scale.to(like.dtype).reshape(())


# ----------------------------------------------------------------------------- SSL losses


def info_nce_loss(
    query: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor | None = None,
    temperature: float = 0.2,
    weights: torch.Tensor | None = None,
    *,
    gather: bool | None = None,
) -> torch.Tensor:
    """InfoNCE: row i of ``query`` (N, D) should pick ``keys[i]`` among the candidates.

    - ``queue=None`` (MoCo v3 style): candidates are all keys of the batch, gathered from every
      process (without gradient when ``keys`` needs none, e.g. momentum keys; with gradient
      otherwise). MoCo v3 multiplies this loss by ``2 * temperature`` and symmetrises it;
      that is the caller's job.
    - ``queue`` (K, D) given (MoCo v2 style): candidates are the positive key and the K queue
      entries (no gather: each process has the whole queue). The queue is detached.

    ``temperature`` 0.2 is MoCo v2's (MoCo v3 uses 1.0 for ResNet, 0.2 for ViT).
    ``weights`` (N,): per-pair weights, see the module docstring.
    """
    _check_pair("query", query, "keys", keys)
    _check_temperature(temperature)
    n = query.shape[0]
    weights = _pair_weights(weights, "query", query)
    dtype = _compute_dtype(query)
    q = _normalize(query, dtype)
    k = _normalize(keys, dtype)
    if queue is not None:
        _check_rank("queue", queue, 2, "(K, D)")
        if queue.shape[1] != query.shape[1]:
            raise ValueError(
                f"queue has shape {_shape(queue)} but query has shape {_shape(query)}: "
                "the embedding sizes (last dimension) must match"
            )
        negatives = _normalize(queue.detach(), dtype)
        positive = (q * k).sum(dim=-1, keepdim=True)
        logits = torch.cat([positive, _similarity(q, negatives)], dim=1) / temperature  # (N, 1 + K)
        labels = torch.zeros(n, dtype=torch.long, device=query.device)
    else:
        if _should_gather(gather):
            all_keys, offset = gather_with_offset(k, with_grad=k.requires_grad)
        else:
            all_keys, offset = k, 0
        logits = _similarity(q, all_keys) / temperature  # (N, global N)
        labels = torch.arange(n, device=query.device) + offset
    return _cross_entropy(logits, labels, weights)


def nt_xent_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    weights: torch.Tensor | None = None,
    *,
    gather: bool | None = None,
) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N views picks its partner among the 2N-1 other views.

    ``z1``, ``z2`` (N, D): the two views' projections (gradient through both). The loss is the
    mean over the 2N rows; a pair's weight applies to both of its rows. Across processes the
    candidates are the 2 x (global N) views, gathered with gradient. ``temperature`` 0.5 is
    SimCLR's default for batch 4096 (0.1 in SLIP's SSL branch).
    """
    _check_pair("z1", z1, "z2", z2)
    _check_temperature(temperature)
    n = z1.shape[0]
    weights = _pair_weights(weights, "z1", z1)
    dtype = _compute_dtype(z1)
    a = _normalize(z1, dtype)
    b = _normalize(z2, dtype)
    if _should_gather(gather):
        all_a, offset = gather_with_offset(a, with_grad=True)
        all_b, _ = gather_with_offset(b, with_grad=True)
    else:
        all_a, all_b, offset = a, b, 0
    total = all_a.shape[0]
    rows = torch.cat([a, b], dim=0)  # (2n, D)
    logits = _similarity(rows, torch.cat([all_a, all_b], dim=0)) / temperature  # (2n, 2 total)
    local = torch.arange(n, device=z1.device) + offset
    self_index = torch.cat([local, local + total])
    labels = torch.cat([local + total, local])
    logits[torch.arange(2 * n, device=z1.device), self_index] = float("-inf")  # never oneself
    if weights is None:
        return F.cross_entropy(logits, labels)
    per_row = F.cross_entropy(logits, labels, reduction="none")
    per_pair = (per_row[:n] + per_row[n:]) / 2
    return (per_pair * weights).mean()


def negative_cosine_loss(
    p: torch.Tensor, z: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """SimSiam's D(p, z) = -cos(p, stopgrad(z)), averaged over pairs (range [-1, 1]).

    SimSiam symmetrises: ``0.5 * (D(p1, z2) + D(p2, z1))``, the caller's job.
    """
    _check_pair("p", p, "z", z)
    weights = _pair_weights(weights, "p", p)
    return _weighted_mean(-_cosine(p, z), weights)


def byol_loss(p: torch.Tensor, z: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """BYOL's normalised MSE: ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, stopgrad(z))``, averaged over pairs.

    BYOL sums the two directions (online view 1 -> target view 2 and back), the caller's job.
    """
    _check_pair("p", p, "z", z)
    weights = _pair_weights(weights, "p", p)
    return _weighted_mean(2 - 2 * _cosine(p, z), weights)


def leoclr_loss(
    query: torch.Tensor,
    key1: torch.Tensor,
    key2: torch.Tensor,
    queue: torch.Tensor | None = None,
    temperature: float = 0.2,
    weights: torch.Tensor | None = None,
    *,
    gather: bool | None = None,
) -> torch.Tensor:
    """LeOCLR: both momentum-encoded crops are pulled toward the query of the uncropped original.

    ``query`` (N, D): query encoder on the original (uncropped) image; ``key1``, ``key2`` (N, D):
    momentum encoder on two random crops; ``queue`` (K, D): negatives (MoCo v2 style; ``None``
    uses in-batch keys). The two crops are never pulled toward each other. Returns the sum
    ``info_nce(query, key1) + info_nce(query, key2)``, one term per (original, crop) pair;
    halve it to compare with a single MoCo v2 term. ``weights``: (N, 2), column j weighting the
    (original, crop j) pairs of term j (GenView's quality of the pair that term contrasts), or
    (N,) for both terms.
    """
    _check_pair("key1", key1, "key2", key2)
    weights_1 = weights_2 = weights
    if weights is not None:
        weights = torch.as_tensor(weights)
        if weights.dim() == 2:
            if tuple(weights.shape) != (query.shape[0], 2):
                raise ValueError(
                    f"weights has shape {_shape(weights)} but expected ({query.shape[0]}, 2) or "
                    f"({query.shape[0]},) (one per (original, crop) pair; query has shape {_shape(query)})"
                )
            weights_1, weights_2 = weights[:, 0], weights[:, 1]
    first = info_nce_loss(query, key1, queue, temperature, weights_1, gather=gather)
    second = info_nce_loss(query, key2, queue, temperature, weights_2, gather=gather)
    return first + second


# ----------------------------------------------------------------------------- image-text


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    weights: torch.Tensor | None = None,
    *,
    gather: bool | None = None,
) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over image-text pairs.

    ``logit_scale`` is the **multiplier** applied to cosine similarities, i.e. already
    exponentiated: pass ``model.logit_scale.exp()`` for a transformers ``CLIPModel`` (whose
    parameter holds its log). Clamping the log to ln(100) is the model's job, not the loss's.
    Equals ``CLIPModel(..., return_loss=True).loss`` on the same embeddings. Across processes,
    images are contrasted with the texts of every process and vice versa, gathered with
    gradient (local-loss style). Pair i's weight applies to both of its rows.
    """
    _check_pair("image_embeds", image_embeds, "text_embeds", text_embeds)
    n = image_embeds.shape[0]
    device = image_embeds.device
    weights = _pair_weights(weights, "image_embeds", image_embeds)
    dtype = _compute_dtype(image_embeds)
    image = _normalize(image_embeds, dtype)
    text = _normalize(text_embeds, dtype)
    scale = _scale_tensor(logit_scale, image)
    if _should_gather(gather):
        all_text, offset = gather_with_offset(text, with_grad=True)
        all_image, _ = gather_with_offset(image, with_grad=True)
        logits_per_image = scale * _similarity(image, all_text)
        logits_per_text = scale * _similarity(text, all_image)
    else:
        offset = 0
        logits_per_image = scale * _similarity(image, text)
        logits_per_text = logits_per_image.T
    labels = torch.arange(n, device=device) + offset
    if weights is None:
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
    per_pair = (
        F.cross_entropy(logits_per_image, labels, reduction="none")
        + F.cross_entropy(logits_per_text, labels, reduction="none")
    ) / 2
    return (per_pair * weights).mean()


def slip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    ssl_z1: torch.Tensor,
    ssl_z2: torch.Tensor,
    ssl_scale: float = 1.0,
    ssl_temperature: float = 0.1,
    weights: torch.Tensor | None = None,
    ssl_weights: torch.Tensor | None = None,
    *,
    gather: bool | None = None,
) -> torch.Tensor:
    """SLIP: ``clip_loss + ssl_scale * nt_xent_loss(ssl_z1, ssl_z2, ssl_temperature)``.

    ``ssl_z1``, ``ssl_z2`` (N, D'): SimCLR projections of two extra augmented views.
    Defaults from SLIP (Mu et al., 2022): ``ssl_scale`` 1.0, ``ssl_temperature`` 0.1.
    ``weights`` (N,) weight the image-text pairs; ``ssl_weights`` (N,) the image-image pairs
    (GenView++ scores them differently); ``None`` leaves that term unweighted.
    """
    contrastive = clip_loss(image_embeds, text_embeds, logit_scale, weights, gather=gather)
    ssl = nt_xent_loss(ssl_z1, ssl_z2, ssl_temperature, ssl_weights, gather=gather)
    return contrastive + ssl_scale * ssl


# ----------------------------------------------------------------------------- GenView++ multi-positive


def multi_positive_loss(
    views: torch.Tensor,
    temperature: float = 0.1,
    weights: torch.Tensor | None = None,
    *,
    gather: bool | None = None,
) -> torch.Tensor:
    """Multi-positive contrastive loss over several views per sample (StableRep; GenView++ image-image).

    ``views`` (N, V, D), V >= 2: V views of each of N samples (e.g. the real image and its
    generated views, all from one caption). Every view of a sample is a positive of every other
    view of it; all other views in the (global) batch are negatives; a view is never compared
    with itself. Row (i, a)'s target is uniform over its V-1 positives:
    ``loss = mean over rows (i, a) and positives b != a of [-w[i, a, b] * log softmax_{(i,b)}(logits of (i,a))]``.
    ``weights`` (N, V, V): per ordered pair; the diagonal is ignored (GenView++ weights have mean
    1 over the off-diagonal entries). With V = 2 and no weights this is ``nt_xent_loss``.
    ``temperature`` 0.1 is StableRep's / GenView++'s.
    """
    _check_rank("views", views, 3, "(N, V, D)")
    _check_temperature(temperature)
    n, v, d = views.shape
    if v < 2:
        raise ValueError(
            f"views has shape {_shape(views)}: multi_positive_loss needs V >= 2 views per sample"
        )
    device = views.device
    if weights is not None:
        weights = _prepare_weights(
            weights, (n, v, v), f"one per ordered view pair; views has shape {_shape(views)}", views
        )
    rows = _normalize(views.reshape(n * v, d), _compute_dtype(views))
    if _should_gather(gather):
        candidates, offset = gather_with_offset(rows, with_grad=True)
    else:
        candidates, offset = rows, 0
    logits = _similarity(rows, candidates) / temperature  # (nV, total V)
    row_index = torch.arange(n * v, device=device)
    logits[row_index, row_index + offset] = float("-inf")  # never oneself
    log_prob = torch.log_softmax(logits, dim=1)
    # positives of row (i, a): columns offset + i V + b for b != a
    view_a = torch.arange(v, device=device)
    others = torch.stack([torch.cat([view_a[:a], view_a[a + 1 :]]) for a in range(v)])  # (V, V-1)
    sample_start = (torch.arange(n, device=device) * v).view(n, 1, 1)
    positive_columns = (offset + sample_start + others.unsqueeze(0)).reshape(n * v, v - 1)
    positive_log_prob = log_prob.gather(1, positive_columns)  # (nV, V-1)
    if weights is None:
        return -positive_log_prob.mean()
    pair_weights = weights.gather(2, others.unsqueeze(0).expand(n, v, v - 1)).reshape(n * v, v - 1)
    return -(pair_weights * positive_log_prob).mean()


def multi_positive_clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    weights: torch.Tensor | None = None,
    *,
    gather: bool | None = None,
) -> torch.Tensor:
    """Image-text contrastive loss with several images (views) per caption (GenView++ image-text).

    ``image_embeds`` (N, V, D): V views of each caption's image (real and generated);
    ``text_embeds`` (N, D); ``logit_scale`` as in :func:`clip_loss` (already exponentiated).
    Image side: each view picks its caption among all captions (cross-entropy). Text side: each
    caption's target is uniform over its V views among all views. The loss is the mean of the
    two sides; ``weights`` (N, V) weight each (view, caption) pair on both sides (GenView++:
    mean 1 over pairs). With V = 1 and no weights this is :func:`clip_loss`.
    """
    _check_rank("image_embeds", image_embeds, 3, "(N, V, D)")
    _check_rank("text_embeds", text_embeds, 2, "(N, D)")
    n, v, d = image_embeds.shape
    if text_embeds.shape[0] != n or text_embeds.shape[1] != d:
        raise ValueError(
            f"image_embeds has shape {_shape(image_embeds)} but text_embeds has shape {_shape(text_embeds)}: "
            "expected (N, V, D) and (N, D) with the same N and D"
        )
    device = image_embeds.device
    if weights is not None:
        weights = _prepare_weights(
            weights,
            (n, v),
            f"one per (view, caption) pair; image_embeds has shape {_shape(image_embeds)}",
            image_embeds,
        )
    dtype = _compute_dtype(image_embeds)
    image = _normalize(image_embeds.reshape(n * v, d), dtype)
    text = _normalize(text_embeds, dtype)
    scale = _scale_tensor(logit_scale, image)
    if _should_gather(gather):
        all_text, offset = gather_with_offset(text, with_grad=True)
        all_image, image_offset = gather_with_offset(image, with_grad=True)
    else:
        all_text, all_image, offset, image_offset = text, image, 0, 0
    logits_per_image = scale * _similarity(image, all_text)  # (nV, total N)
    logits_per_text = scale * _similarity(text, all_image)  # (n, total N V)
    image_labels = torch.arange(n, device=device).repeat_interleave(v) + offset
    text_positive = image_offset + torch.arange(n * v, device=device).view(n, v)
    text_log_prob = torch.log_softmax(logits_per_text, dim=1).gather(1, text_positive)  # (n, V)
    if weights is None:
        return (F.cross_entropy(logits_per_image, image_labels) - text_log_prob.mean()) / 2
    image_side = (
        F.cross_entropy(logits_per_image, image_labels, reduction="none") * weights.reshape(n * v)
    ).mean()
    text_side = -(text_log_prob * weights).mean()
    return (image_side + text_side) / 2
