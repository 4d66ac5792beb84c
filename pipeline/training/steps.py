"""The train state and the jitted train step, with the non-finite guard.

``train_step`` is jitted once per batch shape; the loss (:mod:`pipeline.training.losses`)
and so the configuration are bound by closure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from pipeline.training.losses import LossFn


class TrainState(train_state.TrainState):
    """Flax's train state plus the non-finite guard's counters (int32 scalars, on device):
    ``skipped`` steps in all, and ``bad_run``, the current run of them in a row."""

    skipped: jax.Array
    bad_run: jax.Array


def create_state(model, key: jax.Array, tx, *example_inputs) -> TrainState:
    """Initialise parameters from ``key`` by tracing the model on example inputs."""
    params = model.init({"params": key}, *example_inputs)["params"]
    # Separate int32 buffers: the train step donates the state (a buffer donated twice
    # fails), and a checkpoint restores into this state's dtypes (the step as a Python
    # int would come back as int64).
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                              skipped=jnp.zeros((), jnp.int32), bad_run=jnp.zeros((), jnp.int32))
    return state.replace(step=jnp.zeros((), jnp.int32))


def make_train_step(loss_fn: LossFn):
    """``train_step(state, batch, carry, key) -> (state, carry, out)``, jitted.

    ``out`` holds the step's ``loss``, the global ``grad_norm`` of its gradient (before
    clipping) and the number of ``tokens`` its loss averages over (target positions).

    A step whose loss or gradient has a NaN or an infinity is skipped: parameters,
    optimizer state, step and carry stay as they were, ``state.skipped`` and
    ``state.bad_run`` count it, and the returned loss and grad_norm are NaN (``fit``
    leaves them out of its averages and stops after too many in a row).
    """

    def train_step(state: TrainState, batch, carry, key):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (new_carry, stats)), grads = grad_fn(state.params, batch, carry, key, True)
        finite = jnp.isfinite(loss)
        for g in jax.tree_util.tree_leaves(grads):
            finite &= jnp.all(jnp.isfinite(g))
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        state = jax.tree_util.tree_map(keep, state.apply_gradients(grads=grads), state)
        state = state.replace(skipped=state.skipped + (~finite).astype(jnp.int32),
                              bad_run=jnp.where(finite, 0, state.bad_run + 1))
        carry = jax.tree_util.tree_map(keep, new_carry, carry)
        out = {"loss": jnp.where(finite, loss, jnp.nan),
               "grad_norm": jnp.where(finite, optax.tree.norm(grads), jnp.nan),
               "tokens": stats["count"]}
        return state, carry, out

    return jax.jit(train_step, donate_argnums=(0,))


