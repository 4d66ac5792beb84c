"""The served forecaster: score a candidate against it, promote or keep, record why.

The scheduled refresh (``flows/refresh_forecaster.py``) retrains the ``forecast.serve.cell`` branch
with ``dvc repro``; the freshly trained model in ``models/forecast/<cell>`` is the
*candidate*. The *served* model lives apart, in ``<forecast.serve.dir>/model``, and only
:func:`promote` replaces it. Both are scored here on the same windows (the newest
``recent_windows`` test windows of today's data) by MASE; the candidate is promoted when
it is not worse. Every decision is appended to ``decisions.jsonl``.

Scoring and deciding live here, not in the flow: flows orchestrate and never compute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline import artifacts
from pipeline.data import windows
from pipeline.errors import PipelineError
from pipeline.inference import forecasting
from pipeline.params import Params

MODEL, DECISIONS, LOCK, LATEST = "model", "decisions.jsonl", ".lock", "latest"


class LockBusy(PipelineError):
    """Another refresh holds the lock."""


@dataclasses.dataclass(frozen=True)
class Decision:
    kind: str  # first | same | not-worse | worse
    reason: str
    candidate: dict
    served: dict | None

    @property
    def promote(self) -> bool:
        return self.kind in ("first", "not-worse")


def model_digest(model_dir: str | Path) -> str:
    """sha256 over a model directory's files (names and bytes), to tell models apart."""
    h = hashlib.sha256()
    for path in sorted(Path(model_dir).rglob("*")):
        if path.is_file():
            h.update(path.relative_to(model_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def score(params: Params, model_dir: str | Path) -> dict:
    """MASE, MAE and the naive MASE of a model on the newest test windows of the prepared data."""
    p = params.forecast
    loaded = forecasting.load(model_dir)
    forecasting.check(loaded, "params.yaml", features=p.data.features, input_len=p.data.input_len,
                      output_len=p.data.output_len, outputs=p.data.targets)
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")
    starts = data["test_starts"][-p.serve.recent_windows:]
    scored = forecasting.on_windows(loaded, data["series"], starts)
    err = forecasting.errors(scored)
    naive = forecasting.errors(scored, windows.naive_forecast(scored.inputs, p.data.output_len))
    last_origin = str(data["dates"][int(starts[-1]) + p.data.input_len])
    return {"mase": round(float(err["mase"]), 6), "mae": round(float(err["mae"]), 4),
            "naive_mase": round(float(naive["mase"]), 6), "windows": int(len(starts)),
            "last_origin": last_origin, "model": model_digest(model_dir)[:16]}


def decide(candidate: dict, served: dict | None, tolerance: float) -> Decision:
    """Promote unless the candidate's MASE is worse than the served model's (with tolerance).

    Both scores must be on the same windows. A candidate identical to the served model is
    not promoted again (nothing to do).
    """
    if served is None:
        return Decision("first", "no model was served yet", candidate, None)
    if candidate["model"] == served["model"]:
        return Decision("same", "unchanged: the candidate is the served model", candidate, served)
    if (candidate["windows"], candidate["last_origin"]) != (served["windows"], served["last_origin"]):
        raise ValueError("candidate and served model were scored on different windows")
    bound = served["mase"] * (1.0 + tolerance)
    verdict = (f"candidate MASE {candidate['mase']:.4f} vs served {served['mase']:.4f} "
               f"(naive {candidate['naive_mase']:.4f}) on the {candidate['windows']} newest test windows "
               f"up to {candidate['last_origin']}")
    if candidate["mase"] <= bound:
        return Decision("not-worse", f"not worse: {verdict}", candidate, served)
    return Decision("worse", f"worse, kept the served model: {verdict}", candidate, served)


def recorded_paths(params: Params) -> list[str]:
    """What a refresh changes and ``forecast.serve.branch`` records: ``params.yaml``,
    ``dvc.lock``, the served cell's metrics and error-by-horizon plot data, the decision
    log and the latest forecast (the data and models are in DVC's cache, named by
    ``dvc.lock``)."""
    p = params.forecast
    cell, metrics, serve = p.serve.cell, Path(p.paths.metrics), Path(p.serve.dir)
    return [Path(f).as_posix() for f in (
        "params.yaml", "dvc.lock", metrics / f"forecast-{cell}.json", metrics / f"forecast-{cell}-horizon.json",
        Path(p.paths.plots) / f"forecast-{cell}-horizon.csv", serve / DECISIONS,
        serve / f"{LATEST}.json", serve / f"{LATEST}.csv")]


def served_dir(params: Params) -> Path:
    return Path(params.forecast.serve.dir) / MODEL


def promote(params: Params, candidate_dir: str | Path) -> Path:
    """Copy the candidate over the served model, atomically (a crash leaves the old one)."""
    target = served_dir(params)
    with artifacts.atomic_dir(target) as tmp:
        shutil.copytree(candidate_dir, tmp, dirs_exist_ok=True)
    return target


def record(params: Params, decision: Decision, data_last_day: str | None) -> dict:
    """Append the decision to ``decisions.jsonl`` (rewritten atomically) and return the entry."""
    entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "promoted": decision.promote, "reason": decision.reason, "data_last_day": data_last_day,
             "candidate": decision.candidate, "served": decision.served}
    path = Path(params.forecast.serve.dir) / DECISIONS
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    artifacts.write_text(path, before + json.dumps(entry, sort_keys=True) + "\n")
    return entry


def decisions(params: Params) -> list[dict]:
    path = Path(params.forecast.serve.dir) / DECISIONS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@contextlib.contextmanager
def lock(params: Params, timeout: float) -> Iterator[Path]:
    """Hold ``<serve.dir>/.lock`` (an OS file lock) so that two refreshes never overlap.

    Waits up to ``timeout`` seconds, then raises :class:`LockBusy`. The OS drops the lock
    when the holder exits, even on a crash, so a stale lock file never blocks anyone.
    """
    path = Path(params.forecast.serve.dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockBusy(f"{path}: another refresh has held this lock for over {timeout:g}s; "
                                   "it finishes on its own, or its process has hung") from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
