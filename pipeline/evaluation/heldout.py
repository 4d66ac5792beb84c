"""Held-out loss: a jitted evaluation step and exact averages over a whole split.

Used by the train stages (validation rows) and the evaluate stages alike, so a loss
printed during training and the one in ``metrics/`` are computed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from pipeline.data.batches import stream_windows
from pipeline.models.rnn import initial_carries
from pipeline.training.losses import LossFn


def make_eval_step(loss_fn: LossFn):
    """``eval_step(params, batch, carry) -> (carry, stats)``, jitted, no dropout."""

    def eval_step(params, batch, carry):
        _, (carry, stats) = loss_fn(params, batch, carry, jax.random.key(0), False)
        return carry, stats

    return jax.jit(eval_step)


def stream_loss(eval_step, params, ids: np.ndarray, model, batch: int, seq_len: int) -> float:
    """Mean nats/char over one pass of a held-out stream, carrying state across windows."""
    carry = initial_carries(model.cell, model.layers, model.hidden, batch)
    total, count = 0.0, 0.0
    for window in stream_windows(ids, batch, seq_len, epochs=1):
        carry, stats = eval_step(params, window, carry)
        total, count = total + stats["sum"], count + stats["count"]
    return float(total) / float(count)


def scores(eval_step, params, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Exact token averages over batches of unequal padding: the mean ``loss`` (nats per
    target token), its ``perplexity`` (``exp(loss)``, as tensorflow/nmt reports it) and the
    teacher-forced token ``accuracy`` (the Keras seq2seq tutorials' metric) when the loss
    counts ``correct`` tokens. (For a forecaster's errors only ``loss`` means anything.)"""
    total, count, correct = 0.0, 0.0, 0.0
    for batch in batches:
        _, stats = eval_step(params, batch, None)
        total, count, correct = total + stats["sum"], count + stats["count"], correct + stats.get("correct", 0.0)
    loss = float(total) / float(count)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": float(correct) / float(count)}
