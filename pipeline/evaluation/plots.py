"""Pictures a person would rather look at than read. Saved atomically as PNG."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.artifacts import atomic_path


class Series(NamedTuple):
    """One forecast series to plot: its ``name`` (a feature, e.g. ``close_EUR``), the whole
    series ``close`` <float>[days], and the model's ``pred``, the ``naive`` forecast and the
    model's interval ``bands`` (level -> (lo, hi); empty without intervals). For
    :func:`save_forecasts` these are <float>[k, horizon] for the k shown windows; for
    :func:`save_future`, <float>[horizon] (``naive`` a float: the last stored value)."""

    name: str
    close: np.ndarray
    pred: np.ndarray
    naive: np.ndarray
    bands: dict[int, tuple[np.ndarray, np.ndarray]]


def unit(name: str) -> str:
    """The currency a feature is priced in: ``close_EUR`` -> EUR; the base series' is USD."""
    return name.rsplit("_", 1)[1] if "_" in name else "USD"


def save_forecasts(
    target: str | Path,
    dates: np.ndarray,
    series: Sequence[Series],
    starts: np.ndarray,
    input_len: int,
    title: str,
) -> None:
    """Plot the true series around each shown window with the model's forecast, its
    intervals and the naive forecast: a row per window, a column per forecast series.

    Args:
        dates: <str>[days] ISO dates; starts: <int>[k] window starts.
    """
    horizon = series[0].pred.shape[1]
    days = np.array([dt.date.fromisoformat(d) for d in dates])
    fig, axes = plt.subplots(len(starts), len(series), figsize=(9 * len(series), 2.6 * len(starts)), squeeze=False)
    for col, s in enumerate(series):
        for row, start in enumerate(starts):
            ax = axes[row, col]
            span = slice(start, start + input_len + horizon)
            future = days[start + input_len : start + input_len + horizon]
            ax.plot(days[span], s.close[span], color="black", lw=1.2, label="truth")
            for level in sorted(s.bands, reverse=True):
                lo, hi = s.bands[level]
                ax.fill_between(future, lo[row], hi[row], color="tab:blue", alpha=0.12 if level >= 90 else 0.25,
                                lw=0, label=f"{level} % interval")
            ax.plot(future, s.pred[row], color="tab:blue", lw=1.5, label="model")
            ax.plot(future, s.naive[row], color="tab:orange", lw=1.0, ls="--", label="naive (last value)")
            ax.axvline(days[start + input_len - 1], color="grey", lw=0.8, ls=":")
            ax.set_ylabel(unit(s.name))
            ax.set_title(f"{s.name}: forecast from {days[start + input_len - 1]}", fontsize=9, loc="left")
            # Each panel is its own period: label every x axis (autofmt_xdate would hide all
            # but the bottom one, as if the axes were shared).
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(title)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def save_future(
    target: str | Path,
    dates: np.ndarray,
    series: Sequence[Series],
    future: list[dt.date],
    title: str,
    history: int = 120,
) -> None:
    """Per forecast series, one panel: its last ``history`` days, then the forecast with
    its interval bands (shaded, widest palest) and the naive line."""
    days = np.array([dt.date.fromisoformat(d) for d in dates[-history:]])
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 3.2 * len(series)), squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=True):
        ax.plot(days, s.close[-history:], color="black", lw=1.2, label="history")
        for level in sorted(s.bands, reverse=True):
            lo, hi = s.bands[level]
            ax.fill_between(future, lo, hi, color="tab:blue", alpha=0.12 if level >= 90 else 0.25, lw=0,
                            label=f"{level} % interval")
        ax.plot(future, s.pred, color="tab:blue", lw=1.5, label="forecast")
        ax.plot(future, [s.naive] * len(future), color="tab:orange", lw=1.0, ls="--", label="naive (last value)")
        ax.axvline(days[-1], color="grey", lw=0.8, ls=":")
        ax.set_ylabel(unit(s.name))
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.set_title(title if len(series) == 1 else f"{s.name}: {title}", fontsize=10, loc="left")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def save_backtest(target: str | Path, by_method: dict[str, dict[str, np.ndarray]], title: str) -> None:
    """MASE per horizon step with its 95 % confidence band, one line per method, and
    naive's MASE for reference (a line below it is better than tomorrow = today).

    Args:
        by_method: method -> {"mase", "mase_lo", "mase_hi"} <float>[horizon].
    """
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, scored in by_method.items():
        steps = np.arange(1, len(scored["mase"]) + 1)
        style = (
            {"color": "black", "ls": "--", "lw": 1.2} if name == "naive" else {"lw": 1.6 if name == "model" else 1.0}
        )
        line, = ax.plot(steps, scored["mase"], label=name, **style)
        ax.fill_between(steps, scored["mase_lo"], scored["mase_hi"], color=line.get_color(), alpha=0.12)
    ax.set_xlabel("horizon (days after the last observed day)")
    ax.set_ylabel("MASE (mean over origins, 95 % CI)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
