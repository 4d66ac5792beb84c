"""train_charlm@<cell>: char-rnn training with truncated BPTT over parallel streams."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts, batches, inference, resume, train
from pipeline.curves import Curves
from pipeline.checkpoint import save_model
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries
from pipeline.params import Params, model_kwargs


def setup(params: Params, cell: str) -> dict:
    """Everything :func:`pipeline.train.fit` needs for one cell (benchmarks reuse it)."""
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
    rate = train.make_schedule(p.train.learning_rate, p.train.schedule, p.train.steps)
    tx = train.make_optimizer(rate, p.train.clip_norm)
    state = train.create_state(model, init_key, tx, np.zeros((b, t), np.int32), carry)
    loss_fn = train.charlm_loss(model)
    eval_step = train.make_eval_step(loss_fn)
    return {
        "state": state, "train_step": train.make_train_step(loss_fn),
        "batches": batches.stream_windows(train_ids, b, t), "steps": p.train.steps, "key": fit_key,
        "log_every": p.train.log_every, "carry": carry, "desc": f"train_charlm@{cell}",
        "max_nonfinite": p.train.max_nonfinite_steps,
        "checkpoints": resume.for_run(p.paths.checkpoints, f"train_charlm@{cell}", {"cell": cell, "charlm": p},
                                      prepared, p.train.checkpoint_every),
        "learning_rate": rate,
        "evaluate": lambda prm: {"valid_loss": inference.stream_loss(eval_step, prm, valid_ids, model, b, t)},
        "config": {"model": config, "chars": chars},
    }


def run(params: Params, cell: str) -> None:
    p = params.charlm
    parts = setup(params, cell)
    config = parts.pop("config")
    state, history = train.fit(**parts, curves=Curves(Path(p.paths.live) / f"charlm-{cell}"))
    save_model(Path(p.paths.models) / cell, state.params, config)
    print(f"train_charlm@{cell}: valid_loss {history[-1]['valid_loss']:.3f} nats/char")
