"""The driver: ``generate_views(dataset, config)`` on one or many processes, resumable.

Layout of a finished ``config.output_dir`` (the folder that is pushed, ``load_dataset(folder)``
works on it)::

    README.md                      dataset card (YAML: configs/data_files + dataset_info features)
    data/train-00000-of-00004.parquet ...   the shards
    foreground/foreground.json + foreground.safetensors   fitted scorer artifacts
    failures.jsonl                 one line per row that lost its image or a view: row id + reason
    preview.png                    originals beside their masks and views
    .work/                         run settings, scorer, shards and failure lists of the run (not pushed)

Rows are cut into shards of ``shard_size``; each ``accelerate`` process takes a contiguous range
of shards, skips those already done (resume after a kill loses at most the unfinished shard),
and runs ``Dataset.map`` with a ``ViewGenerator`` over the rest, a whole shard as one map batch:
the generator scores the shard first, then generates it in full pipeline calls of ``batch_size``
rows of one (noise level, guidance). Views depend only on (seed, row id), so neither the batch
size nor the number of processes changes the result.
``.work/run.json`` records what fixes the rows (the input dataset's fingerprint, the foreground
artifacts and the content settings): a re-run into the same folder with anything else is
refused before any work.

An unfinished run holds nothing but ``.work/``: finished shards are written atomically (tmp +
rename) to ``.work/shards/``, so no reader mistakes the folder for a smaller dataset
(``load_split`` refuses it by name). Assembly writes the card first, whose ``configs`` block
points at ``data/``, then the failures, the preview and the scorer, and last renames
``.work/shards`` to ``data``: every shard appears at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from datasets import Dataset, Features, Image, Value
from datasets.table import embed_table_storage

from ..data import schema
from ..data.images import decode_image
from ..data.loading import DATA_DIR, RUN_FILE, WORK_DIR
from ..foreground import ARTIFACT_JSON, ARTIFACT_TENSORS, ForegroundScorer
from ..integrity import file_damage
from ..preflight import check_output_dir, disk_full_named
from .card import dataset_card, views_license
from .components import Components, LazyViewGenerator, build_generator, load_components
from .config import ViewGenerationConfig
from .lock import generation_lock
from .views import FAILURE, ViewGenerator

logger = logging.getLogger(__name__)

FOREGROUND_DIR = "foreground"  # at the root once finished, in WORK_DIR during the run
SHARDS_DIR = "shards"  # in WORK_DIR: finished shards, renamed to DATA_DIR when the last one is done
FAILURES_FILE = "failures.jsonl"
PREVIEW_FILE = "preview.png"
SOURCE_PREFIX = "source_"  # source columns whose names collide with the contract are renamed


# -- input ---------------------------------------------------------------------------------
def added_features(modes: list[str]) -> dict:
    """The columns a run adds: the contract's for ``modes``, plus the temporary failure column."""
    features = {
        schema.MASK: Image(),
        schema.FG_RATIO: Value("float32"),
        schema.NOISE_LEVEL: Value("int32"),
        schema.GUIDANCE_SCALE: Value("float32"),
        schema.CAPTION_COMPLEXITY: Value("int8"),
        schema.SEED: Value("int64"),
    }
    for mode in modes:
        features[schema.view_column(mode)] = Image()
        features[schema.mask_column(mode)] = Image()
    features[FAILURE] = Value("string")
    return features


def output_features(source: Features, modes: list[str], image_column: str) -> Features:
    """The source features (image read undecoded) plus the added columns."""
    return Features({**source, image_column: Image(decode=False), **added_features(modes)})


