"""The forecaster's training job, built from a series and window starts: what
``train_forecast`` trains the served cells with and ``backtest_forecast`` each fold.

:func:`make_job` is one network from one seed. :func:`train_calibrated` is what is
served: an ensemble of ``train.seeds`` networks (their mean is the forecast), and its
conformal interval widths, from an ensemble of calibration twins trained without the
``intervals.calibration_days`` days before the cut.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import jax
import numpy as np

from pipeline.data import batches, windows
from pipeline.errors import PipelineError
from pipeline.evaluation import conformal, heldout
from pipeline.inference import forecasting
from pipeline.models import initializers
from pipeline.models.forecaster import Forecaster
from pipeline.params import Forecast as ForecastParams
from pipeline.params import model_kwargs
from pipeline.training import optim, steps
from pipeline.training.loop import FitOptions, Hook, Job, fit, no_evaluation
from pipeline.training.losses import forecast_loss

_COMPILED_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _compiled(model: Forecaster, t) -> tuple:
    """``model`` (the first one equal to it) and its schedule, optimizer, loss and jitted
    train step under ``t`` (``forecast.train``, seed zeroed): one object of each per
    setting, so that the ensemble's members, their twins and the backtest's folds share
    one compilation per shape (the train state's static fields, the model's bound
    ``apply`` among them, compare by identity)."""
    rate = optim.make_schedule(t.learning_rate)
    tx = optim.make_optimizer(rate, t.clip_norm, t.weight_decay, optimizer=t.optimizer,
                              rmsprop_decay=t.rmsprop_decay, momentum=t.momentum, decay=t.decay)
    loss_fn = forecast_loss(model, t.loss, t.l2_reg, optim.weights_only if t.decay == "weights" else None)
    return model, rate, tx, loss_fn, steps.make_train_step(loss_fn)


def model_config(p: ForecastParams, cell: str) -> dict:
    """The :class:`Forecaster`'s constructor arguments for a ``cell`` under ``p``."""
    return {"output_len": p.data.output_len, "outputs": p.data.targets, **model_kwargs(p.model, cell)}


def recurrent_kernel(p: ForecastParams, cell: str, inputs: np.ndarray) -> str:
    """The recurrent kernel a ``cell`` forecaster runs on here, traced on the shape of
    ``inputs`` <float>[n, input_len, features] (:func:`pipeline.training.steps.recurrent_kernel`)."""
    model = Forecaster(**model_config(p, cell))
    x = jax.ShapeDtypeStruct((2, *np.shape(inputs)[1:]), np.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)["params"]
    return steps.recurrent_kernel(model, params, x)


def make_job(p: ForecastParams, cell: str, series: np.ndarray, train_starts: np.ndarray, desc: str,
             heldout_starts: np.ndarray | None = None, seed: int | None = None) -> tuple[Job, dict]:
    """The job that trains a ``cell`` forecaster under ``p`` (``forecast`` params) on the
    windows of ``series`` starting at ``train_starts``, from ``seed`` (default
    ``p.train.seed``); with ``heldout_starts``, the loss on those windows is logged at
    every row (watched, never selected on). Pure: the backtest trains its folds with it."""
    t = p.train
    seed = t.seed if seed is None else seed

    def normalised(starts):
        inputs, targets = windows.gather(series, starts, p.data.input_len, p.data.output_len, p.data.targets)
        return windows.normalize(inputs, targets, p.data.std_factor)[:2]

    inputs_n, targets_n = normalised(train_starts)
    config = model_config(p, cell)
    init_key, fit_key = jax.random.split(jax.random.key(seed))
    with _COMPILED_LOCK:  # the twins' thread and this one share one entry
        model, rate, tx, loss_fn, train_step = _compiled(Forecaster(**config), dataclasses.replace(t, seed=0))
    state = steps.create_state(model, init_key, tx, inputs_n[:2], redraw=initializers.scheme(p.model, cell))
    rng = np.random.default_rng(seed)
    stream = ({"inputs": inputs_n[idx], "targets": targets_n[idx]}
              for idx in batches.window_batches(len(inputs_n), t.batch_size, rng))
    options = FitOptions(steps=t.steps, log_every=t.log_every, batch_size=t.batch_size,
                         desc=desc, max_nonfinite=t.max_nonfinite_steps)
    evaluate = no_evaluation
    if heldout_starts is not None:
        eval_step = heldout.make_eval_step(loss_fn)
        test_x, test_y = normalised(heldout_starts)
        held = [{"inputs": test_x, "targets": test_y}]

        def evaluate(prm) -> dict[str, float]:
            return {"valid_loss": heldout.scores(eval_step, prm, held)["loss"]}

    job = Job(state, train_step, stream, fit_key, options, evaluate, learning_rate=rate)
    saved = {"model": config, "features": list(p.data.features), "input_len": p.data.input_len}
    if p.data.std_factor != 1.0:  # how forecasting.predict must scale its windows
        saved["std_factor"] = p.data.std_factor
    return job, saved


