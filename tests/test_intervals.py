"""Bootstrap intervals on hand-checkable cases: constant data, seeded, paired, the ECDF band."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparseviz.audit.intervals import bootstrap, flipped_within, median_pixels, paired_median_difference, share
from sparseviz.audit.summary import summary_estimates, survival_estimates


def test_constant_data_has_a_zero_width_interval() -> None:
    assert share([1, 1, 1]) == share([1.0] * 3)
    estimate = share([1, 1, 1])
    assert (estimate.value, estimate.low, estimate.high) == (1.0, 1.0, 1.0)
    median = median_pixels([7, 7, 7, math.inf])  # the failed image is no flip: left out of the median
    assert (median.value, median.low, median.high) == (7.0, 7.0, 7.0)


def test_seeded_reproducible_and_inside_the_data() -> None:
    data = np.arange(20, dtype=float)
    first, again = bootstrap(data, np.mean), bootstrap(data, np.mean)
    assert first == again
    assert first.value == pytest.approx(9.5) and 0 <= first.low < 9.5 < first.high <= 19
    assert bootstrap(data, np.mean, seed=1) != first


def test_no_data_is_nan_and_bad_shapes_are_refused() -> None:
    assert math.isnan(share([]).value) and share([]).percent() == "-"
    with pytest.raises(ValueError, match="one number per image"):
        bootstrap(np.zeros((2, 2)), np.mean)
    with pytest.raises(ValueError, match="one pair per image"):
        paired_median_difference([1, 2], [1])


def test_flipped_within_is_the_ecdf_with_a_band() -> None:
    pixels = [1, 3, 3, 10, math.inf]
    estimates = flipped_within(pixels, [0, 1, 3, 100])
    assert [e.value for e in estimates] == [0.0, 0.2, 0.6, 0.8]
    assert all(e.low <= e.value <= e.high for e in estimates)
    assert estimates[0].high == 0.0  # nothing flips with 0 pixels in any resample


def test_paired_difference_resamples_pairs() -> None:
    same = paired_median_difference([5, 6, 7], [5, 6, 7])
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    shifted = paired_median_difference([6, 8, 10], [5, 7, 9])
    assert (shifted.value, shifted.low, shifted.high) == (1.0, 1.0, 1.0)  # unpaired resampling would spread this


def _row(pixels: int | None, survives: int = 1) -> dict:
    row = {"status": "attacked", "success": int(pixels is not None), "pixels": pixels if pixels is not None else ""}
    for name in ("jpeg95", "jpeg75", "half", "median3", "blur"):
        row.update({f"survives_{name}": survives if pixels else "", f"class_{name}": "dog" if pixels else "",
                    f"clean_ok_{name}": 1 if pixels else ""})
    return row


def test_summary_and_survival_tables_read_the_rows() -> None:
    rows = [_row(2), _row(4), _row(None), _row(8, survives=0)]
    named = {name: estimate for name, estimate, _ in summary_estimates(rows)}
    assert named["success rate (images fooled / attacked)"].value == 0.75
    assert named["median pixels (fooled images)"].value == 4
    assert named["flipped with at most 5 pixels"].value == 0.5
    table = survival_estimates(rows)
    assert table[0][1] == 3 and table[0][2].value == pytest.approx(2 / 3) and table[0][4] == "dog"
