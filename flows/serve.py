"""Serve the deployments of prefect.yaml from this one process, on their schedules.

    python flows/serve.py      # needs a Prefect API (PREFECT_API_URL or a local server)

The same deployments as ``prefect deploy --all`` plus ``prefect worker start``, without
a work pool: this process polls for due runs and runs them. The schedule and parameters
are read from prefect.yaml, so there is one place to change them. Stopping it (Ctrl-C)
pauses the served schedules, as ``flow.serve`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from prefect import serve
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron

ROOT = Path(__file__).resolve().parents[1]


def deployments(config_path: Path = ROOT / "prefect.yaml") -> list:
    """``RunnerDeployment``s for every deployment in prefect.yaml (schedules included)."""
    out = []
    for d in yaml.safe_load(config_path.read_text())["deployments"]:
        schedules = [Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
                     for s in d.get("schedules") or []]
        out.append(load_flow_from_entrypoint(str(ROOT / d["entrypoint"])).to_deployment(
            name=d["name"], description=d.get("description"), tags=d.get("tags"),
            parameters=d.get("parameters") or {}, schedules=schedules or None,
            concurrency_limit=d.get("concurrency_limit")))
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    serve(*deployments())
