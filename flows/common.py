"""What both flows share: DVC as a subprocess, params.yaml through the one loader.

Nothing here computes. A DVC command that fails raises :class:`DvcError` with the
command and the tail of its output, so the Prefect run's state message says what broke.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import task
from prefect.tasks import exponential_backoff

from pipeline import params as params_module
from pipeline.errors import PipelineError


class DvcError(PipelineError):
    """A DVC command exited non-zero; the message holds the command and its output tail."""


def dvc(*args: str, cwd: str | Path = ".") -> str:
    """Run ``dvc ARGS`` with this interpreter's DVC in ``cwd``; return its stdout."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise DvcError(f"`dvc {' '.join(args)}` failed (exit {out.returncode}):\n{tail}")
    return out.stdout


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
