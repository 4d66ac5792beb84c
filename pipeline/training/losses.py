"""The three workloads' losses, one signature everywhere::

    loss_fn(params, batch, carry, key, train) -> (mean_loss, (carry, stats))

``carry`` is the recurrent state carried between batches (the char LM's truncated BPTT)
or ``None``; ``stats`` holds the loss ``sum`` and the ``count`` it is averaged over, so
evaluation can average exactly across batches of unequal padding
(:mod:`pipeline.evaluation.heldout`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from pipeline.models.rnn import initial_carries

LossFn = Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]


def masked_xent(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Summed cross-entropy over positions where ``mask`` is True, their ``count``, and how
    many of them the top logit predicts (``correct``: teacher-forced token accuracy).

    Args:
        logits: <f32>[batch, time, vocab]; targets: <int32>[batch, time];
        mask: <bool>[batch, time].
    """
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    mask = mask.astype(nll.dtype)
    hits = (jnp.argmax(logits, -1) == targets).astype(nll.dtype)
    return {"sum": jnp.sum(nll * mask), "count": jnp.sum(mask), "correct": jnp.sum(hits * mask)}


def nmt_loss(model, label_smoothing: float = 0.0) -> LossFn:
    """Teacher-forced token cross-entropy; padding beyond ``trg_len`` is masked.

    With ``label_smoothing`` the training loss spreads that much probability mass
    uniformly over the vocabulary; evaluation (``train=False``) always reports the plain
    negative log-likelihood, so validation losses stay comparable across settings.
    """

    def loss_fn(params, batch, carry, key, train):
        trg = batch["trg"]
        logits = model.apply(
            {"params": params}, batch["src"], batch["src_len"], trg[:, :-1], train=train,
            rngs={"dropout": key},
        )
        mask = jnp.arange(trg.shape[1] - 1)[None, :] < batch["trg_len"][:, None]
        stats = masked_xent(logits, trg[:, 1:], mask)
        if train and label_smoothing > 0:
            labels = optax.smooth_labels(jax.nn.one_hot(trg[:, 1:], logits.shape[-1]), label_smoothing)
            smoothed = optax.softmax_cross_entropy(logits, labels)
            total = jnp.sum(smoothed * mask)
            return total / jnp.maximum(stats["count"], 1.0), (carry, stats)
        return stats["sum"] / jnp.maximum(stats["count"], 1.0), (carry, stats)

    return loss_fn


def charlm_loss(model) -> LossFn:
    """Next-character cross-entropy; the carry continues from the previous window.

    ``batch["reset"]`` (a scalar bool) zeroes the carry at an epoch boundary. The
    returned carry is cut from the graph: gradients stop at the window edge.
    """

    def loss_fn(params, batch, carry, key, train):
        zeros = initial_carries(model.cell, model.layers, model.hidden, batch["inputs"].shape[0])
        carry = jax.tree_util.tree_map(
            lambda z, c: jnp.where(batch["reset"], z, c), zeros, carry
        )
        carry, logits = model.apply(
            {"params": params}, batch["inputs"], carry, train=train, rngs={"dropout": key}
        )
        stats = masked_xent(logits, batch["targets"], jnp.ones(batch["targets"].shape, bool))
        carry = jax.lax.stop_gradient(carry)
        return stats["sum"] / stats["count"], (carry, stats)

    return loss_fn


def forecast_loss(model, loss: str = "mae") -> LossFn:
    """Mean absolute (``mae``) or squared (``mse``) error in each window's normalised units,
    over every horizon and output series.

    Per-window scaling makes targets heavy-tailed (a flat input window followed by a
    jump gives |target| in the hundreds); squared error lets those few windows dominate
    training, absolute error does not, and it is the metric the forecaster is judged by.
    ``mse`` is the seed notebook's L2 loss.
    """
    if loss not in ("mae", "mse"):
        raise ValueError(f"unknown forecast loss {loss!r}")

    def loss_fn(params, batch, carry, key, train):
        pred = model.apply({"params": params}, batch["inputs"], train=train, rngs={"dropout": key})
        diff = pred - batch["targets"]
        err = jnp.abs(diff) if loss == "mae" else jnp.square(diff)
        stats = {"sum": jnp.sum(err), "count": jnp.asarray(err.size, jnp.float32)}
        return stats["sum"] / stats["count"], (carry, stats)

    return loss_fn


