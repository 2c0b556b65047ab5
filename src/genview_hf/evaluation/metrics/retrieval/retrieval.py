"""Retrieval metrics from the rank of the first correct match: R@1/5/10, mean and median rank.

An ``evaluate`` module shipped inside genview_hf and loaded by local path (hub-hosted metric
scripts cannot be fetched offline)::

    evaluate.load("<genview_hf>/evaluation/metrics/retrieval/retrieval.py")
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Recall at 1, 5 and 10 (share of queries whose first correct match is ranked within the first
K results, a fraction in [0, 1] like `accuracy`) and the mean and median rank of the first
correct match (1 = best). `predictions` holds one 1-based rank per query.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): per query, the 1-based rank of its first correct match.
Returns:
    R@1, R@5, R@10 (`float`): recall at K, a fraction in [0, 1].
    mean_rank, median_rank (`float`): of the first correct match, 1-based.
Examples:
    >>> metric = evaluate.load("path/to/retrieval.py")
    >>> metric.compute(predictions=[1, 1, 3, 20])["R@1"]
    0.5
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64")}),
        )

    def _compute(self, predictions):
        ranks = np.asarray(predictions, dtype=np.int64)
        if ranks.size == 0:
            raise ValueError("retrieval metric: no queries")
        if ranks.min() < 1:
            raise ValueError(f"retrieval metric: ranks are 1-based, got {int(ranks.min())}")
        result = {f"R@{k}": float((ranks <= k).mean()) for k in (1, 5, 10)}
        result["mean_rank"] = float(ranks.mean())
        result["median_rank"] = float(np.median(ranks))
        return result
