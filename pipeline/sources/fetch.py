"""The one fetcher every download goes through.

``fetch`` copies a source into place: it streams into a temp file beside the target,
checks size and sha256, and only then renames. A failure at any point leaves the
previous good target untouched.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

from pipeline.artifacts import atomic_path

CHUNK = 1 << 16
DEFAULT_MAX_BYTES = 512 << 20
TIMEOUT = (10, 60)  # connect, read (seconds)


class FetchError(RuntimeError):
    """A source could not be fetched; the message names the URL."""


def fetch(
    url: str,
    target: str | Path,
    sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    session: requests.Session | None = None,
) -> str:
    """Fetch ``url`` into ``target`` atomically and return the sha256 of the bytes.

    Args:
        url: a local path (relative to the working directory), ``file://`` URL, or
            ``http(s)://`` URL.
        target: where the bytes land; replaced only once every check has passed.
        sha256: the expected hex digest, or None to skip the check.
        max_bytes: refuse sources larger than this.
    """
    with atomic_path(target) as tmp:
        scheme = urlparse(url).scheme
        if scheme in ("http", "https"):
            _download(url, tmp, max_bytes, session or requests.Session())
        else:
            _copy_local(url, tmp, max_bytes)
        digest = _sha256(tmp)
        if sha256 is not None and digest != sha256.lower():
            raise FetchError(
                f"{url}: sha256 mismatch: expected {sha256}, got {digest}; "
                f"{target} was left as it was"
            )
    return digest


def local_path(url: str) -> Path:
    """The filesystem path of a local or ``file://`` source."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:
        raise FetchError(f"{url}: unsupported scheme '{parsed.scheme}'")
    return Path(url)


def _copy_local(url: str, tmp: Path, max_bytes: int) -> None:
    path = local_path(url)
    if not path.is_file():
        raise FetchError(f"{url}: no such file")
    if path.stat().st_size > max_bytes:
        raise FetchError(f"{url}: {path.stat().st_size} bytes exceeds the {max_bytes}-byte limit")
    shutil.copyfile(path, tmp)


def _download(url: str, tmp: Path, max_bytes: int, session: requests.Session) -> None:
    try:
        with session.get(url, stream=True, timeout=TIMEOUT) as response:
            if response.status_code != 200:
                raise FetchError(f"{url}: HTTP {response.status_code} {response.reason}")
            kind = response.headers.get("Content-Type", "")
            if kind.startswith("text/html"):
                raise FetchError(f"{url}: got an HTML page (Content-Type {kind}), not data")
            size = 0
            with tmp.open("wb") as out:
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"{url}: larger than the {max_bytes}-byte limit")
                    out.write(chunk)
            expected = response.headers.get("Content-Length")
            if expected is not None and int(expected) != size:
                raise FetchError(f"{url}: truncated: got {size} of {expected} bytes")
    except requests.RequestException as err:
        raise FetchError(f"{url}: {type(err).__name__}: {err}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
