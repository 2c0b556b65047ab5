"""Tests of genview_hf.training.arguments (``GenViewTrainingArguments``): the momentum defaults
are the methods' own, the quality options need the mode and batches they act on, and the weighting
option needs pairs to weigh."""

from __future__ import annotations

import pytest

from genview_hf.data.collators import (
    RowIndexCollator,
)
from genview_hf.methods import METHODS
from genview_hf.testing.controlled import controlled_views
from genview_hf.training import GenViewTrainingArguments
from training_helpers import make_args


@pytest.mark.parametrize(
    "method, momentum, schedule",
    [
        ("mocov2", 0.999, "constant"),
        ("leoclr", 0.999, "constant"),
        ("mocov3", 0.99, "cosine"),
        ("byol", 0.996, "cosine"),
    ],
)  # MoCo v2 main_moco.py --moco-m 0.999; moco-v3 main_moco.py 0.99 --moco-m-cos; BYOL tau_base 0.996
def test_momentum_defaults_are_the_methods(tmp_path, method, momentum, schedule):
    args = make_args(tmp_path, method, momentum=None, momentum_schedule=None)
    assert (args.momentum, args.momentum_schedule) == (momentum, schedule)
    assert (METHODS[method].momentum, METHODS[method].momentum_schedule) == (momentum, schedule)
    kept = make_args(tmp_path, method, momentum=0.9, momentum_schedule="cosine")
    assert (kept.momentum, kept.momentum_schedule) == (0.9, "cosine")


def test_methods_without_a_momentum_encoder_have_no_momentum(tmp_path):
    assert make_args(tmp_path, "simsiam", momentum=None, momentum_schedule=None).momentum is None


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
