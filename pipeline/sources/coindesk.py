"""CoinDesk price history in its archived formats.

- the legacy BPI v1 ``historical/close.json`` response (USD close by ISO date);
- the CSV export of CoinDesk's price page (close, 24h open/high/low by ISO date).

Both parse into rows sorted by date and are validated the same way: dates strictly
increasing, prices finite and positive.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math

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


def parse_bpi_close(text: str, name: str) -> list[tuple[dt.date, float]]:
    """Parse ``{"bpi": {"YYYY-MM-DD": close, ...}, ...}`` into sorted (date, close) rows.

    Raises :class:`PriceFormatError` for an HTML error page, invalid JSON, a missing
    ``bpi`` field, a bad date, a non-positive or non-finite price, or unsorted dates.
    """
    doc = load_json_object(text, name)
    bpi = doc.get("bpi")
    if not isinstance(bpi, dict) or not bpi:
        raise PriceFormatError(f"{name}: field 'bpi' is missing or empty")
    rows = []
    for key, value in bpi.items():
        try:
            day = dt.date.fromisoformat(key)
        except ValueError:
            raise PriceFormatError(f"{name}: field 'bpi.{key}' is not an ISO date") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PriceFormatError(f"{name}: field 'bpi.{key}' is not a number: {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise PriceFormatError(f"{name}: field 'bpi.{key}' is not a positive price: {value}")
        rows.append((day, float(value)))
    _check_increasing([day for day, _ in rows], name, lambda d: f"'bpi.{d}'")
    return rows


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


def parse_csv_export(text: str, name: str) -> list[dict[str, object]]:
    """Parse CoinDesk's CSV export into ``{"date", "close", "open", "high", "low"}`` rows.

    Errors name the file, the line and the column. The legacy JSON and this export
    are different CoinDesk products and disagree day for day (MANIFEST.md): do not
    splice them without an explicit adjustment.
    """
    if text.lstrip().startswith("<"):
        raise PriceFormatError(f"{name}: looks like an HTML/XML page, not a CSV export")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise PriceFormatError(f"{name}:1: missing column(s) {missing}; header is {reader.fieldnames}")
    rows = []
    for row in reader:
        line = reader.line_num
        try:
            day = dt.date.fromisoformat(row["Date"])
        except (TypeError, ValueError):
            raise PriceFormatError(f"{name}:{line}: column 'Date' is not an ISO date: {row['Date']!r}") from None
        out: dict[str, object] = {"date": day}
        for column, field in CSV_COLUMNS.items():
            if field != "date":
                out[field] = _price(row[column], f"{name}:{line}: column '{column}'")
        rows.append(out)
    if not rows:
        raise PriceFormatError(f"{name}: no data rows")
    _check_increasing([r["date"] for r in rows], name, lambda d: f"date {d}")
    return rows


def _price(raw: str | None, where: str) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PriceFormatError(f"{where} is not a number: {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise PriceFormatError(f"{where} is not a positive price: {raw}")
    return value


def _check_increasing(days: list[dt.date], name: str, label) -> None:
    for a, b in zip(days, days[1:]):
        if b == a:
            raise PriceFormatError(f"{name}: duplicate date at {label(b)}")
        if b < a:
            raise PriceFormatError(f"{name}: dates not strictly increasing at {label(b)}")
