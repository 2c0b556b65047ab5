"""Tests of the false-positive benchmark's own code (benchmarks/bench_efficacy.py): the summary and
its table on known results, the header naming every arm's seeds, the share of the oracle's gain, and a
reduced benchmark end to end that logs the weights' AUC and writes its report."""

import json
import math

import pytest

from genview_hf.benchmarks import bench_efficacy, efficacy_runs


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
