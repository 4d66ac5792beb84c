"""Pure daily-price bookkeeping: incremental merges and gap reports.

Rows are dicts with at least ``date`` (a ``datetime.date``), ``currency`` and ``close``.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable

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
