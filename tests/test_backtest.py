"""The rolling-origin backtest: origins, folds without leakage, and the statistics that
decide "beats naive" (checked against scipy's own tests where they coincide)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from pipeline.evaluation import backtest


def test_origins_end_at_the_last_full_horizon_and_step_back_evenly():
    got = backtest.origins(3048, 40, 30, 730)
    assert got[-1] == 3048 - 40 and got[0] >= 730 and got[0] - 30 < 730
    assert np.all(np.diff(got) == 30)
    with pytest.raises(ValueError, match="leave no origin with 100 days of history"):
        backtest.origins(120, 40, 30, 100)


def test_folds_are_contiguous_and_train_only_on_windows_that_end_before_them():
    origins = backtest.origins(1000, 40, 30, 300)
    groups = backtest.folds(origins, 4)
    assert len(groups) == 4 and np.array_equal(np.concatenate(groups), origins)
    for fold in groups:
        starts = backtest.train_starts(int(fold[0]), 40, 40)
        assert starts[-1] + 80 == fold[0]  # the newest window's last target is the day before
        assert np.all(starts + 80 <= fold[0])
    assert len(backtest.folds(origins[:2], 4)) == 2
    assert len(backtest.train_starts(50, 40, 40)) == 0


def test_diebold_mariano_without_overlap_is_the_one_sample_t_test():
    """With no autocorrelation lag, the Harvey-Leybourne-Newbold corrected statistic is
    exactly Student's one-sample t on the loss differential."""
    g = np.random.default_rng(0)
    loss, reference = g.gamma(2.0, size=60), g.gamma(2.2, size=60)
    stat, p = backtest.diebold_mariano(loss, reference, lag=0)
    want = stats.ttest_1samp(loss - reference, 0.0)
    assert stat == pytest.approx(want.statistic, rel=1e-12) and p == pytest.approx(want.pvalue, rel=1e-9)
    assert backtest.diebold_mariano(loss, loss, lag=2) == (0.0, 1.0)


def test_diebold_mariano_finds_a_real_difference_and_not_a_false_one():
    g = np.random.default_rng(1)
    base = g.gamma(2.0, size=(200, 80))
    better = base[:, 0] * 0.7
    stat, p = backtest.diebold_mariano(better, base[:, 0], lag=1)
    assert stat < 0 and p < 1e-6
    # equal in distribution: at 5 %, about 1 test in 20 rejects
    rejections = np.mean([backtest.diebold_mariano(base[:, i], base[:, i + 40], lag=0)[1] < 0.05 for i in range(40)])
    assert rejections <= 0.15


def test_the_overlap_lag_counts_neighbouring_origins_that_share_target_days():
    assert [backtest.overlap_lag(h, 30) for h in (1, 30, 31, 40, 61)] == [0, 0, 1, 1, 2]


def test_mean_ci_is_the_student_t_interval():
    values = np.random.default_rng(2).normal(3.0, 1.0, size=(25, 2))
    mean, lo, hi = backtest.mean_ci(values)
    for j in range(2):
        want = stats.t.interval(0.95, 24, loc=values[:, j].mean(), scale=stats.sem(values[:, j]))
        assert (lo[j], hi[j]) == pytest.approx(want, rel=1e-12)


def test_score_and_beats_naive():
    g = np.random.default_rng(3)
    truth = 100 + np.cumsum(g.normal(size=(50, 5)), axis=1)
    naive = np.repeat(truth[:, :1] - g.normal(size=(50, 1)), 5, axis=1)
    scale = np.full(50, 2.0)
    perfect = backtest.score(truth, truth, scale, naive, every=30)
    assert np.all(perfect["mae"] == 0) and np.all(perfect["mase"] == 0)
    assert backtest.beats_naive(perfect) == [1, 2, 3, 4, 5] and backtest.loses_to_naive(perfect) == []
    assert backtest.loses_to_naive(backtest.score(naive, truth, scale, truth, every=30)) == [1, 2, 3, 4, 5]
    itself = backtest.score(naive, truth, scale, naive, every=30)
    assert backtest.beats_naive(itself) == backtest.loses_to_naive(itself) == [] and np.allclose(itself["dm_p"], 1.0)
    assert np.allclose(itself["mase"], np.abs(naive - truth).mean(axis=0) / 2.0)
    assert backtest.groups(40) == [(1, 10), (11, 20), (21, 30), (31, 40)]


def test_no_fold_sees_its_future(tiny_params):
    """Change every price from the first origin on: the forecast made there (from the days
    before it, by a model trained on the days before it) stays bit for bit the same; the
    later folds' models, trained on the changed days, do not."""
    from pipeline.stages import backtest_forecast

    p = tiny_params.forecast
    params = dataclasses.replace(tiny_params, forecast=dataclasses.replace(
        p, backtest=dataclasses.replace(p.backtest, min_history=400, every=200, folds=2)))
    series = (100 + np.cumsum(np.random.default_rng(4).normal(size=(1300, 1)), axis=0)).astype(np.float32)
    origins = backtest.origins(len(series), p.data.output_len, 200, 400)
    first, last = backtest.folds(origins, 2)
    before = backtest_forecast.network_forecasts(params, series, origins)
    changed = series.copy()
    changed[first[0]:] += np.random.default_rng(5).normal(0.0, 5.0, size=changed[first[0]:].shape).astype(np.float32)
    after = backtest_forecast.network_forecasts(params, changed, origins)
    assert set(before) == {"model", "single"}  # the ensemble and its first network alone
    for name, (pred, bounds) in before.items():
        again, again_bounds = after[name]
        np.testing.assert_array_equal(again[:1], pred[:1])  # the first origin: history and model unchanged
        for level in bounds:  # and its intervals, calibrated on days before it
            np.testing.assert_array_equal(again_bounds[level][0][:1], bounds[level][0][:1])
            np.testing.assert_array_equal(again_bounds[level][1][:1], bounds[level][1][:1])
        assert not np.allclose(again[len(first):], pred[len(first):])
        lo80, hi80 = bounds[80]
        lo95, hi95 = bounds[95]
        assert np.all(lo95 <= lo80) and np.all(lo80 <= pred) and np.all(pred <= hi80) and np.all(hi80 <= hi95)
    assert not np.array_equal(before["model"][0], before["single"][0])


def test_too_few_calibration_days_are_a_params_error(tiny_params):
    from pipeline.params import ParamsError
    from pipeline.stages import backtest_forecast

    p = tiny_params.forecast
    params = dataclasses.replace(tiny_params, forecast=dataclasses.replace(
        p, intervals=dataclasses.replace(p.intervals, calibration_days=p.data.output_len + 5)))
    series = (100 + np.cumsum(np.random.default_rng(6).normal(size=(1300, 1)), axis=0)).astype(np.float32)
    with pytest.raises(ParamsError, match=r"'forecast.intervals.calibration_days' is 45: backtest_forecast fold 1/2 "
                                          r"has 6 calibration windows .* 95 % intervals need at least 19"):
        backtest_forecast.network_forecasts(params, series, backtest.origins(1300, p.data.output_len, 200, 400))
