"""Rows of the controlled set (genview_hf.testing.controlled) for the tests of the quality options."""

from genview_hf.data.collators import (
    RowIndexed,
)
from genview_hf.testing.controlled import controlled_views


def _pair_rows(count: int = 6):
    return [RowIndexed(controlled_views(count, 0.5, seed=1))[index] for index in range(count)]
