"""Quality-driven pair weights (GenView image-image; GenView++ multi-view and image-text).

Inputs are token maps of a frozen encoder: ``tokens`` (N, T, C), T patch tokens of C channels
(CLS dropped; a CNN feature map (N, C, H, W) becomes ``fmap.flatten(2).transpose(1, 2)``).
A soft foreground map per image comes either from projecting the tokens on a fitted
``direction`` (C,) (the first principal component of tokens, fitted by the generation code)
with min-max normalisation within the image, or from given masks (N, T) in [0, 1] (e.g. the
stored dataset masks, cropped with the view's augmentation). Background = 1 - foreground; each
map is normalised to sum 1 and pools the tokens into a foreground and a background feature.

- GenView (image-image, two views): q = cos(z1_fg, z2_fg) - cos(z1_bg, z2_bg) per pair and
  w = N * softmax(gamma * q) over the N local pairs (gamma 1; mean 1). See :func:`quality_weights`.
- GenView++ image-image (several views): s_ab = exp(gamma * q_ab) for each ordered pair of
  views of a sample, normalised to mean 1 over those pairs (gamma 2). See
  :func:`multi_view_quality_weights`.
- GenView++ image-text: s = exp(gamma * [cos(e_view, u_caption) - cos(z_view_bg, z_real_bg)]),
  e and u frozen CLIP image and text embeddings, z_real_bg the background feature of the
  unaugmented real image; normalised to mean 1 over the (view, caption) pairs (gamma 2). See
  :func:`image_text_quality_weights`.

Weightings of GenView pairs that can send a pair to zero (ours; the papers' softmax stays the
default, measured in docs/efficacy.md): :func:`pair_weights` turns the pair qualities q (N,) into
weights by a named rule (``WEIGHTINGS``); :class:`RowQualityMemory` carries each dataset row's q
across the steps that see it.

Every weight function runs under ``torch.no_grad`` with autocast off and returns detached weights on the tokens'
device, in float32 (float64 for float64 inputs): bf16 / fp16 tokens are cast to float32 first.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

__all__ = [
    "WEIGHTINGS",
    "RowQualityMemory",
    "annealed_gamma",
    "foreground_maps",
    "image_text_quality_weights",
    "multi_view_quality_weights",
    "pair_quality",
    "pair_weights",
    "pool_foreground_background",
    "quality_weights",
    "rank_cut_weights",
    "sigmoid_weights",
    "threshold_weights",
]

# How GenView pairs' qualities q become weights (``pair_weights``). softmax: the papers' N softmax(gamma q);
# the others can reach zero: threshold (q > 0), rank_cut (the batch's top half), sigmoid (of the
# standardised q), annealed (softmax with gamma rising over training), row_memory (each row's q averaged
# over the steps that saw it, then threshold).
WEIGHTINGS = ("softmax", "threshold", "rank_cut", "sigmoid", "annealed", "row_memory")
RANK_CUT_KEEP = 0.5  # rank_cut: the share of a batch's pairs kept
SIGMOID_SHARPNESS = 4.0  # sigmoid: a pair one standard deviation below the batch mean weighs ~sigmoid(-4)
ANNEALED_FINAL_GAMMA = 10.0  # annealed: gamma at the end of training (from the run's gamma at the start)
ROW_MEMORY_VISITS = (
    8  # row_memory: a row's q is the mean of its first visits, then an EMA over about this many
)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 -> float32; float32 and float64 are kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@contextlib.contextmanager
def _exact(like: torch.Tensor):
    """No gradient, and autocast off: the weights are computed in float32 even inside an AMP step."""
    with torch.no_grad(), torch.autocast(device_type=like.device.type, enabled=False):
        yield


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _shape(x: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + (",)" if x.dim() == 1 else ")")


def _check_tokens(name: str, tokens: torch.Tensor, rank: int = 3, layout: str = "(N, T, C)") -> None:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dim() != rank:
        raise ValueError(
            f"{name} must have shape {layout}, got shape {_shape(tokens)} "
            "(a CNN feature map (N, C, H, W) becomes fmap.flatten(2).transpose(1, 2))"
        )
    if not tokens.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tokens.dtype}")
    if tokens.shape[0] == 0 or tokens.shape[-2] == 0:
        raise ValueError(f"{name} is empty (shape {_shape(tokens)})")


def _check_direction(direction: torch.Tensor | None, tokens: torch.Tensor, name: str) -> torch.Tensor:
    if direction is None:
        raise ValueError(f"direction is None but no masks were given for {name}: pass one or the other")
    direction = torch.as_tensor(direction)
    if direction.dim() != 1 or direction.shape[0] != tokens.shape[-1]:
        raise ValueError(
            f"direction has shape {_shape(direction)} but {name} has shape {_shape(tokens)}: "
            f"expected ({tokens.shape[-1]},), one value per channel"
        )
    return direction.to(device=tokens.device, dtype=_compute_dtype(tokens))


def _check_masks(masks: torch.Tensor, tokens: torch.Tensor, mask_name: str, token_name: str) -> torch.Tensor:
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{mask_name} must be a torch.Tensor, got {type(masks).__name__}")
    if tuple(masks.shape) != tuple(tokens.shape[:-1]):
        raise ValueError(
            f"{mask_name} has shape {_shape(masks)} but {token_name} has shape {_shape(tokens)}: "
            f"expected {_shape(tokens[..., 0])}, one value per token"
        )
    if not masks.is_floating_point():
        raise TypeError(
            f"{mask_name} must be a float tensor in [0, 1], got dtype {masks.dtype} "
            "(stored masks are 0-255 images: divide by 255)"
        )
    masks = masks.to(dtype=_compute_dtype(tokens))
    in_range = (masks >= 0) & (masks <= 1)  # False for NaN too
    if masks.device.type == "cpu":  # host memory: reading it costs no device sync
        if not bool(in_range.all()):
            raise ValueError(
                f"{mask_name} must hold values in [0, 1], got min {masks.min().item():g}, max {masks.max().item():g}"
            )
    else:  # not read back, which would stall the device every step: bad values make the weights NaN,
        # which the Trainer's non-finite loss guard reports (the collators' masks are in range by construction)
        masks = torch.where(in_range, masks, torch.nan)
    return masks.to(device=tokens.device)


def foreground_maps(tokens: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Soft foreground maps (N, T) in [0, 1]: projection on ``direction``, min-max normalised per image.

    An image whose projections are all equal (min == max, e.g. a constant token map) gets the
    uniform map 0.5 everywhere (foreground and background then pool to the same feature),
    never NaN. Extra leading dimensions are allowed: (..., T, C) -> (..., T).
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() < 2:
        raise ValueError(f"tokens must have shape (N, T, C), got {getattr(tokens, 'shape', type(tokens))}")
    direction = _check_direction(direction, tokens, "tokens")
    with _exact(tokens):
        projection = _upcast(tokens) @ direction  # (..., T)
        low = projection.amin(dim=-1, keepdim=True)
        high = projection.amax(dim=-1, keepdim=True)
        span = high - low
        constant = span <= 1e-6 * (high.abs() + low.abs())
        scaled = (projection - low) / torch.where(constant, torch.ones_like(span), span)
        return torch.where(constant, torch.full_like(scaled, 0.5), scaled).clamp_(0.0, 1.0)


def pool_foreground_background(
    tokens: torch.Tensor, fg_map: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground and background features (N, C) each, pooled with maps normalised to sum 1.

    ``fg_map`` (N, T) in [0, 1]; background = 1 - fg_map. A map that sums to zero (e.g. a mask
    that is foreground everywhere has no background) pools to the zero vector, whose cosine
    with anything is 0. Extra leading dimensions are allowed: (..., T, C) and (..., T).
    """
    if tuple(fg_map.shape) != tuple(tokens.shape[:-1]):
        raise ValueError(
            f"fg_map has shape {_shape(fg_map)} but tokens has shape {_shape(tokens)}: "
            f"expected {_shape(tokens[..., 0])}"
        )
    with _exact(tokens):
        tokens = _upcast(tokens)
        fg = fg_map.to(device=tokens.device, dtype=tokens.dtype)
        bg = 1.0 - fg
        fg = fg / fg.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        bg = bg / bg.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        z_fg = (fg.unsqueeze(-2) @ tokens).squeeze(-2)
        z_bg = (bg.unsqueeze(-2) @ tokens).squeeze(-2)
        return z_fg, z_bg


