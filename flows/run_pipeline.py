"""run_pipeline: the whole pipeline or named stages through DVC, metrics as an artifact.

    python flows/run_pipeline.py                                # dvc repro, in this process
    prefect deployment run run-pipeline/manual -p stages='["train_forecast@gru"]'

``set_params`` runs a DVC experiment instead (``dvc exp run -S key=value``), so an
override never edits params.yaml by hand. Values come from params.yaml through DVC; the
flow only says which stages to run.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.common import dvc, has_remote, push, set_args


@task(name="dvc-repro")
def repro(stages: list[str]) -> str:
    """Compute: not retried, since a failed stage fails the same way again."""
    return dvc("repro", *stages)


@task(name="dvc-exp-run")
def exp_run(stages: list[str], set_params: dict[str, object], name: str | None) -> str:
    args = ["exp", "run", *set_args(set_params)]
    if name:
        args += ["-n", name]
    return dvc(*args, *stages)


@task(name="publish-metrics")
def publish_metrics(key: str = "pipeline-metrics") -> str:
    table = dvc("metrics", "show", "--md")
    create_markdown_artifact(markdown=f"# rnnpipe metrics\n\n{table}", key=key,
                             description="`dvc metrics show` after this run")
    return table


@flow(name="run-pipeline", log_prints=True)
def run_pipeline(stages: list[str] | None = None, set_params: dict[str, object] | None = None,
                 experiment: str | None = None, push_to_remote: bool = True) -> str:
    """Run ``dvc repro [stages]`` (or ``dvc exp run -S ...`` with ``set_params``), publish
    the metrics as the markdown artifact ``pipeline-metrics``, and ``dvc push`` when a
    remote is configured. Returns the metrics table."""
    log = get_run_logger()
    stages = list(stages or [])
    if set_params or experiment:
        log.info(exp_run(stages, dict(set_params or {}), experiment))
    else:
        log.info(repro(stages))
    table = publish_metrics()
    if push_to_remote and has_remote():
        log.info(push())
    return table


if __name__ == "__main__":
    run_pipeline()
