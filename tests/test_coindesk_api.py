"""The CoinDesk Data API adapter against a local server; incremental merges and gaps."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from pipeline.data import prices
from pipeline.sources import coindesk_api
from pipeline.sources.coindesk import PriceFormatError

from .helpers import BPI, KEY, POLICY, VAR, FakeApi


def test_pages_cover_the_range_and_parse(httpserver, monkeypatch):
    monkeypatch.setenv(VAR, KEY)
    api = FakeApi()
    httpserver.expect_request("/index/cc/v1/historical/days").respond_with_handler(api)
    monkeypatch.setattr(coindesk_api, "PAGE_LIMIT", 30)
    pages = coindesk_api.fetch_pages(httpserver.url_for("/"), "cadli", "BTC-USD",
                                     dt.date(2018, 9, 1), dt.date(2018, 11, 20), VAR, POLICY)
    assert len(pages) == 3 and [r["args"]["limit"] for r in api.requests] == ["30", "30", "21"]
    for body, rows in pages:  # bytes kept verbatim
        pd.testing.assert_frame_equal(rows, coindesk_api.parse_days(body.decode(), "page"))
    rows = prices.table(pd.concat([page for _, page in pages]))
    assert rows["date"].iloc[0] == pd.Timestamp(2018, 9, 1) and rows["date"].iloc[-1] == pd.Timestamp(2018, 11, 20)
    assert rows["date"].nunique() == len(rows) == 81
    assert rows["close"].iloc[-1] == pytest.approx(BPI["2018-11-20"]) and rows["currency"].iloc[-1] == "USD"


def test_history_that_starts_later_stops_paging(httpserver, monkeypatch):
    monkeypatch.setenv(VAR, KEY)
    api = FakeApi()
    httpserver.expect_request("/index/cc/v1/historical/days").respond_with_handler(api)
    pages = coindesk_api.fetch_pages(httpserver.url_for("/"), "cadli", "BTC-USD",
                                     dt.date(2009, 1, 1), dt.date(2010, 8, 1), VAR, POLICY)
    assert len(pages) == 1 and len(api.requests) == 1


def test_missing_or_refused_key_says_which_variable_and_never_leaks(httpserver, monkeypatch, capsys):
    monkeypatch.delenv(VAR, raising=False)
    with pytest.raises(coindesk_api.ApiKeyError, match=f"set the environment variable {VAR}"):
        coindesk_api.fetch_pages(httpserver.url_for("/"), "cadli", "BTC-USD",
                                 dt.date(2018, 1, 1), dt.date(2018, 1, 2), VAR, POLICY)
    api = FakeApi()
    httpserver.expect_request("/index/cc/v1/historical/days").respond_with_handler(api)
    monkeypatch.setenv(VAR, KEY + "-wrong")
    with pytest.raises(coindesk_api.ApiKeyError, match=rf"HTTP 401: .*set the environment variable {VAR}") as err:
        coindesk_api.fetch_pages(httpserver.url_for("/"), "cadli", "BTC-USD",
                                 dt.date(2018, 1, 1), dt.date(2018, 1, 2), VAR, POLICY)
    out = capsys.readouterr()
    for text in (str(err.value), out.out, out.err):
        assert KEY not in text
    assert len(api.requests) == 1  # a refused key is not retried
    assert all(KEY not in json.dumps(r["args"]) for r in api.requests)  # never in the URL


@pytest.mark.parametrize("body,pattern", [
    ("{not json", "not valid JSON"),
    ('{"Data": [], "Err": {}}', "field 'Data' is empty"),
    ('{"Err": {"type": 2, "message": "bad instrument"}}', "error in field 'Err'"),
    ('{"Data": {}}', "field 'Data' is missing or not a list"),
    ('{"Data": [{"TIMESTAMP": "yesterday", "CLOSE": 1}]}', r"Data\[0\]: field 'TIMESTAMP'"),
    ('{"Data": [{"TIMESTAMP": 1514764800, "CLOSE": 0}]}', r"Data\[0\]: field 'CLOSE' is not a positive price"),
    ('{"Data": [{"TIMESTAMP": 1514764800, "CLOSE": 1}, {"TIMESTAMP": 1514764800, "CLOSE": 2}]}',
     r"Data\[1\]: field 'TIMESTAMP': duplicate date \(2018-01-01\)"),
    ('{"Data": [{"TIMESTAMP": 1514851200, "CLOSE": 1}, {"TIMESTAMP": 1514764800, "CLOSE": 2}]}',
     r"Data\[1\]: field 'TIMESTAMP': dates out of order \(2018-01-01\)"),
    ("<html>Gateway Timeout</html>", "looks like an HTML/XML page"),
])
def test_bad_api_responses_name_the_field(body, pattern):
    with pytest.raises(PriceFormatError, match=rf"page: .*{pattern}"):
        coindesk_api.parse_days(body, "page")


def rows(*days: tuple) -> pd.DataFrame:
    return prices.table({"date": day, "currency": currency, "close": close} for day, close, currency in
                        ((d[0], d[1], d[2] if len(d) > 2 else "USD") for d in days))


def test_incremental_merge_adds_only_new_days_and_is_idempotent():
    stored = rows(("2018-11-18", 1.0), ("2018-11-19", 2.0))
    fresh = rows(("2018-11-19", 99.0), ("2018-11-20", 3.0), ("2018-11-21", 4.0), ("2018-11-21", 4.0))
    merged, added = prices.merge_days(stored, fresh)
    assert added == 2 and merged["close"].tolist() == [1.0, 2.0, 3.0, 4.0]  # history kept
    again, added_again = prices.merge_days(merged, fresh)
    assert added_again == 0
    pd.testing.assert_frame_equal(again, merged)
    eur, n = prices.merge_days(merged, rows(("2018-11-01", 5.0, "EUR")))
    assert n == 1 and prices.last_dates(eur) == {"USD": dt.date(2018, 11, 21), "EUR": dt.date(2018, 11, 1)}


def test_gaps_are_reported_as_inclusive_runs():
    days = [dt.date(2018, 1, d) for d in (1, 2, 5, 6, 8)]
    assert prices.gaps(days) == [(dt.date(2018, 1, 3), dt.date(2018, 1, 4)), (dt.date(2018, 1, 7), dt.date(2018, 1, 7))]
    assert prices.gaps(dt.date.fromisoformat(d) for d in BPI) == []


def test_gaps_are_filled_only_as_the_policy_says():
    days = pd.DatetimeIndex(["2018-01-01", "2018-01-02", "2018-01-05"], name="date")
    frame = pd.DataFrame({"close": [1.0, 2.0, 5.0], "high": [2.0, 4.0, 10.0]}, index=days)
    with pytest.raises(prices.PriceTableError, match=r"prices.csv: 2 missing day\(s\): 2018-01-03\.\.2018-01-04"):
        prices.daily(frame, "error", "prices.csv")
    full = pd.date_range("2018-01-01", "2018-01-05", freq="D")
    ffill = prices.daily(frame, "ffill", "x")
    assert ffill.index.equals(full) and ffill["close"].tolist() == [1, 2, 2, 2, 5]
    assert ffill["high"].tolist() == [2, 4, 4, 4, 10]
    linear = prices.daily(frame, "linear", "x")
    assert linear["close"].tolist() == [1, 2, 3, 4, 5] and linear["high"].tolist() == [2, 4, 6, 8, 10]
    same = prices.daily(frame.iloc[:2], "error", "x")
    assert same.index.equals(full[:2]) and same["close"].tolist() == [1, 2]


def test_the_price_table_round_trips_exactly_and_names_bad_lines():
    table = prices.table({"date": d, "currency": "USD", "close": c, "open": None, "high": c * 1.1, "low": None}
                         for d, c in list(BPI.items())[:50])
    text = prices.to_csv(table)
    pd.testing.assert_frame_equal(prices.from_csv(text, "t.csv"), table)  # every float exactly
    lines = text.splitlines()
    with pytest.raises(prices.PriceTableError, match=r"t.csv:3: column 'close' is not a number: 'n/a'"):
        prices.from_csv("\n".join(lines[:2] + ["2010-07-19,USD,n/a,,1.0,"] + lines[3:]), "t.csv")
    with pytest.raises(prices.PriceTableError, match=r"t.csv:3 \(USD 2010-07-17\): dates not strictly increasing"):
        prices.from_csv("\n".join(lines[:2] + ["2010-07-17,USD,1.0,,1.0,"]), "t.csv")
    with pytest.raises(prices.PriceTableError, match="field 'close' is not a positive price: -1.0"):
        prices.from_csv("\n".join(lines[:1] + ["2010-07-17,USD,-1.0,,,"]), "t.csv")
