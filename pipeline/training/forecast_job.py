"""The forecaster's training job, built from a series and window starts: what
``train_forecast`` trains the served cells with and ``backtest_forecast`` each fold."""

from __future__ import annotations

import jax
import numpy as np

from pipeline.data import batches, windows
from pipeline.evaluation import heldout
from pipeline.models.forecaster import Forecaster
from pipeline.params import Forecast as ForecastParams
from pipeline.params import model_kwargs
from pipeline.training import optim, steps
from pipeline.training.loop import FitOptions, Job, no_evaluation
from pipeline.training.losses import forecast_loss


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
    model = Forecaster(**config)

    init_key, fit_key = jax.random.split(jax.random.key(seed))
    rate = optim.make_schedule(t.learning_rate)
    tx = optim.make_optimizer(rate, t.clip_norm, t.weight_decay, optimizer=t.optimizer,
                              rmsprop_decay=t.rmsprop_decay, momentum=t.momentum, decay=t.decay)
    state = steps.create_state(model, init_key, tx, inputs_n[:2])
    rng = np.random.default_rng(seed)
    stream = ({"inputs": inputs_n[idx], "targets": targets_n[idx]}
              for idx in batches.window_batches(len(inputs_n), t.batch_size, rng))
    options = FitOptions(steps=t.steps, log_every=t.log_every, batch_size=t.batch_size,
                         desc=desc, max_nonfinite=t.max_nonfinite_steps)
    loss_fn = forecast_loss(model, t.loss)
    evaluate = no_evaluation
    if heldout_starts is not None:
        eval_step = heldout.make_eval_step(loss_fn)
        test_x, test_y = normalised(heldout_starts)
        held = [{"inputs": test_x, "targets": test_y}]

        def evaluate(prm) -> dict[str, float]:
            return {"valid_loss": heldout.scores(eval_step, prm, held)["loss"]}

    job = Job(state, steps.make_train_step(loss_fn), stream, fit_key, options, evaluate, learning_rate=rate)
    return job, {"model": config, "features": list(p.data.features), "input_len": p.data.input_len}
