"""The baseline stage's fits before and after statsforecast, timed side by side.

Until issue 19 the AutoARIMA/AutoETS searches were hand-written over statsmodels fits
(``pipeline/evaluation/baselines.py`` at ``--before``, default 34a6c4f). This loads that
file from git and times it against today's statsforecast fits on the prepared test
windows (``data/prepared/forecast/windows.npz``: run ``dvc repro prepare_forecast``
first), each with the default two workers, alternating ``--rounds`` times in one run, and
prints the seconds and each method's test MAE.

    python benchmarks/baselines_time.py           # about 3 minutes on 2 cores

Benchmarks are not tests: nothing here fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.evaluation import baselines  # noqa: E402


def old_module(rev: str, folder: Path):
    path = folder / "baselines_before.py"
    path.write_text(subprocess.run(["git", "show", f"{rev}:pipeline/evaluation/baselines.py"], cwd=ROOT,
                                   capture_output=True, text=True, check=True).stdout)
    spec = importlib.util.spec_from_file_location("baselines_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baselines_before"] = module  # spawned workers import it by this name
    sys.path.insert(0, str(folder))
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="34a6c4f", help="the git revision with the hand-written searches")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    data = np.load(ROOT / "data/prepared/forecast/windows.npz")
    series, starts = data["series"], data["test_starts"]
    fit_on = baselines.histories(series, starts, 40, 40)
    truth = np.stack([series[int(s) + 40:int(s) + 80, 0] for s in starts])
    folder = Path("/tmp/rnnpipe-baselines-before")
    folder.mkdir(exist_ok=True)
    before = old_module(args.before, folder)
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    mae: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        began = time.perf_counter()
        for method in ("autoarima", "autoets"):
            forecast, _ = before.fit_forecasts(fit_on, 40, method, workers=args.workers)
            mae.setdefault("before", {})[method] = float(np.abs(forecast - truth).mean())
        seconds["before"].append(time.perf_counter() - began)
        began = time.perf_counter()
        got = baselines.fit_forecasts(fit_on, 40, ("autoarima", "autoets"), workers=args.workers)
        seconds["after"].append(time.perf_counter() - began)
        mae["after"] = {m: float(np.abs(f - truth).mean()) for m, f in got.points.items()}
    print(f"{len(starts)} test windows, 40-day fits, 40-day horizon, {args.workers} workers, "
          f"{args.rounds} alternating rounds")
    print("| code | seconds (median) | each round | AutoARIMA MAE | AutoETS MAE |")
    print("|---|---:|---|---:|---:|")
    for who, label in (("before", f"hand-written search ({args.before})"), ("after", "statsforecast")):
        runs = ", ".join(f"{s:.1f}" for s in seconds[who])
        print(f"| {label} | {statistics.median(seconds[who]):.1f} | {runs} | "
              f"{mae[who]['autoarima']:.2f} | {mae[who]['autoets']:.2f} |")


if __name__ == "__main__":
    main()
