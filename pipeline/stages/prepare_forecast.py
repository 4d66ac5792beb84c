"""prepare_forecast: parse the price history and cut leak-free train/test windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts, windows
from pipeline.params import Params
from pipeline.sources.coindesk import parse_bpi_close


def run(params: Params, variant: str | None = None) -> None:
    d = params.forecast.data
    raw = Path(params.sources.forecast.raw)
    rows = parse_bpi_close(raw.read_text(encoding="utf-8"), str(raw))
    columns = {"close": np.array([close for _, close in rows], np.float32)}
    series = np.stack([columns[name] for name in d.features], axis=1)
    dates = np.array([day.isoformat() for day, _ in rows])
    split = windows.chronological_split(
        len(series), d.input_len, d.output_len, d.stride, d.test_fraction
    )
    out = Path(params.forecast.paths.prepared)
    artifacts.write_npz(
        out / "windows.npz", series=series, dates=dates,
        train_starts=split.train, test_starts=split.test,
    )
    artifacts.write_json(out / "meta.json", {
        "features": list(d.features), "first_day": dates[0], "last_day": dates[-1],
        "test_from": dates[split.cut], "train_windows": len(split.train),
        "test_windows": len(split.test),
    })
    print(f"prepare_forecast: {len(series)} days {dates[0]}..{dates[-1]}; "
          f"{len(split.train)} train / {len(split.test)} test windows (test from {dates[split.cut]})")
