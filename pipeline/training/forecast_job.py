"""The forecaster's training jobs, built from a series and window starts: what
``train_forecast`` trains the served cells with and ``backtest_forecast`` its folds.

:func:`make_job` is one network from one seed. :func:`train_many` trains several at
once: one program, vectorised over the networks with ``jax.vmap`` (each on its own
windows, from its own seed, exactly as it would train alone), so the machine runs one
step for all of them instead of waiting on one tiny network's step after another.
:func:`train_calibrated` is what is served: an ensemble of ``train.seeds`` networks
(their mean is the forecast), and its conformal interval widths, from an ensemble of
calibration twins trained without the ``intervals.calibration_days`` days before the
cut; its networks and twins train together (:func:`calibration_plan`,
:func:`calibrated`), and the backtest trains every fold's in the same program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pipeline.data import batches, windows
from pipeline.errors import PipelineError
from pipeline.evaluation import conformal, heldout
from pipeline.inference import forecasting
from pipeline.models.forecaster import Forecaster
from pipeline.params import Forecast as ForecastParams
from pipeline.params import model_kwargs
from pipeline.training import optim, steps
from pipeline.training.loop import FitOptions, Hook, Job, fit, no_evaluation
from pipeline.training.losses import forecast_loss


@functools.lru_cache(maxsize=4)
def _compiled(model: Forecaster, t) -> tuple:
    """``model`` (the first one equal to it) and its schedule, optimizer, loss and jitted
    train step under ``t`` (``forecast.train``, seed zeroed): one object of each per
    setting, so that the ensemble's members, their twins and the backtest's folds share
    one compilation per shape (the train state's static fields, the model's bound
    ``apply`` among them, compare by identity). The last two are the train step of one
    network and that of several at once (:func:`train_many`)."""
    rate = optim.make_schedule(t.learning_rate)
    tx = optim.make_optimizer(rate, t.clip_norm, t.weight_decay, optimizer=t.optimizer,
                              rmsprop_decay=t.rmsprop_decay, momentum=t.momentum, decay=t.decay)
    loss_fn = forecast_loss(model, t.loss)
    return model, rate, tx, loss_fn, steps.make_train_step(loss_fn), steps.make_train_step(loss_fn, members=True)


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
        return windows.normalize(inputs, targets)[:2]

    inputs_n, targets_n = normalised(train_starts)
    config = {"output_len": p.data.output_len, "outputs": p.data.targets, **model_kwargs(p.model, cell)}
    init_key, fit_key = jax.random.split(jax.random.key(seed))
    model, rate, tx, loss_fn, train_step, _ = _compiled(Forecaster(**config), dataclasses.replace(t, seed=0))
    state = steps.create_state(model, init_key, tx, inputs_n[:2])
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
    return job, {"model": config, "features": list(p.data.features), "input_len": p.data.input_len}


def member_seeds(t) -> list[int]:
    """The seeds of the ensemble's networks (``forecast.train``): seed, seed + 1, ..."""
    return [t.seed + i for i in range(t.seeds)]


@dataclasses.dataclass(frozen=True)
class Member:
    """One network of a :func:`train_many` run: trained on the windows of the series that
    start at ``starts``, from ``seed``; with ``watched``, its loss on the held-out windows
    goes into the logged ``valid_loss`` (the mean over the watched networks)."""

    starts: np.ndarray
    seed: int
    watched: bool = False


def make_members_job(p: ForecastParams, cell: str, series: np.ndarray, members: Sequence[Member], desc: str,
                     heldout_starts: np.ndarray | None = None) -> tuple[Job, dict]:
    """One job that trains every network of ``members`` at once: the train state, the
    batches and the dropout keys carry a leading member axis, and member ``k`` gets the
    initial parameters, the batches (its own shuffle of its own windows) and the keys
    that :func:`make_job` gives a network of its seed and windows. Logged rows hold the
    members' mean training loss."""
    t = p.train
    union = np.unique(np.concatenate([m.starts for m in members]))
    inputs, targets = windows.gather(series, union, p.data.input_len, p.data.output_len, p.data.targets)
    inputs_n, targets_n = windows.normalize(inputs, targets)[:2]  # per window: the same for any subset
    config = {"output_len": p.data.output_len, "outputs": p.data.targets, **model_kwargs(p.model, cell)}
    model, rate, tx, loss_fn, _, members_step = _compiled(Forecaster(**config), dataclasses.replace(t, seed=0))
    states, keys, streams = [], [], []
    for m in members:
        init_key, fit_key = jax.random.split(jax.random.key(m.seed))
        states.append(steps.create_state(model, init_key, tx, inputs_n[:2]))
        keys.append(fit_key)
        streams.append((np.searchsorted(union, m.starts),
                        batches.window_batches(len(m.starts), t.batch_size, np.random.default_rng(m.seed))))
    state = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)

    def stream():
        while True:
            idx = np.stack([where[next(order)] for where, order in streams])
            yield {"inputs": inputs_n[idx], "targets": targets_n[idx]}

    options = FitOptions(steps=t.steps, log_every=t.log_every, batch_size=t.batch_size,
                         desc=desc, max_nonfinite=t.max_nonfinite_steps)
    evaluate = no_evaluation
    watched = [k for k, m in enumerate(members) if m.watched]
    if heldout_starts is not None and watched:
        eval_step = heldout.make_eval_step(loss_fn)
        test_x, test_y = windows.gather(series, heldout_starts, p.data.input_len, p.data.output_len, p.data.targets)
        held = [dict(zip(("inputs", "targets"), windows.normalize(test_x, test_y)[:2]))]

        def evaluate(prm) -> dict[str, float]:
            losses = [heldout.scores(eval_step, jax.tree_util.tree_map(lambda a: a[k], prm), held)["loss"]
                      for k in watched]
            return {"valid_loss": float(np.mean(losses))}

    job = Job(state, members_step, stream(), jnp.stack(keys), options, evaluate, learning_rate=rate)
    return job, {"model": config, "features": list(p.data.features), "input_len": p.data.input_len}