def prepare_source(dataset: Dataset, config: ViewGenerationConfig) -> Dataset:
    """Check columns, apply ``max_rows``, rename colliding source columns, read images undecoded."""
    columns = dataset.column_names
    if config.image_column not in columns:
        raise KeyError(
            f"the dataset has no image column {config.image_column!r} (columns: {', '.join(columns)})"
        )
    if not isinstance(dataset.features[config.image_column], Image):
        raise TypeError(f"column {config.image_column!r} must be a datasets.Image feature")
    if "tc" in config.modes or "itc" in config.modes:
        if config.caption_column not in columns:
            raise KeyError(
                f"modes tc/itc need a caption column {config.caption_column!r} (columns: {', '.join(columns)})"
            )
        caption = dataset.features[config.caption_column]
        if getattr(caption, "dtype", None) not in ("string", "large_string"):
            raise TypeError(
                f"caption_column {config.caption_column!r} must hold text (tc/itc prompts), not {caption}"
            )
    if config.max_rows is not None and config.max_rows < len(dataset):
        dataset = dataset.select(range(config.max_rows))
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    produced = added_features(config.modes)
    renames = {c: SOURCE_PREFIX + c for c in columns if c in produced}
    if renames:
        logger.warning("renaming source columns that the views contract uses: %s", renames)
        dataset = dataset.rename_columns(renames)
    return dataset.cast_column(config.image_column, Image(decode=False))


# -- foreground scorer ----------------------------------------------------------------------
def fit_scorer(dataset: Dataset, components: Components, config: ViewGenerationConfig) -> ForegroundScorer:
    """Fit on a seeded random sample of ``fg_sample_size`` rows (undecodable rows are skipped), with a
    progress bar over the fit's two passes (shown when datasets' progress bars are on)."""
    from datasets.utils.logging import is_progress_bar_enabled
    from tqdm.auto import tqdm

    n = min(config.fg_sample_size, len(dataset))
    rows = np.sort(np.random.default_rng(config.seed).permutation(len(dataset))[:n])
    sample = dataset.select(rows.tolist())
    logger.info("fitting the foreground direction on %d images (two passes)", n)
    bar = tqdm(total=2 * n, desc="foreground fit", unit="img", disable=not is_progress_bar_enabled())

    def batches():
        for start in range(0, n, config.batch_size):
            chunk = sample[start : start + config.batch_size][config.image_column]
            images = []
            for row, value in zip(rows[start:], chunk):
                try:
                    images.append(decode_image(value, f"row {row}", min_side=1))
                except ValueError:  # skipped here; the map reports the row
                    continue
            if images:
                yield images
            bar.update(len(chunk))  # once the fit has encoded the chunk

    with bar:
        return ForegroundScorer.fit(
            lambda images: components.encoder(images)[0], batches, components.encoder.grid, config.fg_share
        )


# -- the run ---------------------------------------------------------------------------------
def _shard_name(index: int, total: int) -> str:
    return f"train-{index:05d}-of-{total:05d}.parquet"


def _shard_rows(index: int, config: ViewGenerationConfig, num_rows: int) -> int:
    return min(config.shard_size, num_rows - index * config.shard_size)


# What fixes the rows' content besides the input dataset: a re-run with other values must not mix
# into the same folder.
CONTENT_SETTINGS = (
    "modes", "image_column", "caption_column", "unclip_model", "text2img_model", "scorer_model",
    "model_revision", "num_inference_steps", "ic_guidance_scale", "height", "width", "fg_share",
    "noise_fg_edges", "noise_levels", "guidance_scales", "complexity_edges", "complexity_scorer", "seed",
    "shard_size",
)  # fmt: skip


def run_record(
    config: ViewGenerationConfig, dataset: Dataset, dataset_name: str | None, num_rows: int
) -> dict:
    """``.work/run.json``: the input dataset's identity (``datasets`` fingerprint, name when given),
    its row count after ``max_rows`` and the content settings."""
    record = {key: getattr(config, key) for key in CONTENT_SETTINGS}
    record.update(dataset_name=dataset_name, dataset_fingerprint=dataset._fingerprint, num_rows=num_rows)
    record["foreground_artifacts"] = artifacts_fingerprint(config.foreground_artifacts)
    return json.loads(json.dumps(record))


def artifacts_fingerprint(folder: str | None) -> str | None:
    """The sha256 of a ``foreground_artifacts`` folder's two files (None when the run fits its own):
    the same artifacts under another path resume, other artifacts under the same path do not."""
    if folder is None:
        return None
    ForegroundScorer.load(folder)  # a missing or unreadable file is named here, before any work
    digest = hashlib.sha256()
    for name in (ARTIFACT_JSON, ARTIFACT_TENSORS):
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()


