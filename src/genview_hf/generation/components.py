"""From settings to a ready map function: load the models a config names and build the ``ViewGenerator``.

Stock diffusers pipelines and transformers encoders, loaded with the ordinary ``from_pretrained``
from a Hub id or a local folder (the tests pass tiny saved folders), no
subclassing. ``LazyViewGenerator`` does the same inside each ``map(num_proc=k)`` worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from ..foreground import ForegroundScorer
from ..preflight import check_model_source
from .config import ViewGenerationConfig
from .encoder import ClipTokenEncoder
from .policies import GuidancePolicy, LMComplexityScorer, NoisePolicy
from .views import ViewGenerator


@dataclass
class Components:
    encoder: ClipTokenEncoder  # the foreground scorer's encoder (by default unCLIP's own)
    unclip: object = None  # StableUnCLIPImg2ImgPipeline, for ic / itc
    text2img: object = None  # StableDiffusionPipeline with DPM-Solver, for tc


def run_dtype(mixed_precision: str, device: torch.device) -> torch.dtype:
    """fp16/bf16 on GPU; the CPU path always runs float32."""
    if device.type != "cuda" or mixed_precision == "no":
        return torch.float32
    return torch.float16 if mixed_precision == "fp16" else torch.bfloat16


def load_components(config: ViewGenerationConfig, device: torch.device | str = "cpu") -> Components:
    """The pipelines the config's modes need and the scorer's encoder, on ``device``.

    The scorer's encoder is the unCLIP pipeline's own image encoder unless ``scorer_model`` names
    another; a tc-only run loads no unCLIP pipeline and reads that encoder from ``unclip_model``'s
    ``image_encoder`` / ``feature_extractor`` subfolders.
    """
    device = torch.device(device)
    dtype = run_dtype(config.mixed_precision, device)
    for setting, needed_by in config.needed_models().items():
        if needed_by:  # a local folder that cannot load is named before any pipeline loads
            check_model_source(getattr(config, setting), setting)
    unclip = text2img = None
    if "ic" in config.modes or "itc" in config.modes:
        unclip = _load_unclip(config.unclip_model, dtype, config.model_revision)
    if "tc" in config.modes:
        text2img = _load_text2img(config.text2img_model, dtype, config.model_revision)
    if config.scorer_model is None and unclip is not None:
        encoder = ClipTokenEncoder(unclip.image_encoder, unclip.feature_extractor)
    else:
        encoder = _load_encoder(config.scorer_model or config.unclip_model, dtype, config.model_revision)
    for pipe in (unclip, text2img):
        if pipe is not None:
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
    encoder.model.to(device)
    return Components(encoder=encoder, unclip=unclip, text2img=text2img)


def _load_unclip(name: str, dtype: torch.dtype, revision: str | None):
    from diffusers import StableUnCLIPImg2ImgPipeline

    return StableUnCLIPImg2ImgPipeline.from_pretrained(name, dtype=dtype, revision=revision)


def _load_text2img(name: str, dtype: torch.dtype, revision: str | None):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        name, dtype=dtype, revision=revision, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # GenView++: DPM-Solver
    return pipe


def _load_encoder(name: str, dtype: torch.dtype, revision: str | None) -> ClipTokenEncoder:
    """A CLIP vision model with its processor: an unCLIP repo's subfolders, else the folder/id itself."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    try:  # a diffusers unCLIP repo keeps its encoder in subfolders
        model = CLIPVisionModelWithProjection.from_pretrained(
            name, subfolder="image_encoder", dtype=dtype, revision=revision
        )
        processor = CLIPImageProcessor.from_pretrained(name, subfolder="feature_extractor", revision=revision)
    except OSError:
        model = CLIPVisionModelWithProjection.from_pretrained(name, dtype=dtype, revision=revision)
        processor = CLIPImageProcessor.from_pretrained(name, revision=revision)
    return ClipTokenEncoder(model, processor)


def build_generator(
    components: Components, scorer: ForegroundScorer, config: ViewGenerationConfig
) -> ViewGenerator:
    """The map function of a run: its components, the fitted scorer and the config's policies."""
    complexity = None  # the offline heuristic, bucketed by complexity_edges
    if config.complexity_scorer != "heuristic":
        complexity = LMComplexityScorer(config.complexity_scorer, device=str(components.encoder.device))
    return ViewGenerator(
        encoder=components.encoder,
        scorer=scorer,
        modes=tuple(config.modes),
        unclip=components.unclip,
        text2img=components.text2img,
        noise_policy=NoisePolicy(tuple(config.noise_fg_edges), tuple(config.noise_levels)),
        guidance_policy=GuidancePolicy(tuple(config.guidance_scales)),
        complexity=complexity,
        complexity_edges=tuple(config.complexity_edges),
        seed=config.seed,
        num_inference_steps=config.num_inference_steps,
        ic_guidance_scale=config.ic_guidance_scale,
        height=config.height,
        width=config.width,
        image_column=config.image_column,
        caption_column=config.caption_column,
        batch_size=config.batch_size,
        compile_mode=config.compile_mode,
    )


@dataclass
class LazyViewGenerator:
    """A ``ViewGenerator`` that each ``map(num_proc=k, with_rank=True)`` worker builds for itself.

    Only the settings and the fitted scorer travel to the workers (no pipelines are pickled); on
    its first batch, worker ``rank`` loads the components on GPU ``rank`` (CPU without GPUs).
    """

    config: ViewGenerationConfig
    scorer: ForegroundScorer
    row_offset: int = 0
    _generator: ViewGenerator | None = field(default=None, init=False, repr=False)

    def __call__(
        self, batch: dict[str, list], indices: list[int], rank: int | None = None
    ) -> dict[str, list]:
        if self._generator is None:
            # A forked worker deadlocks in torch's inherited thread pool unless it resets it.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, self.config.num_proc or 1)))
            device = "cpu"
            if rank is not None and torch.cuda.is_available():
                device = f"cuda:{rank % torch.cuda.device_count()}"
            self._generator = build_generator(load_components(self.config, device), self.scorer, self.config)
        self._generator.row_offset = self.row_offset
        return self._generator(batch, indices)
