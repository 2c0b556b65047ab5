"""Evaluation of encoders: kNN, linear probe, zero-shot classification and image-text retrieval.

Functions take any encoder ``AutoModel`` loads (a folder, a Hub id or an in-memory model) and a
``datasets.Dataset``; metrics go through ``evaluate`` modules shipped in ``metrics/``; results
are flat dicts, written as ``eval_results.json`` and added to model cards. See docs/evaluation.md.
"""

from .callbacks import KNNMonitorCallback
from .card import add_eval_results_to_card, eval_results_from_dict, write_results
from .features import Encoder, extract_features, load_encoder
from .knn import knn_evaluate, knn_predict
from .linear import linear_probe
from .plots import plot_knn_curve, plot_pair_grid, plot_weight_histograms
from .protocols import PROTOCOLS, evaluate_encoder
from .retrieval import retrieval_evaluate, retrieval_ranks, retrieval_scores
from .zero_shot import DEFAULT_TEMPLATES, zero_shot_classifier, zero_shot_evaluate, zero_shot_predict

__all__ = [
    "DEFAULT_TEMPLATES",
    "Encoder",
    "KNNMonitorCallback",
    "PROTOCOLS",
    "add_eval_results_to_card",
    "eval_results_from_dict",
    "evaluate_encoder",
    "extract_features",
    "knn_evaluate",
    "knn_predict",
    "linear_probe",
    "load_encoder",
    "plot_knn_curve",
    "plot_pair_grid",
    "plot_weight_histograms",
    "retrieval_evaluate",
    "retrieval_ranks",
    "retrieval_scores",
    "write_results",
    "zero_shot_classifier",
    "zero_shot_evaluate",
    "zero_shot_predict",
]
