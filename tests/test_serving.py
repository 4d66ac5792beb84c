"""Promotion decisions, the refresh lock, and the deployments flows/serve.py builds."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time

import pytest
import yaml

from pipeline import serving

from .conftest import ROOT


def scores(mase: float, model: str = "a", windows: int = 10, last_origin: str = "2018-10-01") -> dict:
    return {"mase": mase, "mae": 100.0 * mase, "naive_mase": 1.0, "windows": windows,
            "last_origin": last_origin, "model": model}


@pytest.mark.parametrize("candidate, served, tolerance, kind", [
    (scores(1.2, "b"), None, 0.0, "first"),
    (scores(1.2, "a"), scores(1.0, "a"), 0.0, "same"),
    (scores(0.9, "b"), scores(1.0, "a"), 0.0, "not-worse"),
    (scores(1.0, "b"), scores(1.0, "a"), 0.0, "not-worse"),  # a tie refreshes to newer data
    (scores(1.01, "b"), scores(1.0, "a"), 0.0, "worse"),
    (scores(1.01, "b"), scores(1.0, "a"), 0.02, "not-worse"),
    (scores(1.03, "b"), scores(1.0, "a"), 0.02, "worse"),
])
def test_decide_promotes_only_a_candidate_that_is_not_worse(candidate, served, tolerance, kind):
    decision = serving.decide(candidate, served, tolerance)
    assert decision.kind == kind
    assert decision.promote == (kind in ("first", "not-worse"))
    if kind in ("not-worse", "worse"):
        assert f"candidate MASE {candidate['mase']:.4f} vs served {served['mase']:.4f}" in decision.reason


def test_decide_refuses_scores_from_different_windows():
    with pytest.raises(ValueError, match="different windows"):
        serving.decide(scores(1.0, "b", last_origin="2018-10-02"), scores(1.0, "a"), 0.0)


def test_the_model_digest_changes_with_any_byte(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/params.msgpack").write_bytes(b"\x01\x02")
    (tmp_path / "m/config.json").write_text("{}")
    first = serving.model_digest(tmp_path / "m")
    (tmp_path / "m/params.msgpack").write_bytes(b"\x01\x03")
    assert serving.model_digest(tmp_path / "m") != first


def _hold_lock(params, ready, release):
    with serving.lock(params, timeout=5):
        ready.set()
        release.wait(30)


def test_the_lock_excludes_another_process_until_released(tmp_path, tiny_params):
    f = tiny_params.forecast
    params = dataclasses.replace(tiny_params, forecast=dataclasses.replace(
        f, serve=dataclasses.replace(f.serve, dir=str(tmp_path / "serve"))))
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(params, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        began = time.monotonic()
        with pytest.raises(serving.LockBusy, match=r"serve/\.lock: another refresh has held this lock for over 0\.5s"):
            with serving.lock(params, timeout=0.5):
                pass
        assert time.monotonic() - began >= 0.5
    finally:
        release.set()
        holder.join(30)
    with serving.lock(params, timeout=5) as path:  # released by the holder's exit
        assert path.read_text().strip().isdigit()


def test_serve_builds_the_deployments_of_prefect_yaml():
    from flows import serve

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    built = {d.name: d for d in serve.deployments()}
    assert set(built) == {d["name"] for d in config}
    for d in config:
        runner = built[d["name"]]
        assert runner.entrypoint == d["entrypoint"]
        assert [(s.schedule.cron, s.schedule.timezone) for s in runner.schedules] == [
            (s["cron"], s["timezone"]) for s in d.get("schedules") or []]
        assert (runner.concurrency_limit or None) == d.get("concurrency_limit")
        assert runner.parameters == (d.get("parameters") or {})
