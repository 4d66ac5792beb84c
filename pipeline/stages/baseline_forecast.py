"""baseline_forecast: the baselines' forecasts for every test window, once for all cells.

Naive (the last value) and random walk with drift are closed-form; AutoARIMA and AutoETS
(``forecast.baselines.methods``) are fitted per window on the ``fit_days`` days before
its forecast origin. The forecasts go to ``<baselines>/forecasts.npz`` and the model
each search chose, per window, to ``<baselines>/models.json``; evaluate_forecast@<cell>
scores them beside the network on the same windows. A stage of its own, so that
retraining a network never refits them.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from pipeline import artifacts
from pipeline.data import windows
from pipeline.errors import PipelineError
from pipeline.evaluation import baselines
from pipeline.params import Params, ParamsError


def run(params: Params, variant: str | None = None) -> None:
    p = params.forecast
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")
    series, starts, dates = data["series"], data["test_starts"], data["dates"]
    input_len, horizon, fit_days = p.data.input_len, p.data.output_len, p.baselines.fit_days
    first_origin = int(starts.min()) + input_len
    if not baselines.MIN_DAYS <= fit_days <= first_origin:
        raise ParamsError(f"params.yaml: 'forecast.baselines.fit_days' is {fit_days}; it must be at least "
                          f"{baselines.MIN_DAYS} "
                          f"and at most {first_origin}, the days before the first test window's forecast "
                          f"origin ({dates[first_origin]})")
    if p.baselines.workers < 1:
        raise ParamsError(f"params.yaml: 'forecast.baselines.workers' is {p.baselines.workers}; it must be >= 1")
    inputs, _ = windows.gather(series, starts, input_len, horizon)
    forecasts = {"naive": windows.naive_forecast(inputs, horizon).astype(np.float64),
                 "drift": windows.drift_forecast(inputs, horizon).astype(np.float64)}
    fit_on = baselines.histories(series, starts, input_len, fit_days)
    chosen: dict[str, list[str]] = {}
    for method in p.baselines.methods:
        began = time.perf_counter()
        with tqdm(total=len(starts), desc=f"baseline_forecast: {method}", unit="window",
                  mininterval=2.0, disable=None) as bar:
            try:
                forecasts[method], chosen[method] = baselines.fit_forecasts(
                    fit_on, horizon, method, workers=p.baselines.workers, progress=bar.update)
            except baselines.FitError as err:
                origin = dates[int(starts[err.index]) + input_len]
                raise PipelineError(f"baseline_forecast: {method} failed on the test window forecasting "
                                    f"from {origin}: {err}") from None
        counts = collections.Counter(chosen[method]).most_common(4)
        tqdm.write(f"baseline_forecast: {method}: {len(starts)} windows in {time.perf_counter() - began:.0f}s; "
                   f"most chosen: {', '.join(f'{spec} x{n}' for spec, n in counts)}")

    with artifacts.atomic_dir(p.paths.baselines) as tmp:
        artifacts.write_npz(tmp / baselines.FORECASTS_FILE, test_starts=starts, **forecasts)
        artifacts.write_json(tmp / baselines.MODELS_FILE, {
            "fit_days": fit_days,
            "chosen": {m: dict(collections.Counter(specs).most_common()) for m, specs in chosen.items()},
            "windows": [{"origin": str(dates[int(s) + input_len]), **{m: chosen[m][i] for m in chosen}}
                        for i, s in enumerate(starts)],
        })
