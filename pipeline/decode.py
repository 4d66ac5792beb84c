"""Decoders written once against a step function, never against a model.

A step function maps ``(carry, token <int32>[batch]) -> (carry, logits <f32>[batch, V])``.
Models provide one (``Seq2Seq.decode_step``, ``CharLM.step``); tests provide fake,
deterministic ones. Every loop here is a ``lax`` loop, so the whole decode jits.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

StepFn = Callable[[Any, jax.Array], tuple[Any, jax.Array]]


def greedy(
    step_fn: StepFn,
    carry: Any,
    first: jax.Array,
    max_len: int,
    eos_id: int,
    pad_id: int,
    limit: jax.Array | None = None,
) -> jax.Array:
    """Arg-max decoding until every row has emitted ``eos_id`` or hit its limit.

    Args:
        first: <int32>[batch] the start token fed at step 0.
        max_len: static buffer length (e.g. twice the source bucket width).
        limit: optional <int32>[batch] per-row cap on emitted tokens (``</s>`` included),
            e.g. twice each source's length; a row stops once it reaches it.

    Returns:
        <int32>[batch, max_len]: emitted ids, ``pad_id`` after a row has finished. The
        loop exits early once every row is done.
    """
    batch = first.shape[0]
    limit = jnp.full((batch,), max_len, jnp.int32) if limit is None else jnp.minimum(limit, max_len)
    out = jnp.full((batch, max_len), pad_id, jnp.int32)
    done = limit <= 0

    def cond(state):
        t, _, _, _, done = state
        return (t < max_len) & ~jnp.all(done)

    def body(state):
        t, carry, prev, out, done = state
        carry, logits = step_fn(carry, prev)
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        token = jnp.where(done, pad_id, token)
        out = out.at[:, t].set(token)
        done = done | (token == eos_id) | (t + 1 >= limit)
        return t + 1, carry, token, out, done

    state = (jnp.int32(0), carry, first.astype(jnp.int32), out, done)
    return jax.lax.while_loop(cond, body, state)[3]


def pick(logits: jax.Array, key: jax.Array, temperature: float, top_k: int) -> jax.Array:
    """Sample ids <int32>[batch] from ``logits`` <f32>[batch, V].

    ``temperature == 0`` is arg-max; ``top_k > 0`` keeps only the k most likely ids.
    """
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def sample(
    step_fn: StepFn,
    carry: Any,
    first: jax.Array,
    length: int,
    key: jax.Array,
    temperature: float,
    top_k: int,
) -> jax.Array:
    """Ancestral sampling for ``length`` steps; returns <int32>[batch, length].

    Step t draws with ``fold_in(key, t)``, so a sample is a pure function of its key.
    """

    def body(state, t):
        carry, prev = state
        carry, logits = step_fn(carry, prev)
        token = pick(logits, jax.random.fold_in(key, t), temperature, top_k)
        return (carry, token), token

    _, tokens = jax.lax.scan(body, (carry, first.astype(jnp.int32)), jnp.arange(length))
    return tokens.T
