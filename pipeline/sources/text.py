"""Plain-text corpora (Tiny Shakespeare, any UTF-8 text file)."""

from __future__ import annotations


class TextError(ValueError):
    """An unusable text corpus; the message names the file."""


def read_corpus(data: bytes, name: str) -> str:
    """Decode UTF-8 text and normalise CRLF/CR line endings to LF."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextError(f"{name}: not UTF-8 text at byte {err.start}") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TextError(f"{name}: empty corpus")
    return text
