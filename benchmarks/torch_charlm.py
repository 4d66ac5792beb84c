"""The PyTorch peer of rnnpipe's char LM, for time-to-quality comparisons.

A plain PyTorch 2-layer LSTM character LM (nn.Embedding -> nn.LSTM with dropout between
layers -> dropout -> nn.Linear, PyTorch's default initialisation), trained on rnnpipe's
prepared Tiny Shakespeare (``data/prepared/charlm``: ``{train,valid}.npz`` with key
``ids``, ``vocab.json``) in rnnpipe's configuration:

* truncated BPTT over ``--batch`` parallel streams, windows of ``--seq-len`` in the order
  of ``pipeline.data.batches.stream_windows`` (the carry flows between consecutive
  windows, gradients stop at the window edge, and the carry restarts at zero on each
  epoch's first window);
* global-norm gradient clipping then Adam (optax's defaults: b1 0.9, b2 0.999, eps 1e-8),
  the rate of update ``u`` (0-based) being ``pipeline.training.optim.make_schedule``'s
  value at ``u`` (``constant``, ``cosine``, ``luong234``, ``warmup_linear``,
  ``warmup_cosine``, with the warmup schedules' ``u + 1`` convention);
* a step whose loss or gradient is not finite is skipped (no update, carry kept), as
  rnnpipe's train step does; ``--max-nonfinite`` of them in a row stop the run;
* validation nats/char as ``pipeline.evaluation.heldout.stream_loss``: one pass over the
  held-out ids laid out as the same streams and windows, the carry carried across
  windows from zero, no dropout, the mean over every predicted character.

It imports neither jax nor ``pipeline`` (it runs in any environment with torch and
numpy); those pieces of logic are re-stated here. Usage::

    python benchmarks/torch_charlm.py --prepared data/prepared/charlm --steps 500 \\
        --eval-every 100 --lr 0.004 --schedule constant --warmup-steps 0 --batch 32 \\
        --seq-len 64 --embed 64 --hidden 256 --layers 2 --dropout 0.1 --clip 5.0 \\
        --seed 0 --threads 2 --out rows.json

Each row's ``seconds`` is wall-clock time since ``--clock-start`` (benchmarks/time_to_quality.py
passes its spawn time, so the interpreter's start and torch's import count, as rnnpipe's
imports and compilation do) or else since the first training step, evaluation included.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

SCHEDULES = ("constant", "cosine", "luong234", "warmup_linear", "warmup_cosine")


# -- rnnpipe's data layout (pipeline.data.batches) ----------------------------------------


def stream_layout(ids: np.ndarray, batch: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``inputs``, ``targets`` [windows, batch, seq_len]: row ``b`` of window ``w`` continues
    row ``b`` of window ``w - 1``; targets are one character ahead of inputs."""
    windows = (len(ids) - 1) // (batch * seq_len)
    if windows < 1:
        raise ValueError(f"{len(ids)} tokens are too few for {batch} streams of {seq_len} steps")
    n = windows * batch * seq_len
    x = ids[:n].reshape(batch, windows, seq_len)
    y = ids[1 : n + 1].reshape(batch, windows, seq_len)
    return x.transpose(1, 0, 2), y.transpose(1, 0, 2)


def passes(inputs, targets, epochs: int | None = None) -> Iterator[tuple[object, object, bool]]:
    """``(inputs[w], targets[w], reset)`` for consecutive windows of a layout, ``epochs``
    passes (None: endless); ``reset`` is True on each pass's first window."""
    epoch = 0
    while epochs is None or epoch < epochs:
        for w in range(len(inputs)):
            yield inputs[w], targets[w], w == 0
        epoch += 1


def stream_windows(ids: np.ndarray, batch: int, seq_len: int,
                   epochs: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """rnnpipe's ``stream_windows`` as ``(inputs, targets, reset)`` tuples."""
    return passes(*stream_layout(ids, batch, seq_len), epochs)


# -- rnnpipe's learning-rate schedules (pipeline.training.optim.make_schedule) -------------


def _linear(init: float, end: float, transition: int) -> Callable[[int], float]:
    if transition <= 0:
        return lambda count: init
    return lambda count: (init - end) * (1.0 - min(max(count, 0), transition) / transition) + end


def _cosine(init: float, decay_steps: int, alpha: float) -> Callable[[int], float]:
    def rate(count):
        count = min(count, decay_steps)
        return init * ((1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * count / decay_steps)) + alpha)

    return rate


