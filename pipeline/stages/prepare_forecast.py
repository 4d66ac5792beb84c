"""prepare_forecast: parse the price history and cut leak-free train/test windows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import artifacts
from pipeline.data import prices, windows
from pipeline.params import Params, ParamsError
from pipeline.sources import ecb
from pipeline.sources.coindesk import parse_bpi_close, parse_csv_export
from pipeline.sources.plaintext import read_corpus


def read_series(params: Params) -> pd.DataFrame:
    """The days of ``forecast.data.currency``, one column per price the source has
    (float64, indexed by date).

    From a ``coindesk-api`` table, ``close_<CUR>`` is another currency's close on the
    same days; only days where every requested column has a value are kept (what is
    missing then becomes a gap, for ``forecast.data.gap_policy``).
    """
    source, currency = params.sources.forecast, params.forecast.data.currency
    raw = Path(source.raw)
    features = params.forecast.data.features
    if source.format == "coindesk-api":
        table = raw / prices.TABLE_FILE
        if not table.is_file():
            raise FileNotFoundError(f"{table}: no price table; run `dvc repro download@forecast`")
        rows = prices.from_csv(table.read_text(encoding="utf-8"), str(table))
        if currency not in set(rows["currency"]):
            raise ParamsError(f"params.yaml: 'forecast.data.currency' is {currency!r}, "
                              f"but {table} has no {currency} rows")
        main = rows[rows["currency"] == currency].set_index("date")[list(prices.PRICES)]
        main = main.loc[:, main.notna().all()]  # the prices this currency has on every day
        closes = rows.pivot(index="date", columns="currency", values="close").drop(columns=currency)
        others = [f"close_{c}" for c in sorted(closes.columns)]
        missing = [f for f in features if f.startswith("close_") and f not in others]
        if missing:
            raise ParamsError(f"params.yaml: 'forecast.data.features' asks for {missing}, but {table} "
                              f"has {others or 'no other currency'} beside {currency}")
        wanted = closes.add_prefix("close_")[[f for f in features if f.startswith("close_")]].dropna()
        # the currency's own columns are complete by construction; another may lack some days
        return main.join(wanted, how="inner")
    if currency != "USD":
        raise ParamsError(f"params.yaml: 'forecast.data.currency' is {currency!r}, "
                          f"but format '{source.format}' holds USD prices only")
    text = read_corpus(raw.read_bytes(), str(raw))
    if source.format == "coindesk-csv":
        return parse_csv_export(text, str(raw))
    frame = parse_bpi_close(text, str(raw)).to_frame()
    if source.format == "bpi-json-ecb":  # close_<CUR>: the USD close at the ECB rate of the day
        for name in features:
            if name.startswith("close_"):
                frame[name] = ecb.convert(frame.index, frame["close"].to_numpy(), name[len("close_"):], str(raw))
    return frame


def within_days(frame: pd.DataFrame, first_day: dt.date | None, last_day: dt.date | None,
                where: str) -> pd.DataFrame:
    """The days from ``first_day`` to ``last_day``, both included (None: no cut on that side)."""
    kept = frame
    if first_day is not None:
        kept = kept[kept.index >= pd.Timestamp(first_day)]
        if kept.empty:
            raise ParamsError(f"params.yaml: 'forecast.data.first_day' is {first_day}, after the last day "
                              f"({frame.index[-1].date()}) of {where}")
    if last_day is not None:
        kept = kept[kept.index <= pd.Timestamp(last_day)]
        if kept.empty:
            raise ParamsError(f"params.yaml: 'forecast.data.last_day' is {last_day}, before the first day "
                              f"({frame.index[0].date()}) of {where}")
    return kept


def run(params: Params, variant: str | None = None) -> None:
    d = params.forecast.data
    known = within_days(read_series(params), d.first_day, d.last_day, params.sources.forecast.raw)
    frame = prices.daily(known, d.gap_policy, params.sources.forecast.raw)
    dates = frame.index.strftime("%Y-%m-%d").to_numpy().astype(str)
    unknown = [f for f in d.features if f not in frame.columns]
    if unknown:
        raise ParamsError(
            f"params.yaml: 'forecast.data.features' asks for {unknown}, but format "
            f"'{params.sources.forecast.format}' only has {sorted(frame.columns)}"
        )
    series = frame[list(d.features)].to_numpy(np.float32)
    try:
        split = windows.chronological_split(
            len(series), d.input_len, d.output_len, d.stride, d.test_fraction
        )
    except ValueError as err:
        raise ParamsError(f"params.yaml: forecast.data does not fit {params.sources.forecast.raw}: {err}") from None
    out = Path(params.forecast.paths.prepared)
    artifacts.write_npz(
        out / "windows.npz", series=series, dates=dates,
        train_starts=split.train, test_starts=split.test,
    )
    artifacts.write_json(out / "meta.json", {
        "features": list(d.features), "first_day": dates[0], "last_day": dates[-1],
        "test_from": dates[split.cut], "train_windows": len(split.train),
        "test_windows": len(split.test), "filled_days": len(frame) - len(known),
        "gap_policy": d.gap_policy,
        **({"ecb_rates": [day.isoformat() for day in ecb.history()]}
           if params.sources.forecast.format == "bpi-json-ecb" else {}),
    })
    print(f"prepare_forecast: {len(series)} days {dates[0]}..{dates[-1]}; "
          f"{len(split.train)} train / {len(split.test)} test windows (test from {dates[split.cut]})")
