"""Tests of benchmarks/efficacy_weightings.py: the weightings screen measures known records."""

import numpy as np
import pytest


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
