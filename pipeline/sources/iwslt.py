"""IWSLT'15 English-Vietnamese (Stanford NMT preprocessing).

The text is already Moses-tokenized and keeps XML entities escaped (``&apos;``,
``&quot;``, ``&amp;``); they are decoded here so that the text reads as written. The
vocabulary files' special-token order is uncertain between copies, so specials are
looked up by string, never assumed to sit at ids 0-2.
"""

from __future__ import annotations

import html

SPECIALS = ("<unk>", "<s>", "</s>")


class IwsltError(ValueError):
    """Misaligned or malformed IWSLT files; the message names the file and line."""


def parse_parallel(src: str, trg: str, src_name: str, trg_name: str) -> list[tuple[str, str]]:
    """Line-aligned source/target files -> (src, trg) pairs with entities decoded."""
    src_lines, trg_lines = src.rstrip("\n").split("\n"), trg.rstrip("\n").split("\n")
    if len(src_lines) != len(trg_lines):
        raise IwsltError(
            f"{src_name} has {len(src_lines)} lines but {trg_name} has {len(trg_lines)}: not aligned"
        )
    pairs = []
    for lineno, (s, t) in enumerate(zip(src_lines, trg_lines), start=1):
        s, t = html.unescape(s).strip(), html.unescape(t).strip()
        if not s or not t:
            raise IwsltError(f"{src_name if not s else trg_name}:{lineno}: empty line")
        pairs.append((s, t))
    return pairs


def parse_vocab(text: str, name: str) -> list[str]:
    """Vocabulary tokens in file order, without the special tokens (found by string)."""
    tokens = text.rstrip("\n").split("\n")
    missing = [s for s in SPECIALS if s not in tokens]
    if missing:
        raise IwsltError(f"{name}: special token(s) {missing} not found")
    seen: set[str] = set()
    for lineno, token in enumerate(tokens, start=1):
        if token in seen:
            raise IwsltError(f"{name}:{lineno}: duplicate token {token!r}")
        seen.add(token)
    return [t for t in tokens if t not in SPECIALS]
