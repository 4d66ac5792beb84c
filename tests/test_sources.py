"""The fetcher against real files and a real HTTP server on 127.0.0.1; the parsers."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipeline.sources import coindesk, fetch
from pipeline.sources.text import TextError, read_corpus

from .conftest import FIXTURES, ROOT

BPI = ROOT / "data/embedded/coindesk/bpi-close-2010-07-18_2018-11-20.json"
SHAKESPEARE = FIXTURES / "shakespeare-head.txt"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_local_path_and_file_url(tmp_path):
    data = SHAKESPEARE.read_bytes()
    for url in (str(SHAKESPEARE), SHAKESPEARE.as_uri()):
        target = tmp_path / "raw" / "input.txt"
        assert fetch.fetch(url, target, sha(data)) == sha(data)
        assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["input.txt"]  # no temp files left


def test_checksum_mismatch_keeps_the_previous_good_file(tmp_path):
    target = tmp_path / "input.txt"
    target.write_text("previous good output")
    with pytest.raises(fetch.FetchError, match=r"shakespeare-head.txt: sha256 mismatch: expected 00"):
        fetch.fetch(str(SHAKESPEARE), target, "00" * 32)
    assert target.read_text() == "previous good output"
    assert [p.name for p in tmp_path.iterdir()] == ["input.txt"]


def test_missing_local_source_names_it(tmp_path):
    with pytest.raises(fetch.FetchError, match="nope.txt: no such file"):
        fetch.fetch(str(tmp_path / "nope.txt"), tmp_path / "out.txt")


def test_http_fetch_serves_real_bytes(httpserver, tmp_path):
    data = BPI.read_bytes()
    httpserver.expect_request("/close.json").respond_with_data(data, content_type="application/json")
    target = tmp_path / "close.json"
    fetch.fetch(httpserver.url_for("/close.json"), target, sha(data))
    assert target.read_bytes() == data
    assert len(coindesk.parse_bpi_close(target.read_text(), str(target))) == 3048


def test_http_error_page_is_never_stored(httpserver, tmp_path):
    target = tmp_path / "close.json"
    target.write_bytes(BPI.read_bytes())
    httpserver.expect_request("/html").respond_with_data("<html>oops</html>", content_type="text/html")
    httpserver.expect_request("/missing").respond_with_data("gone", status=404)
    url = httpserver.url_for("/html")
    with pytest.raises(fetch.FetchError, match=f"{url}: got an HTML page"):
        fetch.fetch(url, target)
    with pytest.raises(fetch.FetchError, match="/missing: HTTP 404"):
        fetch.fetch(httpserver.url_for("/missing"), target)
    assert target.read_bytes() == BPI.read_bytes()


def test_http_size_limit(httpserver, tmp_path):
    httpserver.expect_request("/big").respond_with_data(b"x" * 5000, content_type="text/plain")
    with pytest.raises(fetch.FetchError, match="larger than the 1000-byte limit"):
        fetch.fetch(httpserver.url_for("/big"), tmp_path / "big", max_bytes=1000)
    assert not (tmp_path / "big").exists()


def test_parse_real_bpi_history():
    rows = coindesk.parse_bpi_close(BPI.read_text(), BPI.name)
    assert len(rows) == 3048
    assert rows[0][0].isoformat() == "2010-07-18" and rows[-1][0].isoformat() == "2018-11-20"
    assert min(v for _, v in rows) == pytest.approx(0.0505)


@pytest.mark.parametrize("body,pattern", [
    ("<!DOCTYPE html><html>Service Unavailable</html>", "looks like an HTML"),
    ('{"bpi": {"2020-01-01": 1.0,', "not valid JSON"),
    ('{"disclaimer": "x"}', "field 'bpi' is missing"),
    ('{"bpi": {"2020-13-01": 1.0}}', r"field 'bpi.2020-13-01' is not an ISO date"),
    ('{"bpi": {"2020-01-01": -3}}', r"field 'bpi.2020-01-01' is not a positive price"),
    ('{"bpi": {"2020-01-01": "7,000"}}', r"field 'bpi.2020-01-01' is not a number"),
    ('{"bpi": {"2020-01-02": 1, "2020-01-01": 2}}', "not strictly increasing at 'bpi.2020-01-01'"),
])
def test_bad_price_files_name_file_and_field(body, pattern):
    with pytest.raises(coindesk.PriceFormatError, match=rf"close.json: .*{pattern}"):
        coindesk.parse_bpi_close(body, "close.json")


def test_read_corpus_normalises_line_endings_and_names_bad_files():
    assert read_corpus(b"a\r\nb\rc\n", "t.txt") == "a\nb\nc\n"
    with pytest.raises(TextError, match="t.txt: not UTF-8 text at byte 1"):
        read_corpus(b"a\xff", "t.txt")
    with pytest.raises(TextError, match="t.txt: empty corpus"):
        read_corpus(b"  \n", "t.txt")


def test_embedded_data_matches_params_checksums(real_params_dict):
    for name, source in real_params_dict["sources"].items():
        data = (ROOT / source["url"]).read_bytes()
        assert sha(data) == source["sha256"], name
    json.loads(BPI.read_text())  # the shipped JSON parses
