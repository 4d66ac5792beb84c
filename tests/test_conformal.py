"""Split-conformal intervals: the rank rule, the scaling, and coverage on exchangeable data."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import conformal


def test_the_half_width_is_the_corrected_rank_of_the_scaled_errors():
    errors = np.arange(1.0, 20.0)[:, None] * np.array([[1.0, 2.0]])  # 19 windows, 2 steps
    widths = conformal.calibrate(np.zeros_like(errors), errors, np.full(19, 0.5), levels=(80, 95))
    # ceil(20 * 0.8) = 16th and ceil(20 * 0.95) = 19th smallest of |error| / 0.5
    np.testing.assert_array_equal(widths[80], [32.0, 64.0])
    np.testing.assert_array_equal(widths[95], [38.0, 76.0])
    too_few = conformal.calibrate(np.zeros((5, 1)), np.ones((5, 1)), np.ones(5), levels=(95,))
    assert np.isinf(too_few[95]).all()  # 5 windows cannot promise 95 %


def test_intervals_scale_with_each_window():
    lo_hi = conformal.intervals(np.array([[10.0], [1000.0]]), np.array([1.0, 100.0]), {80: np.array([2.0])})
    np.testing.assert_array_equal(lo_hi[80][0], [[8.0], [800.0]])
    np.testing.assert_array_equal(lo_hi[80][1], [[12.0], [1200.0]])


@pytest.mark.parametrize("level", [80, 95])
def test_coverage_holds_on_exchangeable_windows_at_every_price_level(level):
    """Heavy-tailed errors proportional to each window's scale, scales over four orders
    of magnitude: coverage of fresh windows is close to nominal, step by step."""
    g = np.random.default_rng(level)
    def draw(n):
        scale = 10.0 ** g.uniform(-1, 3, n)
        truth = g.normal(size=(n, 3)) * 100
        return truth + scale[:, None] * g.standard_t(3, size=(n, 3)) * np.array([1.0, 2.0, 4.0]), truth, scale
    pred, truth, scale = draw(2000)
    widths = conformal.calibrate(pred, truth, scale, levels=(level,))
    pred, truth, scale = draw(20000)
    lo, hi = conformal.intervals(pred, scale, widths)[level]
    covered = ((lo <= truth) & (truth <= hi)).mean(axis=0)
    assert np.all(np.abs(covered - level / 100) < 0.02), covered
