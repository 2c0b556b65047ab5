"""Tests of genview_hf.evaluation.statistics on known inputs: the ROC AUC, the t interval and the
bootstrap, the paired gains and the share of the cost recovered, the binned curve."""

import math

import numpy as np
import pytest
from scipy import stats

from genview_hf.evaluation.statistics import (
    binned_curve,
    bootstrap_interval,
    paired,
    roc_auc,
    share_recovered,
    t_interval,
)


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
