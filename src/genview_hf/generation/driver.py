"""The driver: ``generate_views(dataset, config)`` on one or many processes, resumable.

Layout of ``config.output_dir`` (the folder that is pushed, ``load_dataset(folder)`` works on it)::

    README.md                      dataset card (YAML: configs/data_files + dataset_info features)
    data/train-00000-of-00004.parquet ...   finished shards, written atomically (tmp + rename)
    foreground/foreground.json + foreground.safetensors   fitted scorer artifacts
    failures.jsonl                 one line per row that lost its image or a view: row id + reason
    preview.png                    originals beside their masks and views
    .work/                         run settings and per-shard failure lists (not pushed)

Rows are cut into shards of ``shard_size``; each ``accelerate`` process takes a contiguous range
of shards, skips those already on disk (resume after a kill loses at most the unfinished shard),
and runs ``Dataset.map`` with a ``ViewGenerator`` over the rest. Views depend only on
(seed, row id), so neither the batch size nor the number of processes changes the result.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, Features, Image, Value

from ..data import schema
from ..foreground import ForegroundScorer
from .components import Components, load_components
from .config import ViewGenerationConfig
from .policies import GuidancePolicy, LMComplexityScorer, NoisePolicy
from .views import FAILURE, LazyViewGenerator, ViewGenerator, decode_image

logger = logging.getLogger(__name__)

DATA_DIR = "data"
WORK_DIR = ".work"
FOREGROUND_DIR = "foreground"
FAILURES_FILE = "failures.jsonl"
PREVIEW_FILE = "preview.png"
SOURCE_PREFIX = "source_"  # source columns whose names collide with the contract are renamed


# -- input ---------------------------------------------------------------------------------
def load_input(config: ViewGenerationConfig) -> Dataset:
    """The input split: ``sample:NAME`` (embedded), a saved dataset folder, or load_dataset args."""
    from datasets import load_dataset, load_from_disk

    name = config.dataset
    if name.startswith("sample:"):
        from ..data.samples import load_sample

        return load_sample(name.split(":", 1)[1])
    path = Path(name)
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = load_from_disk(str(path))
        return loaded[config.split] if hasattr(loaded, "keys") else loaded
    return load_dataset(name, config.dataset_config, split=config.split)


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
    if ("tc" in config.modes or "itc" in config.modes) and config.caption_column not in columns:
        raise KeyError(
            f"modes tc/itc need a caption column {config.caption_column!r} (columns: {', '.join(columns)})"
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
    """Fit on a seeded random sample of ``fg_sample_size`` rows (undecodable rows are skipped)."""
    n = min(config.fg_sample_size, len(dataset))
    rows = np.sort(np.random.default_rng(config.seed).permutation(len(dataset))[:n])
    sample = dataset.select(rows.tolist())

    def batches():
        for start in range(0, n, config.batch_size):
            images = []
            for value in sample[start : start + config.batch_size][config.image_column]:
                try:
                    images.append(decode_image(value))
                except ValueError:
                    continue
            if images:
                yield images

    return ForegroundScorer.fit(
        lambda images: components.encoder(images)[0], batches, components.encoder.grid, config.fg_share
    )


# -- the run ---------------------------------------------------------------------------------
def _shard_name(index: int, total: int) -> str:
    return f"train-{index:05d}-of-{total:05d}.parquet"


def _run_settings(config: ViewGenerationConfig, num_rows: int) -> dict:
    """What fixes the rows' content: a re-run with other values must not mix into the same folder."""
    keys = [
        "modes", "unclip_model", "text2img_model", "scorer_model", "model_revision", "num_inference_steps",
        "ic_guidance_scale", "height", "width", "fg_share", "noise_fg_edges", "noise_levels",
        "guidance_scales", "complexity_edges", "complexity_scorer", "seed", "shard_size", "dataset",
        "dataset_config", "split",
    ]  # fmt: skip
    settings = {key: getattr(config, key) for key in keys}
    settings["num_rows"] = num_rows
    return json.loads(json.dumps(settings))


def _check_or_write_settings(work: Path, settings: dict) -> None:
    path = work / "run.json"
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            raise ValueError(
                f"{work.parent} holds a run with other settings ({', '.join(changed)}): "
                "resume with the same settings or choose another output_dir"
            )
        return
    _atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_generator(
    components: Components, scorer: ForegroundScorer, config: ViewGenerationConfig
) -> ViewGenerator:
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
    )


