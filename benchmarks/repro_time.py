"""End-to-end time of the default pipeline: `dvc repro` in a fresh clone, then a no-op re-run.

The clone is made with `git clone` from this checkout's HEAD into a temporary directory
(so uncommitted changes are not measured), shares this checkout's virtual environment,
and starts with an empty DVC cache: every stage runs, exactly as on a user's fresh
clone after `./dev repro` has installed the environment. The second `dvc repro` changes
nothing and measures DVC's own overhead (hashing deps, reading dvc.lock).

    python benchmarks/repro_time.py          # about 12 minutes on 2 cores
    python benchmarks/repro_time.py --exp nmt.train.steps=500 --warm   # cold, experiment, warm

Each computing stage's compilations (programs, XLA seconds, loads from the cache) are
recorded beside its time, from the line the stage prints (pipeline/jax_cache.py).

Benchmarks are not tests: nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_facts  # noqa: E402

STAGE_LINE = re.compile(r"Running stage '([^']+)'")
# what each stage that computes prints last (pipeline/jax_cache.py, summary)
COMPILE_LINE = re.compile(r"compilation: (\d+) programs? compiled in ([\d.]+) s, (\d+) loaded from the cache "
                          r"\(([\d.]+) s saved\)")


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def timed_stages(cmd: list[str], cwd: Path, env: dict[str, str],
                 compiles: dict[str, dict] | None = None) -> tuple[float, dict[str, float]]:
    """Run ``cmd`` (a ``dvc repro``) and time each stage from its "Running stage" line to
    the next one (the last to the end): the table of where the run's time goes. With
    ``compiles``, each computing stage's compilation line goes into it, by stage."""
    started = time.perf_counter()
    stages: dict[str, float] = {}
    current, since = None, started
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:  # progress bars share the stream: a stage's line may follow a '\r'
            for n, secs, loaded, saved in COMPILE_LINE.findall(line):
                if compiles is not None and current is not None:
                    compiles[current] = {"compiled": int(n), "compile_seconds": float(secs),
                                         "loaded": int(loaded), "saved_seconds": float(saved)}
            for stage in STAGE_LINE.findall(line):
                now = time.perf_counter()
                if current is not None:
                    stages[current] = round(now - since, 1)
                current, since = stage, now
                print(f"  {now - started:6.0f}s {current}", flush=True)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    end = time.perf_counter()
    if current is not None:
        stages[current] = round(end - since, 1)
    return end - started, stages


def pipeline_env(jax_cache: Path | str | None = None) -> dict[str, str]:
    """The environment ``./dev`` gives the pipeline: this interpreter's virtual environment
    first on PATH, offline, CPU only (the runtime settings come from ``python -m pipeline``).
    ``jax_cache`` is the compilation cache's folder (pipeline/jax_cache.py): an empty one
    measures a machine that has never compiled rnnpipe's programs; None keeps the user's."""
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "JAX_PLATFORMS": "cpu",
           "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1", "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if jax_cache is not None:
        env["RNNPIPE_JAX_CACHE"] = str(jax_cache)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noop-runs", type=int, default=5, help="no-op re-runs to time (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/repro-time"),
                    help="output path without extension (default: %(default)s)")
    ap.add_argument("--rev", default="HEAD", help="the revision to clone and run (default: %(default)s)")
    ap.add_argument("--warm", action="store_true",
                    help="then time a second fresh clone with the compilation cache the first one filled")
    ap.add_argument("--exp", nargs="+", metavar="KEY=VALUE",
                    help="then time `dvc exp run -S KEY=VALUE ...` in the first clone (after its default run)")
    ap.add_argument("--here", action="store_true",
                    help="run `dvc repro -f` in this checkout instead (every stage, outputs kept here)")
    ap.add_argument("--table", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="print the stage-by-stage Markdown table of two records written by this script, and stop")
    args = ap.parse_args()
    if args.table:
        print(stage_table(*(json.loads(Path(f).read_text()) for f in args.table)))
        return

    env = pipeline_env()
    if args.here:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        full, stages = timed_stages(["dvc", "repro", "-f"], ROOT, env)
        record = {"commit": commit, "how": "dvc repro -f in the working checkout", "machine": machine_facts(),
                  "fresh_repro_seconds": round(full, 1), "stage_seconds": stages}
        Path(args.out).with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record, indent=2))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="rnnpipe-repro-") as tmp:
        env = pipeline_env(Path(tmp) / "jax-cache")  # empty: nothing compiled before, as on a new machine
        clone = Path(tmp) / "rnnpipe"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
        compiles: dict[str, dict] = {}
        full, stages = timed_stages(["dvc", "repro"], clone, env, compiles)
        print(f"dvc repro (fresh clone, empty compilation cache): {full:.1f}s", flush=True)
        noop = [timed(["dvc", "repro"], clone, env) for _ in range(args.noop_runs)]
        print(f"dvc repro (no-op): {min(noop):.2f}-{max(noop):.2f}s", flush=True)
        status = subprocess.run(["dvc", "status"], cwd=clone, env=env, capture_output=True, text=True).stdout
        record = {"commit": commit, "machine": machine_facts(), "compilation_cache": "empty at the start",
                  "fresh_repro_seconds": round(full, 1), "stage_seconds": stages, "stage_compilation": compiles,
                  "noop_repro_seconds": [round(t, 2) for t in noop], "status_after": status.strip()}
        if args.exp:  # an experiment on the finished run: only its branch reruns, from the warm cache
            exp_compiles: dict[str, dict] = {}
            cmd = ["dvc", "exp", "run", *(a for setting in args.exp for a in ("-S", setting))]
            seconds, exp_stages = timed_stages(cmd, clone, env, exp_compiles)
            print(f"{' '.join(cmd)}: {seconds:.1f}s", flush=True)
            record["exp_run"] = {"command": " ".join(cmd), "seconds": round(seconds, 1), "stage_seconds": exp_stages,
                                 "stage_compilation": exp_compiles}
        if args.warm:  # a second fresh clone, with the cache the first one filled
            again = Path(tmp) / "again"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(again)], check=True)
            subprocess.run(["git", "checkout", "-q", commit], cwd=again, check=True)
            warm_compiles: dict[str, dict] = {}
            warm, warm_stages = timed_stages(["dvc", "repro"], again, env, warm_compiles)
            print(f"dvc repro (fresh clone, warm compilation cache): {warm:.1f}s", flush=True)
            record.update(warm_repro_seconds=round(warm, 1), warm_stage_seconds=warm_stages,
                          warm_stage_compilation=warm_compiles)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def stage_table(before: dict, after: dict) -> str:
    """Where the default run's time goes, stage by stage, in two records of this script."""
    names = list(dict.fromkeys([*before["stage_seconds"], *after["stage_seconds"]]))
    lines = [f"| stage | {before['commit']} (s) | {after['commit']} (s) | change (s) |", "|---|---:|---:|---:|"]
    for name in names:
        a, b = before["stage_seconds"].get(name), after["stage_seconds"].get(name)
        change = f"{b - a:+.1f}" if a is not None and b is not None else "-"
        lines.append(f"| {name} | {'-' if a is None else f'{a:.1f}'} | {'-' if b is None else f'{b:.1f}'} | {change} |")
    a, b = before["fresh_repro_seconds"], after["fresh_repro_seconds"]
    lines.append(f"| **dvc repro, fresh clone** | **{a:.1f}** | **{b:.1f}** | **{b - a:+.1f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
