"""Optimisers and learning-rate schedules, built with optax from params.yaml's values."""

from __future__ import annotations

import jax
import optax

BIASES = ("bias", "bi", "bh", "out_bias")  # flax Dense biases; pipeline.models.rnn's gate biases
# never regularised either: the notebook forecaster's output gain (its "Output_ScaleFactor")
UNREGULARISED = (*BIASES, "output_scale")


def weights_only(params):
    """A mask of ``params``: True for weights, False for biases (by parameter name), so
    L2 regularisation leaves the biases alone, as the seed notebook's did."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) not in UNREGULARISED,
                                            params)


def make_schedule(learning_rate: float, schedule: str = "constant", steps: int = 0,
                  warmup_steps: int = 0, decay_factor: float = 1.0, decay_steps: int = 1,
                  start_decay_step: int = 0) -> optax.Schedule:
    """The learning rate as a function of the update count.

    ``exponential`` is tensorflow/nmt's earlier decay (its logged ``decay_factor``,
    ``decay_steps``, ``start_decay_step``): from update ``start_decay_step`` on, the rate is
    multiplied by ``decay_factor`` once every ``decay_steps`` updates (a staircase).

    ``luong234`` is tensorflow/nmt's schedule: the rate halves four times, evenly spaced
    over the last third of ``steps``; ``cosine`` decays it to a tenth by ``steps``.
    ``warmup_linear`` and ``warmup_cosine`` rise linearly from 0 to ``learning_rate``
    over ``warmup_steps`` updates, then fall to 0 at the last of ``steps`` updates, in a
    straight line or a half cosine: a short run ends at a rate of 0 instead of being cut
    on the steep part of its curve (``benchmarks/time_to_quality.py`` measures both).
    """
    if schedule == "luong234":
        start = 2 * steps // 3
        return optax.exponential_decay(learning_rate, transition_steps=max(1, (steps - start) // 4),
                                       decay_rate=0.5, transition_begin=start, staircase=True)
    if schedule == "exponential":
        return optax.exponential_decay(learning_rate, transition_steps=decay_steps, decay_rate=decay_factor,
                                       transition_begin=start_decay_step, staircase=True)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, max(1, steps), alpha=0.1)
    if schedule in ("warmup_linear", "warmup_cosine"):
        # update u (0-based) gets the rate at u + 1: the first update is not wasted at 0,
        # and the last one (u = steps - 1) lands exactly on 0
        decay_steps = max(1, steps - warmup_steps)
        if schedule == "warmup_linear":
            decay = optax.linear_schedule(learning_rate, 0.0, decay_steps)
        else:
            decay = optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=0.0)
        warmup = optax.linear_schedule(0.0, learning_rate, max(1, warmup_steps))
        joined = optax.join_schedules([warmup, decay], [warmup_steps]) if warmup_steps else decay
        return lambda count: joined(count + 1)
    if schedule == "constant":
        return optax.constant_schedule(learning_rate)
    raise ValueError(f"unknown schedule {schedule!r}")


def make_optimizer(
    learning_rate: float | optax.Schedule,
    clip_norm: float,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    rmsprop_decay: float = 0.9,
    momentum: float = 0.0,
    decay: str = "all",
):
    """Global-norm clipping, then Adam, plain SGD or RMSProp, at a constant rate or a
    schedule (:func:`make_schedule`). ``weight_decay`` adds an L2 term to the gradient:
    of every parameter (``decay="all"``) or of the weights alone (``"weights"``, see
    :func:`weights_only`).
    """
    parts = [optax.clip_by_global_norm(clip_norm)]
    if weight_decay > 0:
        parts.append(optax.add_decayed_weights(weight_decay, mask=weights_only if decay == "weights" else None))
    if optimizer == "adam":
        parts.append(optax.adam(learning_rate))
    elif optimizer == "sgd":
        parts.append(optax.sgd(learning_rate))
    elif optimizer == "rmsprop":
        parts.append(optax.rmsprop(learning_rate, decay=rmsprop_decay, momentum=momentum or None))
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    return optax.chain(*parts)


