"""The download stage end to end against a real HTTP server on 127.0.0.1.

Every adapter is driven the way `dvc repro download@<workload>` drives it: a Tatoeba
archive, an IWSLT folder, a Project Gutenberg book by id through a mirror, and the
CoinDesk Data API refreshed incrementally. Each fault ends in a retry or a clear error,
and a failure leaves the previous good raw data exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from werkzeug import Response

from pipeline import params as params_module
from pipeline.data import prices
from pipeline.sources import iwslt
from pipeline.sources.coindesk import PriceFormatError
from pipeline.sources.coindesk_api import ApiKeyError
from pipeline.sources.fetch import USER_AGENT, FetchError
from pipeline.stages import download, prepare_charlm, prepare_forecast, prepare_nmt

from .conftest import FIXTURES, ROOT, merge
from .helpers import BPI, KEY, VAR, FakeApi

API_PATH = "/index/cc/v1/historical/days"
FAST = {"retries": 2, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05,
        "connect_timeout": 2.0, "read_timeout": 2.0}


def params_with(base: dict, **sections) -> params_module.Params:
    return params_module.from_dict(merge(base, {"fetch": FAST, **sections}))


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (temp files included, if any)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- Tatoeba archive -----------------------------------------------------------------
def test_tatoeba_zip_over_http_to_prepared_pairs(httpserver, tmp_path, monkeypatch, tiny_params_dict):
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("_about.txt", "www.manythings.org/anki and tatoeba.org, CC BY 2.0 FR\n")
        zf.writestr("fra.txt", (FIXTURES / "fra-eng-excerpt.txt").read_bytes())
    httpserver.expect_request("/anki/fra-eng.zip").respond_with_data(buffer.getvalue(), content_type="application/zip")
    params = params_with(tiny_params_dict, sources={"nmt": {
        "url": httpserver.url_for("/anki/fra-eng.zip"), "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        "raw": "data/raw/nmt/fra-eng.zip", "format": "tatoeba-zip"}})
    download.run(params, "nmt")
    prepare_nmt.run(params)
    train = Path("data/prepared/nmt/train.tsv").read_text(encoding="utf-8").splitlines()
    assert len(train) > 100 and all(len(line.split("\t")) == 2 for line in train)
    assert httpserver.log[0][0].headers["User-Agent"] == USER_AGENT


# --- IWSLT folder ---------------------------------------------------------------------
IWSLT_FILES = {  # served name -> fixture (the train files are not in shared/data: tst2012 stands in)
    "train.en": "iwslt-tst2012-head.en", "train.vi": "iwslt-tst2012-head.vi",
    "tst2012.en": "iwslt-tst2012-head.en", "tst2012.vi": "iwslt-tst2012-head.vi",
    "tst2013.en": "iwslt-tst2013-head.en", "tst2013.vi": "iwslt-tst2013-head.vi",
    "vocab.en": "iwslt-vocab-head.en", "vocab.vi": "iwslt-vocab-head.vi",
}


def serve_iwslt(httpserver, broken: str | None = None) -> None:
    for name, fixture in IWSLT_FILES.items():
        body = (FIXTURES / fixture).read_bytes()
        if name == broken:
            httpserver.expect_request(f"/iwslt15.en-vi/{name}").respond_with_data("gone", status=404)
        else:
            httpserver.expect_request(f"/iwslt15.en-vi/{name}").respond_with_data(body, content_type="text/plain")


def test_iwslt_folder_is_fetched_whole_and_split_by_file(httpserver, tmp_path, monkeypatch, tiny_params_dict):
    monkeypatch.chdir(tmp_path)
    serve_iwslt(httpserver)
    source = {"url": httpserver.url_for("/iwslt15.en-vi"), "sha256": None,
              "raw": "data/raw/nmt/iwslt", "format": "iwslt", "langs": ["en", "vi"]}
    data = {
        "source": "en",
        "target": "vi",
        "max_len": 40,
        "buckets": [20, 41],
        "valid_size": 1000,
        "test_size": 1000,
        "min_freq": 1,
    }
    params = params_with(tiny_params_dict, sources={"nmt": source}, nmt={"data": data})
    listing = download.fetch_folder(params.sources.nmt, params.fetch)
    raw = tmp_path / "data/raw/nmt/iwslt"
    assert sorted(tree(raw)) == sorted(iwslt.files(("en", "vi")))
    assert tree(raw)["tst2013.vi"] == (FIXTURES / "iwslt-tst2013-head.vi").read_bytes()
    expected = "".join(f"{hashlib.sha256((FIXTURES / IWSLT_FILES[n]).read_bytes()).hexdigest()}  {n}\n"
                       for n in iwslt.files(("en", "vi")))
    assert listing == hashlib.sha256(expected.encode()).hexdigest()

    prepare_nmt.run(params)
    test_src = [line.split("\t")[0] for line in Path("data/prepared/nmt/test.tsv").read_text().splitlines()]
    tst2013 = (FIXTURES / "iwslt-tst2013-head.en").read_text().splitlines()
    assert test_src and set(test_src) <= {s.replace("&apos;", "'").replace("&quot;", '"') for s in tst2013}
    assert not any("&apos;" in s or "&quot;" in s for s in test_src)  # entities decoded

    # A pinned listing that does not match, or one missing file, keeps the old folder whole.
    before = tree(raw)
    pinned = params_with(tiny_params_dict, sources={"nmt": dict(source, sha256="0" * 64)}, nmt={"data": data})
    with pytest.raises(FetchError, match="sha256 of the file listing mismatch"):
        download.fetch_folder(pinned.sources.nmt, pinned.fetch)
    httpserver.clear()
    serve_iwslt(httpserver, broken="vocab.vi")
    with pytest.raises(FetchError, match=r"vocab\.vi: HTTP 404"):
        download.fetch_folder(params.sources.nmt, params.fetch)
    assert tree(raw) == before and not [p for p in raw.parent.iterdir() if p.name.startswith(".")]


# --- Project Gutenberg by id, through a mirror ---------------------------------------
def test_gutenberg_book_by_id_through_an_http_mirror(httpserver, tmp_path, monkeypatch, tiny_params_dict):
    monkeypatch.chdir(tmp_path)
    book = (FIXTURES / "anna-tail.txt").read_bytes()  # CRLF, with the END marker and license
    httpserver.expect_request("/mirror/pg1399.txt").respond_with_data(book, content_type="text/plain")
    params = params_with(
        tiny_params_dict,
        fetch={**FAST, "mirror": httpserver.url_for("/mirror")},
        sources={"charlm": {"url": "gutenberg:1399", "sha256": hashlib.sha256(book).hexdigest(),
                            "raw": "data/raw/charlm/anna.txt", "format": "gutenberg"}},
        charlm={"data": {"valid_fraction": 0.2}},
    )
    download.run(params, "charlm")
    assert Path("data/raw/charlm/anna.txt").read_bytes() == book
    prepare_charlm.run(params)
    vocab = json.loads(Path("data/prepared/charlm/vocab.json").read_text())
    chars = "".join(vocab if isinstance(vocab, list) else vocab["chars"])
    assert "\r" not in chars and "*" not in chars  # CRLF normalised, the marker line cut

    with pytest.raises(FetchError, match="gutenberg:<book id>"):
        download.run(params_with(tiny_params_dict, sources={"charlm": {"url": "gutenberg:anna"}}), "charlm")


# --- archived CoinDesk formats ----------------------------------------------------------
@pytest.mark.parametrize("fmt,fixture,features", [
    ("bpi-json", ROOT / "data/embedded/coindesk/bpi-close-2010-07-18_2018-11-20.json", ["close"]),
    ("coindesk-csv", FIXTURES / "coindesk-export-head.csv", ["close", "high", "low"]),
])
def test_archived_price_files_over_http_to_windows(httpserver, tmp_path, monkeypatch, tiny_params_dict,
                                                    fmt, fixture, features):
    monkeypatch.chdir(tmp_path)
    body = fixture.read_bytes()
    httpserver.expect_request(f"/{fixture.name}").respond_with_data(body, content_type="application/octet-stream")
    params = params_with(tiny_params_dict, sources={"forecast": {
        "url": httpserver.url_for(f"/{fixture.name}"), "sha256": hashlib.sha256(body).hexdigest(),
        "raw": f"data/raw/forecast/{fixture.name}", "format": fmt}},
        forecast={"data": {"features": features, "test_fraction": 0.3}})
    download.run(params, "forecast")
    prepare_forecast.run(params)
    meta = json.loads(Path("data/prepared/forecast/meta.json").read_text())
    assert meta["features"] == features and meta["train_windows"] > 0 and meta["filled_days"] == 0


# --- CoinDesk Data API, incremental ----------------------------------------------------
def api_params(base: dict, url: str, raw: str = "data/raw/forecast/coindesk", **data) -> params_module.Params:
    source = {"url": url, "sha256": None, "raw": raw, "format": "coindesk-api",
              "api": {"market": "cadli", "instruments": ["BTC-USD", "BTC-EUR"], "key_env": VAR,
                      "since": "2018-01-01"}}
    return params_with(base, sources={"forecast": source}, forecast={"data": data} if data else {})


@pytest.fixture
def api(httpserver, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(VAR, KEY)
    fake = FakeApi()
    httpserver.expect_request(API_PATH).respond_with_handler(fake)
    return fake


def test_refresh_fetches_only_new_days_and_a_second_run_adds_nothing(api, httpserver, tiny_params_dict, capsys):
    params = api_params(tiny_params_dict, httpserver.url_for("/"))
    assert download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 11, 10)) == 2 * 313
    folder = Path("data/raw/forecast/coindesk")
    table = prices.from_csv((folder / "prices.csv").read_text(), "prices.csv")
    usd = table[table["currency"] == "USD"]
    assert usd["date"].iloc[0].date() == dt.date(2018, 1, 1) and usd["date"].iloc[-1].date() == dt.date(2018, 11, 9)
    assert usd["close"].iloc[-1] == BPI["2018-11-09"] and usd["high"].iloc[-1] == BPI["2018-11-09"] * 1.02
    responses = sorted(p.name for p in (folder / "responses/BTC-EUR").iterdir())
    assert responses == ["2018-01-01_2018-11-09.json"]
    body = json.loads((folder / "responses/BTC-EUR" / responses[0]).read_text())
    assert body["Data"][0]["INSTRUMENT"] == "BTC-EUR"  # the response as served, verbatim

    first = tree(folder)
    calls = len(api.requests)
    assert download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 11, 10)) == 0
    assert tree(folder) == first and len(api.requests) == calls  # nothing asked, nothing written

    assert download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 11, 13)) == 2 * 3
    new = api.requests[calls:]
    assert [(r["args"]["instrument"], r["args"]["limit"]) for r in new] == [("BTC-USD", "3"), ("BTC-EUR", "3")]
    assert all(r["args"]["to_ts"] == str(int(dt.datetime(2018, 11, 12, tzinfo=dt.UTC).timestamp()))
               for r in new)
    report = json.loads((folder / "refresh.json").read_text())
    assert report["series"]["EUR"] == {"first": "2018-01-01", "last": "2018-11-12", "days": 316, "gaps": []}
    assert KEY not in capsys.readouterr().out


def test_gaps_are_reported_and_filled_only_under_the_policy(httpserver, api, tiny_params_dict, capsys):
    holey = {d: c for d, c in BPI.items() if d not in ("2018-06-10", "2018-06-11")}
    api.series = {"BTC-USD": holey, "BTC-EUR": holey}
    params = api_params(tiny_params_dict, httpserver.url_for("/"))
    download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 11, 10))
    assert "USD has no data for 2018-06-10..2018-06-11" in capsys.readouterr().err
    report = json.loads(Path("data/raw/forecast/coindesk/refresh.json").read_text())
    assert report["series"]["USD"]["gaps"] == [["2018-06-10", "2018-06-11"]]

    with pytest.raises(prices.PriceTableError, match=r"2 missing day\(s\): 2018-06-10\.\.2018-06-11; "
                                                     r"set forecast.data.gap_policy"):
        prepare_forecast.run(params)
    for policy in ("ffill", "linear"):
        prepare_forecast.run(api_params(tiny_params_dict, httpserver.url_for("/"), gap_policy=policy, test_fraction=0.3,
                                        currency="EUR", features=["close", "high"]))
        meta = json.loads(Path("data/prepared/forecast/meta.json").read_text())
        assert meta["filled_days"] == 2 and meta["gap_policy"] == policy
        assert meta["first_day"] == "2018-01-01" and meta["last_day"] == "2018-11-09"


@pytest.mark.parametrize("fault,error,pattern", [
    ("401", ApiKeyError, f"HTTP 401: .*set the environment variable {VAR}"),
    ("html", FetchError, "got an HTML page"),
    ("malformed", PriceFormatError, "not valid JSON"),
    ("empty", PriceFormatError, "field 'Data' is empty"),
    ("duplicate", PriceFormatError, r"Data\[1\]: field 'TIMESTAMP': duplicate date"),
    ("out-of-order", PriceFormatError, r"Data\[1\]: field 'TIMESTAMP': dates out of order"),
])
def test_a_bad_refresh_keeps_the_stored_history(api, httpserver, tiny_params_dict, fault, error, pattern):
    params = api_params(tiny_params_dict, httpserver.url_for("/"))
    download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 11, 10))
    folder = Path("data/raw/forecast/coindesk")
    before = tree(folder)
    day = lambda d: {"TIMESTAMP": int(dt.datetime.fromisoformat(d).replace(tzinfo=dt.UTC).timestamp()),
                     "CLOSE": 6400.0, "INSTRUMENT": "BTC-USD"}
    bodies = {
        "401": Response('{"Err": {"message": "unauthorized"}}', status=401, content_type="application/json"),
        "html": Response("<html><body>503 Service Unavailable</body></html>", content_type="text/html"),
        "malformed": Response('{"Data": [', content_type="application/json"),
        "empty": Response('{"Data": [], "Err": {}}', content_type="application/json"),
        "duplicate": Response(json.dumps({"Data": [day("2018-11-10"), day("2018-11-10")]}),
                              content_type="application/json"),
        "out-of-order": Response(json.dumps({"Data": [day("2018-11-11"), day("2018-11-10")]}),
                                 content_type="application/json"),
    }
    httpserver.clear()
    httpserver.expect_request(API_PATH).respond_with_response(bodies[fault])
    with pytest.raises(error, match=pattern) as err:
        download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 11, 12))
    assert KEY not in str(err.value)
    assert tree(folder) == before


def test_a_hand_edited_table_is_refused_by_line(api, httpserver, tiny_params_dict):
    params = api_params(tiny_params_dict, httpserver.url_for("/"))
    download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 1, 10))
    table = Path("data/raw/forecast/coindesk/prices.csv")
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:3] + [lines[2]] + lines[3:]) + "\n")
    with pytest.raises(prices.PriceTableError, match=r"prices.csv:4 \(EUR 2018-01-02\): duplicate date"):
        download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 1, 12))


def test_the_api_key_is_in_no_output_log_or_file(api, httpserver, tmp_path, tiny_params_dict):
    """The stage as DVC runs it, in a subprocess: the key is nowhere it could leak to."""
    doc = merge(tiny_params_dict, {"fetch": FAST, "sources": {"forecast": {
        "url": httpserver.url_for("/"), "sha256": None, "raw": "data/raw/forecast/coindesk",
        "format": "coindesk-api", "api": {"market": "cadli", "instruments": ["BTC-USD", "BTC-EUR"],
                                          "key_env": VAR, "since": "2018-01-01"}}}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    outputs = []
    for key in (KEY, KEY, KEY + "-revoked"):  # a fresh refresh, a no-op, a refused key
        env[VAR] = key
        run = subprocess.run([sys.executable, "-m", "pipeline", "download", "forecast"], cwd=tmp_path,
                             env=env, capture_output=True, timeout=120)
        outputs.append(run.stdout + run.stderr)
        if key.endswith("revoked"):
            assert run.returncode == 1 and b"error: " in run.stderr and b"Traceback" not in run.stderr
            assert f"set the environment variable {VAR}".encode() in run.stderr
        else:
            assert run.returncode == 0, run.stderr.decode()
    assert b"new day(s)" in outputs[0] and b"nothing new" in outputs[1]
    stored = tree(tmp_path)
    assert any(name.endswith("prices.csv") for name in stored)
    for blob in [*outputs, *stored.values()]:
        assert KEY.encode() not in blob
    assert all(r["auth"] in (f"Apikey {KEY}", f"Apikey {KEY}-revoked") for r in api.requests)


def test_another_currency_close_is_a_feature(api, httpserver, tiny_params_dict):
    params = api_params(tiny_params_dict, httpserver.url_for("/"))
    download.refresh_prices(params.sources.forecast, params.fetch, dt.date(2018, 11, 10))
    both = api_params(tiny_params_dict, httpserver.url_for("/"), features=["close", "close_EUR"], test_fraction=0.3)
    prepare_forecast.run(both)
    data = np.load("data/prepared/forecast/windows.npz")
    series = data["series"]
    assert series.shape == (313, 2) and str(data["dates"][0]) == "2018-01-01"
    np.testing.assert_allclose(series[:, 1], series[:, 0] * 0.9, rtol=1e-6)  # the fake's EUR = 0.9 USD
    assert json.loads(Path("data/prepared/forecast/meta.json").read_text())["features"] == ["close", "close_EUR"]
    with pytest.raises(
        params_module.ParamsError, match=r"asks for \['close_GBP'\], but .* has \['close_EUR'\] beside USD"
    ):
        prepare_forecast.run(api_params(tiny_params_dict, httpserver.url_for("/"), features=["close", "close_GBP"]))
