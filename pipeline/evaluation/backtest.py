"""Rolling-origin evaluation: forecast origins over the whole history, scored per horizon.

Pure functions, numpy in and numpy out. The ``backtest_forecast`` stage picks the
origins (:func:`origins`), trains the network once per fold on every window that ends
before the fold's first origin (:func:`folds`, :func:`train_starts`), has statsforecast
cross-validate the baselines on the same origins, and scores everything here:

* per horizon, MAE and MASE (each origin's error over its input window's in-sample
  one-step naive error, as ``evaluate_forecast`` does), with a 95 % confidence interval
  of the MASE over origins (:func:`mean_ci`);
* per horizon, a Diebold-Mariano test of each method against the naive forecast on
  absolute errors, with Harvey, Leybourne & Newbold's small-sample correction and a
  Newey-West variance over the origins whose horizons overlap (:func:`diebold_mariano`):
  "beats naive at horizon h" means a lower mean error with p < 0.05, not a reading of two
  close numbers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def origins(n_days: int, horizon: int, every: int, min_history: int) -> np.ndarray:
    """Forecast origins (the index of each forecast's first day): the last is
    ``n_days - horizon`` (the newest forecast whose every day is known), then every
    ``every`` days back, none with fewer than ``min_history`` days before it."""
    last = n_days - horizon
    if last < min_history:
        raise ValueError(f"{n_days} days leave no origin with {min_history} days of history and "
                         f"{horizon} days to forecast")
    return np.arange(last, min_history - 1, -every)[::-1].astype(np.int64)


def folds(origin_days: np.ndarray, k: int) -> list[np.ndarray]:
    """The origins in ``k`` contiguous groups (fewer when there are fewer origins); one
    network is trained per group, on the days before its first origin."""
    return [group for group in np.array_split(origin_days, min(k, len(origin_days))) if len(group)]


def train_starts(origin: int, input_len: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Every training window start whose inputs and targets end before ``origin``: no
    origin's model has seen a day from its future."""
    last = origin - input_len - horizon
    return np.arange(0, last + 1, stride, dtype=np.int64) if last >= 0 else np.zeros(0, np.int64)


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 and its ``level`` confidence interval (Student t), per column."""
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    mean = values.mean(axis=0)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.inf
    return mean, mean - half, mean + half


def diebold_mariano(loss: np.ndarray, reference: np.ndarray, lag: int) -> tuple[float, float]:
    """Diebold-Mariano statistic and two-sided p-value for the loss differential
    ``loss - reference`` over origins (negative: ``loss`` is lower), with the
    Newey-West variance up to ``lag`` and the Harvey-Leybourne-Newbold correction
    (Student t with n - 1 degrees of freedom). Identical losses give (0, 1)."""
    d = np.asarray(loss, np.float64) - np.asarray(reference, np.float64)
    n = len(d)
    centred = d - d.mean()
    variance = centred @ centred / n
    for k in range(1, min(lag, n - 1) + 1):
        variance += 2 * (1 - k / (lag + 1)) * (centred[k:] @ centred[:-k]) / n
    if n < 3 or variance <= 0:
        return 0.0, 1.0
    h = lag + 1
    correction = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n) if n + 1 - 2 * h > 0 else 1.0
    stat = correction * d.mean() / math.sqrt(variance / n)
    return float(stat), float(2 * stats.t.sf(abs(stat), n - 1))


def overlap_lag(horizon_step: int, every: int) -> int:
    """How many neighbouring origins' forecasts for horizon step ``h`` (1-based) share
    days with one another: their errors are correlated that far."""
    return max(0, math.ceil(horizon_step / every) - 1)


def score(forecast: np.ndarray, truth: np.ndarray, scale: np.ndarray, naive: np.ndarray, every: int) -> dict:
    """One method over the origins, per horizon: ``mae``, ``mase`` with ``mase_lo`` /
    ``mase_hi`` (95 % CI over origins), and against ``naive``: ``dm`` and ``dm_p`` (the
    Diebold-Mariano statistic and p-value; negative: better than naive). All arrays are
    <float>[origins, horizon] but ``scale`` <float>[origins]."""
    err = np.abs(forecast - truth)
    ratios = err / scale[:, None]
    mase, lo, hi = mean_ci(ratios)
    tests = [diebold_mariano(err[:, h], np.abs(naive[:, h] - truth[:, h]), overlap_lag(h + 1, every))
             for h in range(truth.shape[1])]
    return {"mae": err.mean(axis=0), "mase": mase, "mase_lo": lo, "mase_hi": hi,
            "dm": np.array([t[0] for t in tests]), "dm_p": np.array([t[1] for t in tests])}


def beats_naive(scored: dict, alpha: float = 0.05) -> list[int]:
    """Horizon steps (1-based) where the method's error is lower than naive's, p < ``alpha``."""
    return [
        h + 1 for h, (stat, p) in enumerate(zip(scored["dm"], scored["dm_p"], strict=True)) if stat < 0 and p < alpha
    ]


def loses_to_naive(scored: dict, alpha: float = 0.05) -> list[int]:
    """Horizon steps (1-based) where the method's error is higher than naive's, p < ``alpha``."""
    return [
        h + 1 for h, (stat, p) in enumerate(zip(scored["dm"], scored["dm_p"], strict=True)) if stat > 0 and p < alpha
    ]


def groups(horizon: int, size: int = 10) -> list[tuple[int, int]]:
    """Horizon steps in groups of ``size`` (1-based, inclusive): (1, 10), (11, 20), ..."""
    return [(a, min(a + size - 1, horizon)) for a in range(1, horizon + 1, size)]
