"""The daily price table in pandas: the stored CSV, incremental merges, gaps and fills.

A *table* is a DataFrame with the columns :data:`TABLE_COLUMNS`: ``date`` (datetime64,
one UTC day), ``currency``, and the prices ``close`` (always) and ``open``, ``high``,
``low`` (NaN where the source has none), sorted by (currency, date). A *frame* is one
series' columns indexed by date, as the sources parse them and prepare_forecast cuts
windows from.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

TABLE_FILE = "prices.csv"  # inside a coindesk-api source's raw folder
TABLE_COLUMNS = ("date", "currency", "close", "open", "high", "low")
PRICES = TABLE_COLUMNS[2:]


class PriceTableError(PipelineError, ValueError):
    """A price table that breaks its invariants; the message names file, line, field."""


def table(rows: Iterable[dict] | pd.DataFrame = ()) -> pd.DataFrame:
    """A typed table from records (or a frame) with the table's columns, sorted."""
    frame = pd.DataFrame(rows if isinstance(rows, pd.DataFrame) else list(rows), columns=list(TABLE_COLUMNS))
    frame["date"] = pd.to_datetime(frame["date"])
    frame["currency"] = frame["currency"].astype(str)
    frame[list(PRICES)] = frame[list(PRICES)].astype(np.float64)
    return frame.sort_values(["currency", "date"], kind="stable", ignore_index=True)


def last_dates(prices: pd.DataFrame) -> dict[str, dt.date]:
    """The newest stored date per currency (what an incremental fetch starts after)."""
    return {c: day.date() for c, day in prices.groupby("currency")["date"].max().items()}


def merge_days(stored: pd.DataFrame, fresh: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Append the fresh rows dated after each currency's last stored day.

    Stored history is never rewritten, and a row already stored is never added twice,
    so merging the same fresh rows again adds nothing. Returns ``(merged, added)``.
    """
    last = stored.groupby("currency")["date"].max()
    fresh = table(fresh).drop_duplicates(["currency", "date"])
    cutoff = fresh["currency"].map(last)
    added = fresh[cutoff.isna() | (fresh["date"] > cutoff)]
    return table(pd.concat([stored, added], ignore_index=True)), len(added)


def gaps(dates: Iterable) -> list[tuple[dt.date, dt.date]]:
    """Runs of missing days, as inclusive ``(first_missing, last_missing)`` pairs."""
    days = pd.DatetimeIndex(pd.to_datetime(list(dates))).unique().sort_values()
    if len(days) < 2:
        return []
    missing = pd.date_range(days[0], days[-1], freq="D").difference(days).to_series()
    runs = (missing.diff() != pd.Timedelta(days=1)).cumsum()
    return [(run.iloc[0].date(), run.iloc[-1].date()) for _, run in missing.groupby(runs)]


def validate(prices: pd.DataFrame, name: str, first_line: int | None = None) -> None:
    """Per currency, dates strictly increasing, and every price finite and positive
    (``open``/``high``/``low`` may be missing). Errors name ``name:line`` when the rows
    are a file's lines from ``first_line`` on, else the row."""
    prices = prices.reset_index(drop=True)

    def where(i: int) -> str:
        row = prices.iloc[i]
        at = f"{name}:{i + first_line}" if first_line is not None else f"{name}: row {i + 1}"
        return f"{at} ({row['currency']} {row['date'].date()})"

    step = prices.groupby("currency", sort=False)["date"].diff()
    if (bad := np.flatnonzero(step <= pd.Timedelta(0))).size:
        i = int(bad[0])
        kind = "duplicate date" if step.iloc[i] == pd.Timedelta(0) else "dates not strictly increasing"
        previous = (prices["date"].iloc[i] - step.iloc[i]).date()
        raise PriceTableError(f"{where(i)}: {kind} (previous day {previous})")
    values = prices[list(PRICES)].to_numpy(np.float64)
    ok = np.isfinite(values) & (values > 0)
    ok[:, 1:] |= np.isnan(values[:, 1:])  # open, high, low may be missing; close may not
    if (bad := np.argwhere(~ok)).size:
        i, j = (int(x) for x in bad[0])
        raise PriceTableError(f"{where(i)}: field '{PRICES[j]}' is not a positive price: {float(values[i, j])!r}")


def to_csv(prices: pd.DataFrame) -> str:
    """The table as CSV text; prices are written exactly (shortest round trip), missing ones empty."""
    out = prices.assign(date=prices["date"].dt.strftime("%Y-%m-%d"))
    return out.to_csv(index=False, columns=list(TABLE_COLUMNS), na_rep="", lineterminator="\n")


def from_csv(text: str, name: str) -> pd.DataFrame:
    """Inverse of :func:`to_csv`, validated; errors name the file, line and column."""
    header = text.split("\n", 1)[0].rstrip("\r")
    if header != ",".join(TABLE_COLUMNS):
        raise PriceTableError(f"{name}:1: header must be {','.join(TABLE_COLUMNS)}, got {header!r}")
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.ParserError as err:
        raise PriceTableError(f"{name}: {err}") from None
    line = lambda i: i + 2  # noqa: E731  (the header is line 1)
    dates = pd.to_datetime(raw["date"], format="%Y-%m-%d", errors="coerce")
    if (bad := np.flatnonzero(dates.isna())).size:
        i = int(bad[0])
        raise PriceTableError(f"{name}:{line(i)}: column 'date' is not an ISO date: {raw['date'].iloc[i]!r}")
    out = pd.DataFrame({"date": dates, "currency": raw["currency"]})
    for field in PRICES:
        values = pd.to_numeric(raw[field].mask(raw[field] == ""), errors="coerce")
        if (bad := np.flatnonzero(values.isna() & (raw[field] != ""))).size:
            i = int(bad[0])
            raise PriceTableError(f"{name}:{line(i)}: column '{field}' is not a number: {raw[field].iloc[i]!r}")
        out[field] = values.astype(np.float64)
    validate(out, name, first_line=2)
    return out


def daily(frame: pd.DataFrame, policy: str, name: str) -> pd.DataFrame:
    """``frame`` (indexed by date) on every day from its first to its last, its missing
    days filled under ``policy``: ``error`` refuses a series with gaps and names them;
    ``ffill`` repeats the last known day; ``linear`` interpolates between the days
    either side."""
    missing = gaps(frame.index)
    if not missing:
        return frame
    if policy == "error":
        shown = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PriceTableError(
            f"{name}: {sum((b - a).days + 1 for a, b in missing)} missing day(s): {shown}{more}; "
            f"set forecast.data.gap_policy to ffill or linear in params.yaml to fill them"
        )
    full = frame.asfreq("D")
    return full.ffill() if policy == "ffill" else full.interpolate(method="time")
