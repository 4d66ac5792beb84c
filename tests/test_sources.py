"""The source parsers, on real bytes and on the ways real files go wrong."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from pipeline.sources import coindesk
from pipeline.sources.plaintext import TextError, read_corpus

from .conftest import ROOT

BPI = ROOT / "data/embedded/coindesk/bpi-close-2010-07-18_2018-11-20.json"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_parse_real_bpi_history():
    close = coindesk.parse_bpi_close(BPI.read_text(), BPI.name)
    assert len(close) == 3048 and close.name == "close" and close.dtype == "float64"
    assert str(close.index[0].date()) == "2010-07-18" and str(close.index[-1].date()) == "2018-11-20"
    assert close.min() == pytest.approx(0.0505)


@pytest.mark.parametrize("body,pattern", [
    ("<!DOCTYPE html><html>Service Unavailable</html>", "looks like an HTML"),
    ('{"bpi": {"2020-01-01": 1.0,', "not valid JSON"),
    ('{"disclaimer": "x"}', "field 'bpi' is missing"),
    ('{"bpi": {"2020-13-01": 1.0}}', r"field 'bpi.2020-13-01' is not an ISO date"),
    ('{"bpi": {"2020-01-01": -3}}', r"field 'bpi.2020-01-01' is not a positive price"),
    ('{"bpi": {"2020-01-01": "7,000"}}', r"field 'bpi.2020-01-01' is not a number"),
    ('{"bpi": {"2020-01-02": 1, "2020-01-01": 2}}', "not strictly increasing at 'bpi.2020-01-01'"),
    ('{"bpi": {"2020-01-01": 1, "2020-01-02": true}}', r"field 'bpi.2020-01-02' is not a number: True"),
    ('{"bpi": {"2020-01-01": 1, "2020-01-02": NaN}}', r"field 'bpi.2020-01-02' is not a positive price: nan"),
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
    sources = list(real_params_dict["sources"].items())
    for profile in sorted((ROOT / "profiles").glob("*.yaml")):  # offline profiles too
        overlay = yaml.safe_load(profile.read_text()).get("sources", {})
        sources += [(f"{profile.name}:{k}", v) for k, v in overlay.items() if v["url"].startswith("data/")]
    assert any(name.startswith("anna.yaml") for name, _ in sources)
    for name, source in sources:
        data = (ROOT / source["url"]).read_bytes()
        assert sha(data) == source["sha256"], name
    json.loads(BPI.read_text())  # the shipped JSON parses
