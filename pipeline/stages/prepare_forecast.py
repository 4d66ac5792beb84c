"""prepare_forecast: parse the price history and cut leak-free train/test windows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.data import prices, windows
from pipeline.params import Params, ParamsError
from pipeline.sources import ecb
from pipeline.sources.coindesk import parse_bpi_close, parse_csv_export
from pipeline.sources.plaintext import read_corpus


def read_series(params: Params) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """The days of ``forecast.data.currency`` and the columns the source has, by name.

    From a ``coindesk-api`` table, ``close_<CUR>`` is another currency's close on the
    same days; only days where every requested column has a value are kept (what is
    missing then becomes a gap, for ``forecast.data.gap_policy``).
    """
    source, currency = params.sources.forecast, params.forecast.data.currency
    raw = Path(source.raw)
    if source.format == "coindesk-api":
        table = raw / prices.TABLE_FILE
        if not table.is_file():
            raise FileNotFoundError(f"{table}: no price table; run `dvc repro download@forecast`")
        rows = prices.from_csv(table.read_text(encoding="utf-8"), str(table))
        by_currency: dict[str, dict[dt.date, dict]] = {}
        for r in rows:
            by_currency.setdefault(r["currency"], {})[r["date"]] = r
        if currency not in by_currency:
            raise ParamsError(f"params.yaml: 'forecast.data.currency' is {currency!r}, "
                              f"but {table} has no {currency} rows")
        main = by_currency[currency]
        getters = {c: (lambda day, c=c: main[day][c]) for c in prices.TABLE_COLUMNS[2:]
                   if all(r[c] is not None for r in main.values())}
        getters.update({f"close_{other}": (lambda day, o=other: by_currency[o][day]["close"])
                        for other in by_currency if other != currency})
        others = sorted(f"close_{c}" for c in by_currency if c != currency)
        missing = [f for f in params.forecast.data.features if f.startswith("close_") and f not in getters]
        if missing:
            raise ParamsError(f"params.yaml: 'forecast.data.features' asks for {missing}, but {table} "
                              f"has {others or 'no other currency'} beside {currency}")
        wanted = [f for f in params.forecast.data.features if f in getters]
        # Base columns are complete by construction; another currency may lack some days.
        others_wanted = [by_currency[f[len("close_"):]] for f in wanted if f.startswith("close_")]
        days = [d for d in sorted(main) if all(d in other for other in others_wanted)]
        return days, {name: np.array([get(d) for d in days], np.float32)
                      for name, get in getters.items() if name in wanted or not name.startswith("close_")}
    if currency != "USD":
        raise ParamsError(f"params.yaml: 'forecast.data.currency' is {currency!r}, "
                          f"but format '{source.format}' holds USD prices only")
    text = read_corpus(raw.read_bytes(), str(raw))
    if source.format == "coindesk-csv":
        rows = parse_csv_export(text, str(raw))
        return [r["date"] for r in rows], {c: np.array([r[c] for r in rows], np.float32)
                                           for c in ("close", "open", "high", "low")}
    pairs = parse_bpi_close(text, str(raw))
    days, close = [d for d, _ in pairs], np.array([c for _, c in pairs], np.float32)
    columns = {"close": close}
    if source.format == "bpi-json-ecb":  # close_<CUR>: the USD close at the ECB rate of the day
        for name in params.forecast.data.features:
            if name.startswith("close_"):
                columns[name] = ecb.convert(days, close, name[len("close_"):], str(raw))
    return days, columns


def from_first_day(days: list[dt.date], columns: dict[str, np.ndarray], first_day: dt.date | None, where: str):
    """The days from ``first_day`` on (all of them when it is None)."""
    if first_day is None:
        return days, columns
    keep = np.array([day >= first_day for day in days], bool)
    if not keep.any():
        raise ParamsError(f"params.yaml: 'forecast.data.first_day' is {first_day}, after the last day "
                          f"({days[-1]}) of {where}")
    return [day for day, k in zip(days, keep) if k], {name: col[keep] for name, col in columns.items()}


def run(params: Params, variant: str | None = None) -> None:
    d = params.forecast.data
    known, columns = from_first_day(*read_series(params), d.first_day, params.sources.forecast.raw)
    days, columns = prices.fill_gaps(known, columns, d.gap_policy, params.sources.forecast.raw)
    dates = np.array([day.isoformat() for day in days])
    unknown = [f for f in d.features if f not in columns]
    if unknown:
        raise ParamsError(
            f"params.yaml: 'forecast.data.features' asks for {unknown}, but format "
            f"'{params.sources.forecast.format}' only has {sorted(columns)}"
        )
    series = np.stack([columns[name] for name in d.features], axis=1)
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
        "test_windows": len(split.test), "filled_days": len(days) - len(known),
        "gap_policy": d.gap_policy,
        **({"ecb_rates": [day.isoformat() for day in ecb.history()]}
           if params.sources.forecast.format == "bpi-json-ecb" else {}),
    })
    print(f"prepare_forecast: {len(series)} days {dates[0]}..{dates[-1]}; "
          f"{len(split.train)} train / {len(split.test)} test windows (test from {dates[split.cut]})")
