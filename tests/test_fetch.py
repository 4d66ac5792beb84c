"""The fetcher against real files and real servers on 127.0.0.1, fault by fault.

Every fault ends in a successful retry or a clear error naming the URL; on error the
previous good output is intact and no partial file is left behind.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from pipeline.params import FetchPolicy
from pipeline.sources import coindesk, fetch

from .conftest import FIXTURES, ROOT

BPI = ROOT / "data/embedded/coindesk/bpi-close-2010-07-18_2018-11-20.json"
SHAKESPEARE = FIXTURES / "shakespeare-head.txt"
POLICY = FetchPolicy(retries=2, backoff_seconds=0.01, max_backoff_seconds=5.0,
                     connect_timeout=2.0, read_timeout=0.5, max_megabytes=1, mirror=None)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Sleeps(list):
    """Records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def only_target(directory: Path, name: str) -> bool:
    return [p.name for p in directory.iterdir()] == [name]


@pytest.fixture
def previous(tmp_path) -> Path:
    target = tmp_path / "close.json"
    target.write_text("previous good output")
    return target


def assert_untouched(target: Path) -> None:
    assert target.read_text() == "previous good output"
    assert only_target(target.parent, target.name), "a partial file was left behind"


# --- local sources --------------------------------------------------------------------
def test_local_path_and_file_url(tmp_path):
    data = SHAKESPEARE.read_bytes()
    for url in (str(SHAKESPEARE), SHAKESPEARE.as_uri()):
        target = tmp_path / "raw" / "input.txt"
        assert fetch.fetch(url, target, sha(data), POLICY) == sha(data)
        assert target.read_bytes() == data
    assert only_target(target.parent, "input.txt")


def test_wrong_sha256_keeps_the_previous_file(previous):
    with pytest.raises(fetch.FetchError, match=r"shakespeare-head.txt: sha256 mismatch: expected 00"):
        fetch.fetch(str(SHAKESPEARE), previous, "00" * 32, POLICY)
    assert_untouched(previous)


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(fetch.FetchError, match="nope.txt: no such file"):
        fetch.fetch(str(tmp_path / "nope.txt"), tmp_path / "out", None, POLICY)
    with pytest.raises(fetch.FetchError, match="unsupported scheme 'ftp'"):
        fetch.fetch("ftp://example.org/x", tmp_path / "out", None, POLICY)


# --- HTTP: pytest-httpserver -------------------------------------------------------------
def test_real_bytes_over_http(httpserver, tmp_path):
    data = BPI.read_bytes()
    httpserver.expect_request("/close.json").respond_with_data(data, content_type="application/json")
    target = tmp_path / "close.json"
    fetch.fetch(httpserver.url_for("/close.json"), target, sha(data), POLICY)
    assert target.read_bytes() == data
    assert len(coindesk.parse_bpi_close(target.read_text(), str(target))) == 3048


def test_503_twice_then_200_is_retried_to_success(httpserver, tmp_path):
    data = BPI.read_bytes()
    for _ in range(2):
        httpserver.expect_ordered_request("/close.json").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/close.json").respond_with_data(data, content_type="application/json")
    sleeps = Sleeps()
    fetch.fetch(httpserver.url_for("/close.json"), tmp_path / "close.json", sha(data), POLICY, sleep=sleeps)
    assert (tmp_path / "close.json").read_bytes() == data
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.01 and 0 <= sleeps[1] <= 0.02  # full jitter under 0.01 * 2**attempt


def test_429_honours_retry_after(httpserver, tmp_path):
    data = SHAKESPEARE.read_bytes()
    httpserver.expect_ordered_request("/t").respond_with_data("slow down", status=429, headers={"Retry-After": "3"})
    httpserver.expect_ordered_request("/t").respond_with_data(
        "slow down", status=429, headers={"Retry-After": formatdate(time.time() + 2, usegmt=True)})
    httpserver.expect_ordered_request("/t").respond_with_data(data, content_type="text/plain")
    sleeps = Sleeps()
    fetch.fetch(httpserver.url_for("/t"), tmp_path / "t", None, POLICY, sleep=sleeps)
    assert sleeps[0] == 3.0
    assert 0.5 <= sleeps[1] <= 2.0  # an HTTP date becomes the seconds until then


def test_persistent_503_gives_up_with_a_clear_error(httpserver, previous):
    httpserver.expect_request("/close.json").respond_with_data("down", status=503)
    sleeps = Sleeps()
    url = httpserver.url_for("/close.json")
    with pytest.raises(fetch.FetchError, match=rf"{url}: HTTP 503 .*gave up after 3 attempts") as err:
        fetch.fetch(url, previous, None, POLICY, sleep=sleeps)
    assert err.value.transient  # a scheduler may try the whole fetch again later
    assert len(sleeps) == 2
    assert_untouched(previous)


