"""train_nmt@<cell>: train the seq2seq translator on bucketed batches; keep the best dev BLEU."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts, batches, inference, metrics, resume, text, train
from pipeline.curves import Curves
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
    model = Seq2Seq(**config)  # params.py has rejected impossible option combinations
    init_key, fit_key = jax.random.split(jax.random.key(p.train.seed))
    example = batches.crop(train_arrays, np.arange(2), p.data.buckets[0])
    t = p.train
    rate = train.make_schedule(t.learning_rate, t.schedule, t.steps)
    tx = train.make_optimizer(rate, t.clip_norm, optimizer=t.optimizer)
    state = train.create_state(model, init_key, tx, example["src"], example["src_len"], example["trg"][:, :-1])

    loss_fn = train.nmt_loss(model, t.label_smoothing)
    eval_step = train.make_eval_step(loss_fn)
    valid = [b for _, b in batches.eval_batches(valid_arrays, p.data.buckets, p.decode.batch_size)]
    greedy = inference.make_translator(model, p.decode.max_len_factor)
    trg_vocab = text.Vocab(tuple(vocab["trg"]))
    refs = [line.split("\t")[1] for line in (prepared / "valid.tsv").read_text("utf-8").splitlines()]

    def evaluate(prm) -> dict[str, float]:
        hyps = inference.translate_all(greedy, prm, valid_arrays, p.data.buckets, p.decode.batch_size,
                                       trg_vocab, vocab["level"])
        return {"valid_loss": inference.mean_loss(eval_step, prm, valid),
                "valid_bleu": float(metrics.bleu_chrf(hyps, [refs])["bleu"])}

    stream = batches.bucket_batches(
        train_arrays, p.data.buckets, t.batch_size, np.random.default_rng(t.seed)
    )
    state, history = train.fit(
        state, train.make_train_step(loss_fn), stream, t.steps, fit_key, t.log_every, evaluate,
        desc=f"train_nmt@{cell}", select="valid_bleu", patience=t.patience,
        max_nonfinite=t.max_nonfinite_steps,
        checkpoints=resume.for_run(p.paths.checkpoints, f"train_nmt@{cell}", {"cell": cell, "nmt": p},
                                   prepared, t.checkpoint_every),
        learning_rate=rate,
        curves=Curves(Path(p.paths.live) / f"nmt-{cell}"),
    )
    save_model(Path(p.paths.models) / cell, state.params, {"model": config, "vocab": vocab})
    best = max(history, key=lambda r: r["valid_bleu"])
    print(f"train_nmt@{cell}: kept step {best['step']}: dev BLEU {best['valid_bleu']:.2f} (greedy), "
          f"valid_loss {best['valid_loss']:.3f}")
