"""The false-positive benchmark and the options it measures, each against truth or a hand computation:
the controlled set is what it says (checked with the ground-truth masks), the AUC logging and the
summary statistics on known inputs, a reduced benchmark end to end, and our quality options (stored
masks in the frozen mode, geometric views, centred cosines, the pair figure of every batch kind)."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from genview_hf.benchmarks import bench_efficacy, efficacy_runs
from genview_hf.data.collators import (
    ROW_INDICES,
    GeometricViewsCollator,
    RowIndexCollator,
    RowIndexed,
    build_collator,
)
from genview_hf.evaluation.statistics import (
    binned_curve,
    bootstrap_interval,
    paired,
    roc_auc,
    share_recovered,
    t_interval,
)
from genview_hf.modeling.features import masks_to_tokens
from genview_hf.quality import pair_quality, pair_weights
from genview_hf.testing.controlled import FALSE_POSITIVE, controlled_views
from genview_hf.testing.samples import COLOURS, SHADE
from genview_hf.training import FrozenQualityModel, GenViewTrainingArguments, QualityWeights, quality_weights
from genview_hf.training.quality_modes import PairWeighting


# ---------------------------------------------------------------------------------- the controlled set
@pytest.fixture(scope="module")
def controlled():
    return controlled_views(72, 0.5, seed=3)


def _object_colours(image: np.ndarray, mask: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(pixel) for pixel in image[mask]}


def _palette(colour: int) -> set[tuple[int, ...]]:
    rgb = np.asarray(list(COLOURS.values())[colour], dtype=np.float32)
    return {
        tuple(np.clip(rgb, 0, 255).astype(np.uint8)),
        tuple(np.clip(rgb * SHADE, 0, 255).astype(np.uint8)),
    }


def test_false_views_are_another_object_on_the_originals_own_background(controlled):
    false_rows = [row for row in controlled if row[FALSE_POSITIVE]]
    assert len(false_rows) == 36  # exactly the rate
    for row in false_rows:
        image, view = np.asarray(row["image"]), np.asarray(row["view_ic"])
        mask, view_mask = np.asarray(row["mask"]) > 127, np.asarray(row["mask_ic"]) > 127
        background = ~mask & ~view_mask
        assert background.mean() > 0.4
        np.testing.assert_array_equal(
            view[background], image[background]
        )  # the same background, pixel for pixel
        assert _object_colours(image, mask) <= _palette(row["label"])  # the label is the object's colour
        other = _object_colours(view, view_mask)
        assert not other & _palette(row["label"])  # another colour
        assert other <= set().union(*(_palette(c) for c in range(len(COLOURS)) if c != row["label"]))


def test_clean_views_are_the_same_object_on_another_background(controlled):
    clean_rows = [row for row in controlled if not row[FALSE_POSITIVE]]
    assert len(clean_rows) == 36
    for row in clean_rows:
        image, view = np.asarray(row["image"]), np.asarray(row["view_ic"])
        mask, view_mask = np.asarray(row["mask"]) > 127, np.asarray(row["mask_ic"]) > 127
        assert _object_colours(view, view_mask) <= _palette(row["label"])  # the same colour
        assert abs(int(view_mask.sum()) - int(mask.sum())) < 0.5 * mask.sum()  # about the same size
        background = ~mask & ~view_mask
        same = np.all(view[background] == image[background], axis=-1)
        assert same.mean() < 0.1  # another background


def test_the_set_is_seeded_balanced_and_the_test_split_has_no_false_views(controlled):
    again = controlled_views(72, 0.5, seed=3)
    assert again[FALSE_POSITIVE] == controlled[FALSE_POSITIVE]
    assert np.array_equal(np.asarray(again[5]["view_ic"]), np.asarray(controlled[5]["view_ic"]))
    assert np.bincount(controlled["label"]).tolist() == [12] * 6  # colours cycle
    test = controlled_views(12, 0.0, seed=3, split="test")
    assert not any(test[FALSE_POSITIVE])
    assert not np.array_equal(np.asarray(test[0]["image"]), np.asarray(controlled[0]["image"]))
    with pytest.raises(ValueError, match="false_positive_rate"):
        controlled_views(8, 1.5)


# ---------------------------------------------------------------------------------- statistics
def test_roc_auc_on_known_inputs():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 1]) == 0.5  # ties count half
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of the 4 pairs ordered right
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert math.isnan(roc_auc([0.3, 0.4], [1, 1]))
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=200), rng.random(200) < 0.5
    u = stats.mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert roc_auc(scores, labels) == pytest.approx(u / (labels.sum() * (~labels).sum()))


def test_t_interval_and_bootstrap_on_known_inputs():
    summary = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    se = math.sqrt(2.5) / math.sqrt(5)
    assert summary["mean"] == 3.0 and summary["se"] == pytest.approx(se)
    assert summary["high"] - 3.0 == pytest.approx(2.7764451 * se, rel=1e-6)  # t(0.975, 4 dof)
    assert bootstrap_interval([0.4] * 6) == (0.4, 0.4)
    low, high = bootstrap_interval([0.1, 0.2, 0.3, 0.4, 0.5])
    assert 0.1 <= low <= 0.3 <= high <= 0.5


def test_paired_gains_and_the_share_of_the_cost_recovered():
    scores = {"off": {1: 0.5, 2: 0.6, 3: 0.7}, "ours": {1: 0.55, 2: 0.65, 4: 0.9}}
    seeds, gains = paired(scores, "ours", "off")
    assert seeds == [1, 2] and np.allclose(gains, [0.05, 0.05])
    share = share_recovered([0.05, 0.05, 0.05], [0.1, 0.1, 0.1])
    assert share == {"share": pytest.approx(0.5), "low": pytest.approx(0.5), "high": pytest.approx(0.5)}
    assert share_recovered([0.0, 0.1], [0.1, 0.1])["share"] == pytest.approx(0.5)


def test_binned_curve():
    steps, values = binned_curve([(1, 0.5), (5, 0.7), (11, 0.9), (12, float("nan"))], 10)
    assert steps.tolist() == [5.0, 15.0] and values.tolist() == pytest.approx([0.6, 0.9])


def _known_results(labels):
    """Three seeds of four arms; shape scores 0.1 below the colour ones, ours' colour gain 0.05 above its shape gain."""
    results = []
    for seed in (0, 1, 2):
        for arm, knn, auc, share in (
            ("untrained", 0.6, [], []),
            ("off", 0.7 + 0.01 * seed, [], []),
            ("ours", 0.75 + 0.01 * seed, [(1, 0.8), (2, 0.9)], [(1, 0.2), (2, 0.4)]),
            ("clean_only", 0.8 + 0.01 * seed, [], []),
        ):
            scores = {
                "shape": {"knn_shape": knn - 0.1, "linear_shape": knn - 0.1},
                "colour": {"knn_colour": knn + 0.05 if arm == "ours" else knn, "linear_colour": knn},
                "old": {"knn_top1": knn, "linear_top1": knn},  # runs from before the shape label
            }
            record = {"arm": arm, "seed": seed, "seconds": 1.0, "weight_auc": auc, "false_share": share}
            for label in labels:
                record.update(scores[label])
            results.append(record)
    return results