def train_many(p: ForecastParams, cell: str, series: np.ndarray, members: Sequence[Member], desc: str,
               hooks: Callable[[Job, dict], Sequence[Hook]] = lambda job, config: (),
               heldout_starts: np.ndarray | None = None) -> tuple[list[Any], dict]:
    """Train every network of ``members`` in one vectorised run
    (:func:`make_members_job`); returns their parameters, in order, and the model config.
    ``hooks(job, config)`` gives the run's hooks (checkpoints hold every network)."""
    job, config = make_members_job(p, cell, series, members, desc, heldout_starts)
    state, _ = fit(job, hooks(job, config))
    stacked = jax.device_get(state.params)
    return [jax.tree_util.tree_map(lambda a: a[k], stacked) for k in range(len(members))], config


@dataclasses.dataclass(frozen=True)
class Calibrated:
    """An ensemble and its intervals: ``members`` (one parameter tree per seed of
    ``seeds``), the model ``config``, the interval ``widths`` per level <float64>[horizon]
    in units of a window's naive scale for the ensemble's mean and ``single_widths`` for
    the first member alone, and the ``calibration`` windows' first and last start."""

    members: list[Any]
    seeds: list[int]
    config: dict
    widths: dict[int, np.ndarray]
    single_widths: dict[int, np.ndarray]
    calibration: tuple[int, int]


class CalibrationError(PipelineError, ValueError):
    """Too little data before the cut for the calibration windows."""


@dataclasses.dataclass(frozen=True)
class CalibrationPlan:
    """What :func:`train_calibrated` trains for one cut: the ensemble's networks, then one
    calibration twin per seed (``members``), and the ``calibration`` windows' starts."""

    members: list[Member]
    seeds: list[int]
    calibration: np.ndarray


def calibration_plan(p: ForecastParams, train_starts: np.ndarray, cut: int, desc: str,
                     watched: bool = False) -> CalibrationPlan:
    """The ensemble on the windows at ``train_starts`` (all of them end before day
    ``cut``), and a calibration twin per seed on those that end
    ``intervals.calibration_days`` before ``cut``; the twins' errors on the windows whose
    targets fall in those days give the widths. ``watched``: the ensemble's networks
    log the held-out loss (twins never do)."""
    input_len, horizon, held = p.data.input_len, p.data.output_len, p.intervals.calibration_days
    calibration = np.arange(max(cut - held - input_len, 0), cut - input_len - horizon + 1)
    if len(calibration) < conformal.min_windows():
        raise CalibrationError(
            f"params.yaml: 'forecast.intervals.calibration_days' is {held}: {desc} has {len(calibration)} "
            f"calibration windows of {input_len} + {horizon} days before its cut; {max(conformal.LEVELS)} % "
            f"intervals need at least {conformal.min_windows()}")
    twin_starts = train_starts[train_starts + input_len + horizon <= cut - held]
    seeds = member_seeds(p.train)
    return CalibrationPlan([Member(train_starts, seed, watched) for seed in seeds]
                           + [Member(twin_starts, seed) for seed in seeds], seeds, calibration)


def calibrated(p: ForecastParams, series: np.ndarray, plan: CalibrationPlan, params: Sequence[Any],
               config: dict) -> Calibrated:
    """The ensemble and its widths from ``plan``'s trained ``params`` (in the plan's order):
    the twins' mean forecast on the calibration windows gives the widths
    (:func:`pipeline.evaluation.conformal.calibrate`): the forecaster keeps all the data,
    and the twin, trained on a little less, errs on the side of wider intervals."""
    n = len(plan.seeds)
    members, twins = list(params[:n]), list(params[n:])
    cal_inputs, cal_truth = windows.gather(series, plan.calibration, p.data.input_len, p.data.output_len)
    twin_pred = forecasting.forecast_members(Forecaster(**config["model"]), twins, cal_inputs)[..., 0]
    scale = windows.naive_scale(cal_inputs)
    return Calibrated(members, plan.seeds, config,
                      conformal.calibrate(twin_pred.mean(axis=0), cal_truth[..., 0], scale),
                      conformal.calibrate(twin_pred[0], cal_truth[..., 0], scale),
                      (int(plan.calibration[0]), int(plan.calibration[-1])))


def train_calibrated(p: ForecastParams, cell: str, series: np.ndarray, train_starts: np.ndarray, cut: int,
                     desc: str, hooks: Callable[[Job, dict], Sequence[Hook]] = lambda job, config: (),
                     heldout_starts: np.ndarray | None = None) -> Calibrated:
    """Train the ensemble and its calibration twins for ``cut`` (:func:`calibration_plan`)
    in one vectorised run, and calibrate (:func:`calibrated`). ``hooks(job, config)``
    gives the run's hooks; with ``heldout_starts``, the ensemble's mean held-out loss is
    logged."""
    plan = calibration_plan(p, train_starts, cut, desc, watched=heldout_starts is not None)
    params, config = train_many(p, cell, series, plan.members, desc, hooks, heldout_starts)
    return calibrated(p, series, plan, params, config)
