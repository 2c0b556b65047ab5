"""The README card of a views dataset, rendered from ``hub_cards/dataset_card.md``."""

from __future__ import annotations

import yaml
from datasets import DatasetInfo, Features

from ..data import schema
from ..hub import markdown_table, render_card
from .config import ViewGenerationConfig

COLUMN_DOCS = {
    schema.IMAGE: "source image (kept)",
    schema.CAPTION: "source caption",
    schema.MASK: "foreground map of the original at token resolution (Image, mode L, 0/255)",
    schema.FG_RATIO: "share of foreground tokens of the original (float32)",
    schema.NOISE_LEVEL: "unCLIP image-embedding noise level chosen from fg_ratio (int32)",
    schema.GUIDANCE_SCALE: "classifier-free guidance used (float32)",
    schema.CAPTION_COMPLEXITY: "caption complexity 1-4 (int8; null without a caption)",
    schema.SEED: "generator seed of the row, from (global seed, row id) (int64)",
}
MODE_DOCS = {
    "ic": "image-conditioned (Stable unCLIP img2img, empty prompt, adaptive noise level)",
    "tc": "text-conditioned (text-to-image from the caption, adaptive guidance)",
    "itc": "image+text-conditioned (unCLIP with image and caption, both adaptive)",
}


def front_matter(features: Features, num_rows: int, num_bytes: int, pretty_name: str) -> str:
    info = DatasetInfo(features=features)._to_yaml_dict()
    meta = {
        "pretty_name": pretty_name,
        "tags": ["genview", "synthetic", "contrastive-learning", "image"],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
        ],
        "dataset_info": {
            **info,
            "splits": [{"name": "train", "num_bytes": int(num_bytes), "num_examples": int(num_rows)}],
        },
    }
    return yaml.safe_dump(meta, sort_keys=False).strip()


def render_dataset_card(
    features: Features,
    num_rows: int,
    num_bytes: int,
    config: ViewGenerationConfig,
    scorer,
    failures: list[dict],
    components,
    num_shards: int,
) -> str:
    """The card of the assembled folder, from the shards' features and counts (not their rows)."""
    repo_id = config.push_to_hub or "path/to/views"
    pretty_name = f"{config.dataset} generated views ({', '.join(config.modes)})"
    # the source image/caption columns may have other names (CC3M: jpg, txt)
    contract_name = {config.image_column: schema.IMAGE, config.caption_column: schema.CAPTION}
    columns = []
    for name in features:
        doc = COLUMN_DOCS.get(contract_name.get(name, name))
        for mode in config.modes:
            if name == schema.view_column(mode):
                doc = f"generated view, {MODE_DOCS[mode]} (Image)"
            elif name == schema.mask_column(mode):
                doc = f"foreground map of view_{mode} at token resolution (Image, mode L)"
        columns.append({"column": f"`{name}`", "description": doc or "source column, passed through"})
    generator = [{"setting": "modes", "value": ", ".join(config.modes)}]
    if components.unclip is not None:
        generator.append({"setting": "unCLIP img2img", "value": f"`{config.unclip_model}`"})
    if components.text2img is not None:
        generator.append({"setting": "text-to-image (DPM-Solver)", "value": f"`{config.text2img_model}`"})
    generator += [
        {"setting": "scorer encoder", "value": f"`{config.scorer_model or config.unclip_model}`"},
        {"setting": "inference steps", "value": config.num_inference_steps},
        {"setting": "ic guidance scale", "value": config.ic_guidance_scale},
        {
            "setting": "view size",
            "value": f"{config.height or 'model default'} x {config.width or 'model default'}",
        },
    ]
    edges = [0.0, *config.noise_fg_edges, 1.0]
    noise = ", ".join(
        f"({lo:g}, {hi:g}] -> {level}" for lo, hi, level in zip(edges[:-1], edges[1:], config.noise_levels)
    )
    guidance = ", ".join(f"{c} -> {g:g}" for c, g in enumerate(config.guidance_scales, start=1))
    settings = {
        k: v for k, v in config.to_dict().items() if k not in ("push_to_hub", "private", "commit_message")
    }
    return render_card(
        "dataset_card",
        front_matter=front_matter(features, num_rows, num_bytes, pretty_name),
        pretty_name=pretty_name,
        repo_id=repo_id,
        num_rows=num_rows,
        modes=", ".join(config.modes),
        num_failures=len({f["row"] for f in failures}),
        num_shards=num_shards,
        columns_table=markdown_table(columns),
        generator_table=markdown_table(generator),
        noise_policy=noise,
        guidance_policy=guidance,
        complexity_scorer=f"`{config.complexity_scorer}`",
        complexity_edges=config.complexity_edges,
        seed=config.seed,
        fit_images=scorer.num_fit_images,
        grid=f"{scorer.grid[0]} x {scorer.grid[1]}",
        fg_share=scorer.fg_share,
        threshold=f"{scorer.threshold:.6g}",
        settings=yaml.safe_dump(settings, sort_keys=False).strip(),
    )
