"""What several test modules share: a fake CoinDesk Data API, shell and DVC runners, a
tiny copy of the repository as a git repo, and the CLI runner. (Fixtures live in
conftest.py.)"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from werkzeug import Response

from pipeline.params import FetchPolicy

from .conftest import ROOT

KEY = "test-key-5f2b9c0e7d1a"  # a fake secret; it must never leak
VAR = "RNNPIPE_TEST_COINDESK_KEY"
POLICY = FetchPolicy(retries=1, backoff_seconds=0.01, max_backoff_seconds=1.0,
                     connect_timeout=2.0, read_timeout=2.0, max_megabytes=1, mirror=None)
BPI = json.loads((ROOT / "data/embedded/coindesk/bpi-close-2010-07-18_2018-11-20.json").read_text())["bpi"]


def api_day(day: str, close: float, instrument: str = "BTC-USD") -> dict:
    ts = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())
    return {"UNIT": "DAY", "TIMESTAMP": ts, "TYPE": "267", "MARKET": "cadli", "INSTRUMENT": instrument,
            "OPEN": close * 0.99, "HIGH": close * 1.02, "LOW": close * 0.97, "CLOSE": close, "VOLUME": 1.0}


class FakeApi:
    """Serves real BPI closes in the Data API's shape, paging by limit/to_ts.

    ``series`` maps an instrument to its ``{ISO day: close}``; by default BTC-USD is the
    real BPI history and BTC-EUR the same closes at 0.9.
    """

    def __init__(self, series: dict[str, dict[str, float]] | None = None):
        self.series = series or {"BTC-USD": BPI, "BTC-EUR": {d: c * 0.9 for d, c in BPI.items()}}
        self.requests: list[dict] = []

    def __call__(self, request):
        self.requests.append({"args": dict(request.args), "auth": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != f"Apikey {KEY}":
            return Response(json.dumps({"Err": {"message": "unauthorized"}}), status=401,
                            content_type="application/json")
        instrument = request.args["instrument"]
        to_ts, limit = int(request.args["to_ts"]), int(request.args["limit"])
        end = dt.datetime.fromtimestamp(to_ts, dt.UTC).date()
        series = self.series[instrument]
        days = [d for d in series if dt.date.fromisoformat(d) <= end][-limit:]
        body = {"Data": [api_day(d, series[d], instrument) for d in days], "Err": {}}
        return Response(json.dumps(body), content_type="application/json")


COPY = ["pipeline", "dvc.yaml", "data/embedded", "tests/fixtures", ".dvc/config", ".dvc/.gitignore",
        ".dvc/offline-plots.html", ".dvc/plots", ".gitignore",
        "metrics/noise.json"]  # the seed bands: a dependency of the evaluate stages (their model cards)


def sh(repo: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return sh(repo, sys.executable, "-m", "dvc", *args)


def make_repo(repo: Path, params: dict, extra: tuple[str, ...] = ()) -> Path:
    for rel in (*COPY, *extra):
        src, dst = ROOT / rel, repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "tiny pipeline")
    return repo


def run_cli(*args, cwd=ROOT, env: dict[str, str] | None = None):
    """``python -m pipeline ARGS`` in a process of its own; ``env`` adds to this one's."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def _shared_data() -> Path:
    """``../shared/data`` beside the checkout (or inside it, or $RNNPIPE_SHARED_DATA)."""
    for candidate in (os.environ.get("RNNPIPE_SHARED_DATA"), ROOT.parent / "shared/data", ROOT / "shared/data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return ROOT.parent / "shared/data"


IWSLT = _shared_data() / "translation/iwslt15-en-vi"  # dev/test and vocabularies, no train
FIXTURES = ROOT / "tests/fixtures"


EMPTY_PAIRS = 2  # what iwslt_folder(..., empty_lines=True) puts into train


def iwslt_folder(where: Path, empty_lines: bool = False) -> Path:
    """An iwslt-format folder: the real IWSLT'15 files from ../shared, with tst2012
    standing in for the train set that ../shared does not hold; without ../shared, the
    heads of those files kept under tests/fixtures. With ``empty_lines``, the train files
    get what the Stanford train files have (stefan-it/nmt-en-vi#6): a pair empty on both
    sides, and one whose English side is empty while its Vietnamese side is not."""
    folder = where / "iwslt"
    folder.mkdir()
    for lang in ("en", "vi"):
        if IWSLT.is_dir():
            files = {f"train.{lang}": IWSLT / f"tst2012.{lang}",
                     **{name: IWSLT / name for name in (f"tst2012.{lang}", f"tst2013.{lang}", f"vocab.{lang}")}}
        else:
            files = {f"train.{lang}": FIXTURES / f"iwslt-tst2012-head.{lang}",
                     f"tst2012.{lang}": FIXTURES / f"iwslt-tst2012-head.{lang}",
                     f"tst2013.{lang}": FIXTURES / f"iwslt-tst2013-head.{lang}",
                     f"vocab.{lang}": FIXTURES / f"iwslt-vocab-head.{lang}"}
        for name, path in files.items():
            shutil.copy(path, folder / name)
    if empty_lines:
        en, vi = ((folder / f"train.{lang}").read_text("utf-8").split("\n") for lang in ("en", "vi"))
        en[3:3], vi[3:3] = ["", ""], ["", "Một câu không có bản tiếng Anh ."]
        for lang, lines in (("en", en), ("vi", vi)):
            (folder / f"train.{lang}").write_text("\n".join(lines), "utf-8")
    return folder
