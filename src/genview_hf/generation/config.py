"""Settings of a view-generation run: one dataclass, parsed with ``genview_hf.config.ScriptArguments``
(which names the dataset) by ``genview_hf.config.parse_config``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..data import schema
from .policies import (
    DEFAULT_COMPLEXITY_EDGES,
    DEFAULT_FG_EDGES,
    DEFAULT_GUIDANCE,
    DEFAULT_NOISE_LEVELS,
    GuidancePolicy,
    NoisePolicy,
)


@dataclass
class ViewGenerationConfig:
    """Everything a generation run needs besides its dataset; defaults are the papers' settings."""

    output_dir: str = field(
        default="outputs/views", metadata={"help": "Folder for shards, card and artifacts."}
    )
    # -- input columns ---------------------------------------------------------------------
    image_column: str = field(default=schema.IMAGE, metadata={"help": "Column of the source images."})
    caption_column: str = field(
        default=schema.CAPTION, metadata={"help": "Column of the captions (modes tc and itc)."}
    )
    max_rows: int | None = field(default=None, metadata={"help": "Only the first N rows (trials)."})
    # -- what to generate ----------------------------------------------------------------
    modes: list[str] = field(
        default_factory=lambda: ["ic"], metadata={"help": f"Any of {', '.join(schema.MODES)}."}
    )
    unclip_model: str = field(
        default="stabilityai/stable-diffusion-2-1-unclip",
        metadata={"help": "StableUnCLIPImg2ImgPipeline (Hub id or local folder) for ic and itc."},
    )
    text2img_model: str = field(
        default="stabilityai/stable-diffusion-2-1",
        metadata={"help": "StableDiffusionPipeline (Hub id or local folder) for tc, run with DPM-Solver."},
    )
    scorer_model: str | None = field(
        default=None,
        metadata={
            "help": "Image encoder of the foreground scorer: a CLIP vision model folder/id, or an unCLIP "
            "repo (its image_encoder and feature_extractor subfolders). Default: unclip_model's image "
            "encoder, the one that conditions unCLIP (for tc-only runs, read from unclip_model's subfolders)."
        },
    )
    model_revision: str | None = field(default=None, metadata={"help": "Revision of every model loaded."})
    num_inference_steps: int = field(default=20, metadata={"help": "Denoising steps (paper: 20)."})
    ic_guidance_scale: float = field(default=10.0, metadata={"help": "unCLIP guidance for ic (paper: 10)."})
    height: int | None = field(
        default=None, metadata={"help": "View height (default: the model's, 768 for SD 2.1)."}
    )
    width: int | None = None
    # -- policies ------------------------------------------------------------------------
    fg_share: float = field(
        default=0.4, metadata={"help": "Share of sample tokens above the threshold (paper: 0.4)."}
    )
    fg_sample_size: int = field(
        default=10_000, metadata={"help": "Rows used to fit the foreground direction."}
    )
    foreground_artifacts: str | None = field(
        default=None, metadata={"help": "Folder with a fitted foreground.json/.safetensors to reuse."}
    )
    noise_fg_edges: list[float] = field(default_factory=lambda: list(DEFAULT_FG_EDGES))
    noise_levels: list[int] = field(default_factory=lambda: list(DEFAULT_NOISE_LEVELS))
    guidance_scales: list[float] = field(default_factory=lambda: list(DEFAULT_GUIDANCE))
    complexity_edges: list[int] = field(default_factory=lambda: list(DEFAULT_COMPLEXITY_EDGES))
    complexity_scorer: str = field(
        default="heuristic", metadata={"help": "'heuristic' (offline) or a local causal LM id/folder."}
    )
    # -- execution -----------------------------------------------------------------------
    seed: int = field(
        default=0, metadata={"help": "Global seed; each row's seed is derived from (seed, row id)."}
    )
    batch_size: int = field(default=8, metadata={"help": "Rows per map batch (one pipeline call per group)."})
    shard_size: int = field(default=512, metadata={"help": "Rows per parquet shard (the unit of resume)."})
    writer_batch_size: int = 64
    num_proc: int | None = field(
        default=None,
        metadata={
            "help": "Worker processes per shard (map(num_proc, with_rank)): one per GPU on a multi-GPU host."
        },
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = field(
        default="bf16", metadata={"help": "Pipeline and encoder dtype on GPU (CPU runs fp32)."}
    )
    grid_rows: int = field(default=6, metadata={"help": "Rows shown in the card's preview grid."})
    # -- publishing (the Trainer's names, for a dataset repo) ------------------------------
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the finished folder to the Hub."})
    hub_dataset_id: str | None = field(
        default=None,
        metadata={"help": "Dataset repo to push to, user/name or name; default: the output folder's name."},
    )
    hub_private_repo: bool | None = field(
        default=None, metadata={"help": "Create the repo private (default: the Hub's default)."}
    )
    hub_revision: str | None = field(default=None, metadata={"help": "Hub branch to push to."})
    hub_commit_message: str | None = field(default=None, metadata={"help": "Commit message of the push."})

    def __post_init__(self):
        self.modes = [
            m.strip() for m in (self.modes.split(",") if isinstance(self.modes, str) else self.modes)
        ]
        for mode in self.modes:
            schema.view_column(mode)
        if not self.modes or len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes must be a non-empty list of distinct modes, got {self.modes}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):  # the parser checks flags, this the API
            raise ValueError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        for name in ("batch_size", "shard_size", "num_inference_steps", "fg_sample_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:  # row seeds come from numpy's SeedSequence, which takes no negative entropy
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")
        # The policy tables are checked here, before any model loads, not at the first batch.
        NoisePolicy(tuple(self.noise_fg_edges), tuple(self.noise_levels))
        GuidancePolicy(tuple(self.guidance_scales))
        if list(self.complexity_edges) != sorted(self.complexity_edges):
            raise ValueError(f"complexity_edges must be increasing, got {self.complexity_edges}")
        levels = len(self.complexity_edges) + 1 if self.complexity_scorer == "heuristic" else 4
        if len(self.guidance_scales) != levels:
            raise ValueError(
                f"guidance_scales needs one scale per caption complexity level ({levels}), "
                f"got {len(self.guidance_scales)}: {self.guidance_scales}"
            )
        if self.push_to_hub and self.hub_dataset_id is None:  # as the Trainer's hub_model_id default
            self.hub_dataset_id = Path(self.output_dir).absolute().name

    def to_dict(self) -> dict:
        return asdict(self)
