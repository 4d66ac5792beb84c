"""The one fetcher every download goes through.

``fetch`` copies a source into place: it streams into a temp file beside the target,
checks size, content type and sha256, and only then renames. A failure at any point
leaves the previous good target untouched and no partial file behind.

Transient HTTP failures (connection errors, timeouts, a body cut short, 429 and 5xx)
are retried with exponential backoff and full jitter; a ``Retry-After`` header from the
server overrides the computed wait. Everything else fails at once with a message that
names the URL.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
from tqdm.auto import tqdm

from pipeline.artifacts import atomic_path
from pipeline.errors import PipelineError
from pipeline.params import FetchPolicy as Policy

CHUNK = 1 << 16
PROGRESS_BYTES = 1 << 20  # show a progress bar above this size, on a terminal
USER_AGENT = "rnnpipe (reproducible RNN pipeline; python-requests)"
GUTENBERG = "https://www.gutenberg.org/cache/epub/{id}/pg{id}.txt"


class FetchError(PipelineError, RuntimeError):
    """A source could not be fetched; the message names the URL.

    ``status`` is the HTTP status for a refused request, else None. ``transient`` is True
    when every attempt failed in a way that may pass later (connection errors, timeouts,
    truncated bodies, 429 and 5xx), so a scheduler may try the whole fetch again; a
    refusal, a wrong checksum or an HTML page is not transient.
    """

    def __init__(self, message: str, status: int | None = None, transient: bool = False):
        super().__init__(message)
        self.status = status
        self.transient = transient


class _Transient(Exception):
    """An attempt failed in a way that may succeed if repeated."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def fetch(
    url: str,
    target: str | Path,
    sha256: str | None,
    policy: Policy,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Fetch ``url`` into ``target`` atomically and return the sha256 of the bytes.

    Args:
        url: a local path (relative to the working directory), ``file://`` URL,
            ``http(s)://`` URL, or ``gutenberg:<book id>``.
        target: where the bytes land; replaced only once every check has passed.
        sha256: the expected hex digest, or None to skip the check.
        policy: retries, timeouts and the size limit.
        sleep: the wait between attempts (tests pass a recorder).
    """
    url = mirrored(resolve(url), policy.mirror)
    with atomic_path(target) as tmp:
        if urlparse(url).scheme in ("http", "https"):
            _download_with_retries(url, tmp, policy, session or new_session(), sleep)
        else:
            _copy_local(url, tmp, policy.max_megabytes << 20)
        digest = _sha256(tmp)
        if sha256 is not None and digest != sha256.lower():
            raise FetchError(
                f"{url}: sha256 mismatch: expected {sha256}, got {digest}; "
                f"{target} was left as it was"
            )
    return digest


def get_bytes(
    url: str,
    policy: Policy,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """GET ``url`` with the same retries and checks as :func:`fetch`; return the body.

    For API pages that are parsed before anything is stored. Secrets belong in
    ``headers``, which no message ever includes.
    """
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body"
        _download_with_retries(url, body, policy, session or new_session(), sleep,
                               params=params, headers=headers)
        return body.read_bytes()


def new_session() -> requests.Session:
    """A session that says who it is (some corpus hosts refuse anonymous clients)."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def resolve(url: str) -> str:
    """Expand the ``gutenberg:<id>`` shorthand to the book's plain-text URL."""
    scheme, _, rest = url.partition(":")
    if scheme != "gutenberg":
        return url
    if not rest.isdigit():
        raise FetchError(f"{url}: a Project Gutenberg source is gutenberg:<book id>, e.g. gutenberg:1399")
    return GUTENBERG.format(id=int(rest))


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` served from ``mirror`` (a folder or an http(s) base) by its file name.

    Only remote URLs move; a local path or ``file://`` URL is already local.
    """
    if mirror is None or urlparse(url).scheme not in ("http", "https"):
        return url
    name = Path(unquote(urlparse(url).path)).name
    if not name:
        raise FetchError(f"{url}: no file name to look up in mirror {mirror}")
    return f"{mirror.rstrip('/')}/{name}"


def local_path(url: str) -> Path:
    """The filesystem path of a local or ``file://`` source."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise FetchError(f"{url}: unsupported scheme '{parsed.scheme}'")
    return Path(url)


def _copy_local(url: str, tmp: Path, max_bytes: int) -> None:
    path = local_path(url)
    if not path.is_file():
        raise FetchError(f"{url}: no such file")
    if path.stat().st_size > max_bytes:
        raise FetchError(f"{url}: {path.stat().st_size} bytes exceeds the {max_bytes}-byte limit")
    shutil.copyfile(path, tmp)


def backoff(attempt: int, policy: Policy, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(policy.max_backoff_seconds, policy.backoff_seconds * 2**attempt))


def _download_with_retries(url, tmp: Path, policy: Policy, session, sleep, **request) -> None:
    rng = random.Random()
    for attempt in range(policy.retries + 1):
        try:
            _download(url, tmp, policy, session, **request)
            return
        except _Transient as err:
            if attempt == policy.retries:
                raise FetchError(f"{url}: {err} (gave up after {attempt + 1} attempts)", transient=True) from None
            wait = err.retry_after if err.retry_after is not None else backoff(attempt, policy, rng)
            wait = min(wait, policy.max_backoff_seconds)
            print(f"fetch: {url}: {err}; retrying in {wait:.1f}s "
                  f"({attempt + 1}/{policy.retries})", file=sys.stderr)
            sleep(wait)


def _download(url: str, tmp: Path, policy: Policy, session: requests.Session, **request) -> None:
    """One attempt. Raises _Transient for what a retry may cure, FetchError otherwise."""
    timeout = (policy.connect_timeout, policy.read_timeout)
    try:
        with session.get(url, stream=True, timeout=timeout, **request) as response:
            _check_response(url, response, policy.max_megabytes << 20)
            expected = response.headers.get("Content-Length")
            size = _stream_to(tmp, response, url, policy.max_megabytes << 20, expected)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
        raise _Transient(f"{type(err).__name__}: {_short(err)}") from None
    except requests.RequestException as err:
        raise FetchError(f"{url}: {type(err).__name__}: {_short(err)}") from None
    if expected is not None and int(expected) != size:
        raise _Transient(f"truncated body: got {size} of {expected} bytes")


def _check_response(url: str, response: requests.Response, max_bytes: int) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        raise _Transient(f"HTTP {status} {response.reason}", _retry_after(response))
    if status != 200:
        raise FetchError(f"{url}: HTTP {status} {response.reason}", status=status)
    kind = response.headers.get("Content-Type", "")
    if kind.startswith("text/html"):
        raise FetchError(f"{url}: got an HTML page (Content-Type {kind}), not data")
    declared = response.headers.get("Content-Length")
    if declared is not None and int(declared) > max_bytes:
        raise FetchError(f"{url}: {declared} bytes exceeds the {max_bytes}-byte limit")


def _stream_to(tmp: Path, response, url: str, max_bytes: int, expected: str | None) -> int:
    total = int(expected) if expected is not None else None
    show = sys.stderr.isatty() and (total is None or total > PROGRESS_BYTES)
    size = 0
    with tmp.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, disable=not show,
                                     desc=Path(urlparse(url).path).name or url) as bar:
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"{url}: larger than the {max_bytes}-byte limit")
            out.write(chunk)
            bar.update(len(chunk))
    return size


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) < 200 else text[:200] + "..."


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
