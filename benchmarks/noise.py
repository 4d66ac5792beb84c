"""Noise bands of every headline metric: the default pipeline trained with a few seeds.

In a fresh ``git clone`` of this checkout's HEAD (uncommitted changes are not measured),
with this checkout's virtual environment and an empty DVC cache:

1. ``dvc repro``: the default run (every training seed 0), exactly as a user's fresh clone;
2. per extra seed S, ``dvc exp run -S nmt.train.seed=S -S charlm.train.seed=S
   -S forecast.train.seed=S``: DVC reruns only the train and evaluate stages (the data
   and its split do not depend on these seeds).

After each run it reads every metrics file of ``dvc metrics show --json``, and writes
:func:`pipeline.evaluation.noise.bands` over the runs to ``metrics/noise.json`` (with the commit, the
seeds and the machine's facts) plus a Markdown table beside the other results. Seed 0's
values are also compared with the committed metrics: equal values mean this machine
reproduces the commit bit for bit.

    python benchmarks/noise.py                 # seeds 0-3: 40-60 minutes on 2 cores
    python benchmarks/noise.py --seeds 0 1 2   # fewer runs

The first run is timed stage by stage as ``benchmarks/repro_time.py`` times it
(``default_run_stage_seconds``), so one measurement gives both. All runs share one
compilation cache (pipeline/jax_cache.py), empty at the start: the first run compiles
everything, as on a new machine; the seeds after it find their programs there.

``rnnpipe report`` and ``dvc metrics diff`` readers use the bands to tell a real change from
a change of seed. Refresh them when the models or their training change materially.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_facts  # noqa: E402
from repro_time import pipeline_env, timed_stages  # noqa: E402

from pipeline.evaluation import noise  # noqa: E402

SEEDED = ("nmt.train.seed", "charlm.train.seed", "forecast.train.seed")


def metrics_of(clone: Path, env: dict[str, str]) -> dict[str, dict]:
    """``{metrics file: {metric: value}}`` of the clone's workspace, from DVC itself."""
    shown = json.loads(subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=clone,
                                      env=env, capture_output=True, text=True, check=True).stdout)
    return {path: data["data"] for path, data in shown.get("", {}).get("data", {}).items() if "data" in data}


def run(cmd: list[str], clone: Path, env: dict[str, str]) -> float:
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=clone, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                    help="training seeds; the first is the default run (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / noise.NOISE_FILE), help="the bands file (default: %(default)s)")
    ap.add_argument("--table", default=str(ROOT / "benchmarks/results/noise.md"), help="the Markdown table")
    args = ap.parse_args()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    samples, seconds, stage_seconds = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="rnnpipe-noise-") as tmp:
        # an empty compilation cache: the default run compiles everything, as on a new
        # machine; the seeds after it find their programs there, as `dvc exp run` does
        env = pipeline_env(Path(tmp) / "jax-cache")
        clone = Path(tmp) / "rnnpipe"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        committed = metrics_of(clone, env)
        for i, seed in enumerate(args.seeds):
            sets = [a for key in SEEDED for a in ("-S", f"{key}={seed}")]
            default = i == 0 and seed == 0
            cmd = [sys.executable, "-m", "dvc", *(["repro"] if default else ["exp", "run", *sets])]
            if default:  # the fresh clone's run: where its time goes, stage by stage
                print("$", " ".join(cmd), flush=True)
                total, stage_seconds = timed_stages(cmd, clone, env)
                seconds[seed] = round(total, 1)
            else:
                seconds[seed] = round(run(cmd, clone, env), 1)
            samples.append(metrics_of(clone, env))
            print(f"seed {seed}: {seconds[seed]:.0f}s", flush=True)
    first = samples[0]
    reproduced = {path: {m: committed.get(path, {}).get(m) == v for m, v in ms.items()
                         if isinstance(v, (int, float))} for path, ms in first.items()}
    record = {"commit": commit, "seeds": args.seeds, "seeded_params": list(SEEDED),
              "how": "python benchmarks/noise.py: a fresh clone's dvc repro, then dvc exp run per extra seed; "
                     "band = max - min over the seeds",
              "machine": machine_facts(), "seconds_per_run": seconds, "default_run_stage_seconds": stage_seconds,
              f"seed_{args.seeds[0]}_equals_committed": reproduced,
              "bands": noise.bands(samples)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"Noise bands at {commit}, seeds {args.seeds}, {record['machine']['cpu']}, "
             f"{record['machine']['cores']} cores (`python benchmarks/noise.py`).", "",
             "| file | metric | mean | std | min | max | band |", "|---|---|---:|---:|---:|---:|---:|"]
    for path, metrics in record["bands"].items():
        for metric, b in metrics.items():
            if noise.direction(metric) == 0:
                continue
            lines.append(f"| {path} | {metric} | {b['mean']:.4f} | {b['std']:.4f} | {b['min']:.4f} | "
                         f"{b['max']:.4f} | {b['band']:.4f} |")
    Path(args.table).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
