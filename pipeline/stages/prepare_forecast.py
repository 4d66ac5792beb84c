"""prepare_forecast: parse the price history and cut leak-free train/test windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts, windows
from pipeline.params import Params, ParamsError
from pipeline.sources.coindesk import parse_bpi_close, parse_csv_export
from pipeline.sources.text import read_corpus


def read_series(params: Params) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """ISO dates <str>[days] and the available columns <float32>[days] by name."""
    source = params.sources.forecast
    raw = Path(source.raw)
    text = read_corpus(raw.read_bytes(), str(raw))
    if source.format == "coindesk-csv":
        rows = parse_csv_export(text, str(raw))
        dates = np.array([r["date"].isoformat() for r in rows])
        return dates, {c: np.array([r[c] for r in rows], np.float32) for c in ("close", "open", "high", "low")}
    pairs = parse_bpi_close(text, str(raw))
    return np.array([d.isoformat() for d, _ in pairs]), {"close": np.array([c for _, c in pairs], np.float32)}


def run(params: Params, variant: str | None = None) -> None:
    d = params.forecast.data
    dates, columns = read_series(params)
    unknown = [f for f in d.features if f not in columns]
    if unknown:
        raise ParamsError(
            f"params.yaml: 'forecast.data.features' asks for {unknown}, but format "
            f"'{params.sources.forecast.format}' only has {sorted(columns)}"
        )
    series = np.stack([columns[name] for name in d.features], axis=1)
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
