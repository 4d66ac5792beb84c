"""Plain-text corpora (Tiny Shakespeare, Project Gutenberg books, any UTF-8 text file)."""

from __future__ import annotations

import re

from pipeline.errors import PipelineError

# "*** START OF THIS PROJECT GUTENBERG EBOOK ANNA KARENINA ***" and the newer
# "*** START OF THE PROJECT GUTENBERG EBOOK ... ***"; the same for END.
_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.M | re.I)


class TextError(PipelineError, ValueError):
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


def strip_gutenberg(text: str, name: str) -> str:
    """The book between Project Gutenberg's START and END markers.

    Either marker may be missing (``anna.txt`` has had its header cut but keeps the
    license footer); what is outside the markers present is dropped.
    """
    start, end = _START.search(text), _END.search(text)
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    if not body.strip():
        raise TextError(f"{name}: nothing left between the Project Gutenberg markers")
    return body.strip("\n") + "\n"
