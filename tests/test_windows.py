"""Windowing: no day is shared between training and test, and scaling is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data import windows


def days_of(starts, span):
    return set((starts[:, None] + np.arange(span)[None, :]).ravel().tolist())


@settings(max_examples=200, deadline=None)
@given(
    n_days=st.integers(60, 600),
    input_len=st.integers(1, 20),
    output_len=st.integers(1, 20),
    stride=st.integers(1, 5),
    test_fraction=st.floats(0.1, 0.6),
)
def test_split_leaks_nothing(n_days, input_len, output_len, stride, test_fraction):
    span = input_len + output_len
    try:
        split = windows.chronological_split(n_days, input_len, output_len, stride, test_fraction)
    except ValueError:
        return  # an empty split is refused loudly, never returned
    train_days = days_of(split.train, span)
    test_days = days_of(split.test, span)
    assert not train_days & test_days
    assert max(train_days) < split.cut <= min(test_days)
    assert min(test_days) - max(train_days) > span  # a gap of at least one whole window
    assert max(test_days) < n_days
    # Every test target day lies after every day training saw.
    assert min(test_days) + input_len > max(train_days)


def test_split_on_the_real_shape():
    split = windows.chronological_split(3048, 40, 40, 1, 0.15)
    assert split.cut == 3048 - 457
    assert split.train[-1] + 80 + 80 == split.cut and split.test[0] == split.cut
    assert len(split.test) == 3048 - split.cut - 80 + 1


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="leaves an empty split"):
        windows.chronological_split(100, 40, 40, 1, 0.15)


def test_gather_and_normalize_round_trip():
    series = np.stack([np.arange(100, dtype=np.float32) ** 1.5, np.ones(100, np.float32)], axis=1)
    starts = np.array([0, 10, 50])
    x, y = windows.gather(series, starts, 5, 3)
    assert x.shape == (3, 5, 2) and y.shape == (3, 3, 1)
    np.testing.assert_array_equal(y[1, :, 0], series[15:18, 0])
    xn, yn, mean, std = windows.normalize(x, y)
    np.testing.assert_allclose(xn[..., 0].mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(xn[..., 0].std(axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(windows.denormalize(yn, mean, std), y, rtol=1e-5)
    assert np.all(np.isfinite(xn))  # a constant feature does not divide by zero


def test_several_target_series_are_scaled_by_their_own_statistics():
    series = np.stack([np.arange(100, dtype=np.float32) ** 1.5, 0.9 * np.arange(100, dtype=np.float32) + 7,
                       np.ones(100, np.float32)], axis=1)
    x, y = windows.gather(series, np.array([0, 30]), 6, 4, targets=2)
    assert y.shape == (2, 4, 2)
    np.testing.assert_array_equal(y[1, :, 1], series[36:40, 1])
    xn, yn, mean, std = windows.normalize(x, y)
    np.testing.assert_allclose(
        yn[..., 1], (y[..., 1] - x[:, :, 1].mean(1)[:, None]) / (x[:, :, 1].std(1)[:, None] + 1e-6), rtol=1e-5
    )
    np.testing.assert_allclose(windows.denormalize(yn, mean, std), y, rtol=1e-5)
    np.testing.assert_array_equal(windows.naive_forecast(x, 4, feature=1)[1], np.full(4, series[35, 1]))


def test_naive_forecast_repeats_the_last_input():
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    np.testing.assert_array_equal(windows.naive_forecast(x, 3), [[9, 9, 9], [21, 21, 21]])


def test_drift_extends_the_windows_mean_daily_change():
    inputs = np.array([[[10.0], [12.0], [14.0], [16.0]], [[5.0], [5.0], [5.0], [2.0]]])
    np.testing.assert_allclose(windows.drift_forecast(inputs, 3), [[18, 20, 22], [1, 0, -1]])
    np.testing.assert_allclose(windows.naive_scale(inputs), [2.0, 1.0])
