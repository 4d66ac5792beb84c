"""The served forecaster's training (:func:`pipeline.training.forecast_job.train_calibrated`):
its calibration twins train on a second thread while the members train, and that overlap
must change no number."""

from __future__ import annotations

import jax
import numpy as np

from pipeline.data import windows
from pipeline.evaluation import conformal
from pipeline.inference import forecasting
from pipeline.models.forecaster import Forecaster
from pipeline.training import forecast_job
from pipeline.training.loop import fit


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def alone(p, series, starts, seed):
    job, config = forecast_job.make_job(p, "gru", series, starts, f"alone seed {seed}", seed=seed)
    return fit(job)[0].params, config


def test_overlapped_twins_equal_networks_trained_one_after_another(tiny_params):
    p = tiny_params.forecast
    series = (1000 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.02, 420))))[:, None]
    span = p.data.input_len + p.data.output_len
    starts = np.arange(len(series) - span + 1)
    cut = len(series)

    got = forecast_job.train_calibrated(p, "gru", series, starts, cut, "t")

    seeds = forecast_job.member_seeds(p.train)
    assert got.seeds == seeds and len(seeds) > 1
    for seed, member in zip(seeds, got.members, strict=True):
        for a, b in zip(leaves(alone(p, series, starts, seed)[0]), leaves(member), strict=True):
            np.testing.assert_array_equal(a, b)
    # the widths: each twin trained alone, on the windows that end before the held-out days
    twin_starts = starts[starts + span <= cut - p.intervals.calibration_days]
    twins = [alone(p, series, twin_starts, seed) for seed in seeds]
    first, last = got.calibration
    x, y = windows.gather(series, np.arange(first, last + 1), p.data.input_len, p.data.output_len)
    pred = forecasting.forecast_members(Forecaster(**twins[0][1]["model"]), [t for t, _ in twins], x)[..., 0]
    want = conformal.calibrate(pred.mean(axis=0), y[..., 0], windows.naive_scale(x))
    assert set(want) == set(got.widths)
    for level in want:
        np.testing.assert_array_equal(got.widths[level], want[level])
    # and the twins are not the members under another name
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(twins[0][0]), leaves(got.members[0]), strict=True))
