"""Forecasting prices with a trained forecaster: the one path that ``evaluate_forecast``,
the served model (:mod:`pipeline.serving.promotion`) and ``rnnpipe forecast`` share.

:func:`load` reads a model directory, :func:`check` says whether it fits the data it is
about to see (input and output days, features), :func:`predict` turns raw input windows
into prices (the mean of the ensemble's networks) and :func:`intervals` puts the model's
conformal 80 % and 95 % intervals around them; :func:`on_windows` gathers test windows
from a series and forecasts them, and :func:`errors` scores them.

A model directory holds one network (``config.json`` without ``seeds``, as written before
ensembles) or an ensemble: ``params.msgpack`` maps ``"0"``, ``"1"``, ... to each seed's
parameters, and ``config.json`` names the ``seeds`` and holds the interval widths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data import windows
from pipeline.evaluation import conformal, metrics
from pipeline.models.forecaster import Forecaster
from pipeline.models.store import CheckpointError, load_model


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A forecaster and its parameters, read from ``directory``: one network, or an
    ensemble whose forecast is the mean of its ``members``."""

    directory: Path
    model: Forecaster
    members: tuple[Any, ...]  # one parameter tree per network
    input_len: int
    output_len: int
    features: tuple[str, ...]
    outputs: int  # the first this many features are forecast
    seeds: tuple[int, ...] = ()  # the members' seeds; () for a single network saved before ensembles
    widths: dict[int, np.ndarray] | None = None  # conformal half-widths per level, in naive scales (first series)
    kernel: str | None = None  # the recurrent kernel it trained on (None: saved before it was recorded)
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the model directory's config.json
    series_widths: tuple[dict[int, np.ndarray] | None, ...] = ()  # the widths per forecast series (None: none saved)

    @property
    def targets(self) -> tuple[str, ...]:
        """The names of the forecast series, the first the one models are judged by."""
        return self.features[: self.outputs]


def ensemble_params(members: Sequence[Any]) -> dict[str, Any]:
    """The parameter tree :func:`load` reads back as ``members``."""
    return {str(i): m for i, m in enumerate(members)}


def interval_config(widths: dict[int, np.ndarray]) -> dict[str, list[float]]:
    """Widths per level as ``config.json`` holds them (keys ``"80"``, ``"95"``)."""
    return {str(level): [float(x) for x in w] for level, w in widths.items()}


def load(model_dir: str | Path) -> Loaded:
    params, config = load_model(model_dir)
    seeds = tuple(int(s) for s in config.get("seeds", ()))
    members = tuple(params[str(i)] for i in range(len(seeds))) if seeds else (params,)
    as_arrays = lambda widths: {int(level): np.asarray(w, np.float64) for level, w in widths.items()}
    widths = as_arrays(config["intervals"]) if config.get("intervals") is not None else None
    features, outputs = tuple(config["features"]), int(config["model"].get("outputs", 1))
    others = config.get("series_intervals", {})  # absent before every series had its own
    series_widths = (widths, *(as_arrays(others[name]) if name in others else None
                               for name in features[1:outputs]))
    return Loaded(Path(model_dir), Forecaster(**config["model"]), members, int(config["input_len"]),
                  int(config["model"]["output_len"]), features, outputs, seeds, widths, config.get("kernel"), config,
                  series_widths)


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


def std_factor(config: Mapping[str, Any]) -> float:
    """How many input standard deviations a model's windows are scaled by (``config.json``'s
    ``std_factor``, written when ``forecast.data.std_factor`` is not 1)."""
    return float(config.get("std_factor", 1.0))


def forecast_members(model: Forecaster, members: Sequence[Any], inputs: np.ndarray,
                     factor: float = 1.0) -> np.ndarray:
    """Each network's forecasts in price units <float32>[members, n, horizon, outputs] for
    raw input windows <f32>[n, input_len, features], scaled by ``factor`` standard
    deviations as the networks were trained (:func:`std_factor`)."""
    inputs_n, _, mean, std = windows.normalize(inputs, std_factor=factor)
    return np.stack([windows.denormalize(np.asarray(model.apply({"params": m}, inputs_n)), mean, std)
                     for m in members])


def predict(loaded: Loaded, inputs: np.ndarray) -> np.ndarray:
    """Forecasts in price units <float32>[n, horizon, outputs] for raw input windows
    <f32>[n, input_len, features]: the mean of the members' forecasts."""
    return forecast_members(loaded.model, loaded.members, inputs, std_factor(loaded.config)).mean(axis=0)


def intervals(loaded: Loaded, inputs: np.ndarray, pred: np.ndarray,
              series: int = 0) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The model's conformal ``(lo, hi)`` <float64>[n, horizon] per level around ``pred``
    <f>[n, horizon], the forecast of ``series`` (0: the first), for these input windows,
    scaled by that series' naive scale; {} for a model saved without that series' widths."""
    widths = loaded.series_widths[series] if series < len(loaded.series_widths) else None
    if not widths:
        return {}
    return conformal.intervals(pred, windows.naive_scale(inputs, series), widths)


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
