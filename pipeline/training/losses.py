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


def nmt_loss(model, label_smoothing: float = 0.0, normalize: str = "token", positions: int = 0) -> LossFn:
    """Teacher-forced token cross-entropy; padding beyond ``trg_len`` is masked.

    With ``label_smoothing`` the training loss spreads that much probability mass
    uniformly over the vocabulary; evaluation (``train=False``) always reports the plain
    negative log-likelihood per token, so validation losses stay comparable across settings.
    ``normalize`` says what the training loss is averaged over: ``token`` (every target
    position of the batch) or ``sentence`` (summed over each sentence's tokens, averaged over
    the batch's sentences: tensorflow/nmt's ``reduce_sum(crossent * weights) / batch_size``,
    whose updates are about a sentence's length larger) or ``padded`` (the sum over
    ``batch × positions``: Keras's mean over one-hot targets padded to the longest
    sentence, where a padded position scores 0).
    """
    if normalize not in ("token", "sentence", "padded"):
        raise ValueError(f"unknown loss normalisation {normalize!r}")
    if normalize == "padded" and positions < 1:
        raise ValueError("the padded loss normalisation needs the padded width (positions)")

    def loss_fn(params, batch, carry, key, train):
        trg = batch["trg"]
        logits = model.apply(
            {"params": params}, batch["src"], batch["src_len"], trg[:, :-1], train=train,
            rngs={"dropout": key},
        )
        mask = jnp.arange(trg.shape[1] - 1)[None, :] < batch["trg_len"][:, None]
        stats = masked_xent(logits, trg[:, 1:], mask)
        total = stats["sum"]
        if train and label_smoothing > 0:
            labels = optax.smooth_labels(jax.nn.one_hot(trg[:, 1:], logits.shape[-1]), label_smoothing)
            smoothed = optax.softmax_cross_entropy(logits, labels)
            total = jnp.sum(smoothed * mask)
        if train and normalize == "sentence":
            return total / trg.shape[0], (carry, stats)
        if train and normalize == "padded":
            return total / (trg.shape[0] * positions), (carry, stats)
        return total / jnp.maximum(stats["count"], 1.0), (carry, stats)

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


def forecast_loss(model, loss: str = "mae", l2_reg: float = 0.0, l2_mask: Callable | None = None) -> LossFn:
    """Absolute (``mae``) or squared (``mse``) error in each window's normalised units,
    averaged over every window, horizon and output series; or ``l2_loss``, the seed
    notebook's ``tf.nn.l2_loss`` of the error: half the squared errors' *sum* over the batch.

    Per-window scaling makes targets heavy-tailed (a flat input window followed by a
    jump gives |target| in the hundreds); squared error lets those few windows dominate
    training, absolute error does not, and it is the metric the forecaster is judged by.

    ``l2_reg`` adds ``l2_reg * sum(w ** 2) / 2`` over the parameters that ``l2_mask(params)``
    marks (all when None) to the training loss: the notebook's ``tf.nn.l2_loss``
    regularisation, whose strength is relative to the loss's own scale (unlike
    ``forecast.train.weight_decay``, which the optimizer adds to the gradient). Evaluation
    reports the error alone.
    """
    if loss not in ("mae", "mse", "l2_loss"):
        raise ValueError(f"unknown forecast loss {loss!r}")

    def loss_fn(params, batch, carry, key, train):
        pred = model.apply({"params": params}, batch["inputs"], train=train, rngs={"dropout": key})
        diff = pred - batch["targets"]
        err = jnp.abs(diff) if loss == "mae" else jnp.square(diff)
        stats = {"sum": jnp.sum(err), "count": jnp.asarray(err.size, jnp.float32)}
        if not train:
            return stats["sum"] / stats["count"], (carry, stats)
        value = stats["sum"] / 2 if loss == "l2_loss" else stats["sum"] / stats["count"]
        if l2_reg > 0:
            mask = l2_mask(params) if l2_mask is not None else jax.tree_util.tree_map(lambda _: True, params)
            squares = [jnp.sum(jnp.square(w)) for w, m in zip(jax.tree_util.tree_leaves(params),
                                                              jax.tree_util.tree_leaves(mask), strict=True) if m]
            value = value + l2_reg * sum(squares) / 2
        return value, (carry, stats)

    return loss_fn


