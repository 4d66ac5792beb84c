"""IWSLT'15 English-Vietnamese (Stanford NMT preprocessing).

The text is already Moses-tokenized and keeps XML entities escaped (``&apos;``,
``&quot;``, ``&amp;``); they are decoded here so that the text reads as written. The
vocabulary files' special-token order is uncertain between copies, so specials are
looked up by string, never assumed to sit at ids 0-2.
"""

from __future__ import annotations

import html
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.sources.plaintext import read_corpus

SPECIALS = ("<unk>", "<s>", "</s>")
SPLITS = {"train": "train", "valid": "tst2012", "test": "tst2013"}  # the usual roles


def files(langs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The folder's files for a language pair, e.g. ``("en", "vi")``: three splits and two vocabularies."""
    return tuple(f"{stem}.{lang}" for stem in SPLITS.values() for lang in langs) + tuple(
        f"vocab.{lang}" for lang in langs
    )


class IwsltError(PipelineError, ValueError):
    """Misaligned or malformed IWSLT files; the message names the file and line."""


def parse_parallel(src: str, trg: str, src_name: str, trg_name: str,
                   empty: str = "error") -> tuple[list[tuple[str, str]], int]:
    """Line-aligned source/target files -> (src, trg) pairs with entities decoded, and how
    many pairs were dropped. A pair with an empty side is an error naming the file and
    line (``empty="error"``), or is dropped and counted (``"drop"``, as tensorflow/nmt's
    input pipeline drops them: the Stanford train files have such lines)."""
    src_lines, trg_lines = src.rstrip("\n").split("\n"), trg.rstrip("\n").split("\n")
    if len(src_lines) != len(trg_lines):
        raise IwsltError(
            f"{src_name} has {len(src_lines)} lines but {trg_name} has {len(trg_lines)}: not aligned"
        )
    pairs, dropped = [], 0
    for lineno, (s, t) in enumerate(zip(src_lines, trg_lines, strict=True), start=1):
        s, t = html.unescape(s).strip(), html.unescape(t).strip()
        if not s or not t:
            if empty != "drop":
                raise IwsltError(f"{src_name if not s else trg_name}:{lineno}: empty line (set "
                                 "nmt.data.empty_lines: drop to drop such pairs and count them)")
            dropped += 1
            continue
        pairs.append((s, t))
    return pairs, dropped


def read_folder(
    folder: str | Path, langs: tuple[str, ...] | list[str], empty: str = "error"
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[str]], dict[str, int]]:
    """The downloaded folder -> ``{split: (langs[0], langs[1]) pairs}``, ``{lang: vocabulary
    tokens}`` and ``{split: pairs dropped for an empty side}`` (see :func:`parse_parallel`)."""
    folder = Path(folder)

    def text(name: str) -> str:
        path = folder / name
        if not path.is_file():
            raise IwsltError(f"{path}: missing; the iwslt source needs {', '.join(files(langs))}")
        return read_corpus(path.read_bytes(), str(path))

    src, trg = langs
    parsed = {
        split: parse_parallel(text(f"{stem}.{src}"), text(f"{stem}.{trg}"),
                              str(folder / f"{stem}.{src}"), str(folder / f"{stem}.{trg}"), empty)
        for split, stem in SPLITS.items()
    }
    vocabs = {lang: parse_vocab(text(f"vocab.{lang}"), str(folder / f"vocab.{lang}")) for lang in langs}
    return ({split: pairs for split, (pairs, _) in parsed.items()}, vocabs,
            {split: dropped for split, (_, dropped) in parsed.items()})


def parse_vocab(text: str, name: str) -> list[str]:
    """Vocabulary tokens in file order, without the special tokens (found by string).

    Entities are decoded as in the text; a token that decodes to one already listed
    is kept once.
    """
    tokens = text.rstrip("\n").split("\n")
    missing = [s for s in SPECIALS if s not in tokens]
    if missing:
        raise IwsltError(f"{name}: special token(s) {missing} not found")
    seen: set[str] = set()
    for lineno, token in enumerate(tokens, start=1):
        if token in seen:
            raise IwsltError(f"{name}:{lineno}: duplicate token {token!r}")
        seen.add(token)
    decoded = (html.unescape(t) for t in tokens if t not in SPECIALS)
    return list(dict.fromkeys(decoded))
