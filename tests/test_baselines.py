"""AutoARIMA and AutoETS: the searches choose what the data says, on series with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import baselines


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("integrated, expected", [(0, 0), (1, 1), (2, 2)])
def test_ndiffs_counts_the_unit_roots(integrated, expected):
    y = rng(integrated).normal(size=300)
    for _ in range(integrated):
        y = np.cumsum(y)
    assert baselines.ndiffs(y) == expected


def test_auto_arima_finds_a_stationary_ar1_and_decays_to_its_mean():
    g, phi, mean = rng(1), 0.8, 100.0
    y = np.empty(400)
    y[0] = mean
    for t in range(1, len(y)):
        y[t] = mean + phi * (y[t - 1] - mean) + g.normal()
    fitted = baselines.auto_arima(y, 60)
    assert fitted.spec.startswith("ARIMA(") and ",0," in fitted.spec and fitted.spec.endswith("+mean")
    gaps = np.abs(fitted.forecast - mean)
    assert gaps[-1] < gaps[0] and gaps[-1] < 0.5  # pulled back to the mean, not extrapolated
    assert abs(np.mean(y) - fitted.forecast[-1]) < 0.5


def test_auto_arima_takes_the_drift_of_a_random_walk_with_drift():
    y = 50.0 + np.cumsum(2.0 + rng(2).normal(size=300))
    fitted = baselines.auto_arima(y, 10)
    assert ",1," in fitted.spec and fitted.spec.endswith("+drift")
    steps = np.diff(np.r_[y[-1], fitted.forecast])
    assert steps == pytest.approx(np.full(10, 2.0), abs=0.4)


def test_auto_ets_chooses_a_trend_only_when_there_is_one():
    g = rng(3)
    trending = baselines.auto_ets(100.0 + 3.0 * np.arange(80) + g.normal(size=80), 5)
    assert trending.spec in {"ETS(A,A,N)", "ETS(M,A,N)", "ETS(A,Ad,N)", "ETS(M,Ad,N)"}
    assert np.all(np.diff(trending.forecast) > 2.0)
    level = baselines.auto_ets(100.0 + g.normal(size=80), 5)
    assert level.spec in {"ETS(A,N,N)", "ETS(M,N,N)"}
    assert np.ptp(level.forecast) == pytest.approx(0.0, abs=1e-9)  # a flat line at the level
    assert abs(level.forecast[0] - 100.0) < 1.0


def test_auto_ets_skips_multiplicative_errors_for_non_positive_series():
    fitted = baselines.auto_ets(rng(4).normal(size=60), 3)
    assert fitted.spec.startswith("ETS(A,")


@pytest.mark.parametrize("method", baselines.METHODS)
@pytest.mark.parametrize("history, message", [
    (np.arange(5.0), "a history of 5 days is too short"),
    (np.r_[np.arange(20.0), np.nan, np.arange(20.0)], "missing or infinite"),
])
def test_unfit_histories_are_refused(method, history, message):
    with pytest.raises(ValueError, match=message):
        baselines.FITTERS[method](history, 4)


def test_fit_forecasts_is_the_same_in_worker_processes_and_reports_progress():
    g = rng(5)
    histories = 100.0 + np.cumsum(g.normal(size=(6, 40)), axis=1)
    done = []
    serial, serial_specs = baselines.fit_forecasts(histories, 7, "autoarima", workers=1, progress=done.append)
    assert sum(done) == 6
    parallel, parallel_specs = baselines.fit_forecasts(histories, 7, "autoarima", workers=2)
    np.testing.assert_array_equal(parallel, serial)
    assert parallel_specs == serial_specs
    for i, history in enumerate(histories):  # row i is window i's own fit
        np.testing.assert_array_equal(serial[i], baselines.auto_arima(history, 7).forecast)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_window_is_named_by_its_index(workers):
    histories = np.tile(np.linspace(1.0, 2.0, 20), (5, 1))
    histories[3, 7] = np.inf
    with pytest.raises(baselines.FitError, match="missing or infinite") as err:
        baselines.fit_forecasts(histories, 3, "autoets", workers=workers)
    assert err.value.index == 3
