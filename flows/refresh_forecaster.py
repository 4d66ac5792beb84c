"""refresh_forecaster: new prices in, a retrained candidate, promoted only if not worse.

    python flows/refresh_forecaster.py              # one refresh, in this process
    prefect deployment run refresh-forecaster/daily # the scheduled deployment, by hand

One run, under a lock on ``forecast.serve.dir`` (two runs never overlap):

1. **fetch-prices** runs the ``download@forecast`` stage: only the days after the last
   stored one. Network-bound, so a transient failure (every attempt of the fetcher
   timed out, was reset, or got 429/5xx) is retried with exponential backoff and
   jitter; a refused key, an HTML page or a bad checksum is not. ``dvc commit`` then
   records the new prices in dvc.lock.
2. **retrain** is ``dvc repro evaluate_forecast@<serve.cell>``: DVC reruns the branch
   only if the prices changed. Compute, so never retried blindly.
3. **compare** scores the candidate (``models/forecast/<cell>``) and the served model on
   the same newest test windows (``pipeline.serving.promotion``); **promote** replaces the served
   model only if the candidate is not worse. Every decision goes to
   ``decisions.jsonl``; a candidate already decided on is not decided again, so a
   re-run on the same day changes nothing.
4. **write-forecast** writes ``latest.{csv,json,png}`` from the served model, with its
   80 % and 95 % intervals, and **dvc-push** sends data and models to the DVC remote, if
   one is configured.
5. With ``forecast.serve.branch`` set, **commit-to-branch** commits what the refresh
   changed (params.yaml, dvc.lock, the served cell's metrics, the decision log, the
   latest forecast) to that git branch, never to the one checked out
   (:mod:`pipeline.serving.branch`). Then ``dvc metrics diff <branch>~1 <branch>`` and
   ``rnnpipe report <branch>~1 <branch>`` compare a refresh with the one before.

A failure anywhere leaves the served model, its forecast and the stored prices as they
were. Every value comes from params.yaml; the flow's parameters are retry and lock
policy only.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff

from flows.common import dvc, has_remote, load_params, push
from pipeline.commands import forecast as forecast_command
from pipeline.serving import branch as git_branch
from pipeline.serving import promotion
from pipeline.sources.fetch import FetchError
from pipeline.stages import download


def transient(task, task_run, state) -> bool:
    """Retry condition: only a fetch that failed in a way that may pass later."""
    try:
        state.result()
    except FetchError as err:
        return err.transient
    except Exception:  # anything else is not worth repeating
        return False
    return False


@task(name="fetch-prices", retry_condition_fn=transient)
def fetch_prices(params_path: str) -> int | None:
    """The download@forecast stage (incremental for the Data API); the rows it added
    (one per day and currency), or None for a file source."""
    return download.run(load_params(params_path), "forecast")


@task(name="dvc-commit-prices")
def commit_prices() -> str:
    return dvc("commit", "--force", "download@forecast")


@task(name="retrain")
def retrain(cell: str) -> str:
    return dvc("repro", f"evaluate_forecast@{cell}")


@task(name="compare")
def compare(params_path: str) -> tuple[promotion.Decision, dict | None]:
    """The decision, and the earlier entry if this very candidate was already decided on."""
    params = load_params(params_path)
    cell = params.forecast.serve.cell
    candidate = promotion.score(params, Path(params.forecast.paths.models) / cell)
    served_dir = promotion.served_dir(params)
    served = promotion.score(params, served_dir) if served_dir.exists() else None
    earlier = next((d for d in reversed(promotion.decisions(params)) if d["candidate"] == candidate), None)
    return promotion.decide(candidate, served, params.forecast.serve.tolerance), earlier


@task(name="promote")
def promote(params_path: str) -> str:
    params = load_params(params_path)
    return str(promotion.promote(params, Path(params.forecast.paths.models) / params.forecast.serve.cell))


@task(name="record-decision")
def record(params_path: str, decision: promotion.Decision) -> dict:
    params = load_params(params_path)
    last_day = forecast_command.last_stored_day(params.forecast.paths.prepared)
    return promotion.record(params, decision, last_day)


@task(name="write-forecast")
def write_forecast(params_path: str) -> str:
    params = load_params(params_path)
    prefix = Path(params.forecast.serve.dir) / promotion.LATEST
    forecast_command.write(promotion.served_dir(params), params.forecast.paths.prepared, prefix, png=True)
    return str(prefix)


@task(name="commit-to-branch")
def commit_to_branch(params_path: str, message: str) -> str | None:
    params = load_params(params_path)
    return git_branch.commit(".", params.forecast.serve.branch, promotion.recorded_paths(params), message)


@flow(name="refresh-forecaster", log_prints=True)
def refresh_forecaster(params_path: str = "params.yaml", fetch_retries: int = 3,
                       fetch_retry_delay_seconds: float = 60.0, lock_timeout_seconds: float = 3600.0) -> dict:
    """Fetch new prices, retrain, promote the candidate only if it is not worse, write the
    latest forecast. Returns a summary (the same as the ``forecaster-refresh`` artifact)."""
    log = get_run_logger()
    params = load_params(params_path)  # a typo in params.yaml fails here, before any work
    branch = params.forecast.serve.branch
    if branch is not None:
        git_branch.check(".", branch)  # so does a branch it may not commit to
    with promotion.lock(params, lock_timeout_seconds):
        fetch = fetch_prices.with_options(
            retries=fetch_retries, retry_delay_seconds=exponential_backoff(backoff_factor=fetch_retry_delay_seconds),
            retry_jitter_factor=0.5)
        added = fetch(params_path)
        commit_prices()
        log.info(retrain(params.forecast.serve.cell))
        decision, earlier = compare(params_path)
        if decision.kind == "same":
            outcome = {"promoted": False, "reason": decision.reason}
        elif earlier is not None:
            outcome = {"promoted": False, "reason": f"already decided at {earlier['at']}: {earlier['reason']}"}
        else:
            if decision.promote:
                promote(params_path)
            outcome = record(params_path, decision)
        latest = write_forecast(params_path)
        if has_remote():
            push()
        committed = None
        if branch is not None:
            last_day = forecast_command.last_stored_day(params.forecast.paths.prepared)
            committed = commit_to_branch(params_path, f"refresh-forecaster: data to {last_day}; {outcome['reason']}")
    summary = {"new_rows": added, "promoted": outcome["promoted"], "reason": outcome["reason"],
               "candidate": decision.candidate, "served_before": decision.served, "latest": latest,
               "branch": branch, "commit": committed}
    log.info(f"refresh-forecaster: {summary['reason']}")
    create_markdown_artifact(key="forecaster-refresh", description="what this refresh did", markdown="\n".join([
        "# Forecaster refresh", "",
        f"- new price rows fetched (days x currencies): {added if added is not None else 'n/a (a file source)'}",
        f"- promoted: **{outcome['promoted']}**: {outcome['reason']}",
        f"- candidate: `{decision.candidate}`",
        f"- served before: `{decision.served}`",
        f"- latest forecast: `{latest}.csv`, `.json`, `.png`",
        *([f"- committed to branch `{branch}`: `{committed or 'nothing changed'}`"] if branch else []),
    ]))
    return summary


if __name__ == "__main__":
    refresh_forecaster()
