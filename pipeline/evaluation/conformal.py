"""Split-conformal prediction intervals for the network's forecasts, scaled per window.

The network forecasts a point. Its intervals come from held-out windows it was not
trained on (the calibration windows): for each horizon step, the ``level`` % quantile
of the absolute error divided by the window's scale (its in-sample one-day naive error,
the MASE scale) is the half-width of the interval, again times each window's scale.
Scaling matters here: prices ran from cents to $19,000, and an error of a given size
means nothing without the price level it was made at.

Why conformal and not quantile heads trained with a pinball loss: it needs no change to
the model or its training, it holds for any point forecaster (an ensemble of seeds
included), and its coverage guarantee (at least ``level`` %, for exchangeable windows)
does not depend on the network having learnt the tails, which a few thousand windows of
one series rarely teach. Its weakness is the exchangeability assumption: volatility
changes over time, so coverage is checked on the backtest, never assumed.
"""

from __future__ import annotations

import math

import numpy as np

LEVELS = (80, 95)


def min_windows(levels: tuple[int, ...] = LEVELS) -> int:
    """The fewest calibration windows whose corrected rank exists at every level."""
    return max(math.ceil(100 / (100 - level)) - 1 for level in levels)


def calibrate(pred: np.ndarray, truth: np.ndarray, scale: np.ndarray,
              levels: tuple[int, ...] = LEVELS) -> dict[int, np.ndarray]:
    """Per level, the half-width per horizon step in units of the window scale
    <float64>[horizon]: the ``ceil((n + 1) * level / 100)``-th smallest of the ``n``
    calibration windows' scaled absolute errors (infinite when ``n`` is too small for
    that rank). ``pred``, ``truth`` <float>[n, horizon]; ``scale`` <float>[n]."""
    scores = np.sort(np.abs(np.asarray(pred, np.float64) - truth) / np.asarray(scale, np.float64)[:, None], axis=0)
    n = len(scores)
    out = {}
    for level in levels:
        rank = math.ceil((n + 1) * level / 100)
        out[level] = scores[rank - 1] if rank <= n else np.full(scores.shape[1], np.inf)
    return out


def intervals(
    pred: np.ndarray, scale: np.ndarray, widths: dict[int, np.ndarray]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``(lo, hi)`` <float64>[n, horizon] per level around ``pred`` for windows of ``scale``."""
    half = {level: np.asarray(scale, np.float64)[:, None] * w[None, :] for level, w in widths.items()}
    return {level: (pred - h, pred + h) for level, h in half.items()}