def _maps(tokens, direction, masks, token_name, mask_name) -> torch.Tensor:
    if masks is not None:
        return _check_masks(masks, tokens, mask_name, token_name)
    return foreground_maps(tokens, _check_direction(direction, tokens, token_name))


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1)


def pair_quality(
    tokens1: torch.Tensor,
    tokens2: torch.Tensor,
    direction: torch.Tensor | None = None,
    masks1: torch.Tensor | None = None,
    masks2: torch.Tensor | None = None,
    center: bool = False,
) -> torch.Tensor:
    """Quality score per pair (N,): q = cos(z1_fg, z2_fg) - cos(z1_bg, z2_bg), in [-2, 2].

    High when the views share their foreground and differ in background. ``direction`` may be
    None when both masks are given. The two views may have different token counts T.
    ``center`` (ours; the papers: off): subtract the batch's mean token (per channel, over every
    token of both views) from the pooled features before the cosines. Non-negative features (a
    CNN's post-ReLU maps) have all their cosines near 1, so q hardly varies; centred, the cosines
    spread over [-1, 1]. The foreground maps are unchanged (a projection's min-max normalisation
    ignores a common shift).
    """
    _check_tokens("tokens1", tokens1)
    _check_tokens("tokens2", tokens2)
    if tokens1.shape[0] != tokens2.shape[0] or tokens1.shape[2] != tokens2.shape[2]:
        raise ValueError(
            f"tokens1 has shape {_shape(tokens1)} but tokens2 has shape {_shape(tokens2)}: "
            "the batch size N and channels C must match"
        )
    with _exact(tokens1):
        fg1 = _maps(tokens1, direction, masks1, "tokens1", "masks1")
        fg2 = _maps(tokens2, direction, masks2, "tokens2", "masks2")
        z1_fg, z1_bg = pool_foreground_background(tokens1, fg1)
        z2_fg, z2_bg = pool_foreground_background(tokens2, fg2)
        if center:  # pooling maps sum to 1, so this is the pooled features of centred tokens
            mean = torch.cat([_upcast(tokens1), _upcast(tokens2)], dim=1).mean(dim=(0, 1))  # (C,)
            z1_fg, z1_bg, z2_fg, z2_bg = (z - mean for z in (z1_fg, z1_bg, z2_fg, z2_bg))
        return _cos(z1_fg, z2_fg) - _cos(z1_bg, z2_bg)


