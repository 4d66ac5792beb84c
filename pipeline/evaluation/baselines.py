"""Statistical forecasting baselines, fitted per window: AutoARIMA and AutoETS.

Both follow Hyndman & Khandakar (2008), the algorithms behind R's ``forecast::auto.arima``
and ``ets`` (and statsforecast's ``AutoARIMA``/``AutoETS``), for a non-seasonal daily
series. The model fits are statsmodels' maximum likelihood; the search is here:

* **AutoETS** fits every non-seasonal ETS model (error A or M, trend N, A or damped A)
  and keeps the lowest AICc.
* **AutoARIMA** picks the differencing order ``d`` with repeated KPSS tests at 5%
  (at most 2), then walks the stepwise search: start from ARIMA(2,d,2), (0,d,0),
  (1,d,0) and (0,d,1), with a constant (a mean when d=0, a drift when d=1) where
  d <= 1, and move to the best neighbour (p or q +-1, both +-1, constant toggled) while
  AICc improves, with p, q <= 5 and p + q <= 5.

statsforecast is the library the issue names, but every release that supports pandas
3 is missing (2.1.1 requires pandas < 3), so the search is written against statsmodels.
Pure functions, numpy in and numpy out, except :func:`load`, which reads back the
forecasts the ``baseline_forecast`` stage stored.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.data import windows
from pipeline.errors import PipelineError

METHODS = ("autoarima", "autoets")
FORECASTS_FILE = "forecasts.npz"  # baseline_forecast's outputs
MODELS_FILE = "models.json"
MAX_P = MAX_Q = 5
MAX_ORDER = 5  # p + q
MAX_D = 2
KPSS_CRITICAL_5PCT = 0.463  # level stationarity (regression "c"), Kwiatkowski et al. (1992)
MIN_DAYS = 10  # below this AICc cannot rank even the small models


@dataclass(frozen=True)
class Fitted:
    """One window's forecast and the model the search chose (e.g. ``ARIMA(1,1,0)+drift``)."""

    forecast: np.ndarray  # <float64>[horizon]
    spec: str


def _history(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) < MIN_DAYS:
        raise ValueError(f"a history of {len(y)} days is too short to fit (at least {MIN_DAYS})")
    if not np.all(np.isfinite(y)):
        raise ValueError("the history has missing or infinite values")
    return y


def _finite(forecast) -> np.ndarray | None:
    forecast = np.asarray(forecast, dtype=np.float64)
    return forecast if np.all(np.isfinite(forecast)) else None


def _aicc(result) -> float:
    value = float(getattr(result, "aicc", math.nan))
    return value if math.isfinite(value) else math.inf


