"""Statistical forecasting baselines through statsforecast, fitted per window.

Every forecast window gets its own fit on the ``fit_days`` days before its forecast
origin: one statsforecast series per window (``unique_id`` = the window's index, ``ds``
= the day number). ``naive`` (the last value) and ``drift`` (random walk with drift) are
always fitted; ``autoarima``, ``autoets`` and ``autotheta`` are statsforecast's
``AutoARIMA``, ``AutoETS`` and ``AutoTheta`` (Hyndman-Khandakar searches, non-seasonal
for daily prices). Each gives a point forecast and its 80 % and 95 % prediction
intervals.

Pure functions, numpy in and numpy out, except :func:`load`, which reads back what the
``baseline_forecast`` stage stored.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.data import windows
from pipeline.errors import PipelineError
from pipeline.evaluation import conformal

ALWAYS = ("naive", "drift")
METHODS = ("autoarima", "autoets", "autotheta")  # chosen in forecast.baselines.methods
LEVELS = conformal.LEVELS  # prediction intervals, in percent: the same levels as the network's
FORECASTS_FILE = "forecasts.npz"  # baseline_forecast's outputs
MODELS_FILE = "models.json"
MIN_DAYS = 10  # below this the searches cannot rank even the small models


def _model(method: str):
    from statsforecast import models  # imports numba-free C++ fits; only when fitting

    make = {"naive": models.Naive, "drift": models.RandomWalkWithDrift, "autoarima": models.AutoARIMA,
            "autoets": models.AutoETS, "autotheta": models.AutoTheta}
    if method not in make:
        raise ValueError(f"unknown baseline {method!r}; expected one of {[*ALWAYS, *METHODS]}")
    return make[method](alias=method)


def _spec(method: str, fitted) -> str:
    """The model a search chose, e.g. ``ARIMA(1,1,0) with drift``, ``ETS(A,Ad,N)``."""
    if method == "autoarima":
        from statsforecast.arima import arima_string

        return " ".join(arima_string(fitted.model_).split())
    if method == "autoets":
        return str(fitted.model_["method"])
    if method == "autotheta":
        return f"Theta({fitted.model_['modeltype']})"
    return method


class FitError(ValueError):
    """A window whose history cannot be fitted; ``index`` is its row."""

    def __init__(self, index: int, message: str):
        super().__init__(f"window {index}: {message}")
        self.index, self.message = index, message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Forecasts:
    """Per method: the point forecasts <float64>[n, horizon], and per level the interval
    bounds ``(lo, hi)``; ``specs[method]`` is the model each window's search chose."""

    points: dict[str, np.ndarray]
    intervals: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]
    specs: dict[str, list[str]]

    def arrays(self) -> dict[str, np.ndarray]:
        """As flat arrays for an npz: ``<method>``, ``<method>_lo<level>``, ``<method>_hi<level>``."""
        out = dict(self.points)
        for method, levels in self.intervals.items():
            for level, (lo, hi) in levels.items():
                out[f"{method}_lo{level}"], out[f"{method}_hi{level}"] = lo, hi
        return out

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> Forecasts:
        bounds = {f"{m}_{side}{level}" for m in data for side in ("lo", "hi") for level in LEVELS}
        points = {k: v for k, v in data.items() if k not in bounds}
        intervals = {m: {level: (data[f"{m}_lo{level}"], data[f"{m}_hi{level}"]) for level in LEVELS
                         if f"{m}_lo{level}" in data} for m in points}
        return cls(points, {m: v for m, v in intervals.items() if v}, {})


def check_histories(histories: np.ndarray) -> np.ndarray:
    """``histories`` as float64 [n, days]; raises :class:`FitError` naming the first bad row."""
    histories = np.asarray(histories, dtype=np.float64)
    if histories.ndim != 2:
        raise ValueError(f"histories must be [windows, days], got shape {histories.shape}")
    if histories.shape[1] < MIN_DAYS:
        raise FitError(0, f"a history of {histories.shape[1]} days is too short to fit (at least {MIN_DAYS})")
    bad = np.flatnonzero(~np.isfinite(histories).all(axis=1))
    if len(bad):
        raise FitError(int(bad[0]), "the history has missing or infinite values")
    return histories


