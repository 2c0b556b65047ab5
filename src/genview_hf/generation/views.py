"""The map function: foreground masks, adaptive policies and generated views for a batch of rows.

``ViewGenerator(...)`` is called by ``datasets.Dataset.map(batched=True, with_indices=True)``; the
driver hands it a whole shard as one map batch, so that the pipeline calls are full. Per call it:

1. decodes every image itself with the shared ``data.images.decode_image`` (the image column is
   read with ``Image(decode=False)``), so one corrupt row becomes a null row with a reason instead
   of stopping the job; greyscale, RGBA (over white), palette, CMYK and 16-bit images become RGB,
   the same pixels training reads;
2. runs the CLIP image encoder, ``batch_size`` rows at a time: patch tokens of the whole image ->
   ``mask`` + ``fg_ratio`` (foreground scorer); image embeddings of the processor's centre crop, what the pipeline would
   encode itself -> unCLIP conditioning (one forward serves both for square images; see
   ``encoder.ClipTokenEncoder``; no second forward inside the pipeline);
3. picks per row ``noise_level`` (from fg_ratio), ``caption_complexity`` and ``guidance_scale``;
4. for each mode, orders the rows by (noise level, guidance) and generates each group in pipeline
   calls of ``batch_size`` rows (``pipeline_batches``): scored a shard at a time, nearly every call
   is full, where grouping inside a map batch of 8 made up to five calls of one or two images
   (a shard's views are held until it is written: at 768 px about 0.9 GB per mode for 512 rows).
   Each row has its own ``torch.Generator`` seeded from (global seed, row id), so a row's view
   does not depend on the call it lands in, the batch size or the number of processes (up to the
   last bit of float rounding: CPU and GPU matrix products round a little differently for other
   batch shapes);
5. scores every generated view (all modes) with the same encoder, ``batch_size`` at a time:
   ``mask_<mode>``.

A source image that cannot be decoded is replaced by null (its bytes would break every reader).
The reason a row or one of its modes failed goes to the ``_failure`` column, which the driver
moves to the failures file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..data import schema
from ..data.images import decode_image
from ..foreground import ForegroundScorer
from .encoder import ClipTokenEncoder
from .policies import DEFAULT_COMPLEXITY_EDGES, GuidancePolicy, NoisePolicy, caption_complexity

FAILURE = "_failure"  # temporary column: "" when the row is whole; removed by the driver


def pipeline_batches(keys: dict[int, tuple], batch_size: int) -> list[tuple[tuple, list[int]]]:
    """The pipeline calls of one mode: rows ordered by their (noise level, guidance) key, each
    key's rows (in row order) cut into calls of at most ``batch_size``.

    ``keys``: row -> key. Returns ``[(key, rows), ...]``; every call but the last of each key is full.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for row in sorted(keys):
        groups[keys[row]].append(row)
    return [
        (key, rows[start : start + batch_size])
        for key, rows in sorted(groups.items(), key=lambda kv: str(kv[0]))
        for start in range(0, len(rows), batch_size)
    ]


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def row_seed(seed: int, row_id: int) -> int:
    """The generator seed of a row: a hash of (global seed, row id), in [0, 2**63)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(row_id)]).generate_state(
        2, np.uint32
    )
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


@dataclass
class ViewGenerator:
    """Callable for ``Dataset.map(batched=True, with_indices=True)``; see the module docstring.

    ``row_offset`` turns the map's indices (relative to the shard) into global row ids;
    ``batch_size`` is the number of rows of an encoder pass and of a pipeline call.
    """

    encoder: ClipTokenEncoder
    scorer: ForegroundScorer
    modes: tuple[str, ...] = ("ic",)
    unclip: object = None  # StableUnCLIPImg2ImgPipeline, for ic / itc
    text2img: object = None  # StableDiffusionPipeline, for tc
    noise_policy: NoisePolicy = field(default_factory=NoisePolicy)
    guidance_policy: GuidancePolicy = field(default_factory=GuidancePolicy)
    complexity: Callable[[list[str]], list[int]] | None = None  # default: offline heuristic
    complexity_edges: tuple[int, ...] = DEFAULT_COMPLEXITY_EDGES  # the heuristic's count buckets
    seed: int = 0
    num_inference_steps: int = 20  # paper: 20 steps
    ic_guidance_scale: float = 10.0  # GenView: unCLIP guidance 10, empty prompt
    height: int | None = None
    width: int | None = None
    image_column: str = schema.IMAGE
    caption_column: str = schema.CAPTION
    row_offset: int = 0
    batch_size: int = 8
    # torch.compile mode of the pipelines' UNets ("default", "reduce-overhead" for CUDA graphs,
    # "max-autotune"); None: eager. Static shapes: full calls share one graph, a key's last,
    # smaller call compiles its own once.
    compile_mode: str | None = None
    # unCLIP's own image encoder when the scorer uses another model (``scorer_model``); None when
    # the scorer's forward already yields unCLIP's conditioning embeddings (the default).
    _embedder: ClipTokenEncoder | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        for mode in self.modes:
            schema.view_column(mode)  # validates the name
        image_modes = "ic" in self.modes or "itc" in self.modes
        if image_modes and self.unclip is None:
            raise ValueError("modes ic/itc need an unCLIP img2img pipeline")
        if "tc" in self.modes and self.text2img is None:
            raise ValueError("mode tc needs a text-to-image pipeline")
        if image_modes and self.encoder.model is not self.unclip.image_encoder:
            self._embedder = ClipTokenEncoder(self.unclip.image_encoder, self.unclip.feature_extractor)
        if self.compile_mode is not None:
            for pipe in (self.unclip, self.text2img):
                if pipe is not None:  # in place: the pipeline keeps its UNet object and config
                    pipe.unet.compile(mode=self.compile_mode, fullgraph=True, dynamic=False)

    # -- per-row choices -------------------------------------------------------------------
    @staticmethod
    def _where(row_id: int, column: str) -> str:
        return f"row {row_id}, column {column!r}"

    def _complexities(self, captions: list[str]) -> list[int]:
        if self.complexity is not None:
            return [int(c) for c in self.complexity(captions)]
        return [caption_complexity(c, self.complexity_edges) for c in captions]

    @staticmethod
    def _generators(seeds: list[int]) -> list[torch.Generator]:
        # CPU generators: diffusers draws the noise on the CPU and moves it, so a row's view is
        # the same on any device count (and close across hardware).
        return [torch.Generator().manual_seed(s) for s in seeds]

    # -- the map function -------------------------------------------------------------------
    def __call__(
        self, batch: dict[str, list], indices: list[int], rank: int | None = None
    ) -> dict[str, list]:
        """``rank`` (from ``with_rank=True``) is unused here: ``components.LazyViewGenerator`` places
        each worker on its device."""
        n = len(indices)
        row_ids = [self.row_offset + int(i) for i in indices]
        failures: list[list[str]] = [[] for _ in range(n)]
        out: dict[str, list] = {
            schema.MASK: [None] * n,
            schema.FG_RATIO: [None] * n,
            schema.NOISE_LEVEL: [None] * n,
            schema.GUIDANCE_SCALE: [None] * n,
            schema.CAPTION_COMPLEXITY: [None] * n,
            schema.SEED: [row_seed(self.seed, r) for r in row_ids],
        }
        for mode in self.modes:
            out[schema.view_column(mode)] = [None] * n
            out[schema.mask_column(mode)] = [None] * n

        images: dict[int, Image.Image] = {}
        for i, value in enumerate(batch[self.image_column]):
            try:  # any size: the encoder's processor resizes
                images[i] = decode_image(value, self._where(row_ids[i], self.image_column), min_side=1)
            except ValueError as error:
                failures[i].append(str(error))
        ok = sorted(images)
        # An undecodable source image becomes null, so the views dataset always iterates cleanly.
        out[self.image_column] = [
            value if i in images else None for i, value in enumerate(batch[self.image_column])
        ]
        embeds: dict[int, torch.Tensor] = {}  # row -> (E,) CLIP image embedding, unCLIP's conditioning
        text_modes = "tc" in self.modes or "itc" in self.modes
        # Blocks of batch_size consecutive rows: the encoder sees the rows of a map batch of that size.
        for block in _chunks(list(range(n)), self.batch_size):
            rows = [i for i in block if i in images]
            if rows:
                self._score(rows, images, out, embeds, text_modes)

        text_ok: list[int] = []
        if text_modes:
            captions = batch.get(self.caption_column)
            if captions is None:
                raise KeyError(f"modes tc/itc need a {self.caption_column!r} column")
            for i, caption in enumerate(captions):
                if caption is not None and not isinstance(caption, str):  # a wrong column, not a gap
                    raise TypeError(
                        f"{self._where(row_ids[i], self.caption_column)}: captions must be text, "
                        f"got {type(caption).__name__} {caption!r}"
                    )
                if caption is None or not caption.strip():
                    failures[i].append(
                        f"{self._where(row_ids[i], self.caption_column)}: empty caption, no text-conditioned view"
                    )
                else:
                    text_ok.append(i)
            for i, c in zip(text_ok, self._complexities([captions[i] for i in text_ok])):
                out[schema.CAPTION_COMPLEXITY][i] = c
                out[schema.GUIDANCE_SCALE][i] = self.guidance_policy(c)

        generated: list[tuple[str, int, Image.Image]] = []  # (mode, row, view)
        for mode in self.modes:
            # Rows a mode can serve, and the (noise level, guidance) that groups them into pipeline calls.
            if mode == "ic":
                keys = {i: (out[schema.NOISE_LEVEL][i], self.ic_guidance_scale) for i in ok}
            elif mode == "tc":
                keys = {i: (None, out[schema.GUIDANCE_SCALE][i]) for i in text_ok}
            else:
                keys = {
                    i: (out[schema.NOISE_LEVEL][i], out[schema.GUIDANCE_SCALE][i])
                    for i in set(ok) & set(text_ok)
                }
            views = self._generate(mode, keys, batch, embeds, out[schema.SEED])
            generated += [(mode, i, views[i]) for i in sorted(views)]
        for chunk in _chunks(generated, self.batch_size):  # each view's own foreground map
            view_images = [view for _, _, view in chunk]
            view_tokens, _ = self.encoder(view_images, embeddings=False)  # (V, T, D)
            view_masks = self.scorer.mask_images(
                self.scorer.token_masks(view_tokens), [view.size for view in view_images]
            )
            for (mode, i, view), mask in zip(chunk, view_masks, strict=True):
                out[schema.view_column(mode)][i] = view
                out[schema.mask_column(mode)][i] = mask
        out[FAILURE] = ["; ".join(f) for f in failures]
        return out

    def _score(
        self, rows: list[int], images: dict[int, Image.Image], out: dict, embeds: dict, text_modes: bool
    ) -> None:
        """Masks, foreground ratios and noise levels of ``rows`` (one encoder pass), and their
        unCLIP conditioning embeddings into ``embeds``."""
        # tokens (B, T, D) float32; image_embeds (B, E) in the encoder's dtype, or None
        tokens, image_embeds = self.encoder([images[i] for i in rows])
        if self._embedder is not None:  # a separate scorer: unCLIP needs its own encoder's embeddings
            _, image_embeds = self._embedder([images[i] for i in rows])
        masks = self.scorer.token_masks(tokens)  # (B, T) bool
        ratios = self.scorer.fg_ratio(masks)
        for j, (i, ratio, mask) in enumerate(
            zip(rows, ratios, self.scorer.mask_images(masks, [images[i].size for i in rows]))
        ):
            out[schema.MASK][i] = mask
            out[schema.FG_RATIO][i] = ratio
            out[schema.NOISE_LEVEL][i] = self.noise_policy(ratio)
            if not text_modes:  # ic only: the fixed unCLIP guidance is the row's guidance
                out[schema.GUIDANCE_SCALE][i] = self.ic_guidance_scale
            if image_embeds is not None:
                embeds[i] = image_embeds[j]

    def _generate(self, mode, keys, batch, embeds, seeds) -> dict[int, Image.Image]:
        views: dict[int, Image.Image] = {}
        for (noise_level, guidance), members in pipeline_batches(keys, self.batch_size):
            common = {
                "num_inference_steps": self.num_inference_steps,
                "guidance_scale": float(guidance),
                "height": self.height,
                "width": self.width,
                "output_type": "pil",
            }
            if mode == "tc":
                pipe = self.text2img
                prompts = [batch[self.caption_column][i] for i in members]
                result = pipe(
                    prompt=prompts, generator=self._generators([seeds[i] for i in members]), **common
                )
            else:
                pipe = self.unclip
                prompts = (
                    [batch[self.caption_column][i] for i in members] if mode == "itc" else [""] * len(members)
                )
                # (G, E): the group's image embeddings, computed once by the scorer's encoder pass
                image_embeds = torch.stack([embeds[i] for i in members]).to(pipe.device, pipe.unet.dtype)
                result = pipe(
                    image_embeds=image_embeds,
                    prompt=prompts,
                    noise_level=int(noise_level),
                    generator=self._generators([seeds[i] for i in members]),
                    **common,
                )
            views.update(zip(members, result.images))
        return views
