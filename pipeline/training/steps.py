"""The train state and the jitted train step, with the non-finite guard.

``train_step`` is jitted once per batch shape; the loss (:mod:`pipeline.training.losses`)
and so the configuration are bound by closure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from pipeline.models.rnn import kernels_in
from pipeline.training.losses import LossFn


class TrainState(train_state.TrainState):
    """Flax's train state plus the non-finite guard's counters (int32 scalars, on device):
    ``skipped`` steps in all, and ``bad_run``, the current run of them in a row; and
    ``ema``, an exponential moving average of the parameters (None when off)."""

    skipped: jax.Array
    bad_run: jax.Array
    ema: Any = None

    @property
    def weights(self):
        """The parameters to evaluate, keep and save: the moving average when there is one."""
        return self.params if self.ema is None else self.ema


def create_state(model, key: jax.Array, tx, *example_inputs, ema: bool = False,
                 redraw: Callable[[Any, jax.Array], Any] | None = None) -> TrainState:
    """Initialise parameters from ``key`` by tracing the model on example inputs; with
    ``redraw`` (:func:`pipeline.models.initializers.redraw` with its scheme bound), a
    tutorial's initial weights replace the modules' own, drawn from ``key`` folded; with
    ``ema``, the moving average starts at them (:func:`make_train_step` updates it)."""
    # One compiled program: run op by op, initialisation compiles a hundred one-op
    # programs (3.3 s of the translator's 5.9 s on 2 cores).
    params = _init(model, key, *example_inputs)
    if redraw is not None:
        params = redraw(params, jax.random.fold_in(key, 1))
    # Separate int32 buffers: the train step donates the state (a buffer donated twice
    # fails), and a checkpoint restores into this state's dtypes (the step as a Python
    # int would come back as int64).
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                              skipped=jnp.zeros((), jnp.int32), bad_run=jnp.zeros((), jnp.int32),
                              ema=jax.tree_util.tree_map(jnp.copy, params) if ema else None)
    return state.replace(step=jnp.zeros((), jnp.int32))


def recurrent_kernel(model, params, *example_inputs) -> str:
    """Which recurrent kernels ``model`` runs on here (``onednn``, ``cudnn``, ``scan``,
    joined by ``+``): its forward pass traced on the example inputs, nothing compiled.
    The train stages save it in the model's config, and the metrics' provenance carries it,
    because an LSTM on oneDNN and on the scan give different floats."""
    return kernels_in(jax.make_jaxpr(lambda p, *x: model.apply({"params": p}, *x))(params, *example_inputs))


@functools.partial(jax.jit, static_argnums=0)
def _init(model, key: jax.Array, *example_inputs):
    return model.init({"params": key}, *example_inputs)["params"]


def make_train_step(loss_fn: LossFn, ema_decay: float = 0.0):
    """``train_step(state, batch, carry, key) -> (state, carry, out)``, jitted.

    With ``ema_decay`` (and a state made with ``ema``), each finite step moves
    ``state.ema`` towards the new parameters: ``ema = d * ema + (1 - d) * params`` with
    ``d = min(ema_decay, (1 + t) / (10 + t))`` at update ``t``, so the average does not
    drag the initial weights along early in the run.

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
        keep = lambda new, old: jnp.where(finite, new, old)
        stepped = state.apply_gradients(grads=grads)
        if state.ema is not None:
            t = state.step.astype(jnp.float32)
            d = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
            stepped = stepped.replace(ema=jax.tree_util.tree_map(lambda e, w: d * e + (1.0 - d) * w,
                                                                 state.ema, stepped.params))
        state = jax.tree_util.tree_map(keep, stepped, state)
        state = state.replace(skipped=state.skipped + (~finite).astype(jnp.int32),
                              bad_run=jnp.where(finite, 0, state.bad_run + 1))
        carry = jax.tree_util.tree_map(keep, new_carry, carry)
        out = {"loss": jnp.where(finite, loss, jnp.nan),
               "grad_norm": jnp.where(finite, optax.tree.norm(grads), jnp.nan),
               "tokens": stats["count"]}
        return state, carry, out

    return jax.jit(train_step, donate_argnums=(0,))


