"""Settings of a view-generation run: one dataclass, parsed with ``genview_hf.config.ScriptArguments``
(which names the dataset) by ``genview_hf.config.parse_config``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..config import DatasetColumns
from ..data import schema
from .policies import (
    DEFAULT_COMPLEXITY_EDGES,
    DEFAULT_FG_EDGES,
    DEFAULT_GUIDANCE,
    DEFAULT_NOISE_LEVELS,
    GuidancePolicy,
    NoisePolicy,
)

# Stability AI withdrew its Stable Diffusion 2.x repos from the Hub around 2025-11-13; the
# sd2-community organisation mirrors them under the same names, with the same weights.
WITHDRAWN_PREFIX = "stabilityai/stable-diffusion-2"
MIRROR_ORG = "sd2-community"
MODEL_SETTINGS = ("unclip_model", "text2img_model", "scorer_model")
# The papers' pipelines (GenView: unCLIP of SD 2.1; GenView++ adds SD 2.1 for tc), as the shipped
# configs name them: the community mirrors of the withdrawn stabilityai repos, with the same weights.
PAPER_MODELS = {
    "unclip_model": f"{MIRROR_ORG}/stable-diffusion-2-1-unclip",
    "text2img_model": f"{MIRROR_ORG}/stable-diffusion-2-1",
}


def check_model_id(setting: str, name: str | None) -> None:
    """Refuse a withdrawn Stable Diffusion 2.x Hub id with the mirror to use (a local folder of
    that name is fine); checked when the settings are read, before any dataset or model download."""
    if name is None or not name.lower().startswith(WITHDRAWN_PREFIX) or Path(name).is_dir():
        return
    mirror = f"{MIRROR_ORG}/{name.split('/', 1)[1]}"
    raise ValueError(
        f"{setting}={name!r}: Stability AI withdrew this repo from the Hub (Nov 2025); use the community "
        f"mirror {mirror!r}, which holds the same weights (see https://huggingface.co/{MIRROR_ORG}), "
        "or a local folder"
    )


@dataclass
class ViewGenerationConfig(DatasetColumns):
    """Everything a generation run needs besides its dataset; defaults are the papers' settings. The source
    columns (``image_column``, ``caption_column``) are ``DatasetColumns``', shared with ``ScriptArguments``."""

    output_dir: str = field(
        default="outputs/views", metadata={"help": "Folder for shards, card and artifacts."}
    )
    max_rows: int | None = field(default=None, metadata={"help": "Only the first N rows (trials)."})
    # -- what to generate ----------------------------------------------------------------
    modes: list[str] = field(
        default_factory=lambda: ["ic"], metadata={"help": f"Any of {', '.join(schema.MODES)}."}
    )
    # No default model: the recipes' configs name the papers' (PAPER_MODELS), as TRL's ModelConfig.
    unclip_model: str | None = field(
        default=None,
        metadata={
            "help": "StableUnCLIPImg2ImgPipeline (Hub id or local folder) for ic and itc, and the scorer's "
            f"default encoder; the papers': {PAPER_MODELS['unclip_model']}."
        },
    )
    text2img_model: str | None = field(
        default=None,
        metadata={
            "help": "StableDiffusionPipeline (Hub id or local folder) for tc, run with DPM-Solver; the "
            f"papers': {PAPER_MODELS['text2img_model']}."
        },
    )
    scorer_model: str | None = field(
        default=None,
        metadata={
            "help": "Image encoder of the foreground scorer: a CLIP vision model folder/id, or an unCLIP "
            "repo (its image_encoder and feature_extractor subfolders). Default: unclip_model's image "
            "encoder, the one that conditions unCLIP (for tc-only runs, read from unclip_model's subfolders)."
        },
    )
    model_revision: str | None = field(
        default=None,
        metadata={
            "help": "Hub revision (branch, tag or commit hash) of every model loaded (default: main). A commit "
            "hash pins the weights of a run that loads one repo (ic, itc); a run with tc loads two: pin "
            "each by passing a downloaded snapshot folder (hf download REPO --revision HASH --local-dir DIR)."
        },
    )
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
    batch_size: int = field(
        default=8,
        metadata={
            "help": "Rows per pipeline call: a shard is scored first, then generated in full calls per "
            "(noise level, guidance)."
        },
    )
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] | None = field(
        default=None,
        metadata={"help": "torch.compile the UNet with this mode (static shapes; None: eager)."},
    )
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
    license: str | None = field(
        default=None,
        metadata={
            "help": "Licence of the views (a Hub licence id: cc-by-4.0, other, ...). Carried from the source "
            "dataset's card when it has one (this must then agree); required when it has none."
        },
    )
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
        for setting in MODEL_SETTINGS:
            check_model_id(setting, getattr(self, setting))
        for setting, needed_by in self.needed_models().items():
            if needed_by and getattr(self, setting) is None:
                raise ValueError(
                    f"{setting} is not set, and {needed_by} needs it: name a Hub id or local folder (the "
                    f"papers': --{setting} {PAPER_MODELS[setting]}, as in recipes/configs/genviewpp_cc3m.yaml)"
                )
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
        # A negative scale would push the views away from the prompt; 0 to 1 switch guidance off.
        if self.ic_guidance_scale < 0 or min(self.guidance_scales) < 0:
            raise ValueError(
                "guidance scales must be >= 0, got ic_guidance_scale="
                f"{self.ic_guidance_scale}, guidance_scales={self.guidance_scales}"
            )
        if not 0.0 < self.fg_share < 1.0:  # also checked by the fit, which comes after files are written
            raise ValueError(f"fg_share must be in (0, 1), got {self.fg_share}")
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

    def needed_models(self) -> dict[str, str]:
        """Model setting -> what needs it in this run ("" when nothing does): unCLIP for ic and itc and,
        when ``scorer_model`` is not set, for the scorer's encoder; text-to-image for tc."""
        unclip_for = [f"mode {mode}" for mode in self.modes if mode in ("ic", "itc")]
        if self.scorer_model is None:
            unclip_for.append("the foreground scorer (scorer_model is not set)")
        return {
            "unclip_model": " and ".join(unclip_for),
            "text2img_model": "mode tc" if "tc" in self.modes else "",
            "scorer_model": "the foreground scorer" if self.scorer_model is not None else "",
        }

    def to_dict(self) -> dict:
        return asdict(self)
