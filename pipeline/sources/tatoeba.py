"""Tatoeba / manythings.org sentence pairs (``fra.txt``, ``deu.txt``, ...).

Lines are ``English<TAB>Other`` in the older 2-column releases and carry a third
attribution column in newer ones; both parse. French typography uses non-breaking and
thin spaces around punctuation, which would otherwise become distinct tokens.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pipeline.errors import PipelineError
from pipeline.sources.archive import list_members, read_member

# U+00A0 no-break, U+202F narrow no-break and U+2009 thin spaces become plain spaces;
# U+200B zero-width space is dropped (see shared/data/MANIFEST.md).
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u200b": None})


class CorpusError(PipelineError, ValueError):
    """A malformed corpus line; the message names the file and the line."""


def normalize(text: str) -> str:
    """Map the odd Unicode spaces to U+0020 and collapse runs of spaces."""
    return " ".join(text.translate(_SPACES).split())


def parse_pairs(text: str, name: str) -> list[tuple[str, str]]:
    """Parse a pairs file into ``(src, trg)`` tuples.

    Args:
        text: the whole file, decoded as UTF-8.
        name: the file name, used in error messages.
    """
    pairs = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) not in (2, 3):
            raise CorpusError(
                f"{name}:{lineno}: expected 2 or 3 tab-separated fields, got {len(fields)}: "
                f"{line[:80]!r}"
            )
        src, trg = normalize(fields[0]), normalize(fields[1])
        if not src or not trg:
            raise CorpusError(f"{name}:{lineno}: empty sentence in {line[:80]!r}")
        pairs.append((src, trg))
    if not pairs:
        raise CorpusError(f"{name}: no sentence pairs found")
    return pairs


def pairs_from_zip(archive: str | Path, max_bytes: int) -> list[tuple[str, str]]:
    """Parse the one pairs file (``fra.txt``, ``deu.txt``, ...) of a manythings.org zip.

    The archive is checked member by member first (see :mod:`pipeline.sources.archive`);
    ``_about.txt`` is the license notice, not data.
    """
    members = [
        m for m in list_members(archive, max_bytes)
        if m.endswith(".txt") and PurePosixPath(m).name != "_about.txt"
    ]
    if len(members) != 1:
        raise CorpusError(f"{archive}: expected one pairs .txt member, found {members or 'none'}")
    data = read_member(archive, members[0], max_bytes)
    where = f"{archive}:{members[0]}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{where}: not UTF-8 at byte {err.start}") from None
    return parse_pairs(text, where)
