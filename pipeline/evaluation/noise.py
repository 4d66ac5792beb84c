"""Noise bands: how far a metric moves between two default runs that differ only in seed.

``metrics/noise.json`` (measured by ``python benchmarks/noise.py``) holds, for every
numeric metric of every metrics file, its values over a few seeds and their spread.
:func:`classify` turns a change between two revisions into ``better``, ``worse`` or
``within noise`` with it, and :func:`direction` says which way is better.

The band of a metric is the range (max - min) of its values over the measured seeds: a
change no larger than what changing the seed alone produced is noise. Metrics that do not
depend on the seed (the statistical baselines) get a band of 0, so any change to them
larger than the metrics files' rounding (:data:`ROUNDING`) is real on one machine; across
machines, see the README. A metric with no measured band gets no verdict, and neither do
counts and settings that metrics files record beside the metrics (:data:`NEUTRAL`,
:data:`SETTINGS`: how many origins or folds a backtest had is not better or worse).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

HIGHER_IS_BETTER = ("bleu", "chrf", "horizons_beating")
NEUTRAL = ("pairs", "windows", "count", "signature", "decode", "coverage")  # coverage: nearest nominal is best
# settings a metrics file records (backtest.json's origins, spacing and folds; the ensemble's seeds)
SETTINGS = frozenset({"origins", "every", "folds", "seeds", "steps", "first_origin", "last_origin"})
ROUNDING = 1e-4  # metrics files round to 4 decimals: a change of one unit there is no evidence
NOISE_FILE = Path("metrics/noise.json")


def direction(metric: str) -> int:
    """+1 if a higher value is better, -1 if lower is better, 0 for counts, labels and settings."""
    if metric in SETTINGS or any(n in metric for n in NEUTRAL):
        return 0
    return 1 if any(h in metric for h in HIGHER_IS_BETTER) else -1


def bands(samples: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per metrics file and numeric metric: the values over the samples (one sample per
    seed: ``{file: {metric: value}}``), their mean, standard deviation, min, max and band
    (max - min). Lists (the per-horizon errors) and strings are left out."""
    values: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        for path, metrics in sample.items():
            for metric, value in metrics.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                values.setdefault(path, {}).setdefault(metric, []).append(float(value))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path, metrics in sorted(values.items()):
        for metric, vs in sorted(metrics.items()):
            out.setdefault(path, {})[metric] = {
                "values": vs, "mean": statistics.fmean(vs),
                "std": statistics.stdev(vs) if len(vs) > 1 else 0.0,
                "min": min(vs), "max": max(vs), "band": max(vs) - min(vs)}
    return out


def classify(metric: str, diff: float | None, band: float | None) -> str:
    """``better``, ``worse``, ``within noise``, ``no band`` (no measurement for this
    metric: no verdict) or ``""`` (no change, or a count, label or setting). A change no
    larger than the band, or than :data:`ROUNDING`, is within noise."""
    if diff is None or diff == 0 or math.isnan(diff) or direction(metric) == 0:
        return ""
    if band is None:
        return "no band"
    if abs(diff) <= max(band, ROUNDING) * (1 + 1e-9):  # the band itself is a difference of rounded values
        return "within noise"
    return "better" if (diff > 0) == (direction(metric) > 0) else "worse"


def load(text: str | None) -> dict[str, Any]:
    """The parsed noise file, or an empty record when there is none (``text`` None)."""
    return json.loads(text) if text else {}


def seed_spread(diffs: Mapping[str, Mapping[str, Any]], metric: str) -> float | None:
    """The spread over an ensemble's networks that a metrics file records beside
    ``metric`` (``<metric>_seed_spread``, written by ``evaluate_forecast``), the larger of
    its old and new values in one file's ``dvc metrics diff`` entries ``diffs``; None when
    the file has none."""
    entry = diffs.get(f"{metric}_seed_spread", {})
    values = [float(v) for v in (entry.get("old"), entry.get("new"))
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(values) if values else None


def band_of(noise: Mapping[str, Any], path: str, metric: str) -> float | None:
    """The measured band of ``metric`` in metrics file ``path``, or None."""
    entry = noise.get("bands", {}).get(Path(path).as_posix(), {}).get(metric)
    return None if entry is None else float(entry["band"])
