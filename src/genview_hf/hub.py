"""Cards and pushes: render the model card template in ``hub_cards/`` and upload finished folders.

The templates live in the repository's top-level ``hub_cards/`` and ship inside the wheel as
``genview_hf.hub_cards``; they are Jinja templates rendered by ``huggingface_hub``'s
``ModelCard.from_template``, so the metadata is written by the Hub's own ``ModelCardData``.
Pushing goes through ``huggingface_hub.HfApi``; tests inject a fake ``api`` and check what would
be uploaded, never touching the network.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData

from .data.loading import SAMPLE_PREFIX
from .training.quality_modes import QUALITY_MODES

PIPELINE_TAGS = ("image-feature-extraction", "zero-shot-image-classification")
# owner/name: the form of a Hub repository id that a bare local folder name cannot take
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# The Hub's size_categories values, by upper bound on the row count.
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def card_template_path(name: str) -> Path:
    """The file of card template ``name`` (``hub_cards/<name>.md``, shipped as ``genview_hf.hub_cards``)."""
    path = resources.files("genview_hf.hub_cards").joinpath(f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no card template named {name!r} in hub_cards/")
    return Path(str(path))


def is_hub_id(name: str) -> bool:
    """``owner/name`` that is not an existing local path (local folders and ``sample:NAME`` are not)."""
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` value of a dataset of ``num_rows`` rows (the card lists it)."""
    return next((name for bound, name in SIZE_CATEGORIES if num_rows < bound), "n>1B")


def dataset_identity(name: str) -> tuple[str, str]:
    """(``type``, ``name``) of a dataset in a model card's model-index, where the Hub reads ``type``
    as a dataset id: a Hub id as it is; a sample set or a local folder by its bare name (its
    path stays out of the metadata: it means nothing on another machine)."""
    if is_hub_id(name):
        return name, name
    if name.startswith(SAMPLE_PREFIX):
        sample = name[len(SAMPLE_PREFIX) :]
        return sample, f"{sample} (genview_hf sample set)"
    folder = Path(name).name or Path(name).resolve().name  # "." is the folder it names
    return folder, folder


def _reference(name: str, repo_type: str) -> dict[str, str | None]:
    """A model or dataset named in the card's text: linked when it is on the Hub, else shown as is."""
    prefix = "https://huggingface.co/datasets/" if repo_type == "dataset" else "https://huggingface.co/"
    return {"name": name, "url": prefix + name if is_hub_id(name) else None}


def model_card(
    *,
    model_name: str,
    model_class: str,
    pipeline_tag: str,
    method: str,
    method_paper: str,
    quality_mode: str,
    architecture_from: str,
    base_model: str | None,
    datasets: list[str],
    hyperparameters: dict[str, Any],
    metrics: dict[str, float] | None = None,
    figures: list[str] | None = None,
    license: str = "apache-2.0",
    tags: list[str] | None = None,
) -> ModelCard:
    """The model card of an exported encoder, rendered from ``hub_cards/model_card.md``.

    Args:
        model_name: the repository name; the card's title and the id in the usage snippet.
        model_class: the transformers class at the root (``ViTModel``, ``CLIPModel``, ...).
        pipeline_tag: ``image-feature-extraction`` or ``zero-shot-image-classification`` (image-text).
        method: the contrastive method (``mocov3``, ``slip``, ...); ``method_paper`` cites it.
        quality_mode: ``frozen``, ``stored`` or ``off`` (how positive pairs were weighted).
        architecture_from: the model id or folder the architecture (and any weights) came from.
        base_model: the pretrained model fine-tuned, or ``None`` for weights trained from scratch;
            in the metadata only when it is a Hub id (a local folder appears in the text only).
        datasets: training datasets (may be empty: a checkpoint's card written before the run
            names them); Hub ids go into the metadata, local folders and ``sample:NAME`` sets
            only into the text.
        hyperparameters: setting -> value, shown as a table.
        metrics: metric -> value measured at the end of training, or ``None`` when none ran.
        figures: PNG files, as paths relative to the model folder, embedded in the card.
        license, tags: the card's license and tags added to the defaults.

    The card leaves an empty evaluation block for
    :func:`genview_hf.evaluation.card.add_eval_results_to_card`. Save it with ``card.save(path)``.
    """
    if pipeline_tag not in PIPELINE_TAGS:
        raise ValueError(f"pipeline_tag {pipeline_tag!r}: expected one of {', '.join(PIPELINE_TAGS)}")
    if quality_mode not in QUALITY_MODES:
        raise ValueError(f"quality_mode {quality_mode!r}: expected one of {', '.join(QUALITY_MODES)}")
    for figure in figures or []:
        if PurePosixPath(figure).is_absolute() or Path(figure).suffix.lower() != ".png":
            raise ValueError(f"figure {figure!r}: expected a PNG path relative to the model folder")
    image_text = pipeline_tag == "zero-shot-image-classification"
    default_tags = [
        "genview",
        "contrastive-learning",
        *(["image-text", "open_clip"] if image_text else ["self-supervised-learning"]),
    ]
    hub_datasets = [name for name in datasets if is_hub_id(name)]
    settings = [{"setting": key, "value": value} for key, value in hyperparameters.items()]
    results = [{"metric": key, "value": f"{value:.4g}"} for key, value in (metrics or {}).items()]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license=license,
        tags=list(dict.fromkeys([*default_tags, method, *(tags or [])])),  # ordered, no repeats
        base_model=base_model if base_model and is_hub_id(base_model) else None,  # the Hub wants an id
        datasets=hub_datasets or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(card_template_path("model_card")),
        model_class=model_class,
        method=method,
        method_paper=method_paper,
        quality_mode=quality_mode,
        quality_mode_meaning=QUALITY_MODES[quality_mode],
        architecture_from=architecture_from,
        base_model=_reference(base_model, "model") if base_model else None,
        training_data=[_reference(name, "dataset") for name in datasets],
        image_text=image_text,
        settings_table=markdown_table(settings),
        metrics_table=markdown_table(results) if results else None,
        figures=[{"path": path, "alt": Path(path).stem.replace("_", " ")} for path in figures or []],
    )


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A small Markdown table from a list of dicts sharing their keys (first row sets the columns)."""
    if not rows:
        return "_none_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    ignore_patterns: list[str] | None = None,
    api: HfApi | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL.

    A bare name (no ``owner/``) lands in the token owner's namespace: the upload goes to the id
    the Hub returns. The local folder is only read: a failed upload leaves it whole, ready for
    another try.
    """
    folder = Path(folder)
    if not (folder / "README.md").exists():
        raise FileNotFoundError(f"{folder} has no README.md card: refusing to push a folder without its card")
    api = api or HfApi()
    created = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    repo_id = getattr(created, "repo_id", None) or repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type=repo_type,
        revision=revision,
        commit_message=commit_message or f"Upload with genview_hf from {folder.name}",
        ignore_patterns=ignore_patterns,
    )
    return str(getattr(commit, "commit_url", commit))
