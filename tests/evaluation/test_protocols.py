"""Tests of genview_hf.evaluation.protocols: ``evaluate_encoder`` runs the protocols it is asked for,
needs labels for kNN and the linear probe, names a row without one and an unknown protocol."""

import pytest

from _evaluation_fixtures import cell_dataset, clusters
from genview_hf.evaluation import (
    evaluate_encoder,
    knn_evaluate,
    linear_probe,
)
from genview_hf.testing import (
    tiny_vit,
)


def test_knn_and_linear_need_labels():
    train_x, train_y, test_x, test_y = clusters()
    with pytest.raises(ValueError, match="labels are missing"):
        knn_evaluate(train_x, None, test_x, test_y)
    with pytest.raises(ValueError, match="400 features but 3 labels"):
        linear_probe(train_x, train_y[:3], test_x, test_y)
    unlabelled = cell_dataset(range(8))
    vit, processor = tiny_vit()
    for protocol in ("knn", "linear"):
        with pytest.raises(KeyError, match="no 'label' column"):
            evaluate_encoder(
                vit, unlabelled, train_dataset=unlabelled, protocols=[protocol], processor=processor
            )
    with pytest.raises(ValueError, match="need a labelled train_dataset"):
        evaluate_encoder(vit, unlabelled, protocols=["knn"], processor=processor)
    minus_one = cell_dataset(range(4), labels=[0, 1, -1, 0])
    with pytest.raises(ValueError, match="row 2"):
        evaluate_encoder(vit, minus_one, train_dataset=minus_one, protocols=["knn"], processor=processor)


def test_unknown_protocol_is_named():
    vit, processor = tiny_vit()
    with pytest.raises(ValueError, match="knnn"):
        evaluate_encoder(vit, cell_dataset(range(2)), protocols=["knnn"], processor=processor)
