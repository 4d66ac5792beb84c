"""Pure price-window preparation: sliding windows, a leak-free split with a gap,
per-window scaling, and the naive and drift baselines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-6


@dataclass(frozen=True)
class Split:
    """Window start indices into the daily series, and the first test day."""

    train: np.ndarray  # <int64>[n_train]
    test: np.ndarray  # <int64>[n_test]
    cut: int


def window_starts(n_days: int, input_len: int, output_len: int, stride: int) -> np.ndarray:
    """Start day of every full window of ``input_len + output_len`` days."""
    span = input_len + output_len
    if n_days < span:
        raise ValueError(f"{n_days} days are fewer than one window of {span}")
    return np.arange(0, n_days - span + 1, stride)


def chronological_split(
    n_days: int, input_len: int, output_len: int, stride: int, test_fraction: float
) -> Split:
    """Split windows at day ``cut`` with a gap of one whole window before it.

    Test windows start at or after ``cut``; training windows end at least one window
    length (``input_len + output_len`` days) before it. No day belongs to both, a test
    target day is never seen by training as input or target, and the days just before
    the test period are not learned from either.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    span = input_len + output_len
    starts = window_starts(n_days, input_len, output_len, stride)
    cut = n_days - int(round(test_fraction * n_days))
    train = starts[starts + 2 * span <= cut]  # a window's span, then a window-sized gap
    test = starts[starts >= cut]
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"test_fraction {test_fraction} of {n_days} days leaves an empty split "
            f"({len(train)} train / {len(test)} test windows of {span} days)"
        )
    return Split(train=train, test=test, cut=cut)


def gather(series: np.ndarray, starts: np.ndarray, input_len: int, output_len: int, targets: int = 1):
    """Cut windows out of a series.

    Args:
        series: <float32>[days, features]; the first ``targets`` features are forecast.
        starts: <int64>[n] window start days.

    Returns:
        ``inputs`` <float32>[n, input_len, features] and
        ``targets`` <float32>[n, output_len, targets] (those features on the following days).
    """
    idx_in = starts[:, None] + np.arange(input_len)[None, :]
    idx_out = starts[:, None] + input_len + np.arange(output_len)[None, :]
    return series[idx_in], series[idx_out, :targets]


def normalize(inputs: np.ndarray, targets: np.ndarray | None = None, std_factor: float = 1.0):
    """Scale each window by its own input mean and ``std_factor`` standard deviations, per feature.

    Returns ``(inputs_n, targets_n, mean, std)`` with ``mean``/``std`` <float32>[n, features];
    targets <f32>[n, horizon, k] are scaled with the statistics of the first k features.
    ``targets_n`` is None when no targets were given (forecasting the future).
    """
    mean = inputs.mean(axis=1)
    std = inputs.std(axis=1) + EPS
    if std_factor != 1.0:
        std = std * np.float32(std_factor)
    inputs_n = (inputs - mean[:, None, :]) / std[:, None, :]
    targets_n = None
    if targets is not None:
        k = targets.shape[-1]
        targets_n = (targets - mean[:, None, :k]) / std[:, None, :k]
    return inputs_n.astype(np.float32), targets_n, mean, std


def denormalize(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Undo :func:`normalize` for forecasts <float32>[n, horizon, k] of the first k features."""
    k = values.shape[-1]
    return values * std[:, None, :k] + mean[:, None, :k]


def naive_forecast(inputs: np.ndarray, output_len: int, feature: int = 0) -> np.ndarray:
    """The last observed value of a feature, repeated over the horizon: <f>[n, output_len]."""
    return np.repeat(inputs[:, -1:, feature], output_len, axis=1)


def drift_forecast(inputs: np.ndarray, output_len: int) -> np.ndarray:
    """Random walk with drift: the last value plus h times the window's mean daily change."""
    first, last = inputs[:, 0, 0], inputs[:, -1, 0]
    slope = (last - first) / max(1, inputs.shape[1] - 1)
    return last[:, None] + slope[:, None] * np.arange(1, output_len + 1)[None, :]


def naive_scale(inputs: np.ndarray, feature: int = 0) -> np.ndarray:
    """Each window's in-sample one-step naive error, mean |x_t - x_{t-1}| <float>[n] (MASE's scale)."""
    return np.mean(np.abs(np.diff(inputs[:, :, feature], axis=1)), axis=1)