def fit_forecasts(histories: np.ndarray, horizon: int, methods: tuple[str, ...], workers: int = 1,
                  progress: Callable[[int], object] | None = None, chunk: int = 64) -> Forecasts:
    """Fit ``naive``, ``drift`` and ``methods`` to each row of ``histories`` <float>[n, days]
    and forecast ``horizon`` days with 80 % and 95 % intervals.

    Windows are fitted ``chunk`` at a time (``progress(k)`` as each ``k`` finish), the
    chunks over ``workers`` spawned processes; every window is its own series, so neither
    changes a forecast. Raises :class:`FitError` naming the first window that fails.
    """
    histories = check_histories(histories)
    names = (*ALWAYS, *(m for m in methods if m not in ALWAYS))
    for m in names:
        _model(m)  # an unknown name fails here, not in a worker
    n = len(histories)
    points = {m: np.empty((n, horizon)) for m in names}
    bounds = {(m, level, side): np.empty((n, horizon)) for m in names for level in LEVELS for side in ("lo", "hi")}
    specs: dict[str, list[str]] = {m: [""] * n for m in names if m not in ALWAYS}

    def keep(rows: np.ndarray, got: tuple[dict, dict, dict]) -> None:
        for m, values in got[0].items():
            points[m][rows] = values
        for key, values in got[1].items():
            bounds[key][rows] = values
        for m, chosen in got[2].items():
            for i, spec in zip(rows, chosen, strict=True):
                specs[m][i] = spec
        if progress is not None:
            progress(len(rows))

    chunks = [np.arange(first, min(first + chunk, n)) for first in range(0, n, chunk)]
    if workers <= 1 or len(chunks) == 1:
        for rows in chunks:
            keep(rows, _fit_chunk(histories, rows, horizon, names))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: the parent may hold JAX's threads, which fork would copy half-alive.
        # One BLAS thread per worker: the fits are tiny, and a thread per core each thrashes.
        with _single_threaded_blas(), ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_fit_chunk, histories[rows], np.arange(len(rows)), horizon, names): rows
                       for rows in chunks}
            try:
                for future in as_completed(futures):
                    rows = futures[future]
                    try:
                        keep(rows, future.result())
                    except FitError as err:  # its index is within the chunk
                        raise FitError(int(rows[err.index]), err.message) from None
            except BaseException:  # a failed window or ^C: drop the chunks not yet started
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    intervals = {m: {level: (bounds[m, level, "lo"], bounds[m, level, "hi"]) for level in LEVELS} for m in names}
    return Forecasts(points, intervals, specs)


def _fit_chunk(histories: np.ndarray, rows: np.ndarray, horizon: int, names: tuple[str, ...]):
    """One statsforecast fit of ``names`` over the windows ``rows`` of ``histories``:
    ``(points, bounds, specs)`` with one row per window, in the order of ``rows``."""
    import pandas as pd
    from statsforecast import StatsForecast

    days = histories.shape[1]
    frame = pd.DataFrame({"unique_id": np.repeat(np.arange(len(rows)), days),
                          "ds": np.tile(np.arange(days), len(rows)), "y": histories[rows].ravel()})
    sf = StatsForecast(models=[_model(m) for m in names], freq=1, n_jobs=1)
    try:
        sf.fit(df=frame)
        out = sf.predict(h=horizon, level=list(LEVELS)).sort_values(["unique_id", "ds"])
    except Exception as err:  # the fits raise many types; name the window
        raise _locate(histories, rows, horizon, names, err) from None
    shape = (len(rows), horizon)
    points = {m: out[m].to_numpy().reshape(shape) for m in names}
    bounds = {(m, level, side): out[f"{m}-{side}-{level}"].to_numpy().reshape(shape)
              for m in names for level in LEVELS for side in ("lo", "hi")}
    specs = {m: [_spec(m, fitted) for fitted in sf.fitted_[:, j]] for j, m in enumerate(names) if m not in ALWAYS}
    return points, bounds, specs


