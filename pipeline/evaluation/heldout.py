"""Held-out loss: a jitted evaluation step and exact averages over a whole split.

Used by the train stages (validation rows) and the evaluate stages alike, so a loss
printed during training and the one in ``metrics/`` are computed the same way.
"""

from __future__ import annotations

from typing import Any, Sequence

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


def mean_loss(eval_step, params, batches: Sequence[dict[str, Any]]) -> float:
    """Exact mean loss over batches of unequal padding."""
    total, count = 0.0, 0.0
    for batch in batches:
        _, stats = eval_step(params, batch, None)
        total, count = total + stats["sum"], count + stats["count"]
    return float(total) / float(count)
