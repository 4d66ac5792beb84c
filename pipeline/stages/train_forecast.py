"""train_forecast@<cell>: fit the seq2seq forecaster on per-window normalised prices.

The model is an ensemble of ``forecast.train.seeds`` networks (seeds ``seed``,
``seed + 1``, ...), whose mean is the forecast, with split-conformal 80 % and 95 %
interval widths from calibration twins trained without the last
``forecast.intervals.calibration_days`` days of the training windows
(:func:`pipeline.training.forecast_job.train_calibrated`). The first member's training
curves go to dvclive; every member checkpoints, so a killed run resumes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.inference import forecasting
from pipeline.models.store import save_model
from pipeline.params import Params
from pipeline.training import forecast_job
from pipeline.training import hooks as training_hooks


def run(params: Params, cell: str) -> None:
    p = params.forecast
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")
    train_starts = data["train_starts"]
    heldout_starts = data["test_starts"] if p.train.heldout_loss else None
    cut = int(train_starts.max()) + p.data.input_len + p.data.output_len  # the day after the last target

    def hooks(seed, job, config):  # the curves are the first member's
        return training_hooks.for_stage("forecast", p, cell, job.options.desc, config, curves=seed == p.train.seed)

    trained = forecast_job.train_calibrated(p, cell, data["series"], train_starts, cut, f"train_forecast@{cell}",
                                            hooks, heldout_starts)
    dates = data["dates"]
    first, last = trained.calibration
    config = {**trained.config, "seeds": trained.seeds, "intervals": forecasting.interval_config(trained.widths),
              "calibration": {"days": p.intervals.calibration_days,
                              "first_origin": str(dates[first + p.data.input_len]),
                              "last_origin": str(dates[last + p.data.input_len]), "windows": last - first + 1}}
    if len(trained.series_widths) > 1:  # the other forecast series' widths, each in its own naive scale
        config["series_intervals"] = {name: forecasting.interval_config(w) for name, w in
                                      zip(p.data.features[1:], trained.series_widths[1:], strict=False)}
    save_model(Path(p.paths.models) / cell, forecasting.ensemble_params(trained.members), config)
    half = {level: float(np.mean(w)) for level, w in trained.widths.items()}
    print(f"train_forecast@{cell}: {len(trained.seeds)} network(s), seeds {trained.seeds}; interval half-widths "
          + ", ".join(f"{level} %: {w:.2f} naive scales on average" for level, w in half.items()))