@contextlib.contextmanager
def _single_threaded_blas():
    """Set the BLAS/OpenMP thread counts that spawned children read at start-up."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cross_validate(y: np.ndarray, horizon: int, origins: np.ndarray, fit_days: int,
                   methods: tuple[str, ...]) -> Forecasts:
    """statsforecast's own rolling-origin cross-validation of ``naive``, ``drift`` and
    ``methods`` on the series ``y`` <float>[days]: at each of ``origins`` (the index of a
    forecast's first day, ``every`` days apart and the last one ``days - horizon``), a fit
    on the ``fit_days`` days before it and a ``horizon``-day forecast with 80 % and 95 %
    intervals; arrays <float64>[origins, horizon]."""
    import pandas as pd
    from statsforecast import StatsForecast

    y = np.asarray(y, np.float64)
    steps = np.diff(origins)
    if len(origins) > 1 and not np.all(steps == steps[0]):
        raise ValueError("cross-validation origins must be evenly spaced")
    if origins[-1] != len(y) - horizon:
        raise ValueError(f"the last origin must be {len(y) - horizon} (the series' last full horizon), "
                         f"got {origins[-1]}")
    names = (*ALWAYS, *(m for m in methods if m not in ALWAYS))
    sf = StatsForecast(models=[_model(m) for m in names], freq=1, n_jobs=1)
    out = sf.cross_validation(df=pd.DataFrame({"unique_id": 0, "ds": np.arange(len(y)), "y": y}), h=horizon,
                              step_size=int(steps[0]) if len(origins) > 1 else 1, n_windows=len(origins),
                              input_size=fit_days, level=list(LEVELS)).sort_values(["cutoff", "ds"])
    cutoffs = np.sort(out["cutoff"].unique())
    if not np.array_equal(cutoffs + 1, origins):  # statsforecast chose other origins: a bug here
        raise AssertionError(f"statsforecast cut at {cutoffs[:3]}..., not before the origins {origins[:3]}...")
    shape = (len(origins), horizon)
    points = {m: out[m].to_numpy().reshape(shape) for m in names}
    intervals = {m: {level: (out[f"{m}-lo-{level}"].to_numpy().reshape(shape),
                             out[f"{m}-hi-{level}"].to_numpy().reshape(shape)) for level in LEVELS} for m in names}
    return Forecasts(points, intervals, {})


def _locate(histories: np.ndarray, rows: np.ndarray, horizon: int, names: tuple[str, ...],
            err: Exception) -> FitError:
    """The first window of ``rows`` that fails on its own, as a :class:`FitError`."""
    for i in rows:
        for m in names:
            try:
                _model(m).forecast(y=histories[i], h=horizon, level=list(LEVELS))
            except Exception as own:
                return FitError(int(i), f"{m}: {type(own).__name__}: {own}")
    return FitError(int(rows[0]), f"{type(err).__name__}: {err}")


def histories(series: np.ndarray, starts: np.ndarray, input_len: int, fit_days: int) -> np.ndarray:
    """Feature 0 over the ``fit_days`` days ending at each window's forecast origin <float>[n, fit_days]."""
    inputs, _ = windows.gather(series, starts + input_len - fit_days, fit_days, 0)
    return inputs[:, :, 0]


def load(directory: str | Path, test_starts: np.ndarray) -> Forecasts:
    """The baselines' forecasts and intervals (``baseline_forecast``'s output
    ``directory``) for ``test_starts``, checked to be for those very windows."""
    path = Path(directory) / FORECASTS_FILE
    if not path.is_file():
        raise PipelineError(f"{path}: no baseline forecasts; run `dvc repro baseline_forecast`")
    data = artifacts.read_npz(path)
    stored = data.pop("test_starts")
    if not np.array_equal(stored, test_starts):
        raise PipelineError(f"{path}: made for other test windows than the prepared ones; "
                            f"run `dvc repro baseline_forecast`")
    return Forecasts.from_arrays(data)
