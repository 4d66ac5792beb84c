"""download@<workload>: bring a source into data/raw, verified, atomically.

File sources (every format but two) are one fetch with an optional sha256. An ``iwslt``
source is a folder of files fetched together and swapped in as a whole. A
``coindesk-api`` source is refreshed incrementally: only the days after the last stored
one are requested, the responses are kept verbatim under ``responses/``, and the tidy
table ``prices.csv`` is rewritten only when days were added.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import requests

from pipeline import artifacts
from pipeline.data import prices
from pipeline.params import FetchPolicy, PairsSource, Params, ParamsError, PriceSource
from pipeline.sources import coindesk_api, iwslt
from pipeline.sources.fetch import FetchError, fetch

WORKLOADS = ("nmt", "charlm", "forecast")
REPORT, RESPONSES = "refresh.json", "responses"


def run(params: Params, workload: str) -> int | None:
    """Fetch ``workload``'s source; for a ``coindesk-api`` source, return the days added."""
    if workload not in WORKLOADS:
        raise SystemExit(f"download: unknown workload '{workload}'; choose one of {WORKLOADS}")
    source = getattr(params.sources, workload)
    if source.format == "coindesk-api":
        today = dt.datetime.now(dt.UTC).date()
        return refresh_prices(source, params.fetch, today)
    elif source.format == "iwslt":
        digest = fetch_folder(source, params.fetch)
        print(f"download@{workload}: {source.url} -> {source.raw}/ (listing sha256 {digest})")
    else:
        digest = fetch(source.url, source.raw, source.sha256, params.fetch)
        print(f"download@{workload}: {source.url} -> {source.raw} (sha256 {digest[:16]}...)")
    return None


def fetch_folder(source: PairsSource, policy: FetchPolicy, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> str:
    """Fetch every IWSLT file into a fresh folder and swap it in whole.

    Returns the sha256 of the ``sha256sum``-style listing of the files, which is what
    ``sha256`` pins for a folder source.
    """
    with artifacts.atomic_dir(source.raw) as tmp:
        lines = []
        for name in iwslt.files(source.langs):
            digest = fetch(f"{source.url.rstrip('/')}/{name}", tmp / name, None, policy, session, sleep)
            lines.append(f"{digest}  {name}\n")
        listing = hashlib.sha256("".join(lines).encode()).hexdigest()
        if source.sha256 is not None and listing != source.sha256.lower():
            raise FetchError(
                f"{source.url}: sha256 of the file listing mismatch: expected {source.sha256}, "
                f"got {listing}; {source.raw} was left as it was"
            )
        # parse before swapping in: a bad file never replaces good ones (empty lines are
        # prepare_nmt's to refuse or drop, as nmt.data.empty_lines says)
        iwslt.read_folder(tmp, source.langs, empty="drop")
    return listing


def refresh_prices(source: PriceSource, policy: FetchPolicy, today: dt.date,
                   session: requests.Session | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> int:
    """Fetch the days after the last stored one (up to yesterday, UTC) and merge them.

    Returns the number of rows added. Nothing on disk changes unless every page was
    fetched and parsed and the merged table validates; with nothing new, nothing is
    written at all, so a second run in a row is a no-op.
    """
    api = source.api
    currencies = [i.rpartition("-")[2] for i in api.instruments]
    if len(set(currencies)) != len(currencies) or "" in currencies:
        raise ParamsError(f"params.yaml: 'sources.forecast.api.instruments' {list(api.instruments)} "
                          "must be BASE-QUOTE pairs with distinct quote currencies")
    folder = Path(source.raw)
    table = folder / prices.TABLE_FILE
    stored = prices.from_csv(table.read_text(encoding="utf-8"), str(table)) if table.exists() else prices.table()
    last = prices.last_dates(stored)
    until = today - dt.timedelta(days=1)  # today's bar is not closed yet
    pages: dict[Path, bytes] = {}
    fresh: list[pd.DataFrame] = []
    for instrument, currency in zip(api.instruments, currencies, strict=True):
        since = last[currency] + dt.timedelta(days=1) if currency in last else api.since
        if since > until:
            print(f"download@forecast: {instrument} is up to date (last day {last[currency]})")
            continue
        for body, rows in coindesk_api.fetch_pages(source.url, api.market, instrument, since, until,
                                                   api.key_env, policy, session, sleep):
            span = rows["date"].dt.strftime("%Y-%m-%d")
            pages[folder / RESPONSES / instrument / f"{span.iloc[0]}_{span.iloc[-1]}.json"] = body
            fresh.append(rows[rows["date"].between(pd.Timestamp(since), pd.Timestamp(until))])
    merged, added = prices.merge_days(stored, pd.concat(fresh) if fresh else prices.table())
    prices.validate(merged, str(table))
    if not added:
        print(f"download@forecast: nothing new; {table} unchanged")
        return 0
    for path, body in pages.items():
        artifacts.write_bytes(path, body)
    artifacts.write_text(table, prices.to_csv(merged))
    artifacts.write_json(folder / REPORT, _report(merged, today))
    for currency in currencies:
        for a, b in prices.gaps(merged.loc[merged["currency"] == currency, "date"]):
            print(f"download@forecast: {currency} has no data for {a}..{b}", file=sys.stderr)
    print(f"download@forecast: {added} new day(s) -> {table} ({len(merged)} rows)")
    return added


def _report(table: pd.DataFrame, today: dt.date) -> dict:
    out: dict = {"refreshed": today.isoformat(), "series": {}}
    for currency, days in table.groupby("currency")["date"]:
        out["series"][currency] = {
            "first": days.min().date().isoformat(), "last": days.max().date().isoformat(), "days": len(days),
            "gaps": [[a.isoformat(), b.isoformat()] for a, b in prices.gaps(days)],
        }
    return out
