"""Pure daily-price bookkeeping: incremental merges, the tidy table, gap reports and fills.

Rows are dicts with at least ``date`` (a ``datetime.date``), ``currency`` and ``close``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Iterable

import numpy as np

from pipeline.errors import PipelineError

ONE_DAY = dt.timedelta(days=1)


def last_dates(rows: Iterable[dict]) -> dict[str, dt.date]:
    """The newest stored date per currency (what an incremental fetch starts after)."""
    last: dict[str, dt.date] = {}
    for row in rows:
        c = row["currency"]
        last[c] = max(last.get(c, row["date"]), row["date"])
    return last


def merge_days(stored: list[dict], fresh: list[dict]) -> tuple[list[dict], int]:
    """Append the fresh rows dated after each currency's last stored day.

    Stored history is never rewritten, and a row already stored is never added twice,
    so merging the same fresh rows again adds nothing. Returns ``(merged, added)``,
    merged sorted by (currency, date).
    """
    last = last_dates(stored)
    seen: set[tuple[str, dt.date]] = set()
    added = []
    for row in sorted(fresh, key=lambda r: (r["currency"], r["date"])):
        key = (row["currency"], row["date"])
        if key in seen or (row["currency"] in last and row["date"] <= last[row["currency"]]):
            continue
        seen.add(key)
        added.append(row)
    merged = sorted(stored + added, key=lambda r: (r["currency"], r["date"]))
    return merged, len(added)


def gaps(dates: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Runs of missing days, as inclusive ``(first_missing, last_missing)`` pairs."""
    ordered = sorted(set(dates))
    return [(a + ONE_DAY, b - ONE_DAY) for a, b in zip(ordered, ordered[1:]) if b - a > ONE_DAY]


# --- the tidy daily table -------------------------------------------------------------
TABLE_FILE = "prices.csv"  # inside a coindesk-api source's raw folder
TABLE_COLUMNS = ("date", "currency", "close", "open", "high", "low")


class PriceTableError(PipelineError, ValueError):
    """A price table that breaks its invariants; the message names file, line, field."""


def validate(rows: list[dict], name: str) -> None:
    """Per currency, dates strictly increasing and every price finite and positive."""
    last: dict[str, dt.date] = {}
    for i, row in enumerate(rows):
        where = f"{name}: row {i + 1} ({row['currency']} {row['date']})"
        prev = last.get(row["currency"])
        if prev is not None and row["date"] <= prev:
            kind = "duplicate date" if row["date"] == prev else "dates not strictly increasing"
            raise PriceTableError(f"{where}: {kind} (previous day {prev})")
        last[row["currency"]] = row["date"]
        for field in TABLE_COLUMNS[2:]:
            value = row.get(field)
            if value is None and field != "close":
                continue
            if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
                raise PriceTableError(f"{where}: field '{field}' is not a positive price: {value!r}")


def to_csv(rows: list[dict]) -> str:
    """The table as CSV text; prices are written exactly (``repr``), missing fields empty."""
    lines = [",".join(TABLE_COLUMNS)]
    for row in rows:
        cells = [row["date"].isoformat(), row["currency"]]
        cells += ["" if row.get(f) is None else repr(row[f]) for f in TABLE_COLUMNS[2:]]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def from_csv(text: str, name: str) -> list[dict]:
    """Inverse of :func:`to_csv`, validated; errors name the file, line and column."""
    lines = text.rstrip("\n").split("\n")
    if lines[0] != ",".join(TABLE_COLUMNS):
        raise PriceTableError(f"{name}:1: header must be {','.join(TABLE_COLUMNS)}, got {lines[0]!r}")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != len(TABLE_COLUMNS):
            raise PriceTableError(f"{name}:{lineno}: expected {len(TABLE_COLUMNS)} columns, got {len(cells)}")
        try:
            row: dict = {"date": dt.date.fromisoformat(cells[0]), "currency": cells[1]}
        except ValueError:
            raise PriceTableError(f"{name}:{lineno}: column 'date' is not an ISO date: {cells[0]!r}") from None
        for field, cell in zip(TABLE_COLUMNS[2:], cells[2:]):
            try:
                row[field] = float(cell) if cell else None
            except ValueError:
                raise PriceTableError(f"{name}:{lineno}: column '{field}' is not a number: {cell!r}") from None
        rows.append(row)
    validate(rows, name)
    return rows


# --- gaps -----------------------------------------------------------------------------
def fill_gaps(
    dates: list[dt.date], columns: dict[str, np.ndarray], policy: str, name: str
) -> tuple[list[dt.date], dict[str, np.ndarray]]:
    """A daily series with its missing days filled under ``policy``.

    ``error`` refuses a series with gaps and names them; ``ffill`` repeats the last
    known day; ``linear`` interpolates between the days either side.
    """
    missing = gaps(dates)
    if not missing:
        return list(dates), columns
    if policy == "error":
        shown = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PriceTableError(
            f"{name}: {sum((b - a).days + 1 for a, b in missing)} missing day(s): {shown}{more}; "
            f"set forecast.data.gap_policy to ffill or linear in params.yaml to fill them"
        )
    day0 = dates[0]
    known = np.array([(d - day0).days for d in dates])
    full = np.arange(known[-1] + 1)
    filled = {}
    for key, values in columns.items():
        if policy == "ffill":
            filled[key] = values[np.searchsorted(known, full, side="right") - 1]
        else:
            filled[key] = np.interp(full, known, values).astype(values.dtype)
    return [day0 + dt.timedelta(days=int(i)) for i in full], filled
