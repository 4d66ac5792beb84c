"""The CoinDesk Data API: daily index values (``/index/cc/v1/historical/days``).

The API key is read from an environment variable and sent only in the
``Authorization`` header, so it never appears in a URL, a log line, an error message or
a stored file. Pages are requested newest first with ``limit``/``to_ts`` until the
wanted start date is covered; each page's bytes are returned verbatim for storage,
beside the price table :func:`parse_days` makes of them.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import requests

from pipeline.data import prices
from pipeline.errors import PipelineError
from pipeline.params import FetchPolicy
from pipeline.sources.coindesk import PriceFormatError, load_json_object
from pipeline.sources.fetch import FetchError, get_bytes

PAGE_LIMIT = 2000  # the API's maximum days per request
DAY = 86400


class ApiKeyError(PipelineError, RuntimeError):
    """No usable API key; the message says which variable to set (never the key)."""


def api_key(variable: str) -> str:
    key = os.environ.get(variable, "").strip()
    if not key:
        raise ApiKeyError(
            f"the CoinDesk Data API needs a key: set the environment variable {variable}"
        )
    return key


def fetch_pages(
    base_url: str,
    market: str,
    instrument: str,
    since: dt.date,
    until: dt.date,
    key_variable: str,
    policy: FetchPolicy,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[bytes, pd.DataFrame]]:
    """``(raw body, parsed table)`` per page covering ``since``..``until`` (UTC days,
    inclusive), newest page first. Each page is parsed once, here: paging needs its
    oldest day, and the caller keeps both the verbatim bytes and the rows."""
    key = api_key(key_variable)
    url = f"{base_url.rstrip('/')}/index/cc/v1/historical/days"
    headers = {"Authorization": f"Apikey {key}", "Accept": "application/json"}
    pages, to_ts = [], _midnight(until)
    first = _midnight(since)
    while to_ts >= first:
        limit = min(PAGE_LIMIT, (to_ts - first) // DAY + 1)
        params = {"market": market, "instrument": instrument, "limit": str(limit),
                  "to_ts": str(to_ts), "aggregate": "1", "fill": "true", "response_format": "JSON"}
        try:
            body = get_bytes(url, policy, params=params, headers=headers, session=session, sleep=sleep)
        except FetchError as err:
            if err.status in (401, 403):
                raise ApiKeyError(
                    f"{url}: HTTP {err.status}: the CoinDesk Data API refused the key; "
                    f"set the environment variable {key_variable} to a valid key"
                ) from None
            raise
        days = parse_days(body.decode("utf-8", errors="replace"), f"{url} ({instrument}, to_ts={to_ts})")
        pages.append((body, days))
        if len(days) < limit:  # the series starts later than `since`: nothing older exists
            break
        to_ts = _midnight(days["date"].iloc[0].date()) - DAY
    return pages


def parse_days(text: str, name: str) -> pd.DataFrame:
    """One response -> a price table (:func:`pipeline.data.prices.table`): ``date``,
    ``currency``, ``close``, ``open``, ``high``, ``low``.

    Extra fields are ignored; a missing ``Data`` list, an ``Err`` payload, an empty page,
    a bad value, or dates that are not strictly increasing is an error naming the field.
    """
    doc = load_json_object(text, name)
    if doc.get("Err"):
        raise PriceFormatError(f"{name}: the API reported an error in field 'Err': {doc['Err']}")
    data = doc.get("Data")
    if not isinstance(data, list):
        raise PriceFormatError(f"{name}: field 'Data' is missing or not a list")
    if not data:
        raise PriceFormatError(f"{name}: field 'Data' is empty (no days in the requested range)")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise PriceFormatError(f"{name}: Data[{i}] is not an object")
    raw = pd.DataFrame.from_records(data)

    def numbers(field: str, kind: type | tuple) -> pd.Series:
        """The field as float64, NaN where absent; a value of another JSON type is an error."""
        for i, entry in enumerate(data):
            value = entry.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                what = "an integer" if field == "TIMESTAMP" else "a positive price"
                raise PriceFormatError(f"{name}: Data[{i}]: field '{field}' is not {what}: {value!r}")
        return pd.to_numeric(raw[field], errors="coerce") if field in raw else pd.Series(np.nan, index=raw.index)

    stamps = numbers("TIMESTAMP", int)
    if (bad := np.flatnonzero(stamps.isna())).size:
        raise PriceFormatError(f"{name}: Data[{bad[0]}]: field 'TIMESTAMP' is not an integer: None")
    instrument = raw["INSTRUMENT"].fillna("BTC-USD") if "INSTRUMENT" in raw else pd.Series(["BTC-USD"] * len(raw))
    out = pd.DataFrame({"date": pd.to_datetime(stamps.astype(np.int64), unit="s").dt.normalize(),
                        "currency": instrument.astype(str).str.rsplit("-", n=1).str[-1]})
    for field in ("CLOSE", "OPEN", "HIGH", "LOW"):
        values = numbers(field, (int, float)).to_numpy(np.float64)
        ok = np.isfinite(values) & (values > 0)
        if field != "CLOSE":
            ok |= np.isnan(values)
        if (bad := np.flatnonzero(~ok)).size:
            value = data[bad[0]].get(field)
            raise PriceFormatError(f"{name}: Data[{bad[0]}]: field '{field}' is not a positive price: {value!r}")
        out[field.lower()] = values
    step = out["date"].diff()
    if (bad := np.flatnonzero(step <= pd.Timedelta(0))).size:
        i = int(bad[0])
        kind = "duplicate date" if step.iloc[i] == pd.Timedelta(0) else "dates out of order"
        raise PriceFormatError(f"{name}: Data[{i}]: field 'TIMESTAMP': {kind} ({out['date'].iloc[i].date()})")
    return prices.table(out)


def _midnight(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
