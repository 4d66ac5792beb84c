"""Promotion decisions, the refresh lock, and the deployments flows/serve.py builds."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time

import pytest

from pipeline.serving import promotion


def scores(mase: float, model: str = "a", windows: int = 10, last_origin: str = "2018-10-01") -> dict:
    return {"mase": mase, "mae": 100.0 * mase, "naive_mase": 1.0, "windows": windows,
            "last_origin": last_origin, "model": model}


@pytest.mark.parametrize("candidate, served, tolerance, kind, promoted", [
    (scores(1.2, "b"), None, 0.0, "first", True),
    (scores(1.2, "a"), scores(1.0, "a"), 0.0, "same", False),
    (scores(0.9, "b"), scores(1.0, "a"), 0.0, "not-worse", True),
    (scores(1.0, "b"), scores(1.0, "a"), 0.0, "not-worse", True),  # a tie refreshes to newer data
    (scores(1.01, "b"), scores(1.0, "a"), 0.0, "worse", False),
    (scores(1.01, "b"), scores(1.0, "a"), 0.02, "not-worse", True),
    (scores(1.03, "b"), scores(1.0, "a"), 0.02, "worse", False),
])
def test_decide_promotes_only_a_candidate_that_is_not_worse(tmp_path, tiny_params, candidate, served, tolerance,
                                                            kind, promoted):
    decision = promotion.decide(candidate, served, tolerance)
    assert decision.kind == kind and decision.promote is promoted
    if kind in ("not-worse", "worse"):
        assert f"candidate MASE {candidate['mase']:.4f} vs served {served['mase']:.4f}" in decision.reason
    # what the decision does to the log: it records whether the model was promoted
    params = dataclasses.replace(tiny_params, forecast=dataclasses.replace(
        tiny_params.forecast, serve=dataclasses.replace(tiny_params.forecast.serve, dir=str(tmp_path))))
    entry = promotion.record(params, decision, "2018-11-20")
    assert promotion.decisions(params) == [entry] and entry["promoted"] is promoted


def test_decide_refuses_scores_from_different_windows():
    with pytest.raises(ValueError, match="different windows"):
        promotion.decide(scores(1.0, "b", last_origin="2018-10-02"), scores(1.0, "a"), 0.0)


def test_the_model_digest_changes_with_any_byte(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m/params.msgpack").write_bytes(b"\x01\x02")
    (tmp_path / "m/config.json").write_text("{}")
    first = promotion.model_digest(tmp_path / "m")
    (tmp_path / "m/params.msgpack").write_bytes(b"\x01\x03")
    assert promotion.model_digest(tmp_path / "m") != first


def _hold_lock(params, ready, release):
    with promotion.lock(params, timeout=5):
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
        with pytest.raises(
            promotion.LockBusy, match=r"serve/\.lock: another refresh has held this lock for over 0\.5s"
        ):
            with promotion.lock(params, timeout=0.5):
                pass
        assert time.monotonic() - began >= 0.5
    finally:
        release.set()
        holder.join(30)
    with promotion.lock(params, timeout=5) as path:  # released by the holder's exit
        assert path.read_text().strip().isdigit()


def test_the_scheduled_refresh_runs_daily_one_at_a_time_with_retries():
    """What operators rely on, checked on the deployments serve.py builds from prefect.yaml."""
    from prefect.client.schemas.schedules import CronSchedule

    from flows import serve
    from flows.refresh_forecaster import refresh_forecaster
    from flows.run_pipeline import run_pipeline

    built = {d.name: d for d in serve.deployments()}
    daily, manual = built["daily"], built["manual"]
    assert daily.entrypoint.endswith(":refresh_forecaster") and daily.flow_name == refresh_forecaster.name
    assert manual.entrypoint.endswith(":run_pipeline") and manual.flow_name == run_pipeline.name
    assert daily.concurrency_limit == 1 and not manual.schedules  # manual runs only on request
    (schedule,) = daily.schedules
    assert isinstance(schedule.schedule, CronSchedule) and schedule.active
    minute, hour, day, month, weekday = schedule.schedule.cron.split()
    assert minute.isdigit() and hour.isdigit() and (day, month, weekday) == ("*", "*", "*")  # once a day
    assert daily.parameters["fetch_retries"] >= 1  # a transient fetch failure is retried