def test_html_page_and_client_errors_are_not_retried(httpserver, previous):
    httpserver.expect_request("/html").respond_with_data("<html>Oops</html>", content_type="text/html")
    httpserver.expect_request("/gone").respond_with_data("no", status=404)
    sleeps = Sleeps()
    with pytest.raises(fetch.FetchError, match="/html: got an HTML page"):
        fetch.fetch(httpserver.url_for("/html"), previous, None, POLICY, sleep=sleeps)
    with pytest.raises(fetch.FetchError, match="/gone: HTTP 404") as err:
        fetch.fetch(httpserver.url_for("/gone"), previous, None, POLICY, sleep=sleeps)
    assert not err.value.transient
    assert sleeps == []
    assert_untouched(previous)


def test_oversize_body_is_refused(httpserver, previous):
    httpserver.expect_request("/big").respond_with_data(b"x" * (2 << 20), content_type="text/plain")
    with pytest.raises(fetch.FetchError, match="exceeds the 1048576-byte limit"):
        fetch.fetch(httpserver.url_for("/big"), previous, None, POLICY)
    assert_untouched(previous)


# --- HTTP: faults only a raw socket can make -----------------------------------------------
class RawServer:
    """An HTTP server on 127.0.0.1 that misbehaves as scripted, one way per connection."""

    def __init__(self, script: list[str], body: bytes):
        self.script, self.body = list(script), body
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/data.txt"
        self.served: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.script:
            conn, _ = self.sock.accept()
            action = self.script.pop(0)
            self.served.append(action)
            threading.Thread(target=self._handle, args=(conn, action), daemon=True).start()

    def _handle(self, conn: socket.socket, action: str) -> None:
        with conn:
            conn.recv(65536)
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n").encode()
            if action == "reset":  # RST instead of a response
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif action == "stall":  # headers, then silence past the read timeout
                conn.sendall(head + self.body[:100])
                time.sleep(1.5)
            elif action == "truncate":  # a body cut short of its Content-Length
                conn.sendall(head + self.body[: len(self.body) // 2])
            else:
                conn.sendall(head + self.body)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("fault", ["reset", "stall", "truncate"])
def test_transient_socket_faults_are_retried(fault, tmp_path):
    data = SHAKESPEARE.read_bytes()
    server = RawServer([fault, "ok"], data)
    try:
        sleeps = Sleeps()
        fetch.fetch(server.url, tmp_path / "data.txt", sha(data), POLICY, sleep=sleeps)
    finally:
        server.close()
    assert (tmp_path / "data.txt").read_bytes() == data
    assert server.served == [fault, "ok"] and len(sleeps) == 1
    assert only_target(tmp_path, "data.txt")


@pytest.mark.parametrize("fault", ["reset", "truncate"])
def test_persistent_socket_faults_fail_cleanly(fault, previous):
    server = RawServer([fault] * 3, SHAKESPEARE.read_bytes())
    try:
        with pytest.raises(fetch.FetchError, match=rf"{server.url}: .*gave up after 3 attempts"):
            fetch.fetch(server.url, previous, None, POLICY, sleep=Sleeps())
    finally:
        server.close()
    assert_untouched(previous)


def test_backoff_is_bounded_full_jitter():
    import random
    rng = random.Random(0)
    waits = [fetch.backoff(a, POLICY, rng) for a in range(12) for _ in range(50)]
    assert min(waits) >= 0 and max(waits) <= POLICY.max_backoff_seconds
    late = [fetch.backoff(10, POLICY, rng) for _ in range(200)]
    assert max(late) > 2.0 and min(late) < 1.0  # spread over [0, cap], not a fixed delay


# --- mirrors -------------------------------------------------------------------------------
def test_a_folder_mirror_serves_remote_sources_by_file_name(tmp_path):
    import dataclasses

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "input.txt").write_bytes(SHAKESPEARE.read_bytes())
    policy = dataclasses.replace(POLICY, mirror=str(mirror))
    # The remote host is never contacted: the name resolves nowhere.
    url = "https://unreachable.invalid/karpathy/char-rnn/input.txt"
    fetch.fetch(url, tmp_path / "out.txt", sha(SHAKESPEARE.read_bytes()), policy)
    assert (tmp_path / "out.txt").read_bytes() == SHAKESPEARE.read_bytes()
    # Local sources are already local and stay as they are.
    assert fetch.mirrored(str(SHAKESPEARE), str(mirror)) == str(SHAKESPEARE)
    with pytest.raises(fetch.FetchError, match="missing.zip: no such file"):
        fetch.fetch("https://unreachable.invalid/missing.zip", tmp_path / "m", None, policy)


def test_an_http_mirror(httpserver, tmp_path):
    import dataclasses

    data = BPI.read_bytes()
    httpserver.expect_request("/mirror/close.json").respond_with_data(data, content_type="application/json")
    policy = dataclasses.replace(POLICY, mirror=httpserver.url_for("/mirror/"))
    fetch.fetch("https://api.coindesk.invalid/v1/bpi/historical/close.json", tmp_path / "c.json", sha(data), policy)
    assert (tmp_path / "c.json").read_bytes() == data
