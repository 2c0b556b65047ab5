"""Classification accuracy from ranked predictions: top-1, top-5 and mean per-class accuracy.

An ``evaluate`` module shipped inside genview_hf and loaded by local path (hub-hosted metric
scripts cannot be fetched offline)::

    evaluate.load("<genview_hf>/evaluation/metrics/classification/classification.py")
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Top-1 and top-5 accuracy and mean per-class accuracy (the average over classes present in the
references of each class's top-1 accuracy). `predictions` holds, per example, the predicted
labels ranked best first (at least one); `references` the true label.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): predicted labels per example, best first.
    references (`list` of `int`): the true label per example.
Returns:
    top1 (`float`): share of examples whose first prediction is right.
    top5 (`float`): share whose true label is among the first five predictions (only when
        every example has at least five predictions).
    mean_per_class_accuracy (`float`): top-1 accuracy averaged over the classes in `references`.
Examples:
    >>> metric = evaluate.load("path/to/classification.py")
    >>> metric.compute(predictions=[[0, 1], [1, 0]], references=[0, 0])
    {'top1': 0.5, 'mean_per_class_accuracy': 0.5}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references):
        if len(references) == 0:
            raise ValueError("classification metric: no examples")
        width = min(len(row) for row in predictions)
        if width < 1:
            raise ValueError("classification metric: every example needs at least one predicted label")
        ranked = np.asarray([row[:width] for row in predictions], dtype=np.int64)  # (N, width)
        references = np.asarray(references, dtype=np.int64)  # (N,)
        correct1 = ranked[:, 0] == references  # (N,)
        result = {"top1": float(correct1.mean())}
        if width >= 5:
            result["top5"] = float((ranked[:, :5] == references[:, None]).any(axis=1).mean())
        classes = np.unique(references)
        result["mean_per_class_accuracy"] = float(
            np.mean([correct1[references == c].mean() for c in classes])
        )
        return result
