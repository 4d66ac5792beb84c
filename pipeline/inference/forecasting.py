"""Forecasting prices with a trained forecaster: the one path that ``evaluate_forecast``,
the served model (:mod:`pipeline.serving.promotion`) and ``rnnpipe forecast`` share.

:func:`load` reads a model directory, :func:`check` says whether it fits the data it is
about to see (input and output days, features), :func:`predict` turns raw input windows
into prices, and :func:`on_windows` gathers test windows from a series and forecasts
them, with the naive scale that MASE divides by; :func:`errors` scores them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.data import windows
from pipeline.evaluation import metrics
from pipeline.models.forecaster import Forecaster
from pipeline.models.store import CheckpointError, load_model


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A forecaster and its parameters, read from ``directory``."""

    directory: Path
    model: Forecaster
    params: Any
    input_len: int
    output_len: int
    features: tuple[str, ...]
    outputs: int  # the first this many features are forecast


def load(model_dir: str | Path) -> Loaded:
    params, config = load_model(model_dir)
    return Loaded(Path(model_dir), Forecaster(**config["model"]), params, int(config["input_len"]),
                  int(config["model"]["output_len"]), tuple(config["features"]),
                  int(config["model"].get("outputs", 1)))


def check(loaded: Loaded, against: str, *, features: Sequence[str], input_len: int | None = None,
          output_len: int | None = None, outputs: int | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``loaded`` was made for these features (and,
    when given, input and output days); ``against`` names where the wanted values come
    from (``params.yaml``, a prepared folder)."""
    made_for = {"features": list(loaded.features), "input days": loaded.input_len, "output days": loaded.output_len,
                "forecast series": loaded.outputs}
    wanted = {"features": list(features), "input days": input_len, "output days": output_len,
              "forecast series": outputs}
    wrong = [f"{k} {made_for[k]} (it has {wanted[k]})" for k in made_for
             if wanted[k] is not None and made_for[k] != wanted[k]]
    if wrong:
        raise CheckpointError(f"{loaded.directory} was made for {', '.join(wrong)} in {against}: "
                              "retrain it, or prepare the data it was made for")


def predict(loaded: Loaded, inputs: np.ndarray) -> np.ndarray:
    """Forecasts in price units <float32>[n, horizon, outputs] for raw input windows
    <f32>[n, input_len, features]."""
    inputs_n, _, mean, std = windows.normalize(inputs)
    pred_n = np.asarray(loaded.model.apply({"params": loaded.params}, inputs_n))
    return windows.denormalize(pred_n, mean, std)


@dataclasses.dataclass(frozen=True)
class Scored:
    """Test windows and their forecasts: ``inputs`` <f32>[n, input_len, features], and
    ``truth`` and ``pred`` <f32>[n, horizon, outputs] in price units."""

    inputs: np.ndarray
    truth: np.ndarray
    pred: np.ndarray


def on_windows(loaded: Loaded, series: np.ndarray, starts: np.ndarray) -> Scored:
    """Forecast the windows of ``series`` that start at ``starts``."""
    inputs, truth = windows.gather(series, starts, loaded.input_len, loaded.output_len, loaded.outputs)
    return Scored(inputs, truth, predict(loaded, inputs))


def errors(scored: Scored, forecast: np.ndarray | None = None, axis: int | None = None,
           series: int = 0) -> dict[str, Any]:
    """MAE, RMSE, MAPE and MASE of ``forecast`` <f>[n, horizon] (default: the model's) for
    one forecast ``series`` (0: the first, the one models are judged by) on the scored
    windows, overall or along ``axis`` (0: per horizon). MASE divides by each window's
    in-sample one-step naive error of that series."""
    pred = scored.pred[..., series] if forecast is None else forecast
    return metrics.forecast_errors(pred, scored.truth[..., series], axis=axis,
                                   scale=windows.naive_scale(scored.inputs, series))
