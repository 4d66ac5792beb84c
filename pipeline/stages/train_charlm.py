"""train_charlm@<cell>: char-rnn training with truncated BPTT over parallel streams."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts
from pipeline.data import batches
from pipeline.evaluation import heldout
from pipeline.inference import sampler
from pipeline.models import initializers
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries
from pipeline.models.store import save_model
from pipeline.params import Params, model_kwargs
from pipeline.training import hooks as training_hooks
from pipeline.training import optim, steps
from pipeline.training.loop import FitOptions, Job, fit
from pipeline.training.losses import charlm_loss
from pipeline.training.samples import TextSamples


def setup(params: Params, cell: str) -> tuple[Job, dict]:
    """The training job for one cell, and the config saved beside its parameters."""
    p, t = params.charlm, params.charlm.train
    prepared = Path(p.paths.prepared)
    chars = artifacts.read_json(prepared / "vocab.json")["chars"]
    train_ids = artifacts.read_npz(prepared / "train.npz")["ids"]
    valid_ids = artifacts.read_npz(prepared / "valid.npz")["ids"]
    config = {"vocab": len(chars), **model_kwargs(p.model, cell)}
    model = CharLM(**config)

    init_key, fit_key = jax.random.split(jax.random.key(t.seed))
    carry = initial_carries(cell, model.layers, model.hidden, t.batch_size)
    rate = optim.make_schedule(t.learning_rate, t.schedule, t.steps, t.warmup_steps, t.decay_factor, t.decay_steps,
                               t.start_decay_step)
    tx = optim.make_optimizer(rate, t.clip_norm)
    example = (np.zeros((t.batch_size, t.seq_len), np.int32), carry)
    state = steps.create_state(model, init_key, tx, *example, ema=t.ema_decay > 0,
                               redraw=initializers.scheme(p.model, cell))
    loss_fn = charlm_loss(model)
    eval_step = heldout.make_eval_step(loss_fn)

    def evaluate(prm) -> dict[str, float]:
        return {"valid_loss": heldout.stream_loss(eval_step, prm, valid_ids, model, t.batch_size, t.seq_len)}

    options = FitOptions(steps=t.steps, log_every=t.log_every, batch_size=t.batch_size, desc=f"train_charlm@{cell}",
                         max_nonfinite=t.max_nonfinite_steps)
    train_step = steps.make_train_step(loss_fn, ema_decay=t.ema_decay)
    job = Job(state, train_step, batches.stream_windows(train_ids, t.batch_size, t.seq_len),
              fit_key, options, evaluate, carry=carry, learning_rate=rate)
    return job, {"model": config, "chars": chars, "kernel": steps.recurrent_kernel(model, state.params, *example)}


def sample_hook(params: Params, cell: str, config: dict) -> TextSamples:
    """Samples at each of ``charlm.sample.temperatures`` every ``charlm.sample.every``
    steps, under the run's curves folder (git-tracked, beside the curves)."""
    s, model, chars = params.charlm.sample, CharLM(**config["model"]), config["chars"]

    def draw(prm, step: int) -> dict[str, str]:
        key = jax.random.fold_in(jax.random.key(s.seed), step)
        return {f"t{temperature:g}": sampler.texts(model, prm, chars, s.prime, s.length, temperature,
                                                    s.top_k, s.top_p, key)[0]
                for temperature in s.temperatures}

    return TextSamples(Path(params.charlm.paths.live) / f"charlm-{cell}" / "samples", s.every, draw)


def run(params: Params, cell: str) -> None:
    p = params.charlm
    job, config = setup(params, cell)
    print(f"{job.options.desc}: recurrent kernel {config['kernel']}")
    hooks = training_hooks.for_stage("charlm", p, cell, job.options.desc, config)
    if p.sample.every:
        hooks.append(sample_hook(params, cell, config))
    state, history = fit(job, hooks)
    save_model(Path(p.paths.models) / cell, state.params, config)
    print(f"{job.options.desc}: valid_loss {history[-1]['valid_loss']:.3f} nats/char")
