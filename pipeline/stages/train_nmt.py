"""train_nmt@<cell>: train the seq2seq translator on bucketed batches; keep the best dev BLEU."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pipeline import artifacts
from pipeline.data import batches, tokens
from pipeline.evaluation import heldout, metrics
from pipeline.inference import translator
from pipeline.models import initializers
from pipeline.models.seq2seq import Seq2Seq
from pipeline.models.store import save_model
from pipeline.params import Params, model_kwargs
from pipeline.training import hooks as training_hooks
from pipeline.training import optim, steps
from pipeline.training.loop import FitOptions, Job, fit
from pipeline.training.losses import nmt_loss


def setup(params: Params, cell: str) -> tuple[Job, dict]:
    """The training job for one cell, and the config saved beside its parameters: the
    architecture, the vocabularies and tokenisation, and the buckets and decoding limits
    that :mod:`pipeline.inference.sentences` encodes new sentences with."""
    p, t = params.nmt, params.nmt.train
    prepared = Path(p.paths.prepared)
    vocab = artifacts.read_json(prepared / "vocab.json")
    train_arrays = artifacts.read_npz(prepared / "train.npz")
    valid_arrays = artifacts.read_npz(prepared / "valid.npz")
    config = {"src_vocab": len(vocab["src"]), "trg_vocab": len(vocab["trg"]), **model_kwargs(p.model, cell)}
    model = Seq2Seq(**config)  # params.py has rejected impossible option combinations

    init_key, fit_key = jax.random.split(jax.random.key(t.seed))
    example = batches.crop(train_arrays, np.arange(2), p.data.buckets[0])
    rate = optim.make_schedule(t.learning_rate, t.schedule, t.steps, t.warmup_steps, t.decay_factor, t.decay_steps,
                               t.start_decay_step)
    tx = optim.make_optimizer(rate, t.clip_norm, optimizer=t.optimizer, rmsprop_decay=t.rmsprop_decay)
    example = (example["src"], example["src_len"], example["trg"][:, :-1])
    state = steps.create_state(model, init_key, tx, *example, ema=t.ema_decay > 0,
                               redraw=initializers.scheme(p.model, cell))
    loss_fn = nmt_loss(model, t.label_smoothing, t.loss_normalization, positions=p.data.max_len + 1)
    eval_step = heldout.make_eval_step(loss_fn)
    valid = [b for _, b in batches.eval_batches(valid_arrays, p.data.buckets, p.decode.batch_size)]
    greedy = translator.make_translator(model, p.decode.max_len_factor)
    trg_vocab = tokens.Vocab(tuple(vocab["trg"]))
    refs = [line.split("\t")[1] for line in (prepared / "valid.tsv").read_text("utf-8").splitlines()]

    def evaluate(prm) -> dict[str, float]:
        hyps = translator.translate_all(greedy, prm, valid_arrays, p.data.buckets, p.decode.batch_size,
                                        trg_vocab, vocab["level"])
        held = heldout.scores(eval_step, prm, valid)
        return {"valid_loss": held["loss"], "valid_ppl": held["perplexity"], "valid_acc": held["accuracy"],
                "valid_bleu": float(metrics.bleu_chrf(hyps, [refs])["bleu"])}

    stream = batches.bucket_batches(train_arrays, p.data.buckets, t.batch_size, np.random.default_rng(t.seed),
                                    t.batch_tokens)
    options = FitOptions(steps=t.steps, log_every=t.log_every, batch_size=t.batch_size, desc=f"train_nmt@{cell}",
                         select="valid_bleu", patience=t.patience, max_nonfinite=t.max_nonfinite_steps)
    train_step = steps.make_train_step(loss_fn, ema_decay=t.ema_decay)
    job = Job(state, train_step, stream, fit_key, options, evaluate, learning_rate=rate)
    saved = {"model": config, "vocab": vocab, "buckets": list(p.data.buckets),
             "decode": {"max_len_factor": p.decode.max_len_factor, "batch_size": p.decode.batch_size},
             "kernel": steps.recurrent_kernel(model, state.params, *example)}
    return job, saved


def run(params: Params, cell: str) -> None:
    p = params.nmt
    job, config = setup(params, cell)
    print(f"{job.options.desc}: recurrent kernel {config['kernel']}")
    hooks = training_hooks.for_stage("nmt", p, cell, job.options.desc, config)
    state, history = fit(job, hooks)
    save_model(Path(p.paths.models) / cell, state.params, config)
    best = max(history, key=lambda r: r["valid_bleu"])
    print(f"{job.options.desc}: kept step {best['step']}: dev BLEU {best['valid_bleu']:.2f} (greedy), "
          f"valid_loss {best['valid_loss']:.3f}")
