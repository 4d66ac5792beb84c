"""CoinDesk price history: the legacy BPI v1 ``historical/close.json`` response."""

from __future__ import annotations

import datetime as dt
import json
import math


class PriceFormatError(ValueError):
    """A price file that is not what it claims; the message names file and field."""


def parse_bpi_close(text: str, name: str) -> list[tuple[dt.date, float]]:
    """Parse ``{"bpi": {"YYYY-MM-DD": close, ...}, ...}`` into sorted (date, close) rows.

    Raises :class:`PriceFormatError` for an HTML error page, invalid JSON, a missing
    ``bpi`` field, a bad date, a non-positive or non-finite price, or unsorted dates.
    """
    if text.lstrip().startswith("<"):
        raise PriceFormatError(f"{name}: looks like an HTML/XML page, not BPI JSON")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise PriceFormatError(f"{name}: not valid JSON: {err}") from None
    bpi = doc.get("bpi") if isinstance(doc, dict) else None
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
    for (a, _), (b, _) in zip(rows, rows[1:]):
        if b <= a:
            raise PriceFormatError(f"{name}: dates not strictly increasing at 'bpi.{b}'")
    return rows