def test_the_summary_on_known_results():
    summary = bench_efficacy.summarize(
        _known_results(["shape", "colour"]), ["off", "ours", "clean_only"], label="shape"
    )
    ours = summary["ours"]
    assert ours["scored_on"] == "shape"
    assert ours["gain"]["mean"] == pytest.approx(0.05) and ours["seeds_better"] == 3
    assert ours["second_label"] == "colour"
    assert ours["second_gain"]["mean"] == pytest.approx(0.1)  # its shape gain and 0.05 more
    assert ours["share_recovered"]["share"] == pytest.approx(0.5)
    assert ours["auc_median"] == pytest.approx(0.85) and ours["false_share"] == pytest.approx(0.3)
    assert summary["untrained"]["knn_median"] == pytest.approx(0.5)
    text = bench_efficacy.table(summary)
    assert "| frozen + masks + geometric views + centred (ours) (`ours`) | 66.0" in text
    assert "kNN top-1 (shape)" in text and "kNN colour" in text
    # runs from before the shape label are read as colour scores, with no colour column beside them
    old = bench_efficacy.summarize(_known_results(["old"]), ["off", "ours", "clean_only"])
    assert old["ours"]["scored_on"] == "colour" and "second_gain" not in old["ours"]
    assert "| frozen + masks + geometric views + centred (ours) (`ours`) | 76.0" in bench_efficacy.table(old)
    by_shape = bench_efficacy.summarize(
        _known_results(["shape", "colour"]), ["off", "ours"]
    )  # shape by default
    assert (
        by_shape["ours"]["gain"]["mean"] == pytest.approx(0.05)
        and by_shape["ours"]["second_label"] == "colour"
    )
    with pytest.raises(ValueError, match="not all scored on 'shape'"):
        bench_efficacy.summarize(_known_results(["old"]), ["off", "ours"], label="shape")


