"""The Prefect flows against a real local Prefect server (SQLite), in a copy of the repo.

One server, one repository copy and one fake CoinDesk Data API (a real HTTP server on
127.0.0.1 serving real BPI closes) are shared by the tests below, which run in order as
an operator's week would: the scheduled deployment's first run, a re-run the same day,
new days behind a flaky network, a refused key, a worse model, and overlapping runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Response

from pipeline.serving import promotion

from .conftest import merge, tiny_overrides
from .helpers import KEY, VAR, FakeApi, make_repo

pytestmark = pytest.mark.e2e

FIRST_DAY, SERVED_UNTIL = "2016-01-01", "2018-10-31"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlakyApi(FakeApi):
    """The fake Data API, with a queue of error statuses to answer first."""

    def __init__(self):
        super().__init__()
        self.full = self.series
        self.faults: list[int] = []
        self.until(SERVED_UNTIL)

    def until(self, last_day: str) -> None:
        """Publish the days up to ``last_day`` only (the API's "today")."""
        self.series = {k: {d: c for d, c in v.items() if d <= last_day} for k, v in self.full.items()}

    def __call__(self, request):
        if self.faults:
            status = self.faults.pop(0)
            return Response(json.dumps({"Err": {"message": f"status {status}"}}), status=status,
                            content_type="application/json")
        return super().__call__(request)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 with its own SQLite database."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_UI_ENABLED="false", PREFECT_API_URL=url,
               PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db")
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"prefect server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # send the last run logs while the server still listens
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def api():
    httpd = HTTPServer(host="127.0.0.1", port=free_port())
    httpd.start()
    handler = FlakyApi()
    httpd.expect_request("/index/cc/v1/historical/days").respond_with_handler(handler)
    handler.base = httpd.url_for("/")
    yield handler
    httpd.clear()
    httpd.stop()


@pytest.fixture(scope="module")
def ops(tmp_path_factory, real_params_dict, server, api):
    """The repository copy, with the Data API as the forecaster's source, and the env an
    operator's shell would have (server URL, the API key in its variable)."""
    repo = tmp_path_factory.mktemp("ops") / "repo"
    params = merge(real_params_dict, tiny_overrides(root=repo))
    params = merge(params, {
        "fetch": {"retries": 0, "backoff_seconds": 0.01},  # the flow's task retries are under test
        "sources": {"forecast": {"url": api.base, "sha256": None, "raw": "data/raw/forecast/coindesk",
                                 "format": "coindesk-api", "api": {"key_env": VAR, "since": FIRST_DAY}}},
        "forecast": {"model": {"cells": ["lstm"]}, "serve": {"recent_windows": 10},
                     "baselines": {"methods": ["autoets"]}},
    })
    make_repo(repo, params, extra=("flows", "prefect.yaml"))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with pytest.MonkeyPatch.context() as mp, temporary_settings({PREFECT_API_URL: server}):
        mp.setenv(VAR, KEY)
        mp.setenv("PREFECT_API_URL", server)
        mp.chdir(repo)
        yield repo


def prefect_cli(repo: Path, *args: str, timeout: float = 600) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    out = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def refresh(**kwargs):
    from flows.refresh_forecaster import refresh_forecaster

    kwargs.setdefault("fetch_retry_delay_seconds", 0.01)
    return refresh_forecaster(return_state=True, **kwargs)


def task_runs(flow_run_id) -> dict[str, object]:
    """The flow run's task runs by task name (the last of each)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     task_run_filter=TaskRunFilter())
    return {r.name.rsplit("-", 1)[0]: r for r in runs}  # "fetch-prices-3fa" -> "fetch-prices"


def snapshot(repo: Path) -> dict[str, bytes]:
    serve = repo / "serving/forecast"
    files = [repo / "data/raw/forecast/coindesk/prices.csv", serve / "decisions.jsonl",
             serve / "latest.csv", serve / "latest.json", *sorted((serve / "model").rglob("*"))]
    return {str(p.relative_to(repo)): p.read_bytes() for p in files if p.is_file()}


def test_the_scheduled_deployment_is_listed_and_a_run_of_it_completes(ops, server, api):
    prefect_cli(ops, "work-pool", "create", "rnnpipe", "--type", "process")
    prefect_cli(ops, "deploy", "--all")
    listing = prefect_cli(ops, "deployment", "ls")
    assert "refresh-forecaster/daily" in listing and "run-pipeline/manual" in listing
    out = prefect_cli(ops, "deployment", "inspect", "refresh-forecaster/daily", "--output", "json")
    deployment = json.loads(out[out.index("{"):])
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in deployment["schedules"]] == [
        ("30 6 * * *", "UTC", True)]
    assert deployment["global_concurrency_limit"]["limit"] == 1  # prefect.yaml's concurrency_limit
    assert deployment["work_pool_name"] == "rnnpipe"
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ops)
    started = prefect_cli(ops, "deployment", "run", "refresh-forecaster/daily",
                          "--param", "fetch_retry_delay_seconds=0.01")
    run_id = next(w for w in started.split() if w.count("-") == 4 and len(w) == 36)
    prefect_cli(ops, "worker", "start", "--pool", "rnnpipe", "--run-once")

    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.state.is_completed(), run.state
    decisions = promotion.decisions(serving_params(ops))
    assert len(decisions) == 1 and decisions[0]["promoted"] and decisions[0]["reason"] == "no model was served yet"
    assert decisions[0]["data_last_day"] == SERVED_UNTIL
    latest = json.loads((ops / "serving/forecast/latest.json").read_text())
    assert latest["last_day"] == SERVED_UNTIL and len(latest["forecast"]) == 40
    assert (ops / "serving/forecast/latest.png").read_bytes()[:4] == b"\x89PNG"
    assert KEY not in (ops / "dvc.lock").read_text() + json.dumps(decisions)


def serving_params(repo: Path):
    from pipeline import params

    return params.load(repo / "params.yaml")


def test_a_rerun_the_same_day_changes_nothing(ops, api):
    before, lock = snapshot(ops), (ops / "dvc.lock").read_bytes()
    state = refresh()
    assert state.is_completed(), state
    summary = state.result()
    assert summary["new_rows"] == 0 and not summary["promoted"]
    assert summary["reason"] == "unchanged: the candidate is the served model"
    assert snapshot(ops) == before and (ops / "dvc.lock").read_bytes() == lock


def test_a_transient_fault_is_retried_with_backoff_to_success(ops, api):
    api.until("2018-11-10")
    api.faults = [503, 503]  # the fetcher itself does not retry here (fetch.retries: 0)
    state = refresh(fetch_retries=2)
    assert state.is_completed(), state
    assert state.result()["new_rows"] == 2 * 10 and api.faults == []  # 10 days of USD and EUR
    fetch = task_runs(state.state_details.flow_run_id)["fetch-prices"]
    assert fetch.run_count == 3 and fetch.state.is_completed()
    table = (ops / "data/raw/forecast/coindesk/prices.csv").read_text()
    assert "2018-11-10" in table and "2018-11-11" not in table
    last = promotion.decisions(serving_params(ops))[-1]
    assert last["data_last_day"] == "2018-11-10" and last["candidate"]["last_origin"] > "2018-09-01"


def test_a_permanent_fault_fails_cleanly_and_keeps_everything(ops, api):
    api.until("2018-11-15")
    api.faults = [401] * 10
    before, lock = snapshot(ops), (ops / "dvc.lock").read_bytes()
    state = refresh(fetch_retries=2)
    assert state.is_failed()
    assert VAR in state.message or VAR in str(state.result(raise_on_failure=False))
    fetch = task_runs(state.state_details.flow_run_id)["fetch-prices"]
    assert fetch.run_count == 1  # a refused key is not retried
    assert api.faults == [401] * 9
    assert snapshot(ops) == before and (ops / "dvc.lock").read_bytes() == lock
    api.faults = []


def test_a_worse_candidate_is_not_promoted(ops, api):
    params = yaml.safe_load((ops / "params.yaml").read_text())
    params["forecast"]["train"]["learning_rate"] = 10.0  # diverges: a far worse model
    (ops / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    served = promotion.model_digest(ops / "serving/forecast/model")
    state = refresh()
    assert state.is_completed(), state
    summary = state.result()
    assert summary["new_rows"] == 2 * 5 and not summary["promoted"]
    assert summary["reason"].startswith("worse, kept the served model: candidate MASE")
    assert summary["candidate"]["mase"] > summary["served_before"]["mase"]
    assert promotion.model_digest(ops / "serving/forecast/model") == served
    last = promotion.decisions(serving_params(ops))[-1]
    assert not last["promoted"] and last["data_last_day"] == "2018-11-15"
    latest = json.loads((ops / "serving/forecast/latest.json").read_text())
    assert latest["model"] == "serving/forecast/model" and latest["last_day"] == "2018-11-15"
    again = refresh()  # the same rejected candidate is not decided on twice
    assert again.result()["reason"].startswith("already decided at ")
    assert promotion.decisions(serving_params(ops))[-1] == last


def test_overlapping_refreshes_do_not_run_together(ops, api):
    params = serving_params(ops)
    before = snapshot(ops)
    held, release = threading.Event(), threading.Event()

    def hold():
        with promotion.lock(params, timeout=5):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        state = refresh(lock_timeout_seconds=0.5)
        assert state.is_failed()
        assert "another refresh has held this lock" in str(state.result(raise_on_failure=False))
        assert snapshot(ops) == before
    finally:
        release.set()
        holder.join()
    assert refresh(lock_timeout_seconds=5).is_completed()  # free again once released


def set_branch(repo: Path, name: str | None) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["forecast"]["serve"]["branch"] = name
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_refreshes_commit_to_a_branch_that_dvc_metrics_diff_compares(ops, api):
    from pipeline.serving import branch

    def git(*args):
        return subprocess.run(["git", *args], cwd=ops, capture_output=True, text=True, check=True).stdout.strip()

    mine, head = branch.current_branch(ops), git("rev-parse", "HEAD")
    set_branch(ops, mine)  # never the branch checked out: refused before any work
    before, lock = snapshot(ops), (ops / "dvc.lock").read_bytes()
    state = refresh()
    assert state.is_failed() and "never commits on your branch" in str(state.result(raise_on_failure=False))
    assert snapshot(ops) == before and (ops / "dvc.lock").read_bytes() == lock
    try:
        set_branch(ops, "refreshes")
        commits = []
        for day in ("2018-11-18", "2018-11-20"):
            api.until(day)
            state = refresh()
            assert state.is_completed(), state
            summary = state.result()
            assert summary["branch"] == "refreshes" and summary["commit"] == git("rev-parse", "refreshes")
            commits.append(summary["commit"])
            assert git("show", "refreshes:dvc.lock") == (ops / "dvc.lock").read_text().strip()
            assert json.loads(git("show", "refreshes:serving/forecast/latest.json"))["last_day"] == day
            assert git("show", "refreshes:serving/forecast/decisions.jsonl").count("\n") + 1 == \
                len(promotion.decisions(serving_params(ops)))
        assert git("rev-parse", "refreshes~1") == commits[0] and git("rev-parse", "refreshes~2") == head
        assert branch.current_branch(ops) == mine and git("rev-parse", "HEAD") == head  # the user's branch: as it was
        diff = subprocess.run([sys.executable, "-m", "dvc", "metrics", "diff", "--json", "refreshes~1", "refreshes"],
                              cwd=ops, capture_output=True, text=True, check=True)
        changed = json.loads(diff.stdout)["metrics/forecast-lstm.json"]
        assert changed["mae"]["new"] != changed["mae"]["old"]  # retrained on two more days
        again = refresh()  # nothing new: no commit
        assert again.is_completed() and again.result()["commit"] is None
        assert git("rev-parse", "refreshes") == commits[-1]
    finally:
        set_branch(ops, None)


def test_run_pipeline_publishes_metrics_and_pushes_to_a_remote(ops, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.run_pipeline import run_pipeline

    remote = tmp_path / "dvc-remote"
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(remote)], cwd=ops, check=True)
    state = run_pipeline(stages=["evaluate_forecast@lstm"], return_state=True)
    assert state.is_completed(), state
    assert "metrics/forecast-lstm.json" in state.result()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pipeline-metrics"]))
        )
    assert artifacts and "metrics/forecast-lstm.json" in artifacts[-1].data
    pushed = [p for p in remote.rglob("*") if p.is_file()]
    assert pushed  # the models and prepared data went to the remote


def test_run_pipeline_runs_an_experiment_with_overrides(ops):
    from flows.run_pipeline import run_pipeline

    state = run_pipeline(stages=["evaluate_forecast@lstm"], set_params={"forecast.model.hidden": 4},
                         experiment="narrow", push_to_remote=False, return_state=True)
    assert state.is_completed(), state
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=ops,
                           capture_output=True, text=True, check=True).stdout
    assert '"narrow"' in shown
    assert yaml.safe_load((ops / "params.yaml").read_text())["forecast"]["model"]["hidden"] == 4


def test_sweep_fans_variants_out_on_a_dask_cluster(ops):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.sweep import on_dask

    params_before = (ops / "params.yaml").read_bytes()
    variants = {"h5": {"forecast.model.hidden": 5}, "h7": {"forecast.model.hidden": 7}}
    state = on_dask(workers=2)(variants, ["evaluate_forecast@lstm"], return_state=True)
    assert state.is_completed(), state
    shown = json.loads(subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=ops,
                                      capture_output=True, text=True, check=True).stdout)
    runs = {e["name"]: e for base in shown for e in (base.get("experiments") or []) if e.get("name") in variants}
    assert set(runs) == set(variants)
    mae = {name: run["revs"][0]["data"]["metrics"]["metrics/forecast-lstm.json"]["data"]["mae"]
           for name, run in runs.items()}
    assert mae["h5"] != mae["h7"]  # two different models were trained
    assert (ops / "params.yaml").read_bytes() == params_before  # --temp: the workspace is untouched
    with get_client(sync_client=True) as client:
        published = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sweep"])))
    assert published and "h5" in published[-1].data and "h7" in published[-1].data
