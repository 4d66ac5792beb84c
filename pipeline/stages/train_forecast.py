"""train_forecast@<cell>: fit the seq2seq forecaster on per-window normalised prices."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts
from pipeline.data import batches, windows
from pipeline.evaluation import heldout
from pipeline.models.forecaster import Forecaster
from pipeline.models.store import save_model
from pipeline.params import Params, model_kwargs
from pipeline.training import hooks as training_hooks
from pipeline.training import optim, steps
from pipeline.training.loop import FitOptions, Job, fit, no_evaluation
from pipeline.training.losses import forecast_loss


def setup(params: Params, cell: str) -> tuple[Job, dict]:
    """The training job for one cell, and the config saved beside its parameters."""
    p, t = params.forecast, params.forecast.train
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")

    def normalised(starts):
        inputs, targets = windows.gather(data["series"], starts, p.data.input_len, p.data.output_len, p.data.targets)
        return windows.normalize(inputs, targets)[:2]

    inputs_n, targets_n = normalised(data["train_starts"])
    config = {"output_len": p.data.output_len, "outputs": p.data.targets, **model_kwargs(p.model, cell)}
    model = Forecaster(**config)

    init_key, fit_key = jax.random.split(jax.random.key(t.seed))
    rate = optim.make_schedule(t.learning_rate)
    tx = optim.make_optimizer(rate, t.clip_norm, t.weight_decay, optimizer=t.optimizer,
                              rmsprop_decay=t.rmsprop_decay, momentum=t.momentum, decay=t.decay)
    state = steps.create_state(model, init_key, tx, inputs_n[:2])
    rng = np.random.default_rng(t.seed)
    stream = ({"inputs": inputs_n[idx], "targets": targets_n[idx]}
              for idx in batches.window_batches(len(inputs_n), t.batch_size, rng))
    options = FitOptions(steps=t.steps, log_every=t.log_every, batch_size=t.batch_size,
                         desc=f"train_forecast@{cell}", max_nonfinite=t.max_nonfinite_steps)
    loss_fn = forecast_loss(model, t.loss)
    evaluate = no_evaluation
    if t.heldout_loss:  # the held-out windows are the test split: watched, never selected on
        eval_step = heldout.make_eval_step(loss_fn)
        test_x, test_y = normalised(data["test_starts"])
        held = [{"inputs": test_x, "targets": test_y}]

        def evaluate(prm) -> dict[str, float]:
            return {"valid_loss": heldout.scores(eval_step, prm, held)["loss"]}

    job = Job(state, steps.make_train_step(loss_fn), stream, fit_key, options, evaluate, learning_rate=rate)
    return job, {"model": config, "features": list(p.data.features), "input_len": p.data.input_len}


def run(params: Params, cell: str) -> None:
    p = params.forecast
    job, config = setup(params, cell)
    hooks = training_hooks.for_stage("forecast", p, cell, job.options.desc, config)
    state, history = fit(job, hooks)
    save_model(Path(p.paths.models) / cell, state.params, config)
    print(f"{job.options.desc}: loss {history[-1]['loss']:.4f} (normalised {p.train.loss.upper()})")
