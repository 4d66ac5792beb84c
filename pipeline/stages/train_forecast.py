"""train_forecast@<cell>: fit the seq2seq forecaster on per-window normalised prices."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts, batches, resume, train, windows
from pipeline.curves import Curves
from pipeline.checkpoint import save_model
from pipeline.models.forecaster import Forecaster
from pipeline.params import Params, model_kwargs


def run(params: Params, cell: str) -> None:
    p = params.forecast
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")
    inputs, targets = windows.gather(
        data["series"], data["train_starts"], p.data.input_len, p.data.output_len
    )
    inputs_n, targets_n, _, _ = windows.normalize(inputs, targets)
    config = {"output_len": p.data.output_len, **model_kwargs(p.model, cell)}
    model = Forecaster(**config)

    init_key, fit_key = jax.random.split(jax.random.key(p.train.seed))
    t = p.train
    rate = train.make_schedule(t.learning_rate)
    tx = train.make_optimizer(rate, t.clip_norm, t.weight_decay, optimizer=t.optimizer,
                              rmsprop_decay=t.rmsprop_decay, momentum=t.momentum)
    state = train.create_state(model, init_key, tx, inputs_n[:2])
    rng = np.random.default_rng(p.train.seed)
    stream = (
        {"inputs": inputs_n[idx], "targets": targets_n[idx]}
        for idx in batches.window_batches(len(inputs_n), p.train.batch_size, rng)
    )
    state, history = train.fit(
        state, train.make_train_step(train.forecast_loss(model)), stream, p.train.steps,
        fit_key, p.train.log_every, lambda prm: {}, desc=f"train_forecast@{cell}",
        max_nonfinite=p.train.max_nonfinite_steps,
        checkpoints=resume.for_run(p.paths.checkpoints, f"train_forecast@{cell}", {"cell": cell, "forecast": p},
                                   p.paths.prepared, p.train.checkpoint_every),
        learning_rate=rate,
        curves=Curves(Path(p.paths.live) / f"forecast-{cell}"),
    )
    save_model(
        Path(p.paths.models) / cell, state.params,
        {"model": config, "features": list(p.data.features), "input_len": p.data.input_len},
    )
    print(f"train_forecast@{cell}: loss {history[-1]['loss']:.4f} (normalised MAE)")
