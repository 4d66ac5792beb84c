"""The statistical baselines through statsforecast: one fit per window, in window order,
with prediction intervals that cover what they say on series with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import windows
from pipeline.evaluation import baselines


def rng(seed=0):
    return np.random.default_rng(seed)


def test_naive_and_drift_are_the_closed_forms_window_by_window():
    histories = 100.0 + np.cumsum(rng(0).normal(size=(7, 30)), axis=1)
    got = baselines.fit_forecasts(histories, 5, ())
    assert set(got.points) == {"naive", "drift"} and got.specs == {}
    inputs = histories[:, :, None]
    np.testing.assert_allclose(got.points["naive"], windows.naive_forecast(inputs, 5), rtol=1e-12)
    np.testing.assert_allclose(got.points["drift"], windows.drift_forecast(inputs, 5), rtol=1e-9)


def test_auto_arima_takes_the_drift_of_a_random_walk_with_drift():
    y = 50.0 + np.cumsum(2.0 + rng(2).normal(size=300))
    got = baselines.fit_forecasts(y[None], 10, ("autoarima",))
    assert got.specs["autoarima"][0].startswith("ARIMA(") and "drift" in got.specs["autoarima"][0]
    steps = np.diff(np.r_[y[-1], got.points["autoarima"][0]])
    assert steps == pytest.approx(np.full(10, 2.0), abs=0.4)


def test_auto_ets_chooses_a_trend_only_when_there_is_one():
    g = rng(3)
    series = np.stack([100.0 + 3.0 * np.arange(80) + g.normal(size=80), 100.0 + g.normal(size=80)])
    got = baselines.fit_forecasts(series, 5, ("autoets",))
    trending, level = got.specs["autoets"]
    assert trending.split(",")[1] in {"A", "Ad"} and level.split(",")[1] == "N", got.specs
    assert np.all(np.diff(got.points["autoets"][0]) > 2.0)
    assert np.ptp(got.points["autoets"][1]) == pytest.approx(0.0, abs=1e-9)  # a flat line at the level


def test_intervals_nest_and_cover_a_random_walk_as_often_as_they_say():
    """Gaussian random walks: naive's 80 % and 95 % intervals are exact there, so their
    coverage over many windows must be near nominal (and the columns not swapped)."""
    walks = np.cumsum(rng(4).normal(size=(400, 61)), axis=1) + 1000.0
    history, future = walks[:, :50], walks[:, 50:]
    got = baselines.fit_forecasts(history, 11, ("autoets",))
    for method in ("naive", "autoets"):
        lo80, hi80 = got.intervals[method][80]
        lo95, hi95 = got.intervals[method][95]
        point = got.points[method]
        assert np.all(lo95 <= lo80) and np.all(lo80 <= point) and np.all(point <= hi80) and np.all(hi80 <= hi95)
    for level, (lo, hi) in got.intervals["naive"].items():
        covered = np.mean((lo <= future) & (future <= hi))
        assert abs(covered - level / 100) < 0.04, (level, covered)


def test_every_window_is_its_own_fit_whatever_the_chunks_and_workers():
    histories = 100.0 + np.cumsum(rng(5).normal(size=(9, 40)), axis=1)
    done = []
    one = baselines.fit_forecasts(histories, 7, ("autoarima", "autoets"), workers=1, progress=done.append, chunk=4)
    assert done == [4, 4, 1]
    two = baselines.fit_forecasts(histories, 7, ("autoarima", "autoets"), workers=2, chunk=64)
    for name, array in one.arrays().items():
        np.testing.assert_allclose(two.arrays()[name], array, rtol=1e-9, err_msg=name)
    assert one.specs == two.specs
    alone = baselines.fit_forecasts(histories[6:7], 7, ("autoets",))  # window 6 by itself
    np.testing.assert_allclose(one.points["autoets"][6], alone.points["autoets"][0], rtol=1e-9)
    assert one.specs["autoets"][6] == alone.specs["autoets"][0]


def test_the_arrays_round_trip_through_the_stored_form():
    got = baselines.fit_forecasts(100.0 + np.cumsum(rng(6).normal(size=(3, 20)), axis=1), 4, ("autoets",))
    back = baselines.Forecasts.from_arrays(got.arrays())
    assert set(back.points) == {"naive", "drift", "autoets"}
    for method, levels in got.intervals.items():
        for level, (lo, hi) in levels.items():
            np.testing.assert_array_equal(back.intervals[method][level][0], lo)
            np.testing.assert_array_equal(back.intervals[method][level][1], hi)


@pytest.mark.parametrize("histories, index, message", [
    (np.tile(np.arange(1.0, 6.0), (3, 1)), 0, "a history of 5 days is too short"),
    (np.r_[np.ones((3, 20)), [[*range(7), np.inf, *range(12)]], np.ones((1, 20))], 3, "missing or infinite"),
])
def test_an_unfit_window_is_named_by_its_index(histories, index, message):
    with pytest.raises(baselines.FitError, match=message) as err:
        baselines.fit_forecasts(histories, 3, ("autoets",))
    assert err.value.index == index


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown baseline 'prophet'"):
        baselines.fit_forecasts(np.ones((2, 20)), 3, ("prophet",))