def check_run_record(work: Path, record: dict) -> None:
    """Refuse a folder that holds a run of other data or settings (read-only: every process checks)."""
    path = work / RUN_FILE
    if not path.exists():
        return
    previous = json.loads(path.read_text())
    changed = sorted(k for k in set(previous) | set(record) if previous.get(k) != record.get(k))
    if changed:
        raise ValueError(
            f"{work.parent} holds a run with other settings ({', '.join(changed)}): "
            "resume with the same dataset and settings or choose another output_dir"
        )


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def given_scorer(config: ViewGenerationConfig, components: Components) -> ForegroundScorer | None:
    """The ``foreground_artifacts`` to reuse, checked against the encoder's token grid (None: fit)."""
    if config.foreground_artifacts is None:
        return None
    scorer = ForegroundScorer.load(config.foreground_artifacts)
    if tuple(scorer.grid) != tuple(components.encoder.grid):
        raise ValueError(
            f"foreground_artifacts {config.foreground_artifacts} are for a {scorer.grid} token grid, "
            f"the encoder has {components.encoder.grid}"
        )
    return scorer


def generate_views(
    dataset: Dataset,
    config: ViewGenerationConfig,
    *,
    dataset_name: str | None = None,
    components: Components | None = None,
    api=None,
) -> Path:
    """Generate the views dataset of ``dataset`` into ``config.output_dir``; returns the folder.

    ``dataset_name``: where ``dataset`` came from (``ScriptArguments.dataset_name``), recorded in
    the resume guard and the card. ``components``: already loaded models (default: loaded from
    the config). ``api``: the ``HfApi`` of the push when ``config.push_to_hub`` (tests pass a fake).

    Call it from every process of an ``accelerate launch``: each process takes its contiguous
    share of shards, the main process fits the scorer first and assembles (and pushes) the folder last.
    """
    from accelerate import PartialState
    from datasets.utils.logging import is_progress_bar_enabled
    from tqdm.auto import tqdm

    # Without a GPU, cpu=True is what makes a multi-process launch initialise gloo (else every
    # process would believe it runs alone).
    state = PartialState(cpu=not torch.cuda.is_available())
    out = Path(config.output_dir)
    work, fg_dir = out / WORK_DIR, out / FOREGROUND_DIR
    pending = work / SHARDS_DIR
    # Everything that can be refused is refused before a file is written (the guard before a model loads).
    check_output_dir(out)
    source = prepare_source(dataset, config)
    license = views_license(config.license, dataset, dataset_name)
    num_rows = len(source)
    num_shards = math.ceil(num_rows / config.shard_size)
    record = run_record(config, dataset, dataset_name, num_rows)
    check_run_record(work, record)
    if components is None:
        with state.main_process_first():  # the first load may write a cache (Hub files)
            components = load_components(config, state.device)
    given = given_scorer(config, components)

    # One job per folder: the main process holds .work/lock.json from its first write to the end.
    # A full disk is named (finished shards stay: the same command finishes the folder).
    with disk_full_named(out, "the views folder"), generation_lock(work, state.is_main_process):
        # The scorer of this run: at the root once assembled, else in .work/ (fitted by an earlier try).
        scorer_dir = fg_dir if ForegroundScorer.exists(fg_dir) else work / FOREGROUND_DIR
        if state.is_main_process and not ForegroundScorer.exists(scorer_dir):
            scorer = given if given is not None else fit_scorer(source, components, config)
            # The record comes first: a scorer on disk is always one of the recorded run.
            work.mkdir(parents=True, exist_ok=True)
            if not (work / RUN_FILE).exists():
                _atomic_write_text(work / RUN_FILE, json.dumps(record, indent=2) + "\n")
            scorer.save(scorer_dir)
        state.wait_for_everyone()
        scorer = ForegroundScorer.load(scorer_dir)  # every process reads the same saved artifacts

        generator = build_generator(components, scorer, config)
        features = output_features(source.features, config.modes, config.image_column)
        first = num_shards * state.process_index // state.num_processes
        last = num_shards * (state.process_index + 1) // state.num_processes
        for stale in pending.glob(f".tmp-*-p{state.process_index}-*"):
            stale.unlink()
        todo = [
            k
            for k in range(first, last)
            if _finished_shard(out, k, num_shards, _shard_rows(k, config, num_rows)) is None
        ]
        logger.info(
            "process %d of %d: shards %d-%d of %d, %d to do",
            state.process_index, state.num_processes, first, last - 1, num_shards, len(todo),
        )  # fmt: skip
        bar = tqdm(
            todo,
            desc=f"shards (process {state.process_index})",
            position=state.process_index,
            disable=not todo or not is_progress_bar_enabled(),
        )
        for k in bar:
            write_shard(
                source, k, num_shards, generator, features, config, pending, work, state.process_index
            )
        state.wait_for_everyone()
        if state.is_main_process:
            known = {"dataset_name": dataset_name, "dataset_train_split": dataset.split}
            known = {k: str(v) for k, v in known.items() if v is not None}
            assemble(out, config, num_shards, scorer, known, license)
            if config.push_to_hub:
                from ..hub import push_folder

                url = push_folder(
                    out,
                    config.hub_dataset_id,
                    repo_type="dataset",
                    private=config.hub_private_repo,
                    revision=config.hub_revision,
                    commit_message=config.hub_commit_message,
                    ignore_patterns=[f"{WORK_DIR}/*"],
                    api=api,
                )
                logger.info("pushed %s to %s", out, url)
        state.wait_for_everyone()
    return out


