"""The README card of a views dataset: a ``huggingface_hub.DatasetCard`` rendered from the Jinja
template ``hub_cards/dataset_card.md``.

The YAML header carries what the Hub and ``datasets.load_dataset`` read: ``configs`` (the
parquet shards of the train split) and ``dataset_info`` (features, sizes), written by
``datasets``' own ``MetadataConfigs`` / ``DatasetInfosDict`` helpers, so the folder loads with
plain ``datasets`` and no genview_hf.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from datasets import DatasetInfo, Features
from datasets.info import DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from ..data import schema
from ..foreground import ForegroundScorer
from ..hub import card_template_path, is_hub_id, size_category
from .config import ViewGenerationConfig

TAGS = ["genview", "synthetic", "contrastive-learning", "image"]
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


def task_categories(modes: list[str]) -> list[str]:
    """The Hub tasks of a views dataset: feature extraction (what the views train), and how they
    were made (image-to-image for ic / itc, text-to-image for tc / itc)."""
    made = {"ic": ["image-to-image"], "tc": ["text-to-image"], "itc": ["image-to-image", "text-to-image"]}
    return list(dict.fromkeys(["image-feature-extraction", *(task for m in modes for task in made[m])]))


def source_datasets(dataset_name: str | None) -> list[str]:
    """The Hub's ``source_datasets``: the views extend their source (its columns kept), named when
    it is a Hub dataset (a local folder or a sample set has no id to give)."""
    return [f"extended|{dataset_name}"] if dataset_name and is_hub_id(dataset_name) else ["extended"]


def source_license(dataset, dataset_name: str | None) -> str | list[str] | None:
    """The source's licence: its ``DatasetInfo`` (the sample sets, a dataset whose info has one),
    else its card (``README.md`` of a local folder, the Hub card of a Hub id when it can be read);
    ``None`` when none of them says."""
    if dataset.info.license:
        return dataset.info.license
    if not dataset_name:
        return None
    folder = Path(dataset_name)
    if folder.is_dir():  # a local card that is damaged is an error naming it, not "unknown"
        return (
            DatasetCard.load(folder / "README.md").data.license if (folder / "README.md").is_file() else None
        )
    if not is_hub_id(dataset_name):
        return None
    try:
        return DatasetCard.load(dataset_name).data.license
    except Exception:  # offline, no card, no access: not known here (the flag then says)
        return None


def views_license(given: str | None, dataset, dataset_name: str | None) -> str | list[str]:
    """The views' licence: the source's (``given``, the ``license`` setting, must then agree), else
    ``given``; neither is refused, naming the setting, before anything is generated."""
    carried = source_license(dataset, dataset_name)
    if carried and given and given != carried:
        raise ValueError(
            f"license {given!r} disagrees with the source's {carried!r} ({dataset_name or 'the dataset'}'s "
            "card): the views carry the source's licence; drop the license setting or fix the card"
        )
    if not (carried or given):
        raise ValueError(
            f"the licence of {dataset_name or 'the source dataset'} is unknown (no licence in its info or card): "
            "pass --license with a Hub licence id (cc-by-4.0, other, ...)"
        )
    return carried or given


def card_data(
    features: Features,
    num_rows: int,
    num_bytes: int,
    download_size: int,
    data_files: str,
    pretty_name: str,
    *,
    license: str | list[str],
    modes: list[str],
    dataset_name: str | None,
) -> DatasetCardData:
    """The YAML header: name, licence, tasks, size, source, tags, the ``configs`` block and
    ``dataset_info`` of the train split."""
    data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        task_categories=task_categories(modes),
        size_categories=[size_category(num_rows)],
        source_datasets=source_datasets(dataset_name),
        tags=TAGS,
    )
    MetadataConfigs(
        {"default": {"data_files": [{"split": "train", "path": data_files}]}}
    ).to_dataset_card_data(data)
    info = DatasetInfo(
        features=features,
        splits=SplitDict({"train": SplitInfo(name="train", num_bytes=num_bytes, num_examples=num_rows)}),
        dataset_size=num_bytes,
        download_size=download_size,
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def column_docs(features: Features, config: ViewGenerationConfig) -> list[tuple[str, str]]:
    """(column, description) for every column, in the dataset's order."""
    # the source image/caption columns may have other names (CC3M: jpg, txt)
    contract_name = {config.image_column: schema.IMAGE, config.caption_column: schema.CAPTION}
    docs = {schema.view_column(m): f"generated view, {MODE_DOCS[m]} (Image)" for m in config.modes}
    docs |= {
        schema.mask_column(m): f"foreground map of view_{m} at token resolution (Image, mode L)"
        for m in config.modes
    }
    passed = "source column, passed through"
    return [
        (name, docs.get(name) or COLUMN_DOCS.get(contract_name.get(name, name), passed)) for name in features
    ]


