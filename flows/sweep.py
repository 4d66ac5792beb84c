"""sweep: fan experiment variants out as parallel `dvc exp run --temp` runs.

    python flows/sweep.py variants.yaml              # threads on this machine
    python flows/sweep.py variants.yaml --dask       # a local Dask cluster (prefect-dask)
    python flows/sweep.py variants.yaml --dask tcp://scheduler:8786   # an existing one

``variants.yaml`` maps an experiment name to its overrides, e.g.::

    h32: {forecast.model.hidden: 32}
    h128: {forecast.model.hidden: 128, forecast.train.steps: 600}

Each variant is one task: ``dvc exp run --temp -n NAME -S key=value ... [stages]``,
which runs in its own temporary copy of the workspace, so variants never share files.
The task runner decides where they run: Prefect's thread pool by default, or a Dask
cluster (``DaskTaskRunner``) to spread them over machines; ``prefect-ray``'s
``RayTaskRunner`` drops in the same way. The results are DVC experiments: ``dvc exp
show`` compares them, and the flow publishes that table as the ``sweep`` artifact.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.common import dvc, set_args


@task(name="experiment")
def experiment(name: str, overrides: dict[str, object], stages: list[str], cwd: str) -> str:
    """One variant as a temporary DVC experiment. Compute: not retried."""
    return dvc("exp", "run", "--temp", "-n", name, *set_args(overrides), *stages, cwd=cwd)


@flow(name="sweep", log_prints=True)
def sweep(variants: dict[str, dict[str, object]], stages: list[str] | None = None) -> str:
    """Run every variant as a DVC experiment, in parallel on the flow's task runner;
    return (and publish as the ``sweep`` artifact) ``dvc exp show --md``."""
    if not variants:
        raise ValueError("sweep: no variants given")
    cwd = str(Path.cwd())  # the tasks may run in other processes (Dask workers)
    futures = [experiment.submit(name, dict(overrides), list(stages or []), cwd)
               for name, overrides in variants.items()]
    for future in futures:
        future.result()  # raises the first failure, naming its dvc command
    table = dvc("exp", "show", "--md", "--only-changed")
    create_markdown_artifact(markdown=f"# Sweep\n\n{table}", key="sweep",
                             description=f"{len(variants)} variants: {', '.join(variants)}")
    return table


def on_dask(address: str | None = None, workers: int = 2):
    """``sweep`` on Dask: a ``LocalCluster`` of ``workers`` processes, or the scheduler at ``address``."""
    from prefect_dask import DaskTaskRunner

    runner = (DaskTaskRunner(address=address) if address
              else DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1}))
    return sweep.with_options(task_runner=runner)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python flows/sweep.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", help="YAML file: experiment name -> {params.yaml key: value}")
    ap.add_argument("--stages", nargs="*", default=[], help="stages to run (default: the whole pipeline)")
    ap.add_argument("--dask", nargs="?", const="", metavar="ADDRESS",
                    help="run on Dask: a local cluster, or the scheduler at ADDRESS")
    ap.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default: 2)")
    args = ap.parse_args(argv)
    variants = yaml.safe_load(Path(args.variants).read_text())
    chosen = sweep if args.dask is None else on_dask(args.dask or None, args.workers)
    print(chosen(variants, args.stages))


if __name__ == "__main__":
    main()