def generate_views(
    dataset: Dataset,
    config: ViewGenerationConfig,
    *,
    components: Components | None = None,
    api=None,
) -> Path:
    """Generate the views dataset of ``dataset`` into ``config.output_dir``; returns the folder.

    Call it from every process of an ``accelerate launch``: each process takes its contiguous
    share of shards, the main process fits the scorer first and assembles the folder last.
    """
    from accelerate import PartialState
    from datasets.utils.logging import is_progress_bar_enabled
    from tqdm.auto import tqdm

    # Without a GPU, cpu=True is what makes a multi-process launch initialise gloo (else every
    # process would believe it runs alone).
    state = PartialState(cpu=not torch.cuda.is_available())
    out = Path(config.output_dir)
    data_dir, work, fg_dir = out / DATA_DIR, out / WORK_DIR, out / FOREGROUND_DIR
    source = prepare_source(dataset, config)
    num_rows = len(source)
    num_shards = math.ceil(num_rows / config.shard_size)
    if components is None:
        with state.main_process_first():  # the first load may write a cache (tiny components, Hub files)
            components = load_components(config, state.device)

    if state.is_main_process:
        for folder in (data_dir, work):
            folder.mkdir(parents=True, exist_ok=True)
        _check_or_write_settings(work, _run_settings(config, num_rows))
        if config.foreground_artifacts is not None:
            if Path(config.foreground_artifacts).resolve() != fg_dir.resolve():
                ForegroundScorer.load(config.foreground_artifacts).save(fg_dir)
        elif not ForegroundScorer.exists(fg_dir):
            fit_scorer(source, components, config).save(fg_dir)
    state.wait_for_everyone()
    scorer = ForegroundScorer.load(fg_dir)  # every process reads the same saved artifacts
    if tuple(scorer.grid) != tuple(components.encoder.grid):
        raise ValueError(
            f"foreground artifacts are for a {scorer.grid} token grid, the encoder has {components.encoder.grid}"
        )

    generator = build_generator(components, scorer, config)
    features = output_features(source.features, config.modes, config.image_column)
    first = num_shards * state.process_index // state.num_processes
    last = num_shards * (state.process_index + 1) // state.num_processes
    for stale in data_dir.glob(f".tmp-*-p{state.process_index}-*"):
        stale.unlink()
    todo = [k for k in range(first, last) if not (data_dir / _shard_name(k, num_shards)).exists()]
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
        write_shard(source, k, num_shards, generator, features, config, data_dir, work, state.process_index)
    state.wait_for_everyone()
    if state.is_main_process:
        assemble(out, config, num_shards, components, scorer)
        if config.push_to_hub:
            from ..hub import push_folder

            url = push_folder(
                out,
                config.push_to_hub,
                repo_type="dataset",
                private=config.private,
                revision=config.revision,
                commit_message=config.commit_message,
                ignore_patterns=[f"{WORK_DIR}/*", f"{DATA_DIR}/.tmp-*"],
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
    data_dir: Path,
    work: Path,
    process_index: int = 0,
) -> Path:
    """Generate shard ``index`` and publish it atomically: parquet to a temp name, then rename."""
    start = index * config.shard_size
    stop = min(start + config.shard_size, len(source))
    generator.row_offset = start
    function = generator
    if config.num_proc and config.num_proc > 1:  # workers build their own pipelines on GPU `rank`
        function = LazyViewGenerator(config, generator.scorer, row_offset=start)
    shard = source.select(range(start, stop)).map(
        function,
        batched=True,
        batch_size=config.batch_size,
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
    final = data_dir / _shard_name(index, num_shards)
    tmp = data_dir / f".tmp-{final.name}-p{process_index}-{os.getpid()}"
    _atomic_write_text(work / f"failures-{index:05d}.jsonl", "".join(json.dumps(f) + "\n" for f in failures))
    shard.to_parquet(str(tmp))
    os.replace(tmp, final)  # the shard exists whole or not at all
    return final


# -- assembling the folder ------------------------------------------------------------------
def assemble(
    out: Path, config: ViewGenerationConfig, num_shards: int, components: Components, scorer
) -> None:
    """Check every shard is there; write failures.jsonl, preview.png and the README card.

    Reads the shards' parquet footers (rows, bytes, features) and only the first rows the preview
    needs: a million-row views dataset is never loaded (or copied to the cache) whole.
    """
    import pyarrow.parquet as pq

    data_dir = out / DATA_DIR
    missing = [k for k in range(num_shards) if not (data_dir / _shard_name(k, num_shards)).exists()]
    if missing:
        raise RuntimeError(f"shards {missing} are missing in {data_dir}: run again to finish them")
    failures = []
    for k in range(num_shards):
        path = out / WORK_DIR / f"failures-{k:05d}.jsonl"
        if path.exists():
            failures += [json.loads(line) for line in path.read_text().splitlines() if line]
    _atomic_write_text(out / FAILURES_FILE, "".join(json.dumps(f) + "\n" for f in failures))
    files = [data_dir / _shard_name(k, num_shards) for k in range(num_shards)]
    footers = [pq.read_metadata(f) for f in files]
    num_rows = sum(m.num_rows for m in footers)
    num_bytes = sum(m.row_group(g).total_byte_size for m in footers for g in range(m.num_row_groups))
    features = Features.from_arrow_schema(pq.read_schema(files[0]))  # datasets' metadata in the footer
    columns = [config.image_column, schema.MASK] + [
        c for m in config.modes for c in (schema.view_column(m), schema.mask_column(m))
    ]
    write_preview(files, features, columns, out / PREVIEW_FILE, config.grid_rows)
    from .card import render_dataset_card

    card = render_dataset_card(
        features, num_rows, num_bytes, config, scorer, failures, components, num_shards
    )
    _atomic_write_text(out / "README.md", card)


def write_preview(
    files: list[Path], features: Features, columns: list[str], path: Path, rows: int, cell: int = 128
) -> None:
    """A PNG grid of the first ``rows`` rows with every image column present: per row the original,
    its mask, then each mode's view and mask. Reads the shards batch by batch and stops early."""
    import pyarrow.parquet as pq
    from PIL import Image as PILImage

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
