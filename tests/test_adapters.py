"""Source adapters on real fixture bytes: Tatoeba zips, CoinDesk CSV, Gutenberg, IWSLT."""

from __future__ import annotations

import datetime as dt
import stat
import zipfile

import pytest

from pipeline.sources import coindesk, iwslt, tatoeba
from pipeline.sources.archive import ArchiveError, read_member
from pipeline.sources.plaintext import TextError, read_corpus, strip_gutenberg

from .conftest import FIXTURES, ROOT

PAIRS = (FIXTURES / "fra-eng-excerpt.txt").read_bytes()
ABOUT = (ROOT / "data/embedded/fra-eng/_about.txt").read_bytes()


def make_zip(path, members: dict[str, bytes], links: tuple[str, ...] = ()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


def test_tatoeba_zip_reads_the_pairs_member(tmp_path):
    archive = make_zip(tmp_path / "fra-eng.zip", {"_about.txt": ABOUT, "fra.txt": PAIRS})
    pairs = tatoeba.pairs_from_zip(archive, 1 << 20)
    assert len(pairs) == 1200 and pairs[0] == ("Stop being stupid.", "Cesse d'être idiot !")
    assert not any("\u202f" in t or "\u00a0" in t for _, t in pairs)


@pytest.mark.parametrize("member,pattern", [
    ("../evil.txt", "escapes the archive with '..'"),
    ("a/../../evil.txt", "escapes the archive with '..'"),
    ("/etc/evil.txt", "has an absolute path"),
    ("C:\\evil.txt", "has an absolute path"),
])
def test_unsafe_member_names_are_refused(tmp_path, member, pattern):
    archive = make_zip(tmp_path / "bad.zip", {"fra.txt": PAIRS, member: b"x"})
    with pytest.raises(ArchiveError, match=pattern):
        tatoeba.pairs_from_zip(archive, 1 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]  # nothing extracted


def test_links_and_oversize_members_are_refused(tmp_path):
    linked = make_zip(tmp_path / "link.zip", {"fra.txt": PAIRS, "link.txt": b"/etc/passwd"}, links=("link.txt",))
    with pytest.raises(ArchiveError, match="member 'link.txt' is a symbolic link"):
        tatoeba.pairs_from_zip(linked, 1 << 20)
    big = make_zip(tmp_path / "big.zip", {"fra.txt": PAIRS})
    with pytest.raises(ArchiveError, match=r"member 'fra.txt' is 52262 bytes, over the 1000-byte limit"):
        tatoeba.pairs_from_zip(big, 1000)


def test_a_highly_compressed_member_cannot_be_read_past_the_limit(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"fra.txt": b"a\tb\n" * 10_000})
    assert archive.stat().st_size < 1000  # 40 kB inflated from a few hundred bytes
    with pytest.raises(ArchiveError, match="member 'fra.txt' is 40000 bytes, over the 100-byte limit"):
        read_member(archive, "fra.txt", 100)
    assert read_member(archive, "fra.txt", 40_000).count(b"\n") == 10_000


def test_an_absurd_compression_ratio_is_refused_before_reading(tmp_path, monkeypatch):
    """A zip bomb within the size limit (here 8 MiB of zeros, about 8 kB deflated) is refused
    from its header, naming the member and the ratio; nothing is inflated."""
    archive = make_zip(tmp_path / "zeros.zip", {"_about.txt": ABOUT, "fra.txt": bytes(8 << 20)})
    reads = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: reads.append(a) or pytest.fail("read"))
    with pytest.raises(ArchiveError, match=r"zeros.zip: member 'fra.txt' would inflate \d+ bytes to 8388608 "
                       r"\([\d,]+:1, over the 100:1 limit"):
        tatoeba.pairs_from_zip(archive, 16 << 20)
    assert not reads
    monkeypatch.undo()
    # real text at the same size passes: the embedded corpus' own ratio is far below the cap
    text = make_zip(tmp_path / "text.zip", {"fra.txt": PAIRS * 40})
    info = zipfile.ZipFile(text).getinfo("fra.txt")
    assert info.file_size > (1 << 20) and info.file_size / info.compress_size < 100
    assert len(tatoeba.pairs_from_zip(text, 16 << 20)) == 48_000


def test_non_utf8_and_corrupt_archives_name_the_file(tmp_path):
    latin = make_zip(tmp_path / "latin.zip", {"fra.txt": "Go.\tVa à\n".encode("latin-1")})
    with pytest.raises(tatoeba.CorpusError, match=r"latin.zip:fra.txt: not UTF-8 at byte 7"):
        tatoeba.pairs_from_zip(latin, 1 << 20)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>not a zip</html>")
    with pytest.raises(ArchiveError, match="junk.zip: not a valid zip archive"):
        tatoeba.pairs_from_zip(junk, 1 << 20)
    with pytest.raises(tatoeba.CorpusError, match="expected one pairs .txt member, found none"):
        tatoeba.pairs_from_zip(make_zip(tmp_path / "empty.zip", {"_about.txt": ABOUT}), 1 << 20)