def auto_ets(y: np.ndarray, horizon: int) -> Fitted:
    """The AICc-best of the six non-seasonal ETS models, fitted to ``y`` <float>[n]."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = _history(y)
    errors = ("add", "mul") if np.all(y > 0) else ("add",)
    best: tuple[float, np.ndarray, str] | None = None
    for error in errors:
        for trend, damped in ((None, False), ("add", False), ("add", True)):
            spec = f"ETS({error[0].upper()},{'N' if trend is None else 'Ad' if damped else 'A'},N)"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = ETSModel(y, error=error, trend=trend, damped_trend=damped).fit(disp=False)
            except (ValueError, np.linalg.LinAlgError):
                continue
            score, forecast = _aicc(result), _finite(result.forecast(horizon))
            if forecast is not None and (best is None or score < best[0]):
                best = (score, forecast, spec)
    if best is None:  # every fit failed: say so rather than invent a number
        raise ValueError("no ETS model could be fitted")
    return Fitted(best[1], best[2])


def ndiffs(y: np.ndarray, max_d: int = MAX_D) -> int:
    """How many differences make ``y`` level-stationary by the KPSS test at 5%."""
    from statsmodels.tsa.stattools import kpss

    y = np.asarray(y, dtype=np.float64)
    for d in range(max_d + 1):
        if d == max_d or np.ptp(y) == 0:
            return d
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "p-value outside the table" is expected here
            stat = kpss(y, regression="c", nlags="auto")[0]
        if stat <= KPSS_CRITICAL_5PCT:
            return d
        y = np.diff(y)
    return max_d


def _arima_spec(p: int, d: int, q: int, const: bool) -> str:
    term = {0: "+mean", 1: "+drift"}.get(d, "") if const else ""
    return f"ARIMA({p},{d},{q}){term}"


def auto_arima(y: np.ndarray, horizon: int) -> Fitted:
    """Hyndman-Khandakar stepwise ARIMA(p,d,q) search by AICc, fitted to ``y`` <float>[n]."""
    from statsmodels.tsa.arima.model import ARIMA

    y = _history(y)
    d = ndiffs(y)
    allow_const = d <= 1
    fits: dict[tuple[int, int, bool], tuple[float, object]] = {}

    def fit(p: int, q: int, const: bool) -> float:
        key = (p, q, const)
        if key not in fits:
            trend = ("c" if d == 0 else "t") if const else "n"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = ARIMA(y, order=(p, d, q), trend=trend).fit()
                fits[key] = (_aicc(result), result)
            except (ValueError, np.linalg.LinAlgError):
                fits[key] = (math.inf, None)
        return fits[key][0]

    start = [(2, 2, allow_const), (0, 0, allow_const), (1, 0, allow_const), (0, 1, allow_const)]
    if allow_const:
        start.append((0, 0, False))
    for key in start:
        fit(*key)
    best = min(fits, key=lambda k: fits[k][0])
    improved = True
    while improved:
        improved = False
        p, q, const = best
        neighbours = [(p + dp, q + dq, const) for dp, dq in
                      ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1))]
        if allow_const:
            neighbours.append((p, q, not const))
        for cand in neighbours:
            cp, cq, _ = cand
            if not (0 <= cp <= MAX_P and 0 <= cq <= MAX_Q and cp + cq <= MAX_ORDER):
                continue
            if fit(*cand) < fits[best][0]:
                best, improved = cand, True
                break  # restart the walk from the new best, as auto.arima does
    result = fits[best][1]
    forecast = None if result is None else _finite(result.forecast(horizon))
    if forecast is None:  # every candidate failed, even ARIMA(0,d,0)
        raise ValueError(f"no ARIMA model with d={d} could be fitted")
    return Fitted(forecast, _arima_spec(best[0], d, best[1], best[2]))


FITTERS: dict[str, Callable[[np.ndarray, int], Fitted]] = {"autoarima": auto_arima, "autoets": auto_ets}


class FitError(ValueError):
    """A window on which no candidate model could be fitted; ``index`` says which."""

    def __init__(self, index: int, message: str):
        super().__init__(index, message)  # both in args, so it pickles back from a worker
        self.index, self.message = index, message

    def __str__(self) -> str:
        return self.message


def _fit_rows(method: str, histories: np.ndarray, horizon: int, first: int) -> tuple[np.ndarray, list[str]]:
    fitter = FITTERS[method]
    out = np.empty((len(histories), horizon), dtype=np.float64)
    specs: list[str] = []
    for i, history in enumerate(histories):
        try:
            fitted = fitter(history, horizon)
        except ValueError as err:
            raise FitError(first + i, str(err)) from None
        out[i] = fitted.forecast
        specs.append(fitted.spec)
    return out, specs


def fit_forecasts(
    histories: np.ndarray, horizon: int, method: str, workers: int = 1,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Fit ``method`` to each row of ``histories`` <float>[n, days]; forecast ``horizon`` days.

    Windows are independent, so ``workers > 1`` fits chunks of them in that many spawned
    processes; the result does not depend on it. ``progress(k)`` is called as each
    ``k`` more windows finish. Returns the forecasts <float64>[n, horizon] and the model
    chosen for each window. Raises :class:`FitError` naming the first window that failed.
    """
    if method not in FITTERS:
        raise ValueError(f"unknown baseline {method!r}; expected one of {sorted(FITTERS)}")
    histories = np.asarray(histories, dtype=np.float64)
    n = len(histories)
    chunks = [c for c in np.array_split(np.arange(n), min(n, max(1, workers) * 8)) if len(c)]
    out = np.empty((n, horizon), dtype=np.float64)
    specs: list[str] = [""] * n

    def keep(chunk: np.ndarray, result: tuple[np.ndarray, list[str]]) -> None:
        out[chunk] = result[0]
        for i, spec in zip(chunk, result[1]):
            specs[i] = spec
        if progress is not None:
            progress(len(chunk))

    if workers <= 1 or len(chunks) == 1:
        for chunk in chunks:
            keep(chunk, _fit_rows(method, histories[chunk], horizon, int(chunk[0])))
        return out, specs
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may hold JAX's threads, which fork would copy half-alive.
    # One BLAS thread per worker: the fits are tiny, and with each process running a
    # thread per core the workers thrash (measured 3x slower than one process).
    with _single_threaded_blas(), ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_fit_rows, method, histories[c], horizon, int(c[0])): c for c in chunks}
        try:
            for future in as_completed(futures):
                keep(futures[future], future.result())
        except BaseException:  # a failed window or ^C: drop the chunks not yet started
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return out, specs


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


def histories(series: np.ndarray, starts: np.ndarray, input_len: int, fit_days: int) -> np.ndarray:
    """Feature 0 over the ``fit_days`` days ending at each window's forecast origin <float>[n, fit_days]."""
    inputs, _ = windows.gather(series, starts + input_len - fit_days, fit_days, 0)
    return inputs[:, :, 0]


def load(directory: str | Path, test_starts: np.ndarray) -> dict[str, np.ndarray]:
    """The baselines' forecasts (``baseline_forecast``'s output ``directory``) for
    ``test_starts``, checked to be for those very windows."""
    path = Path(directory) / FORECASTS_FILE
    if not path.is_file():
        raise PipelineError(f"{path}: no baseline forecasts; run `dvc repro baseline_forecast`")
    data = artifacts.read_npz(path)
    stored = data.pop("test_starts")
    if not np.array_equal(stored, test_starts):
        raise PipelineError(f"{path}: made for other test windows than the prepared ones; "
                            f"run `dvc repro baseline_forecast`")
    return data
