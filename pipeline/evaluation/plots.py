"""Pictures a person would rather look at than read. Saved atomically as PNG."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.artifacts import atomic_path


def save_forecasts(
    target: str | Path,
    dates: np.ndarray,
    close: np.ndarray,
    starts: np.ndarray,
    input_len: int,
    pred: np.ndarray,
    naive: np.ndarray,
    title: str,
) -> None:
    """Plot the true series around each shown window with the model and naive forecasts.

    Args:
        dates: <str>[days] ISO dates; close: <float>[days] the forecast series.
        starts: <int>[k] window starts; pred, naive: <float>[k, horizon].
    """
    horizon = pred.shape[1]
    days = np.array([dt.date.fromisoformat(d) for d in dates])
    fig, axes = plt.subplots(len(starts), 1, figsize=(9, 2.6 * len(starts)), squeeze=False)
    for ax, start, p, n in zip(axes[:, 0], starts, pred, naive, strict=True):
        span = slice(start, start + input_len + horizon)
        future = days[start + input_len : start + input_len + horizon]
        ax.plot(days[span], close[span], color="black", lw=1.2, label="truth")
        ax.plot(future, p, color="tab:blue", lw=1.5, label="model")
        ax.plot(future, n, color="tab:orange", lw=1.0, ls="--", label="naive (last value)")
        ax.axvline(days[start + input_len - 1], color="grey", lw=0.8, ls=":")
        ax.set_ylabel("USD")
        ax.set_title(f"forecast from {days[start + input_len - 1]}", fontsize=9, loc="left")
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
    close: np.ndarray,
    future: list[dt.date],
    pred: np.ndarray,
    naive: float,
    bands: dict[int, tuple[np.ndarray, np.ndarray]],
    title: str,
    history: int = 120,
) -> None:
    """The last ``history`` days of the series, then the forecast with its interval
    ``bands`` (level -> (lo, hi), shaded, widest palest) and the naive line."""
    days = np.array([dt.date.fromisoformat(d) for d in dates[-history:]])
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(days, close[-history:], color="black", lw=1.2, label="history")
    for level in sorted(bands, reverse=True):
        lo, hi = bands[level]
        ax.fill_between(future, lo, hi, color="tab:blue", alpha=0.12 if level >= 90 else 0.25, lw=0,
                        label=f"{level} % interval")
    ax.plot(future, pred, color="tab:blue", lw=1.5, label="forecast")
    ax.plot(future, [naive] * len(future), color="tab:orange", lw=1.0, ls="--", label="naive (last value)")
    ax.axvline(days[-1], color="grey", lw=0.8, ls=":")
    ax.set_ylabel("USD")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.set_title(title, fontsize=10, loc="left")
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
