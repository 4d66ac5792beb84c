"""A real `dvc repro` in a temporary copy of the repository, on tiny params.

It proves the DVC contract end to end: a fresh repro produces every workload's metrics,
a second repro does nothing, and a changed model parameter reruns only its own branch,
which `dvc metrics diff` and `dvc params diff` then report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import merge, tiny_overrides
from .helpers import KEY, VAR, FakeApi, dvc, make_repo, sh


@pytest.fixture(scope="module")
def repo(tmp_path_factory, real_params_dict) -> Path:
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    params = merge(real_params_dict, tiny_overrides(root=repo))
    params["charlm"]["model"]["cells"] = ["lstm"]  # two matrices (nmt, forecast) are enough
    return make_repo(repo, params)


@pytest.mark.e2e
def test_repro_runs_every_workload_then_does_nothing(repo):
    out = dvc(repo, "repro")
    for stage in ("download@nmt", "train_nmt@lstm", "train_nmt@gru", "evaluate_charlm@lstm",
                  "evaluate_forecast@gru", "evaluate_forecast@lstm"):
        assert f"Running stage '{stage}'" in out.stdout
    for name in ("nmt-lstm", "nmt-gru", "charlm-lstm", "forecast-gru", "forecast-lstm"):
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        assert metrics and all(v is not None for v in metrics.values())
    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout
    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    assert "metrics/nmt-gru.json" in json.dumps(shown)


@pytest.mark.e2e
def test_changed_parameter_reruns_only_its_branch(repo):
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "results")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["forecast"]["model"]["hidden"] = 12
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    stale = set(json.loads(dvc(repo, "status", "--json").stdout))
    assert stale == {"train_forecast@gru", "train_forecast@lstm", "backtest_forecast"}  # it trains the cell too
    out = dvc(repo, "repro")
    ran = {line.split("'")[1] for line in out.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == stale | {"evaluate_forecast@gru", "evaluate_forecast@lstm"}

    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "wider forecaster")
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "--json").stdout)
    assert set(diff) <= {"metrics/forecast-gru.json", "metrics/forecast-lstm.json", "metrics/backtest.json"}
    assert "mae" in diff["metrics/forecast-gru.json"] and "model_mase" in diff["metrics/backtest.json"]
    params_diff = json.loads(dvc(repo, "params", "diff", "HEAD~1", "--json").stdout)
    change = params_diff["params.yaml"]["forecast.model.hidden"]
    assert (change["old"], change["new"]) == (8, 12)


@pytest.mark.e2e
def test_a_reviewers_workflow_works_offline(repo):
    """README's review loop on the repo above: an experiment, then metrics diff, plots
    diff (a page that needs no network) and rnnpipe report against the last commit."""
    out = dvc(repo, "exp", "run", "-S", "forecast.train.learning_rate=0.02")
    ran = {line.split("'")[1] for line in out.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"train_forecast@gru", "train_forecast@lstm", "evaluate_forecast@gru", "evaluate_forecast@lstm",
                   "backtest_forecast"}
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD", "--json").stdout)
    assert set(diff) <= {"metrics/forecast-gru.json", "metrics/forecast-lstm.json", "metrics/backtest.json"} and diff
    dvc(repo, "plots", "diff", "HEAD", "-o", "review")
    page = (repo / "review/index.html").read_text()
    assert "vegaEmbed('#forecast-loss'" in page and "<script src" not in page
    assert "grad_norm" in page and '"rev": "HEAD"' in page and '"rev": "workspace"' in page
    report = sh(repo, sys.executable, "-m", "pipeline", "report", "HEAD").stdout
    assert "| params.yaml | forecast.train.learning_rate | 0.003 | 0.02 |" in report
    assert "| metrics/forecast-gru.json | mae |" in report
    assert "Different machines" not in report  # both revisions' metrics came from this machine
    for name in ("forecast-loss", "forecast-grad-norm", "forecast-learning-rate", "nmt-loss"):
        assert f"![{name}]({name}.png)" in report
        assert (repo / "reports" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![plots/forecast-gru.png @ HEAD](plots-forecast-gru-png-HEAD.png)" in report


@pytest.mark.e2e
def test_price_refresh_under_dvc_keeps_history_and_adds_nothing_twice(tmp_path, real_params_dict, httpserver,
                                                                        monkeypatch):
    """`persist: true` in dvc.yaml: DVC leaves the stored prices for the refresh to extend."""
    monkeypatch.setenv(VAR, KEY)
    httpserver.expect_request("/index/cc/v1/historical/days").respond_with_handler(FakeApi())
    params = merge(real_params_dict, {"sources": {"forecast": {
        "url": httpserver.url_for("/"), "sha256": None, "raw": "data/raw/forecast/coindesk",
        "format": "coindesk-api", "api": {"key_env": VAR, "since": "2018-01-01"}}}})
    repo = make_repo(tmp_path / "repo", params)
    first = dvc(repo, "repro", "download@forecast")
    assert "new day(s)" in first.stdout
    table = repo / "data/raw/forecast/coindesk/prices.csv"
    stored, lock = table.read_bytes(), (repo / "dvc.lock").read_text()
    assert json.loads(dvc(repo, "status", "download@forecast", "--json").stdout) == {}
    again = dvc(repo, "repro", "-f", "download@forecast")
    assert "nothing new" in again.stdout
    assert table.read_bytes() == stored and (repo / "dvc.lock").read_text() == lock
    assert KEY not in first.stdout + first.stderr + again.stdout + again.stderr + lock
