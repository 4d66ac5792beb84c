"""train_nmt@<cell>: train the seq2seq translator on bucketed batches."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts, batches, inference, train
from pipeline.checkpoint import save_model
from pipeline.models.seq2seq import Seq2Seq
from pipeline.params import Params, model_kwargs


def run(params: Params, cell: str) -> None:
    p = params.nmt
    prepared = Path(p.paths.prepared)
    vocab = artifacts.read_json(prepared / "vocab.json")
    train_arrays = artifacts.read_npz(prepared / "train.npz")
    valid_arrays = artifacts.read_npz(prepared / "valid.npz")
    config = {"src_vocab": len(vocab["src"]), "trg_vocab": len(vocab["trg"]),
              **model_kwargs(p.model, cell)}
    model = Seq2Seq(**config)

    init_key, fit_key = jax.random.split(jax.random.key(p.train.seed))
    example = batches.crop(train_arrays, np.arange(2), p.data.buckets[0])
    state = train.create_state(
        model, init_key, train.make_optimizer(p.train.learning_rate, p.train.clip_norm),
        example["src"], example["src_len"], example["trg"][:, :-1],
    )
    loss_fn = train.nmt_loss(model)
    eval_step = train.make_eval_step(loss_fn)
    valid = [b for _, b in batches.eval_batches(valid_arrays, p.data.buckets, p.decode.batch_size)]
    stream = batches.bucket_batches(
        train_arrays, p.data.buckets, p.train.batch_size, np.random.default_rng(p.train.seed)
    )
    state, history = train.fit(
        state, train.make_train_step(loss_fn), stream, p.train.steps, fit_key, p.train.log_every,
        lambda prm: {"valid_loss": inference.mean_loss(eval_step, prm, valid)},
        desc=f"train_nmt@{cell}",
    )
    save_model(Path(p.paths.models) / cell, state.params, {"model": config, "vocab": vocab})
    artifacts.write_csv(Path(p.paths.plots) / f"nmt-{cell}-train.csv", history)
    print(f"train_nmt@{cell}: valid_loss {history[-1]['valid_loss']:.3f}")