def write_shard(
    source: Dataset,
    index: int,
    num_shards: int,
    generator: ViewGenerator,
    features: Features,
    config: ViewGenerationConfig,
    shard_dir: Path,
    work: Path,
    process_index: int = 0,
) -> Path:
    """Generate shard ``index`` into ``shard_dir`` atomically: parquet to a temp name, then rename.

    The shard is one map batch (one per worker with ``num_proc``): the generator orders all its rows
    by (noise level, guidance) and fills every pipeline call it can with ``config.batch_size`` rows.
    """
    start = index * config.shard_size
    stop = min(start + config.shard_size, len(source))
    generator.row_offset, generator.batch_size = start, config.batch_size
    function = generator
    if config.num_proc and config.num_proc > 1:  # workers build their own pipelines on GPU `rank`
        function = LazyViewGenerator(config, generator.scorer, row_offset=start)
    shard = source.select(range(start, stop)).map(
        function,
        batched=True,
        batch_size=config.shard_size,
        with_indices=True,
        with_rank=True,
        num_proc=config.num_proc,
        features=features,
        keep_in_memory=True,
        writer_batch_size=config.writer_batch_size,
        new_fingerprint=f"genview-shard-{index}-of-{num_shards}-{config.seed}",
        desc=f"shard {index + 1}/{num_shards}",
    )
    failures = [{"row": start + i, "reason": reason} for i, reason in enumerate(shard[FAILURE]) if reason]
    shard = shard.remove_columns(FAILURE).cast_column(config.image_column, Image())
    # A source cell that holds only a path to a local file gets the file's bytes: the views dataset
    # holds the original image, wherever it is copied or pushed.
    shard = shard.with_format("arrow").map(
        partial(embed_table_storage, remote_files=False), batched=True, keep_in_memory=True
    )
    shard_dir.mkdir(parents=True, exist_ok=True)
    final = shard_dir / _shard_name(index, num_shards)
    tmp = shard_dir / f".tmp-{final.name}-p{process_index}-{os.getpid()}"
    _atomic_write_text(work / f"failures-{index:05d}.jsonl", "".join(json.dumps(f) + "\n" for f in failures))
    shard.to_parquet(str(tmp))
    os.replace(tmp, final)  # the shard exists whole or not at all
    return final


