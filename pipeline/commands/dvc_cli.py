"""DVC as a subprocess: the one helper that flows and ``rnnpipe report`` run it through.

DVC runs with this interpreter (``python -m dvc``, and its folder first on ``PATH`` so
that stage commands find the same environment), without analytics. A command that
fails raises :class:`DvcError` with the command and the tail of its output, so a
Prefect run's state message or the report's error says what broke.

Every run shares the accelerator's memory (:func:`pipeline.device.shared_memory`): the
flows start runs that can overlap (the sweep's variants, a refresh beside
``run-pipeline``), and JAX's default of taking 75 % of a GPU per process would leave the
second one out of memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline import device
from pipeline.errors import PipelineError


class DvcError(PipelineError, RuntimeError):
    """A DVC command exited non-zero; the message holds the command and its output tail."""


def dvc(*args: str, cwd: str | Path = ".") -> str:
    """Run ``dvc ARGS`` in ``cwd``; return its stdout."""
    env = device.shared_memory(dict(os.environ, DVC_NO_ANALYTICS="1"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise DvcError(f"`dvc {' '.join(args)}` failed (exit {out.returncode}):\n{tail}")
    return out.stdout


def dvc_json(*args: str, cwd: str | Path = ".") -> dict[str, Any]:
    """``dvc ARGS --json``, parsed."""
    return json.loads(dvc(*args, "--json", cwd=cwd) or "{}")