def test_coindesk_csv_export_parses_with_crlf():
    raw = (FIXTURES / "coindesk-export-head.csv").read_bytes()
    assert b"\r\n" in raw
    rows = coindesk.parse_csv_export(raw.decode(), "export.csv")
    assert len(rows) == 400 and list(rows.columns) == ["close", "open", "high", "low"]
    assert rows.index[0].date() == dt.date(2013, 10, 1) and rows["close"].iloc[0] == pytest.approx(123.65499)
    assert (rows["low"] <= rows[["open", "close"]].min(axis=1)).all()
    assert (rows["high"] >= rows[["open", "close"]].max(axis=1)).all()


@pytest.mark.parametrize("edit,pattern", [
    (lambda lines: [lines[0].replace("Date", "Day")] + lines[1:], r"export.csv:1: missing column\(s\) \['Date'\]"),
    (lambda lines: lines[:3] + [lines[2]] + lines[3:], "duplicate date at date 2013-10-02"),
    (lambda lines: [lines[0], lines[2], lines[1]] + lines[3:], "not strictly increasing at date 2013-10-01"),
    (lambda lines: lines[:2] + [lines[2].replace("BTC,2013-10-02,", "BTC,02/10/2013,")] + lines[3:],
     r"export.csv:3: column 'Date' is not an ISO date"),
    (lambda lines: lines[:2] + [lines[2].replace(",", ",-", 2).replace(",-", ",", 1)] + lines[3:],
     r"export.csv:3: column 'Closing Price \(USD\)' is not a positive price"),
    (lambda lines: lines[:4] + [",".join(lines[4].split(",")[:2] + ["n/a"] + lines[4].split(",")[3:])] + lines[5:],
     r"export.csv:5: column 'Closing Price \(USD\)' is not a number: 'n/a'"),
    (lambda lines: lines[:3] + [lines[3] + ",1,2"] + lines[4:], r"export.csv: .*Expected \d+ fields in line 4"),
])
def test_bad_csv_exports_name_line_and_column(edit, pattern):
    lines = (FIXTURES / "coindesk-export-head.csv").read_text().splitlines()
    with pytest.raises(coindesk.PriceFormatError, match=pattern):
        coindesk.parse_csv_export("\n".join(edit(lines)) + "\n", "export.csv")


def test_gutenberg_footer_is_cut_and_crlf_normalised():
    text = read_corpus((FIXTURES / "anna-tail.txt").read_bytes(), "anna.txt")
    book = strip_gutenberg(text, "anna.txt")
    assert book.endswith('put into\nit."\n') and "\r" not in book
    assert "Project Gutenberg" not in book
    wrapped = ("header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody\n"
               "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicense\n")
    assert strip_gutenberg(wrapped, "x.txt") == "body\n"
    with pytest.raises(TextError, match="x.txt: nothing left"):
        strip_gutenberg(
            "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n*** END OF THE PROJECT GUTENBERG EBOOK X ***", "x.txt"
        )


def test_iwslt_pairs_decode_entities_and_check_alignment():
    en = (FIXTURES / "iwslt-tst2012-head.en").read_text()
    vi = (FIXTURES / "iwslt-tst2012-head.vi").read_text()
    pairs, dropped = iwslt.parse_parallel(en, vi, "tst2012.en", "tst2012.vi")
    assert len(pairs) == 40 and dropped == 0
    joined = " ".join(s for s, _ in pairs)
    assert "&apos;" not in joined and "&quot;" not in joined and "'" in joined
    with pytest.raises(iwslt.IwsltError, match="tst2012.en has 40 lines but tst2012.vi has 39"):
        iwslt.parse_parallel(en, "\n".join(vi.splitlines()[:-1]), "tst2012.en", "tst2012.vi")


def test_iwslt_vocab_finds_specials_by_string():
    vocab = iwslt.parse_vocab((FIXTURES / "iwslt-vocab-head.vi").read_text(), "vocab.vi")
    assert len(vocab) == 9 and not set(vocab) & set(iwslt.SPECIALS)
    with pytest.raises(iwslt.IwsltError, match=r"vocab.vi: special token\(s\) \['<s>'\] not found"):
        iwslt.parse_vocab("<unk>\n</s>\na\n", "vocab.vi")
    with pytest.raises(iwslt.IwsltError, match="vocab.vi:5: duplicate token 'a'"):
        iwslt.parse_vocab("<unk>\n<s>\n</s>\na\na\n", "vocab.vi")


def test_iwslt_empty_sides_are_an_error_or_dropped_and_counted():
    en, vi = "a b\n\nc d\ne f\n", "x y\n\nz\n \n"  # line 2 empty on both sides, line 4 on the second
    with pytest.raises(iwslt.IwsltError, match=r"train.en:2: empty line"):
        iwslt.parse_parallel(en, vi, "train.en", "train.vi")
    pairs, dropped = iwslt.parse_parallel(en, vi, "train.en", "train.vi", empty="drop")
    assert pairs == [("a b", "x y"), ("c d", "z")] and dropped == 2