def generator_settings(config: ViewGenerationConfig) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [("modes", ", ".join(config.modes))]
    if "ic" in config.modes or "itc" in config.modes:
        rows.append(("unCLIP img2img", f"`{config.unclip_model}`"))
    if "tc" in config.modes:
        rows.append(("text-to-image (DPM-Solver)", f"`{config.text2img_model}`"))
    size = f"{config.height or 'model default'} x {config.width or 'model default'}"
    return rows + [
        ("scorer encoder", f"`{config.scorer_model or config.unclip_model}`"),
        ("inference steps", config.num_inference_steps),
        ("ic guidance scale", config.ic_guidance_scale),
        ("view size", size),
    ]


def reproduce_settings(config: ViewGenerationConfig, source: dict) -> str:
    """The run's settings as a ``--config`` YAML: the known dataset arguments, then the generation
    settings (publishing left out: where a copy goes is not part of what it holds)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "push_to_hub" and not k.startswith("hub_")}
    return yaml.safe_dump({**source, **settings}, sort_keys=False).strip()


def dataset_card(
    files: list[Path],
    data_files: str,
    config: ViewGenerationConfig,
    scorer: ForegroundScorer,
    num_failures: int,
    source: dict,
    license: str | list[str],
) -> DatasetCard:
    """The card of an assembled views folder, from its shards' parquet footers (not their rows).

    ``files``: the shards; ``data_files``: their glob relative to the folder; ``source``: the
    dataset arguments known for the run (``dataset_name``, ``dataset_train_split``); ``license``:
    from :func:`views_license`.
    """
    import pyarrow.parquet as pq

    footers = [pq.read_metadata(f) for f in files]
    num_rows = sum(m.num_rows for m in footers)
    num_bytes = sum(m.row_group(g).total_byte_size for m in footers for g in range(m.num_row_groups))
    features = Features.from_arrow_schema(pq.read_schema(files[0]))  # datasets' metadata in the footer
    what = source.get("dataset_name") or Path(config.output_dir).absolute().name
    pretty_name = f"{what} generated views ({', '.join(config.modes)})"
    edges = [0.0, *config.noise_fg_edges, 1.0]
    noise = ", ".join(  # the first bin is closed: fg_ratio 0 gets the first level
        f"{'[' if k == 0 else '('}{lo:g}, {hi:g}] -> {level}"
        for k, (lo, hi, level) in enumerate(zip(edges[:-1], edges[1:], config.noise_levels))
    )
    download_size = sum(f.stat().st_size for f in files)
    return DatasetCard.from_template(
        card_data(
            features,
            num_rows,
            num_bytes,
            download_size,
            data_files,
            pretty_name,
            license=license,
            modes=config.modes,
            dataset_name=source.get("dataset_name"),
        ),
        template_path=str(card_template_path("dataset_card")),
        repo_id=config.hub_dataset_id if config.push_to_hub else None,
        num_rows=num_rows,
        modes=config.modes,
        num_failures=num_failures,
        num_shards=len(files),
        columns=column_docs(features, config),
        generator=generator_settings(config),
        noise_policy=noise,
        guidance_policy=", ".join(f"{c} -> {g:g}" for c, g in enumerate(config.guidance_scales, start=1)),
        complexity_scorer=config.complexity_scorer,
        complexity_edges=list(config.complexity_edges),
        seed=config.seed,
        fit_images=scorer.num_fit_images,
        grid=f"{scorer.grid[0]} x {scorer.grid[1]}",
        fg_share=scorer.fg_share,
        threshold=f"{scorer.threshold:.6g}",
        settings=reproduce_settings(config, source),
    )
