"""What the flows share: DVC as a subprocess (:mod:`pipeline.commands.dvc_cli`, the
helper ``rnnpipe report`` uses too), params.yaml through the one loader, and the push.

Nothing here computes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.tasks import exponential_backoff

from pipeline import params as params_module
from pipeline.commands.dvc_cli import DvcError, dvc  # noqa: F401 - DvcError: what a failed step raises


def set_args(overrides: dict[str, object]) -> list[str]:
    """``dvc exp run`` arguments for parameter overrides: ``-S key=value`` each."""
    return [a for key, value in overrides.items() for a in ("-S", f"{key}={value}")]


@task(name="dvc-push", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10),
      retry_jitter_factor=0.5)
def push() -> str:
    """Network-bound: retried with exponential backoff and jitter."""
    return dvc("push")


def has_remote(cwd: str | Path = ".") -> bool:
    """Whether a DVC remote is configured (then flows push what they produced)."""
    return bool(dvc("remote", "list", cwd=cwd).strip())


def load_params(path: str | Path = "params.yaml") -> params_module.Params:
    return params_module.load(path)
