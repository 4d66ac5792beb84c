"""CoinDesk price history in its archived formats.

- the legacy BPI v1 ``historical/close.json`` response (USD close by ISO date);
- the CSV export of CoinDesk's price page (close, 24h open/high/low by ISO date).

Both parse into pandas, indexed by date, and are validated the same way: dates
strictly increasing, prices finite and positive; errors name the file and the field or line.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

CSV_COLUMNS = {
    "Date": "date",
    "Closing Price (USD)": "close",
    "24h Open (USD)": "open",
    "24h High (USD)": "high",
    "24h Low (USD)": "low",
}


class PriceFormatError(PipelineError, ValueError):
    """A price file that is not what it claims; the message names file and field."""


def parse_bpi_close(text: str, name: str) -> pd.Series:
    """Parse ``{"bpi": {"YYYY-MM-DD": close, ...}, ...}`` into the close by date.

    Raises :class:`PriceFormatError` for an HTML error page, invalid JSON, a missing
    ``bpi`` field, a bad date, a non-positive or non-finite price, or unsorted dates.
    """
    doc = load_json_object(text, name)
    bpi = doc.get("bpi")
    if not isinstance(bpi, dict) or not bpi:
        raise PriceFormatError(f"{name}: field 'bpi' is missing or empty")
    keys = list(bpi)
    days = pd.to_datetime(pd.Series(keys), format="%Y-%m-%d", errors="coerce")
    if (bad := np.flatnonzero(days.isna())).size:
        raise PriceFormatError(f"{name}: field 'bpi.{keys[bad[0]]}' is not an ISO date")
    values = list(bpi.values())
    for key, value in zip(keys, values, strict=True):  # JSON numbers only: not strings, not true/false
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PriceFormatError(f"{name}: field 'bpi.{key}' is not a number: {value!r}")
    close = pd.Series(np.asarray(values, np.float64), index=pd.DatetimeIndex(days, name="date"), name="close")
    if (bad := np.flatnonzero(~(np.isfinite(close) & (close > 0)))).size:
        raise PriceFormatError(f"{name}: field 'bpi.{keys[bad[0]]}' is not a positive price: {values[bad[0]]}")
    _check_increasing(close.index, name, lambda d: f"'bpi.{d}'")
    return close


def load_json_object(text: str, name: str) -> dict:
    """Decode a JSON object, refusing an HTML error page or broken JSON by name."""
    if text.lstrip().startswith("<"):
        raise PriceFormatError(f"{name}: looks like an HTML/XML page, not JSON")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise PriceFormatError(f"{name}: not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise PriceFormatError(f"{name}: expected a JSON object, got {type(doc).__name__}")
    return doc


def parse_csv_export(text: str, name: str) -> pd.DataFrame:
    """Parse CoinDesk's CSV export into ``close``, ``open``, ``high``, ``low`` by date.

    Errors name the file, the line and the column. The legacy JSON and this export
    are different CoinDesk products and disagree day for day (MANIFEST.md): do not
    splice them without an explicit adjustment.
    """
    if text.lstrip().startswith("<"):
        raise PriceFormatError(f"{name}: looks like an HTML/XML page, not a CSV export")
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise PriceFormatError(f"{name}: empty, not a CSV export") from None
    except pd.errors.ParserError as err:
        raise PriceFormatError(f"{name}: {err}") from None
    missing = [c for c in CSV_COLUMNS if c not in raw.columns]
    if missing:
        raise PriceFormatError(f"{name}:1: missing column(s) {missing}; header is {list(raw.columns)}")
    if raw.empty:
        raise PriceFormatError(f"{name}: no data rows")
    line = lambda i: int(i) + 2
    days = pd.to_datetime(raw["Date"], format="%Y-%m-%d", errors="coerce")
    if (bad := np.flatnonzero(days.isna())).size:
        raise PriceFormatError(f"{name}:{line(bad[0])}: column 'Date' is not an ISO date: {raw['Date'].iloc[bad[0]]!r}")
    frame = pd.DataFrame(index=pd.DatetimeIndex(days, name="date"))
    for column, field in CSV_COLUMNS.items():
        if field == "date":
            continue
        values = pd.to_numeric(raw[column], errors="coerce").to_numpy(np.float64)
        if (bad := np.flatnonzero(~(np.isfinite(values) & (values > 0)))).size:
            i, cell = bad[0], raw[column].iloc[bad[0]]
            kind = "not a number" if np.isnan(values[i]) and cell.strip().lower() != "nan" else "not a positive price"
            raise PriceFormatError(f"{name}:{line(i)}: column '{column}' is {kind}: {cell!r}")
        frame[field] = values
    _check_increasing(frame.index, name, lambda d: f"date {d}")
    return frame


def _check_increasing(days: pd.DatetimeIndex, name: str, label) -> None:
    step = np.diff(days.asi8)
    if (bad := np.flatnonzero(step <= 0)).size:
        day = days[bad[0] + 1].date()
        kind = "duplicate date" if step[bad[0]] == 0 else "dates not strictly increasing"
        raise PriceFormatError(f"{name}: {kind} at {label(day)}")