def test_the_header_names_every_arms_seeds_in_the_log_not_only_this_calls():
    results = [{"arm": arm, "seed": seed} for arm in ("off", "oracle") for seed in range(100, 110)]
    results += [{"arm": "frozen_pretrained", "seed": seed} for seed in range(100, 106)]
    line = bench_efficacy.seeds_per_arm(results, ["off", "oracle", "frozen_pretrained", "ours"])
    assert line == "off, oracle: seeds 100-109 (10); frozen_pretrained: seeds 100-105 (6)"


def test_without_the_ceiling_the_share_is_of_the_oracles_gain_on_the_seeds_both_ran():
    results = [
        {**result, "arm": "oracle"} if result["arm"] == "clean_only" else result
        for result in _known_results(["colour"])
        if not (result["arm"] == "clean_only" and result["seed"] == 2)  # the oracle ran seeds 0 and 1
    ]
    for result in results:
        if result["arm"] == "ours" and result["seed"] == 2:
            result["knn_colour"] += 0.3  # a gain of 0.4 on the seed the oracle did not run
    summary = bench_efficacy.summarize(results, ["off", "ours", "oracle"])
    assert summary["ours"]["share_of"] == "oracle" and "share_recovered" not in summary["oracle"]
    # on seeds 0 and 1 ours and the oracle both gain 0.1 (on all three seeds ours would be 2x the oracle)
    assert summary["ours"]["share_recovered"]["share"] == pytest.approx(1.0)
    assert "share of the oracle's gain recovered" in bench_efficacy.table(summary)