def member_seeds(t) -> list[int]:
    """The seeds of the ensemble's networks (``forecast.train``): seed, seed + 1, ..."""
    return [t.seed + i for i in range(t.seeds)]


@dataclasses.dataclass(frozen=True)
class Calibrated:
    """An ensemble and its intervals: ``members`` (one parameter tree per seed of
    ``seeds``), the model ``config``, the interval ``widths`` per level <float64>[horizon]
    in units of a window's naive scale for the ensemble's mean and ``single_widths`` for
    the first member alone (both for the first forecast series), ``series_widths`` the
    ensemble's widths for every forecast series (the first is ``widths``), each in units
    of that series' own naive scale, and the ``calibration`` windows' first and last start."""

    members: list[Any]
    seeds: list[int]
    config: dict
    widths: dict[int, np.ndarray]
    single_widths: dict[int, np.ndarray]
    calibration: tuple[int, int]
    series_widths: tuple[dict[int, np.ndarray], ...] = ()


class CalibrationError(PipelineError, ValueError):
    """Too little data before the cut for the calibration windows."""


def train_calibrated(p: ForecastParams, cell: str, series: np.ndarray, train_starts: np.ndarray, cut: int,
                     desc: str, hooks: Callable[[int, Job, dict], Sequence[Hook]] = lambda seed, job, config: (),
                     heldout_starts: np.ndarray | None = None) -> Calibrated:
    """Train the ensemble on the windows of ``series`` at ``train_starts`` (all of them end
    before day ``cut``), and a calibration twin per seed on those that end
    ``intervals.calibration_days`` before ``cut``. The twins' mean forecast on the
    windows whose targets fall in those days gives the widths
    (:func:`pipeline.evaluation.conformal.calibrate`): the forecaster keeps all the data,
    and the twin, trained on a little less, errs on the side of wider intervals.
    ``hooks(seed, job, config)`` gives each member's training hooks (twins get none)."""
    input_len, horizon, held = p.data.input_len, p.data.output_len, p.intervals.calibration_days
    calibration = np.arange(max(cut - held - input_len, 0), cut - input_len - horizon + 1)
    if len(calibration) < conformal.min_windows():
        raise CalibrationError(
            f"params.yaml: 'forecast.intervals.calibration_days' is {held}: {desc} has {len(calibration)} "
            f"calibration windows of {input_len} + {horizon} days before its cut; {max(conformal.LEVELS)} % "
            f"intervals need at least {conformal.min_windows()}")
    twin_starts = train_starts[train_starts + input_len + horizon <= cut - held]
    seeds = member_seeds(p.train)
    many = len(seeds) > 1

    def trained(starts, name, seed, with_hooks):
        job, config = make_job(p, cell, series, starts, name, heldout_starts if with_hooks else None, seed)
        state, _ = fit(job, hooks(seed, job, config) if with_hooks else ())
        return state.params, config

    names = {seed: f"{desc} seed {seed}" if many else desc for seed in seeds}
    # The twins train on a second thread while the members train on this one (which keeps
    # the hooks and the signal handling): each network is small enough that one alone
    # leaves a core idle. Every network is a pure function of its seed and data, so the
    # overlap changes no number (tests/test_forecast_job.py checks it).
    pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="calibration-twin")
    try:
        twin_jobs = [pool.submit(trained, twin_starts, f"{names[seed]}, calibration twin", seed, False)
                     for seed in seeds]
        members = []
        for seed in seeds:
            params, config = trained(train_starts, names[seed], seed, True)
            members.append(params)
        twins = [job.result()[0] for job in twin_jobs]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    cal_inputs, cal_truth = windows.gather(series, calibration, input_len, horizon, p.data.targets)
    twin_pred = forecasting.forecast_members(Forecaster(**config["model"]), twins, cal_inputs,
                                             forecasting.std_factor(config))
    config = {**config, "kernel": recurrent_kernel(p, cell, cal_inputs)}
    by_series = tuple(
        conformal.calibrate(twin_pred[..., j].mean(axis=0), cal_truth[..., j], windows.naive_scale(cal_inputs, j))
        for j in range(p.data.targets))
    single = conformal.calibrate(twin_pred[0, ..., 0], cal_truth[..., 0], windows.naive_scale(cal_inputs))
    return Calibrated(members, seeds, config, by_series[0], single, (int(calibration[0]), int(calibration[-1])),
                      by_series)