def quality_weights(
    tokens1: torch.Tensor,
    tokens2: torch.Tensor,
    direction: torch.Tensor | None,
    gamma: float = 1.0,
    masks1: torch.Tensor | None = None,
    masks2: torch.Tensor | None = None,
    center: bool = False,
) -> torch.Tensor:
    """GenView's pair weights (N,): ``N * softmax(gamma * q)`` over the local pairs (detached, mean 1).

    ``tokens1``, ``tokens2`` (N, T, C): the two views' token maps from a frozen encoder;
    ``direction`` (C,): the fitted principal direction (None when both masks are given);
    ``masks1``, ``masks2`` (N, T) in [0, 1]: optional foreground maps replacing the projection.
    ``gamma`` 1.0 is GenView's default. A batch of one gets weight 1. ``center``: see
    :func:`pair_quality` (off: GenView's q exactly).
    """
    q = pair_quality(tokens1, tokens2, direction, masks1, masks2, center=center)
    return pair_weights(q, "softmax", gamma)


def _mean_one(scores: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """exp(scores) normalised to mean 1 over the kept entries (stable: shifted by the max); others 0."""
    if keep is None:
        shifted = scores - scores.max()
        s = shifted.exp()
        return s / s.mean()
    shifted = scores - scores[keep].max()
    s = torch.where(keep, shifted.exp(), torch.zeros_like(shifted))
    return s / s[keep].mean()


def multi_view_quality_weights(
    view_tokens: torch.Tensor,
    direction: torch.Tensor | None,
    gamma: float = 2.0,
    view_masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """GenView++ image-image weights (N, V, V) for :func:`genview_hf.losses.multi_positive_loss`.

    ``view_tokens`` (N, V, T, C): token maps of the V views of each sample; ``view_masks``
    (N, V, T) optional. For views a != b of sample i: s = exp(gamma * q_ab), q as in
    :func:`pair_quality`; normalised to mean 1 over all N V (V-1) ordered pairs; the diagonal is 0.
    ``gamma`` 2.0 is GenView++'s default.
    """
    _check_tokens("view_tokens", view_tokens, 4, "(N, V, T, C)")
    n, v = view_tokens.shape[:2]
    if v < 2:
        raise ValueError(f"view_tokens has shape {_shape(view_tokens)}: need V >= 2 views per sample")
    with _exact(view_tokens):
        fg = _maps(view_tokens, direction, view_masks, "view_tokens", "view_masks")
        z_fg, z_bg = pool_foreground_background(view_tokens, fg)  # (N, V, C)
        z_fg, z_bg = F.normalize(z_fg, dim=-1), F.normalize(z_bg, dim=-1)
        q = z_fg @ z_fg.transpose(1, 2) - z_bg @ z_bg.transpose(1, 2)  # (N, V, V)
        off_diagonal = ~torch.eye(v, dtype=torch.bool, device=q.device).expand(n, v, v)
        return _mean_one(gamma * q, off_diagonal)


def image_text_quality_weights(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    view_tokens: torch.Tensor,
    real_tokens: torch.Tensor,
    direction: torch.Tensor | None,
    gamma: float = 2.0,
    view_masks: torch.Tensor | None = None,
    real_masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """GenView++ image-text weights (N, V) for :func:`genview_hf.losses.multi_positive_clip_loss`.

    ``image_embeds`` (N, V, E): frozen CLIP image embeddings of the V views; ``text_embeds``
    (N, E): frozen CLIP text embeddings of the captions; ``view_tokens`` (N, V, T, C) and
    ``real_tokens`` (N, T', C): token maps of the views and of the unaugmented real image.
    s = exp(gamma * [cos(e_view, u_caption) - cos(z_view_bg, z_real_bg)]), normalised to mean 1
    over the N V pairs. ``gamma`` 2.0 is GenView++'s default.
    """
    _check_tokens("view_tokens", view_tokens, 4, "(N, V, T, C)")
    _check_tokens("real_tokens", real_tokens)
    n, v = view_tokens.shape[:2]
    if image_embeds.dim() != 3 or tuple(image_embeds.shape[:2]) != (n, v):
        raise ValueError(
            f"image_embeds has shape {_shape(image_embeds)} but view_tokens has shape {_shape(view_tokens)}: "
            f"expected ({n}, {v}, E)"
        )
    if text_embeds.dim() != 2 or text_embeds.shape != (n, image_embeds.shape[2]):
        raise ValueError(
            f"text_embeds has shape {_shape(text_embeds)} but image_embeds has shape {_shape(image_embeds)}: "
            f"expected ({n}, {image_embeds.shape[2]})"
        )
    if real_tokens.shape[0] != n or real_tokens.shape[2] != view_tokens.shape[3]:
        raise ValueError(
            f"real_tokens has shape {_shape(real_tokens)} but view_tokens has shape {_shape(view_tokens)}: "
            "the batch size N and channels C must match"
        )
    with _exact(view_tokens):
        alignment = _cos(_upcast(image_embeds), _upcast(text_embeds).unsqueeze(1))  # (N, V)
        view_fg = _maps(view_tokens, direction, view_masks, "view_tokens", "view_masks")
        real_fg = _maps(real_tokens, direction, real_masks, "real_tokens", "real_masks")
        _, view_bg = pool_foreground_background(view_tokens, view_fg)  # (N, V, C)
        _, real_bg = pool_foreground_background(real_tokens, real_fg)  # (N, C)
        background_similarity = _cos(view_bg, real_bg.unsqueeze(1))  # (N, V)
        return _mean_one(gamma * (alignment - background_similarity))


def _mean_one_over_kept(keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) bool -> weights (N,) in the compute dtype of ``like``: the kept entries share the batch's
    mass N equally, the others 0; all ones when nothing is kept (no pair then stands out, so none is
    silenced)."""
    kept = keep.to(_compute_dtype(like))
    count = kept.sum()
    weights = kept * (keep.shape[0] / count.clamp(min=1))
    return torch.where(count > 0, weights, torch.ones_like(weights))


def threshold_weights(q: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Weights (N,) that drop every pair whose quality is not above ``threshold``: 0 there, the kept
    pairs equal with mean 1 over the batch (all ones when none is kept). At the default 0, a pair is
    kept when its views' foregrounds agree more than their backgrounds, a test of the sign of q that
    needs no rate of false pairs."""
    with _exact(q):
        return _mean_one_over_kept(q > threshold, q)


def rank_cut_weights(q: torch.Tensor, keep: float = RANK_CUT_KEEP) -> torch.Tensor:
    """Weights (N,): the ``ceil(keep * N)`` pairs of highest q weigh ``N / ceil(keep * N)`` each, the
    others 0 (mean 1). Ties are broken by position (a stable sort)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"rank_cut_weights: keep must be in (0, 1], got {keep}")
    with _exact(q):
        n = q.shape[0]
        kept = max(1, math.ceil(keep * n))
        order = torch.sort(q, descending=True, stable=True).indices
        chosen = torch.zeros(n, dtype=torch.bool, device=q.device)
        chosen[order[:kept]] = True
        return _mean_one_over_kept(chosen, q)


def sigmoid_weights(q: torch.Tensor, sharpness: float = SIGMOID_SHARPNESS) -> torch.Tensor:
    """Weights (N,) proportional to ``sigmoid(sharpness * (q - mean q) / std q)``, normalised to mean 1:
    a pair far below the batch's typical quality tends to 0, one far above saturates. A batch whose
    qualities are all equal (or a batch of one) gets ones."""
    with _exact(q):
        if q.shape[0] < 2:
            return torch.ones_like(q)
        spread = q.std()
        scores = torch.sigmoid(sharpness * (q - q.mean()) / spread.clamp(min=1e-12))
        weights = scores / scores.mean()
        return torch.where(spread > 1e-12, weights, torch.ones_like(weights))


def annealed_gamma(gamma: float, progress: float, final: float = ANNEALED_FINAL_GAMMA) -> float:
    """The softmax's gamma at ``progress`` in [0, 1] of training: linear from ``gamma`` to ``final``."""
    progress = min(max(float(progress), 0.0), 1.0)
    return gamma + (final - gamma) * progress


class RowQualityMemory:
    """Each dataset row's pair quality carried across the steps that see it (``row_memory``).

    A row's generated view is fixed, and a frozen encoder's q of the row varies only with the
    augmentation drawn at each visit; averaging the visits leaves what the row itself holds. A
    row's smoothed q is the mean of its visits while it has fewer than ``visits`` of them, then an
    exponential moving average with weight ``1 / visits`` on the newest (it follows a training
    model's tokens in ``stored`` mode). The memory grows to the largest row index seen. In a
    distributed run every process folds in every process's rows (``PairWeighting``), so all hold the
    same memory; ``GenViewTrainer`` saves it with every checkpoint, so a resume carries it on.
    """

    def __init__(self, visits: int = ROW_MEMORY_VISITS) -> None:
        if visits < 1:
            raise ValueError(f"RowQualityMemory: visits must be at least 1, got {visits}")
        self.visits = visits
        self.mean = torch.zeros(0, dtype=torch.float64)  # (R,) smoothed q per row index
        self.count = torch.zeros(0, dtype=torch.long)  # (R,) visits so far

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The memory as a checkpoint keeps it (the trainer saves it with each checkpoint)."""
        return {"mean": self.mean.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        mean, count = state["mean"], state["count"]
        if mean.shape != count.shape or mean.dim() != 1:
            raise ValueError(
                f"RowQualityMemory: mean {tuple(mean.shape)} and count {tuple(count.shape)} must be (R,)"
            )
        self.mean, self.count = mean.to(torch.float64), count.to(torch.long)

    def update(self, rows: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Fold this step's ``q`` (N,) of the dataset rows ``rows`` (N,) in; their smoothed q (N,), in
        q's dtype and device. A row twice in one batch keeps its last value."""
        rows = torch.as_tensor(rows).to("cpu", torch.long).flatten()
        if rows.shape[0] != q.shape[0]:
            raise ValueError(f"RowQualityMemory: {rows.shape[0]} row indices for {q.shape[0]} qualities")
        if rows.numel() and int(rows.min()) < 0:
            raise ValueError(f"RowQualityMemory: row indices must be >= 0, got {int(rows.min())}")
        size = int(rows.max()) + 1 if rows.numel() else 0
        if size > self.mean.shape[0]:
            grow = size - self.mean.shape[0]
            self.mean = torch.cat([self.mean, torch.zeros(grow, dtype=torch.float64)])
            self.count = torch.cat([self.count, torch.zeros(grow, dtype=torch.long)])
        values = q.detach().to("cpu", torch.float64)
        count = (self.count[rows] + 1).clamp(max=self.visits)
        self.mean[rows] += (values - self.mean[rows]) / count
        self.count[rows] += 1
        return self.read(rows, like=q)

    def read(self, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The smoothed q (N,) of the dataset rows ``rows`` (N,), in ``like``'s dtype and device."""
        rows = torch.as_tensor(rows).to("cpu", torch.long).flatten()
        return self.mean[rows].to(device=like.device, dtype=like.dtype)


def pair_weights(
    q: torch.Tensor,
    weighting: str = "softmax",
    gamma: float = 1.0,
    progress: float = 0.0,
    smoothed: torch.Tensor | None = None,
) -> torch.Tensor:
    """GenView pairs' weights (N,) from their qualities ``q`` (N,) by the named ``weighting`` (mean 1):

    - ``softmax`` (the papers): ``N * softmax(gamma * q)``;
    - ``threshold``: :func:`threshold_weights` (q > 0 kept);
    - ``rank_cut``: :func:`rank_cut_weights` (the top ``RANK_CUT_KEEP`` of the batch kept);
    - ``sigmoid``: :func:`sigmoid_weights`;
    - ``annealed``: the softmax with :func:`annealed_gamma` at ``progress`` of training;
    - ``row_memory``: :func:`threshold_weights` of ``smoothed`` (N,), each row's q carried across steps
      (:class:`RowQualityMemory`).
    """
    with _exact(q):
        if weighting == "softmax":
            return q.shape[0] * torch.softmax(gamma * q, dim=0)
        if weighting == "threshold":
            return threshold_weights(q)
        if weighting == "rank_cut":
            return rank_cut_weights(q)
        if weighting == "sigmoid":
            return sigmoid_weights(q)
        if weighting == "annealed":
            return q.shape[0] * torch.softmax(annealed_gamma(gamma, progress) * q, dim=0)
        if weighting == "row_memory":
            if smoothed is None or smoothed.shape != q.shape:
                raise ValueError("weighting 'row_memory' needs each pair's smoothed quality (N,), as q")
            return threshold_weights(smoothed)
    raise ValueError(f"unknown quality weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