# ---------------------------------------------------------------------------------- a reduced benchmark
def test_a_reduced_benchmark_logs_the_weights_auc_and_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.setitem(efficacy_runs.PRETRAIN, "rows", 32)  # a pretrained encoder of 2 steps, built once
    monkeypatch.setitem(efficacy_runs.PRETRAIN, "steps", 2)
    arms = ["off", "ours_row_memory_pretrained", "oracle", "clean_only"]  # row memory, pretrained encoder
    argv = ["--arms", *arms, "--seeds", "2", "--steps", "3", "--rows", "48", "--test-rows", "24"]
    argv += [
        "--batch-size",
        "8",
        "--workers",
        "1",
        "--output-dir",
        str(tmp_path),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert bench_efficacy.main(argv) == 0
    assert (tmp_path / "cache" / "pretrained-encoder-32rows-2steps-seed0" / "config.json").is_file()
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert {(run["arm"], run["seed"]) for run in runs} == {
        (arm, seed) for arm in ("untrained", *arms) for seed in (100, 101)
    }
    for run in runs:
        assert {"knn_shape", "linear_shape", "knn_colour", "linear_colour"} <= set(run)
        if run["arm"] in ("ours_row_memory_pretrained", "oracle"):
            assert [step for step, _ in run["weight_auc"]] == [1, 2, 3]  # one AUC per training step
            aucs = [auc for _, auc in run["weight_auc"] if not math.isnan(auc)]
            assert aucs and all(0.0 <= auc <= 1.0 for auc in aucs)
            assert all(0.0 <= share <= 1.0 for _, share in run["false_share"])
            if run["arm"] == "oracle":
                assert aucs == [1.0] * len(aucs)  # the flags themselves separate perfectly
                assert [share for _, share in run["false_share"]] == [0.0] * 3
        elif run["arm"] != "untrained":
            assert run["weight_auc"] == []
    summary = json.loads((tmp_path / "summary.json").read_text())["arms"]
    assert {"gain", "share_recovered", "auc_median", "second_gain"} <= set(
        summary["ours_row_memory_pretrained"]
    )
    assert (tmp_path / "efficacy.png").stat().st_size > 0
    assert "in-training AUC" in (tmp_path / "table.md").read_text()
    # --report re-summarises the saved runs without training: the same table
    assert bench_efficacy.main(["--report", str(tmp_path), "--output-dir", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "table.md").read_text() == (tmp_path / "table.md").read_text()
    # --resume keeps the runs it finds (a cut-off last line is run again) and runs only the missing ones
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    kept = [line for line in lines if (json.loads(line)["arm"], json.loads(line)["seed"]) != ("oracle", 101)]
    (tmp_path / "runs.jsonl").write_text("\n".join([*kept, '{"arm": "oracle", "se']) + "\n")
    assert bench_efficacy.main([*argv, "--resume"]) == 0
    resumed = bench_efficacy.read_runs(tmp_path / "runs.jsonl")
    assert sorted((run["arm"], run["seed"]) for run in resumed) == sorted(
        (run["arm"], run["seed"]) for run in runs
    )
    assert [json.dumps(run) for run in resumed[: len(kept)]] == kept  # only the missing run was run again
    assert len(resumed) == len(kept) + 1


# ---------------------------------------------------------------------------------- our options
def test_centred_cosines_against_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    tokens_1, tokens_2 = torch.rand(3, 4, 5, generator=g), torch.rand(3, 6, 5, generator=g)  # non-negative
    masks_1, masks_2 = torch.rand(3, 4, generator=g), torch.rand(3, 6, generator=g)
    mean = torch.cat([tokens_1, tokens_2], 1).reshape(-1, 5).mean(0)  # every token of both views
    expected = []
    for i in range(3):
        pooled = []
        for tokens, fg in ((tokens_1[i] - mean, masks_1[i]), (tokens_2[i] - mean, masks_2[i])):
            pooled.append((fg / fg.sum() @ tokens, (1 - fg) / (1 - fg).sum() @ tokens))
        (a_fg, a_bg), (b_fg, b_bg) = pooled
        expected.append(F.cosine_similarity(a_fg, b_fg, 0) - F.cosine_similarity(a_bg, b_bg, 0))
    centred = pair_quality(tokens_1, tokens_2, masks1=masks_1, masks2=masks_2, center=True)
    torch.testing.assert_close(centred, torch.stack(expected))
    plain = pair_quality(tokens_1, tokens_2, masks1=masks_1, masks2=masks_2)
    assert centred.std() > 3 * plain.std()  # non-negative features: the plain cosines bunch together


def _pair_rows(count: int = 6):
    return [RowIndexed(controlled_views(count, 0.5, seed=1))[index] for index in range(count)]


def test_geometric_views_are_the_training_crops_without_their_colour_operations():
    rows = _pair_rows()
    wrapped = GeometricViewsCollator(build_collator("mocov3", image_size=32, masks=True, seed=0))
    batch = wrapped(rows)
    plain = build_collator("mocov3", image_size=32, masks=True, seed=0)
    augmentations = plain.augmentations
    plain.augmentations = type(augmentations)(
        view_1=augmentations.view_1.geometry_only(), view_2=augmentations.view_2.geometry_only()
    )
    geometric = plain(rows)
    for side in ("1", "2"):
        torch.testing.assert_close(batch[f"quality_pixel_values_{side}"], geometric[f"pixel_values_{side}"])
        torch.testing.assert_close(batch[f"masks_{side}"], geometric[f"masks_{side}"])  # the same crops
    assert not torch.allclose(batch["pixel_values_1"], batch["quality_pixel_values_1"])  # jitter etc. differ
    wrapped.seed = 5  # attribute writes reach the collator the trainer seeds
    assert wrapped.collator.seed == 5
    with pytest.raises(ValueError, match="rows need their index"):
        wrapped([{key: value for key, value in row.items() if key != "__index__"} for row in rows])


def test_frozen_mode_with_stored_masks_and_geometric_views_against_a_hand_computation():
    from genview_hf.testing import tiny_resnet

    resnet, processor = tiny_resnet()
    rows = _pair_rows()
    batch = GeometricViewsCollator(build_collator("mocov3", image_size=32, masks=True, seed=0))(rows)
    frozen = FrozenQualityModel(resnet, processor=processor)  # the pixels already use its statistics
    weights = quality_weights(
        "frozen", batch, None, frozen=frozen, gamma=2.0, multi_positive=False, center=True, foreground="masks"
    )
    with torch.no_grad():  # the frozen ResNet's feature map of the geometric views, as tokens
        maps = [resnet(pixel_values=batch[f"quality_pixel_values_{side}"]).last_hidden_state for side in "12"]
    tokens = [fmap.flatten(2).transpose(1, 2) for fmap in maps]
    masks = [masks_to_tokens(batch[f"masks_{side}"], tokens[0].shape[1]) for side in "12"]
    q = pair_quality(*tokens, masks1=masks[0], masks2=masks[1], center=True)
    torch.testing.assert_close(weights.pairs, len(q) * torch.softmax(2.0 * q, 0))
    assert frozen.direction is None  # the masks need no direction


def test_the_options_need_the_mode_and_batches_they_act_on(tmp_path):
    def args(**kwargs):
        return GenViewTrainingArguments(output_dir=str(tmp_path), report_to="none", **kwargs)

    assert args(quality_mode="frozen", quality_foreground="masks").needs_masks
    assert not args(quality_mode="frozen").needs_masks
    with pytest.raises(ValueError, match="options of quality_mode='frozen'"):
        args(quality_mode="stored", quality_views="geometric")
    with pytest.raises(ValueError, match="quality_mode is 'off'"):
        args(quality_mode="off", quality_center=True)
    with pytest.raises(ValueError, match="GenView\\+\\+ multi-positive"):
        args(method="clip", multi_positive=True, quality_mode="stored", quality_center=True)
    assert args(quality_mode="stored", quality_center=True).quality_center


def test_the_pair_figure_shows_every_kind_of_weighted_batch():
    n, v = 3, 4
    pixels = {
        key: torch.randn(n, 3, 8, 8) for key in ("pixel_values_1", "pixel_values_2", "pixel_values_orig")
    }
    first, second, weights = QualityWeights(pairs=torch.arange(3.0)).figure_pairs(pixels)
    assert first is pixels["pixel_values_1"] and second is pixels["pixel_values_2"]
    leoclr = QualityWeights(original_pairs=torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    first, second, weights = leoclr.figure_pairs(pixels)
    assert weights.tolist() == [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]  # (original, crop 1) pairs, then crop 2
    torch.testing.assert_close(second[n:], pixels["pixel_values_2"])
    torch.testing.assert_close(first[:n], pixels["pixel_values_orig"])
    plus = {"pixel_values": torch.randn(n, v, 3, 8, 8), "pixel_values_real": torch.randn(n, 3, 8, 8)}
    image_text = torch.rand(n, v)
    first, second, weights = QualityWeights(image_text=image_text).figure_pairs(plus)
    assert first.shape == second.shape == (n * v, 3, 8, 8)
    torch.testing.assert_close(first[v + 1], plus["pixel_values_real"][1])  # the real image beside ...
    torch.testing.assert_close(second[v + 1], plus["pixel_values"][1, 1])  # ... each of its views
    assert weights[v + 1] == image_text[1, 1]
    assert QualityWeights(pairs=torch.ones(3)).figure_pairs({}) is None


def test_the_benchmarks_arms_are_valid_training_arguments(tmp_path):
    size = efficacy_runs.Size()
    for name, arm in {**efficacy_runs.ARMS, **efficacy_runs.LEVERS}.items():
        args = efficacy_runs.training_arguments(arm, 0, size, tmp_path / name, tmp_path)
        assert args.quality_mode in ("off", "stored", "frozen")


def test_the_frozen_modes_weighting_option_weights_the_hand_computed_qualities():
    from genview_hf.testing import tiny_resnet

    resnet, processor = tiny_resnet()
    rows = _pair_rows()
    batch = RowIndexCollator(
        GeometricViewsCollator(build_collator("mocov3", image_size=32, masks=True, seed=0))
    )(rows)
    assert batch[ROW_INDICES].tolist() == list(range(len(rows)))  # each row's dataset index
    frozen = FrozenQualityModel(resnet, processor=processor)
    with torch.no_grad():
        maps = [resnet(pixel_values=batch[f"quality_pixel_values_{side}"]).last_hidden_state for side in "12"]
    tokens = [fmap.flatten(2).transpose(1, 2) for fmap in maps]
    masks = [masks_to_tokens(batch[f"masks_{side}"], tokens[0].shape[1]) for side in "12"]
    q = pair_quality(*tokens, masks1=masks[0], masks2=masks[1], center=True)

    def weights(weighting, **kwargs):
        return quality_weights(
            "frozen", batch, None, frozen=frozen, gamma=1.0, multi_positive=False, center=True,
            foreground="masks", weighting=weighting, **kwargs,
        ).pairs  # fmt: skip

    torch.testing.assert_close(weights(PairWeighting("threshold")), pair_weights(q, "threshold"))
    torch.testing.assert_close(weights(None), pair_weights(q))  # None: the papers' softmax
    torch.testing.assert_close(
        weights(PairWeighting("annealed"), progress=0.5), pair_weights(q, "annealed", 1.0, progress=0.5)
    )
    memory = PairWeighting("row_memory")
    weights(memory)
    second = weights(memory)  # the same rows again: their smoothed q is the mean of the two visits
    torch.testing.assert_close(second, pair_weights(q, "threshold"))
    assert memory.memory.count.tolist() == [2] * len(rows)
    batch.pop(ROW_INDICES)
    with pytest.raises(ValueError, match="needs each row's dataset index"):
        weights(PairWeighting("row_memory"))
    with pytest.raises(ValueError, match="unknown quality_weighting 'hard'"):
        PairWeighting("hard")
    with pytest.raises(ValueError, match="the rows need it"):
        RowIndexCollator(build_collator("mocov3", image_size=32, seed=0))(
            [{k: v for k, v in rows[0].items() if k != "__index__"}]
        )


def test_the_weighting_option_needs_pairs_to_weigh(tmp_path):
    from genview_hf.training import builders

    def args(**kwargs):
        return GenViewTrainingArguments(output_dir=str(tmp_path), report_to="none", **kwargs)

    assert args(quality_mode="stored", quality_weighting="threshold").quality_weighting == "threshold"
    with pytest.raises(ValueError, match="quality_mode is 'off'"):
        args(quality_mode="off", quality_weighting="rank_cut")
    with pytest.raises(ValueError, match="LeOCLR weighs two pairs per row"):
        args(method="leoclr", quality_mode="frozen", quality_weighting="row_memory")
    with pytest.raises(ValueError, match="GenView\\+\\+ multi-positive"):
        args(method="clip", multi_positive=True, quality_mode="stored", quality_weighting="sigmoid")
    with pytest.raises(ValueError, match="quality_weighting"):
        args(quality_mode="frozen", quality_weighting="hard")
    rows = controlled_views(8, 0.5, seed=1)
    from genview_hf.testing import tiny_resnet

    _, processor = tiny_resnet()
    built = builders.collator(args(quality_mode="frozen", quality_weighting="row_memory"), processor, rows)
    assert isinstance(built, RowIndexCollator)
    assert not isinstance(builders.collator(args(quality_mode="frozen"), processor, rows), RowIndexCollator)


def test_the_weightings_screen_measures_known_records():
    from genview_hf.benchmarks import efficacy_weightings

    records = [{"q": [1.0, -1.0, 0.5, -0.5], "rows": [0, 1, 2, 3]}] * 2
    false_rows = np.array([False, True, False, True])
    found = efficacy_weightings.measure(records, false_rows)
    assert found["threshold"]["false_share"] == 0.0 and found["threshold"]["effective_pairs"] == 2.0
    assert found["oracle"] == found["threshold"]  # q > 0 is exactly the clean pairs here
    softmax = np.exp([1.0, -1.0, 0.5, -0.5])
    assert found["softmax"]["false_share"] == pytest.approx(softmax[[1, 3]].sum() / softmax.sum())
    assert found["softmax"]["auc"] == 1.0
    assert found["softmax"]["effective_pairs"] == pytest.approx(softmax.sum() ** 2 / (softmax**2).sum())
    separation = efficacy_weightings.separation(records, false_rows)
    assert separation["clean_mean"] == 0.75 and separation["false_above_0"] == 0.0
