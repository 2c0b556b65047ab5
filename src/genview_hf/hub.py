"""Cards and pushes: render the card templates in ``hub_cards/`` and upload finished folders.

The templates live in the repository's top-level ``hub_cards/`` and ship inside the wheel as
``genview_hf.hub_cards``. Pushing goes through ``huggingface_hub.HfApi``; tests inject a
fake ``api`` and check what would be uploaded, never touching the network.
"""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi


def card_template_path(name: str) -> Path:
    """The file of card template ``name`` (``hub_cards/<name>.md``, shipped as ``genview_hf.hub_cards``)."""
    path = resources.files("genview_hf.hub_cards").joinpath(f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no card template named {name!r} in hub_cards/")
    return Path(str(path))


def card_template(name: str) -> str:
    """The text of ``hub_cards/<name>.md``."""
    return card_template_path(name).read_text(encoding="utf-8")


def render_card(name: str, **fields: Any) -> str:
    """Fill ``$field`` placeholders of a card template; a missing field is an error naming it."""
    template = string.Template(card_template(name))
    try:
        return template.substitute({key: str(value) for key, value in fields.items()})
    except KeyError as missing:
        raise KeyError(f"card template {name!r} needs the field {missing.args[0]!r}") from None


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
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    ignore_patterns: list[str] | None = None,
    api: HfApi | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL.

    The local folder is only read: a failed upload leaves it whole, ready for another try.
    """
    folder = Path(folder)
    if not (folder / "README.md").exists():
        raise FileNotFoundError(f"{folder} has no README.md card: refusing to push a folder without its card")
    api = api or HfApi()
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
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