def make_schedule(lr: float, schedule: str, steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """The rate of update ``count`` (0-based: how many updates came before it)."""
    if schedule == "constant":
        return lambda count: lr
    if schedule == "cosine":  # to a tenth by ``steps``
        return _cosine(lr, max(1, steps), 0.1)
    if schedule == "luong234":  # halves four times over the last third
        start = 2 * steps // 3
        every = max(1, (steps - start) // 4)
        return lambda count: lr if count - start <= 0 else lr * 0.5 ** math.floor((count - start) / every)
    if schedule in ("warmup_linear", "warmup_cosine"):
        decay_steps = max(1, steps - warmup_steps)
        decay = _linear(lr, 0.0, decay_steps) if schedule == "warmup_linear" else _cosine(lr, decay_steps, 0.0)
        warmup = _linear(0.0, lr, max(1, warmup_steps))
        if warmup_steps:
            joined = lambda c: warmup(c) if c < warmup_steps else decay(c - warmup_steps)
        else:
            joined = decay
        return lambda count: joined(count + 1)  # update u gets the rate at u + 1 (rnnpipe's convention)
    raise ValueError(f"unknown schedule {schedule!r}")


# -- the model ------------------------------------------------------------------------------


class CharLSTM(torch.nn.Module):
    """Embedding -> stacked LSTM (dropout between layers) -> dropout -> Linear to the vocabulary."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.embedding = torch.nn.Embedding(vocab, embed)
        self.rnn = torch.nn.LSTM(embed, hidden, num_layers=layers, batch_first=True,
                                 dropout=dropout if layers > 1 else 0.0)
        self.drop = torch.nn.Dropout(dropout)
        self.project = torch.nn.Linear(hidden, vocab)

    def zero_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(self.layers, batch, self.hidden)
        return zeros, zeros.clone()

    def forward(self, tokens: torch.Tensor, state):
        y, state = self.rnn(self.embedding(tokens), state)
        return self.project(self.drop(y)), state


def _tensors(ids: np.ndarray, batch: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = stream_layout(ids, batch, seq_len)
    return torch.from_numpy(np.ascontiguousarray(x, np.int64)), torch.from_numpy(np.ascontiguousarray(y, np.int64))


@torch.no_grad()
def stream_loss(model: CharLSTM, ids: np.ndarray, batch: int, seq_len: int) -> float:
    """Mean nats/char over one pass of a held-out stream, carrying state across windows."""
    was_training = model.training
    model.eval()
    inputs, targets = _tensors(ids, batch, seq_len)
    state, total, count = model.zero_state(batch), 0.0, 0
    for x, y, reset in passes(inputs, targets, epochs=1):
        if reset:
            state = model.zero_state(batch)
        logits, state = model(x, state)
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


def global_norm(grads: list[torch.Tensor]) -> float:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()


def clip_by_global_norm(grads: list[torch.Tensor], norm: float, max_norm: float) -> None:
    """optax.clip_by_global_norm: scale by ``max_norm / norm`` unless ``norm < max_norm``
    (no epsilon, unlike torch.nn.utils.clip_grad_norm_)."""
    if not norm < max_norm:
        for g in grads:
            g.mul_(max_norm / norm)


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(os.path.join(args.prepared, "vocab.json")) as f:
        vocab = len(json.load(f)["chars"])
    with np.load(os.path.join(args.prepared, "train.npz")) as data:
        train_ids = data["ids"]
    with np.load(os.path.join(args.prepared, "valid.npz")) as data:
        valid_ids = data["ids"]

    model = CharLSTM(vocab, args.embed, args.hidden, args.layers, args.dropout)
    model.train()
    params = [p for p in model.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    rate = make_schedule(args.lr, args.schedule, args.steps, args.warmup_steps)
    batches = passes(*_tensors(train_ids, args.batch, args.seq_len))  # endless, as the JAX side

    rows: list[dict] = []
    state = model.zero_state(args.batch)
    updates, bad_run = 0, 0
    start = time.perf_counter() - (time.time() - args.clock_start if args.clock_start is not None else 0.0)
    for step in range(1, args.steps + 1):
        x, y, reset = next(batches)
        if reset:  # an epoch's first window: the carry restarts at zero
            state = model.zero_state(args.batch)
        logits, new_state = model(x, state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in params]
        norm = global_norm(grads)
        if math.isfinite(loss.item()) and math.isfinite(norm):
            clip_by_global_norm(grads, norm, args.clip)
            for group in opt.param_groups:
                group["lr"] = rate(updates)
            opt.step()
            updates += 1
            bad_run = 0
            state = tuple(s.detach() for s in new_state)
        else:  # rnnpipe's guard: no update, the carry stays as it was
            bad_run += 1
            if bad_run >= args.max_nonfinite:
                raise RuntimeError(f"{bad_run} non-finite steps in a row at step {step}")
        if (args.eval_every and step % args.eval_every == 0) or step == args.steps:
            valid = stream_loss(model, valid_ids, args.batch, args.seq_len)
            seconds = time.perf_counter() - start
            rows.append({"step": step, "seconds": seconds, "valid_loss": valid})
            print(f"torch_charlm step {step}/{args.steps}: valid_loss {valid:.4f} nats/char, "
                  f"train loss {loss.item():.4f}, lr {rate(max(updates - 1, 0)):.6g}, {seconds:.1f}s", flush=True)
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows,
            "config": {k: v for k, v in vars(args).items() if k not in ("out",)}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", default="data/prepared/charlm", help="folder with {train,valid}.npz and vocab.json")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100, help="validation every this many steps (0: only at the end)")
    p.add_argument("--lr", type=float, default=0.004)
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--batch", type=int, default=32, help="parallel streams")
    p.add_argument("--seq-len", type=int, default=64, help="truncated-BPTT window")
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=5.0, help="global gradient norm")
    p.add_argument("--max-nonfinite", type=int, default=20, help="non-finite steps in a row that stop the run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help="JSON file for the rows")
    p.add_argument("--clock-start", type=float, default=None,
                   help="time.time() at which the clock starts (the caller's spawn time, so imports and data "
                        "loading count, as they do for rnnpipe); default: the first training step")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    result = train(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