# -- assembling the folder ------------------------------------------------------------------
def _finished_shard(out: Path, index: int, num_shards: int, num_rows: int | None = None) -> Path | None:
    """Where shard ``index`` lies once written: ``data/`` (assembled) or ``.work/shards/``; None: to do.

    With ``num_rows`` (the shard's row count) a shard that is not whole or holds other rows (cut
    short by a copy, a disk) is named in a warning, deleted and so done again."""
    name = _shard_name(index, num_shards)
    for path in (out / DATA_DIR / name, out / WORK_DIR / SHARDS_DIR / name):
        if not path.exists():
            continue
        if num_rows is None:
            return path
        damage = file_damage(path)
        if damage is None and (rows := pq.read_metadata(path).num_rows) != num_rows:
            damage = f"it holds {rows} rows, not {num_rows}"
        if damage is None:
            return path
        logger.warning("generating %s again: %s", path, damage)
        path.unlink()
    return None


def assemble(
    out: Path, config: ViewGenerationConfig, num_shards: int, scorer, source: dict, license: str | list[str]
) -> None:
    """Check every shard is there; write the README card, failures.jsonl, preview.png and the
    scorer, then publish the shards under ``data/`` (see the module docstring for the order).

    Reads the shards' parquet footers (rows, bytes, features) and only the first rows the preview
    needs: a million-row views dataset is never loaded (or copied to the cache) whole.
    ``source``: the dataset arguments known for the run, for the card's reproduce block;
    ``license``: the views' licence.
    """
    files = [_finished_shard(out, k, num_shards) for k in range(num_shards)]
    missing = [k for k, path in enumerate(files) if path is None]
    if missing:
        raise RuntimeError(
            f"shards {missing} are missing in {out / WORK_DIR / SHARDS_DIR}: run again to finish them"
        )
    failures = []
    for k in range(num_shards):
        path = out / WORK_DIR / f"failures-{k:05d}.jsonl"
        if path.exists():
            failures += [json.loads(line) for line in path.read_text().splitlines() if line]
    num_failures = len({f["row"] for f in failures})
    # The card first: its configs block points load_dataset at data/, empty until the last step.
    card = dataset_card(files, f"{DATA_DIR}/train-*.parquet", config, scorer, num_failures, source, license)
    _atomic_write_text(out / "README.md", str(card))
    _atomic_write_text(out / FAILURES_FILE, "".join(json.dumps(f) + "\n" for f in failures))
    columns = [config.image_column, schema.MASK] + [
        c for m in config.modes for c in (schema.view_column(m), schema.mask_column(m))
    ]
    write_preview(files, columns, out / PREVIEW_FILE, config.grid_rows)
    if not ForegroundScorer.exists(out / FOREGROUND_DIR):
        scorer.save(out / FOREGROUND_DIR)
    pending, data_dir = out / WORK_DIR / SHARDS_DIR, out / DATA_DIR
    if not data_dir.exists():
        os.replace(pending, data_dir)  # one rename: every shard appears at once
    else:  # a folder assembled before (a re-run): move what is left
        for shard in pending.glob("train-*.parquet") if pending.exists() else []:
            os.replace(shard, data_dir / shard.name)


def write_preview(files: list[Path], columns: list[str], path: Path, rows: int, cell: int = 128) -> None:
    """A PNG grid of the first ``rows`` rows with every image column present: per row the original,
    its mask, then each mode's view and mask. Reads the shards batch by batch and stops early."""
    import pyarrow.parquet as pq
    from PIL import Image as PILImage

    features = Features.from_arrow_schema(pq.read_schema(files[0]))

    picked: list[list] = []
    for file in files:
        for record_batch in pq.ParquetFile(file).iter_batches(batch_size=64, columns=columns):
            for row in record_batch.to_pylist():
                if len(picked) < rows and all(row[c] is not None for c in columns):
                    picked.append([features[c].decode_example(row[c]) for c in columns])
            if len(picked) >= rows:
                break
        if len(picked) >= rows:
            break
    grid = PILImage.new("RGB", (cell * len(columns), cell * max(1, len(picked))), "white")
    for r, images in enumerate(picked):
        for c, image in enumerate(images):
            grid.paste(image.convert("RGB").resize((cell, cell), PILImage.NEAREST), (c * cell, r * cell))
    tmp = path.with_name(f".tmp-{path.name}")
    grid.save(tmp, format="PNG")
    os.replace(tmp, path)
