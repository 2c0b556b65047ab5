"""Paired image + foreground-mask augmentation on tensors, with the per-method presets of the papers.

Geometry (random resized crop, horizontal flip) is applied identically to an image and its
foreground mask: the mask rides along as a fourth channel through the very same crop, resize and
flip. Photometric operations (colour jitter, grayscale, gaussian blur, solarize) touch only the
image. Every random choice is drawn per sample from one CPU ``torch.Generator`` (or torch's global
generator when none is given), so results are reproducible and do not depend on the device the
pixels live on. No torchvision, no Python loops over pixels: one loop over the images of a batch
for the crop (each image has its own size), everything else batched.

The presets below quote the papers' pipelines (torchvision ``ColorJitter`` semantics, random
order of the four jitter ops per sample, PIL-style solarize threshold 128/255, blur sigma drawn
in [0.1, 2.0] pixels with a kernel of about 10% of the output side, as in SimCLR); the method
table (``genview_hf.methods``) says which method uses which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

CROP_MODES = ("random_resized", "center_box", "center", "resize")
# The Hallucinator's released configs (configs/IN1K/mocov2_center_hallucinate.py): the query view is
# a ContrastiveCrop around the fixed box (0.2, 0.2, 0.8, 0.8) with Beta(0.6, 0.6) crop centres.
CENTER_BOX = (0.2, 0.2, 0.8, 0.8)
CENTER_BOX_ALPHA = 0.6


@dataclass(frozen=True)
class ViewAugmentation:
    """One view's pipeline: crop -> flip -> colour jitter -> grayscale -> blur -> solarize.

    ``crop``: ``random_resized`` (area ``scale`` and aspect ``ratio`` as torchvision's
    RandomResizedCrop), ``center_box`` (the same area and aspect, the crop centred at a point
    drawn inside ``box`` = (top, left, bottom, right) fractions of the image, Beta(``box_alpha``,
    ``box_alpha``) along each axis: ContrastiveCrop with a fixed box, as the Hallucinator's
    ``datasets/transforms/ContrastiveCrop.py``), ``center`` (resize the shorter side, centre crop:
    the largest centred box of the output's aspect), ``resize`` (the whole image, resized without
    cropping).
    """

    crop: str = "random_resized"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    jitter_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    grayscale_prob: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    box: tuple[float, float, float, float] = CENTER_BOX
    box_alpha: float = CENTER_BOX_ALPHA

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(f"unknown crop mode {self.crop!r}: expected one of {', '.join(CROP_MODES)}")
        top, left, bottom, right = self.box
        if not (0 <= top <= bottom <= 1 and 0 <= left <= right <= 1):
            raise ValueError(f"box must be (top, left, bottom, right) fractions in [0, 1], got {self.box}")
        if not self.box_alpha > 0:
            raise ValueError(f"box_alpha must be > 0, got {self.box_alpha}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        for name in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")

    def geometry_only(self) -> ViewAugmentation:
        """The same crop and flip with every photometric operation off."""
        return replace(self, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)


@dataclass(frozen=True)
class MethodAugmentations:
    """The views a method needs. SSL: ``view_1``/``view_2`` (+ ``original`` for LeOCLR);
    image-text: ``image`` (+ ``view_1``/``view_2`` for SLIP's SimCLR branch)."""

    view_1: ViewAugmentation | None = None
    view_2: ViewAugmentation | None = None
    original: ViewAugmentation | None = None
    image: ViewAugmentation | None = None

    def adjusted(
        self, crop_scale: tuple[float, float] | None = None, query_center_box: bool = False
    ) -> MethodAugmentations:
        """The two views with their RandomResizedCrop area range set to ``crop_scale`` (GenView's
        ResNet-50 MoCo v3 uses (0.2, 1), moco-v3 ``--crop-min=.2``) and, with ``query_center_box``,
        view 1 (the query) cropped around the centre box (the Hallucinator's released configs)."""
        view_1, view_2 = self.view_1, self.view_2
        if crop_scale is not None:
            view_1, view_2 = (
                replace(view_1, scale=tuple(crop_scale)),
                replace(view_2, scale=tuple(crop_scale)),
            )
        if query_center_box:
            view_1 = replace(view_1, crop="center_box")
        return replace(self, view_1=view_1, view_2=view_2)

    def geometry_only(self) -> MethodAugmentations:
        """Every view with the same crop and flip and no photometric operation (what the frozen
        quality model sees with ``quality_views="geometric"``)."""
        views = {item.name: getattr(self, item.name) for item in fields(self)}
        return replace(
            self, **{name: view.geometry_only() for name, view in views.items() if view is not None}
        )


# MoCo v2 (Chen et al. 2020, "Improved Baselines", official main_moco.py --aug-plus), also SimSiam's:
# RandomResizedCrop(scale=(0.2, 1.)), ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, RandomGrayscale(0.2),
# GaussianBlur([.1, 2.]) p=0.5, RandomHorizontalFlip.
MOCOV2 = ViewAugmentation(
    scale=(0.2, 1.0),
    jitter_prob=0.8,
    brightness=0.4,
    contrast=0.4,
    saturation=0.4,
    hue=0.1,
    grayscale_prob=0.2,
    blur_prob=0.5,
)
# SimCLR (Chen et al. 2020, appendix A): crop scale (0.08, 1), colour distortion strength s=1:
# ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) p=0.8, grayscale p=0.2, blur p=0.5 (ImageNet), flip.
SIMCLR = ViewAugmentation(
    scale=(0.08, 1.0),
    jitter_prob=0.8,
    brightness=0.8,
    contrast=0.8,
    saturation=0.8,
    hue=0.2,
    grayscale_prob=0.2,
    blur_prob=0.5,
)
# BYOL (Grill et al. 2020, table 6) and MoCo v3 (Chen et al. 2021, official augmentation1/2):
# crop scale (0.08, 1), ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale 0.2, flip;
# view 1: blur p=1.0, solarize p=0.0; view 2: blur p=0.1, solarize p=0.2.
BYOL_1 = ViewAugmentation(
    scale=(0.08, 1.0),
    jitter_prob=0.8,
    brightness=0.4,
    contrast=0.4,
    saturation=0.2,
    hue=0.1,
    grayscale_prob=0.2,
    blur_prob=1.0,
    solarize_prob=0.0,
)
BYOL_2 = replace(BYOL_1, blur_prob=0.1, solarize_prob=0.2)
# SLIP (Mu et al. 2022, official code): the CLIP branch sees RandomResizedCrop(scale=(0.5, 1.0)) only;
# its SimCLR branch uses crop scale (0.08, 1), ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8 ("not
# strengthened"), grayscale 0.2, blur [.1, 2.] p=0.5, flip.
CLIP_VIEW = ViewAugmentation(scale=(0.5, 1.0), flip_prob=0.0)
SLIP_SSL = replace(MOCOV2, scale=(0.08, 1.0))
# LeOCLR (Alkhalefi et al. 2024), on MoCo v2: the momentum encoder sees two MoCo v2 crops; the query
# encoder sees the original resized without cropping, with the remaining (non-crop) augmentations.
LEOCLR_ORIGINAL = replace(MOCOV2, crop="resize")


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _uniform(
    shape: int | tuple[int, ...], low: float, high: float, generator: torch.Generator | None
) -> torch.Tensor:
    """float64 draws uniform in [low, high) of ``shape``, from ``generator``."""
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low


def sample_crop_boxes(
    heights: torch.Tensor,
    widths: torch.Tensor,
    aug: ViewAugmentation,
    out_size: tuple[int, int],
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> torch.Tensor:
    """Crop boxes ``(top, left, height, width)`` as an (N, 4) int64 tensor, one per image.

    ``random_resized`` follows torchvision's RandomResizedCrop (10 attempts, then the central crop
    clamped to the aspect range), vectorised over the batch; ``center_box`` draws the same size
    and places it as ContrastiveCrop does (see :class:`ViewAugmentation`).
    """
    heights = heights.to(torch.float64)
    widths = widths.to(torch.float64)
    n = heights.numel()
    if aug.crop == "resize":
        return torch.stack([torch.zeros(n), torch.zeros(n), heights, widths], 1).long()
    if aug.crop == "center":
        target = out_size[1] / out_size[0]  # width / height
        h = torch.minimum(heights, widths / target)
        w = torch.minimum(widths, heights * target)
        h, w = h.round().clamp(min=1), w.round().clamp(min=1)
        return torch.stack([((heights - h) / 2).round(), ((widths - w) / 2).round(), h, w], 1).long()

    area = (heights * widths)[:, None]  # (N, 1)
    target_area = area * _uniform((n, attempts), aug.scale[0], aug.scale[1], generator)  # (N, attempts)
    log_ratio = math.log(aug.ratio[0]), math.log(aug.ratio[1])
    aspect = torch.exp(_uniform((n, attempts), *log_ratio, generator))  # (N, attempts)
    w = torch.sqrt(target_area * aspect).round()
    h = torch.sqrt(target_area / aspect).round()
    valid = (w > 0) & (h > 0) & (w <= widths[:, None]) & (h <= heights[:, None])
    first = valid.to(torch.int8).argmax(1)
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]
    found = valid.any(1)
    # Fallback: the whole image clamped to the aspect range, centred.
    in_ratio = widths / heights
    fw = torch.where(
        in_ratio < aug.ratio[0],
        widths,
        torch.where(in_ratio > aug.ratio[1], (heights * aug.ratio[1]).round(), widths),
    )
    fh = torch.where(in_ratio < aug.ratio[0], (widths / aug.ratio[0]).round(), heights)
    h = torch.where(found, h, fh.clamp(1))
    w = torch.where(found, w, fw.clamp(1))
    if aug.crop == "center_box":
        top, left = _box_offsets(heights, widths, h, w, aug, generator)
    else:
        offsets = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        top, left = (offsets[:, 0] * (heights - h + 1)).floor(), (offsets[:, 1] * (widths - w + 1)).floor()
    top = torch.where(found, top, ((heights - h) / 2).round())
    left = torch.where(found, left, ((widths - w) / 2).round())
    return torch.stack([top, left, h, w], 1).long()


def _box_offsets(
    heights, widths, h, w, aug: ViewAugmentation, generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """ContrastiveCrop's placement (``ContrastiveCrop.get_params``): the crop's top-left corner ranges
    over the positions that centre it between the box's edges (clamped to the image), at a
    Beta(alpha, alpha) fraction of that range, per axis."""
    # Beta draws from numpy, seeded from ``generator`` so that the stream stays reproducible.
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    fraction = torch.from_numpy(np.random.default_rng(seed).beta(aug.box_alpha, aug.box_alpha, (len(h), 2)))
    box_top, box_left, box_bottom, box_right = aug.box

    def start(size, crop, low, high, u):
        first = ((size * low).floor() - (crop / 2).floor()).clamp(min=0).minimum(size - crop)
        last = ((size * high).floor() - (crop / 2).floor()).clamp(min=0).minimum(size - crop)
        return first + ((last - first) * u).floor()

    return (
        start(heights, h, box_top, box_bottom, fraction[:, 0]),
        start(widths, w, box_left, box_right, fraction[:, 1]),
    )


def _as_float_image(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image.float().div_(255)
    return image.float()


def _mask_like(
    mask: torch.Tensor, size: tuple[int, int], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The mask as a (1, H, W) channel of the image's size and dtype (bilinear from token resolution)."""
    mask = mask.to(device)
    if mask.dim() == 3:
        mask = mask[0]
    if tuple(mask.shape) != size:
        mask = F.interpolate(
            _as_float_image(mask)[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0]
    if dtype == torch.uint8:
        if mask.dtype != torch.uint8:
            mask = mask.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    else:
        mask = _as_float_image(mask)
    return mask[None]


def crop_resize_flip(
    images: Sequence[torch.Tensor],
    boxes: torch.Tensor,
    flips: Sequence[bool],
    out_size: tuple[int, int],
    masks: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crop each image (and its mask, as an extra channel) to its box, resize, flip where asked.

    Returns (N, 3, H, W) float images in [0, 1] and (N, H, W) masks in [0, 1] (or None). uint8
    inputs on the CPU are resampled in uint8, channels-last (torch's vectorised kernel, several
    times faster than float), as torchvision does; on a GPU, and for float inputs, in float.
    """
    out_images, out_masks = [], []
    for index, image in enumerate(images):
        top, left, height, width = boxes[index].tolist()
        crop = image[:, top : top + height, left : left + width]
        uint8_path = crop.dtype == torch.uint8 and crop.device.type == "cpu"
        if not uint8_path:
            crop = _as_float_image(crop)
        if masks is not None:
            full = _mask_like(masks[index], tuple(image.shape[-2:]), crop.dtype, crop.device)
            crop = torch.cat([crop, full[:, top : top + height, left : left + width]], 0)
        if (height, width) != out_size:
            antialias = height > out_size[0] or width > out_size[1]
            batch = crop[None].contiguous(memory_format=torch.channels_last) if uint8_path else crop[None]
            crop = F.interpolate(
                batch, size=out_size, mode="bilinear", align_corners=False, antialias=antialias
            )[0]
        crop = _as_float_image(crop)
        if flips[index]:
            crop = crop.flip(-1)
        out_images.append(crop[:3])
        if masks is not None:
            out_masks.append(crop[3])
    pixels = torch.stack(out_images).clamp_(0, 1)
    return pixels, (torch.stack(out_masks).clamp_(0, 1) if masks is not None else None)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (PIL's "L" conversion, as torchvision), shape (N, 1, H, W)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * x + (1 - factor) * other).clamp_(0, 1)


def _jitter_op(op: int, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if op == 0:  # brightness
        return (x * factor.view(-1, 1, 1, 1)).clamp_(0, 1)
    if op == 1:  # contrast: blend with the mean grey level
        return _blend(x, _gray(x).mean((1, 2, 3), keepdim=True), factor)
    if op == 2:  # saturation: blend with the grey image
        return _blend(x, _gray(x), factor)
    return _shift_hue(x, factor)


def _shift_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``factor`` turns (torchvision's adjust_hue), keeping value and saturation.

    Straight from max, min and chroma, without building the HSV image: hue in sixths of a turn,
    then each channel is ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``.
    """
    r, g, b = x.unbind(1)
    high, low = x.amax(1), x.amin(1)
    chroma = high - low
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(
        high == r,
        ((g - b) / safe).remainder(6),
        torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = (hue + 6 * factor.view(-1, 1, 1)).remainder(6)
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = (hue + n).remainder(6)
        channels.append(high - chroma * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(channels, 1).clamp_(0, 1)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable gaussian blur with one sigma per image; kernel ~10% of the side (SimCLR), odd, >= 3."""
    n, c, h, w = x.shape
    size = max(3, int(0.1 * min(h, w)) // 2 * 2 + 1)
    radius = size // 2
    pos = torch.arange(size, dtype=x.dtype, device=x.device) - radius
    kernel = torch.exp(-(pos[None] ** 2) / (2 * sigma.to(x.device, x.dtype)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, K)
    flat = x.reshape(1, n * c, h, w)
    # Reflect at the borders (as PIL/torchvision), replicate where the image is narrower than the kernel.
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect" if radius < w else "replicate")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect" if radius < h else "replicate")
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def photometric(
    x: torch.Tensor, aug: ViewAugmentation, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Colour jitter (random op order per sample), grayscale, blur, solarize on (N, 3, H, W) in [0, 1], in place.

    Parameters are drawn for every sample whatever the probabilities, so the random stream (and
    hence the other views of a batch) does not depend on which operations are switched on.
    """
    n = x.shape[0]
    device = x.device
    apply_jitter = torch.rand(n, generator=generator) < aug.jitter_prob
    factors = torch.stack(
        [
            _uniform(n, max(0.0, 1 - aug.brightness), 1 + aug.brightness, generator),
            _uniform(n, max(0.0, 1 - aug.contrast), 1 + aug.contrast, generator),
            _uniform(n, max(0.0, 1 - aug.saturation), 1 + aug.saturation, generator),
            _uniform(n, -aug.hue, aug.hue, generator),
        ],
        1,
    ).float()
    order = torch.rand(n, 4, generator=generator).argsort(1)
    apply_gray = torch.rand(n, generator=generator) < aug.grayscale_prob
    apply_blur = torch.rand(n, generator=generator) < aug.blur_prob
    sigma = _uniform(n, aug.blur_sigma[0], aug.blur_sigma[1], generator).float()
    apply_solarize = torch.rand(n, generator=generator) < aug.solarize_prob

    if apply_jitter.any():
        identity = torch.tensor([1.0, 1.0, 1.0, 0.0])
        strengths = (aug.brightness, aug.contrast, aug.saturation, aug.hue)
        for slot in range(4):
            for op in range(4):
                if strengths[op] == 0:
                    continue
                chosen = (apply_jitter & (order[:, slot] == op)).nonzero().flatten()
                chosen = chosen[factors[chosen, op] != identity[op]]
                if chosen.numel():
                    index = chosen.to(device)
                    x[index] = _jitter_op(op, x[index], factors[chosen, op].to(device))
    if apply_gray.any():
        index = apply_gray.nonzero().flatten().to(device)
        x[index] = _gray(x[index]).expand(-1, 3, -1, -1)
    if apply_blur.any():
        chosen = apply_blur.nonzero().flatten()
        index = chosen.to(device)
        x[index] = _blur(x[index], sigma[chosen])
    if apply_solarize.any():
        index = apply_solarize.nonzero().flatten().to(device)
        part = x[index]
        x[index] = torch.where(part >= 0.5, 1 - part, part)  # PIL ImageOps.solarize(threshold=128)
    return x


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def augment_views(
    images: Sequence[torch.Tensor] | torch.Tensor,
    aug: ViewAugmentation,
    size: int | Sequence[int],
    *,
    masks: Sequence[torch.Tensor] | torch.Tensor | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment a batch of images (and their foreground masks) with one view's pipeline.

    ``images``: (3, H_i, W_i) tensors, uint8 in [0, 255] or float in [0, 1], sizes may differ, or
    one (N, 3, H, W) tensor. ``masks``: one per image, (H_m, W_m) or (1, H_m, W_m), uint8 or float,
    at any resolution covering the same field of view (token maps are resized to the image first).
    Returns normalised float32 pixels (N, 3, h, w) and masks (N, h, w) in [0, 1] (None without
    masks). ``generator`` must be a CPU generator (or None for torch's global one).
    """
    out_size = _size2(size)
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        images = list(images)
    if len(images) == 0:
        raise ValueError("cannot augment an empty batch")
    for index, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image {index}: expected shape (3, H, W), got {tuple(image.shape)}")
    if masks is not None:
        masks = list(masks)
        if len(masks) != len(images):
            raise ValueError(f"got {len(masks)} masks for {len(images)} images")
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    boxes = sample_crop_boxes(heights, widths, aug, out_size, generator)
    flips = (torch.rand(len(images), generator=generator) < aug.flip_prob).tolist()
    pixels, out_masks = crop_resize_flip(images, boxes, flips, out_size, masks)
    pixels = photometric(pixels, aug, generator)
    return normalize(pixels, mean, std), out_masks
