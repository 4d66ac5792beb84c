"""baseline_forecast: the baselines' forecasts for every test window, once for all cells.

statsforecast fits ``naive``, ``drift`` and ``forecast.baselines.methods`` (AutoARIMA,
AutoETS, AutoTheta) per window on the ``fit_days`` days before its forecast origin, with
80 % and 95 % prediction intervals. The forecasts go to ``<baselines>/forecasts.npz`` and
the model each search chose, per window, to ``<baselines>/models.json``;
evaluate_forecast@<cell> scores them beside the network on the same windows. A stage of
its own, so that retraining a network never refits them.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from tqdm.auto import tqdm

from pipeline import artifacts
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
    fit_on = baselines.histories(series, starts, input_len, fit_days)
    methods = (*baselines.ALWAYS, *p.baselines.methods)
    began = time.perf_counter()
    with tqdm(total=len(starts), desc=f"baseline_forecast: {', '.join(methods)}", unit="window",
              mininterval=2.0, disable=None) as bar:
        try:
            got = baselines.fit_forecasts(fit_on, horizon, tuple(p.baselines.methods),
                                          workers=p.baselines.workers, progress=bar.update)
        except baselines.FitError as err:
            origin = dates[int(starts[err.index]) + input_len]
            raise PipelineError(f"baseline_forecast: the test window forecasting from {origin} "
                                f"cannot be fitted: {err}") from None
    tqdm.write(f"baseline_forecast: {len(starts)} windows x {len(methods)} methods in "
               f"{time.perf_counter() - began:.1f}s")
    for method, specs in got.specs.items():
        counts = collections.Counter(specs).most_common(4)
        tqdm.write(f"baseline_forecast: {method} chose {', '.join(f'{spec} x{n}' for spec, n in counts)}")

    with artifacts.atomic_dir(p.paths.baselines) as tmp:
        artifacts.write_npz(tmp / baselines.FORECASTS_FILE, test_starts=starts, **got.arrays())
        artifacts.write_json(tmp / baselines.MODELS_FILE, {
            "fit_days": fit_days, "levels": list(baselines.LEVELS),
            "chosen": {m: dict(collections.Counter(specs).most_common()) for m, specs in got.specs.items()},
            "windows": [{"origin": str(dates[int(s) + input_len]), **{m: got.specs[m][i] for m in got.specs}}
                        for i, s in enumerate(starts)],
        })
