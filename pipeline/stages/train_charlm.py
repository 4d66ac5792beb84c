"""train_charlm@<cell>: char-rnn training with truncated BPTT over parallel streams."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts, batches, inference, train
from pipeline.checkpoint import save_model
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries
from pipeline.params import Params, model_kwargs


def run(params: Params, cell: str) -> None:
    p = params.charlm
    prepared = Path(p.paths.prepared)
    chars = artifacts.read_json(prepared / "vocab.json")["chars"]
    train_ids = artifacts.read_npz(prepared / "train.npz")["ids"]
    valid_ids = artifacts.read_npz(prepared / "valid.npz")["ids"]
    config = {"vocab": len(chars), **model_kwargs(p.model, cell)}
    model = CharLM(**config)
    b, t = p.train.batch_size, p.train.seq_len

    init_key, fit_key = jax.random.split(jax.random.key(p.train.seed))
    carry = initial_carries(cell, model.layers, model.hidden, b)
    state = train.create_state(
        model, init_key, train.make_optimizer(p.train.learning_rate, p.train.clip_norm),
        np.zeros((b, t), np.int32), carry,
    )
    loss_fn = train.charlm_loss(model)
    eval_step = train.make_eval_step(loss_fn)
    state, history = train.fit(
        state, train.make_train_step(loss_fn), batches.stream_windows(train_ids, b, t), p.train.steps,
        fit_key, p.train.log_every,
        lambda prm: {"valid_loss": inference.stream_loss(eval_step, prm, valid_ids, model, b, t)},
        carry=carry, desc=f"train_charlm@{cell}",
    )
    save_model(Path(p.paths.models) / cell, state.params, {"model": config, "chars": chars})
    artifacts.write_csv(Path(p.paths.plots) / f"charlm-{cell}-train.csv", history)
    print(f"train_charlm@{cell}: valid_loss {history[-1]['valid_loss']:.3f} nats/char")
