"""Safe reading of zip archives (Tatoeba/Anki pair files come as ``fra-eng.zip``).

Nothing is ever written under a path taken from the archive: members are read into
memory by name, after every member name has been checked. An archive holding an
absolute path, a ``..`` component, a symbolic link, a member larger than the limit or
a member that claims to inflate more than :data:`MAX_RATIO` times (a zip bomb: real text
deflates about 3.4:1) is refused as a whole, with the archive and member named, before
any member is read.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from pipeline.errors import PipelineError

CHUNK = 1 << 16
MAX_RATIO = 100  # inflated : compressed bytes; Tatoeba's 11.7 MB fra.txt deflates 3.4:1
RATIO_FLOOR = 1 << 20  # members this small are refused only by the size limit: they cannot hurt


class ArchiveError(PipelineError, ValueError):
    """An unsafe or unusable archive; the message names archive and member."""


def check_members(zf: zipfile.ZipFile, name: str, max_bytes: int) -> list[zipfile.ZipInfo]:
    """Every member, after refusing unsafe names, links and oversize entries."""
    infos = zf.infolist()
    for info in infos:
        member = info.filename
        posix, windows = PurePosixPath(member), PureWindowsPath(member)
        if posix.is_absolute() or windows.is_absolute() or windows.drive:
            raise ArchiveError(f"{name}: member '{member}' has an absolute path")
        if ".." in posix.parts or ".." in windows.parts:
            raise ArchiveError(f"{name}: member '{member}' escapes the archive with '..'")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(f"{name}: member '{member}' is a symbolic link")
        if info.file_size > max_bytes:
            raise ArchiveError(
                f"{name}: member '{member}' is {info.file_size} bytes, over the {max_bytes}-byte limit"
            )
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * info.compress_size:
            ratio = info.file_size / max(info.compress_size, 1)
            raise ArchiveError(
                f"{name}: member '{member}' would inflate {info.compress_size} bytes to {info.file_size} "
                f"({ratio:,.0f}:1, over the {MAX_RATIO}:1 limit for a real text file)"
            )
    return infos


def read_member(archive: str | Path, member: str, max_bytes: int) -> bytes:
    """The bytes of one member, never more than ``max_bytes`` whatever its header claims."""
    name = str(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            check_members(zf, name, max_bytes)
            with zf.open(member) as f:
                data = f.read(max_bytes + 1)
    except zipfile.BadZipFile as err:
        raise ArchiveError(f"{name}: not a valid zip archive ({err})") from None
    except KeyError:
        raise ArchiveError(f"{name}: no member '{member}'") from None
    if len(data) > max_bytes:
        raise ArchiveError(f"{name}: member '{member}' inflates past the {max_bytes}-byte limit")
    return data


def list_members(archive: str | Path, max_bytes: int) -> list[str]:
    """Names of the regular-file members of a checked archive."""
    try:
        with zipfile.ZipFile(archive) as zf:
            return [i.filename for i in check_members(zf, str(archive), max_bytes) if not i.is_dir()]
    except zipfile.BadZipFile as err:
        raise ArchiveError(f"{archive}: not a valid zip archive ({err})") from None
