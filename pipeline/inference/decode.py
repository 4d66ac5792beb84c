"""Decoders written once against a step function, never against a model.

A step function maps ``(carry, token <int32>[batch]) -> (carry, logits <f32>[batch, V])``.
Models provide one (``Seq2Seq.decode_step``, ``CharLM.step``); tests provide fake,
deterministic ones. Every loop here is a ``lax`` loop, so the whole decode jits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def pick(logits: jax.Array, key: jax.Array, temperature: float, top_k: int, top_p: float = 1.0) -> jax.Array:
    """Sample ids <int32>[batch] from ``logits`` <f32>[batch, V].

    ``temperature == 0`` is arg-max; ``top_k > 0`` keeps only the k most likely ids;
    ``top_p < 1`` keeps the smallest set of most likely ids whose probability reaches
    ``top_p`` (nucleus sampling; the most likely id always stays).
    """
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        ranked = jnp.sort(logits, axis=-1)[:, ::-1]
        before = jnp.cumsum(jax.nn.softmax(ranked, axis=-1), axis=-1) - jax.nn.softmax(ranked, axis=-1)
        # the smallest logit still inside the nucleus: ids ranked where the mass before them < p
        floor = jnp.min(jnp.where(before < top_p, ranked, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < floor, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def sample(
    step_fn: StepFn,
    carry: Any,
    first: jax.Array,
    length: int,
    key: jax.Array,
    temperature: float,
    top_k: int,
    top_p: float = 1.0,
) -> jax.Array:
    """Ancestral sampling for ``length`` steps; returns <int32>[batch, length].

    Step t draws with ``fold_in(key, t)``, so a sample is a pure function of its key.
    """

    def body(state, t):
        carry, prev = state
        carry, logits = step_fn(carry, prev)
        token = pick(logits, jax.random.fold_in(key, t), temperature, top_k, top_p)
        return (carry, token), token

    _, tokens = jax.lax.scan(body, (carry, first.astype(jnp.int32)), jnp.arange(length))
    return tokens.T


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT's ``((5 + length) / 6) ** alpha``; ``alpha == 0`` ranks by total log-probability."""
    return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def beam_search(
    step_fn: StepFn,
    carry: Any,
    first: jax.Array,
    beam_size: int,
    max_len: int,
    eos_id: int,
    pad_id: int,
    alpha: float = 1.0,
    limit: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Beam search with a length penalty, batched, in one ``lax.while_loop``.

    Each row keeps ``beam_size`` hypotheses. At every step each live hypothesis is
    extended by every token; a finished one (it emitted ``eos_id`` or reached its
    ``limit``) stays as it is. The ``beam_size`` best by total log-probability divided
    by :func:`length_penalty` survive. The loop exits once, in every row, no live
    hypothesis can still outscore the best finished one (all finished, at the latest).
    ``carry`` leaves have a leading batch axis; they are tiled to ``batch * beam_size``
    rows and reordered with the surviving hypotheses.

    Returns:
        ``(ids <int32>[batch, max_len], score <f32>[batch])``: the best hypothesis per
        row, ``pad_id`` after its end, and its length-normalised log-probability.
    """
    batch, k = first.shape[0], beam_size
    limit = jnp.full((batch,), max_len, jnp.int32) if limit is None else jnp.minimum(limit, max_len)
    carry = jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0), carry)
    logp = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf)[None], (batch, 1))  # one live start
    state = (
        jnp.int32(0), carry, jnp.repeat(first.astype(jnp.int32), k),
        jnp.full((batch, k, max_len), pad_id, jnp.int32),    # tokens
        logp,                                                # total log-probability
        jnp.zeros((batch, k), jnp.int32),                    # lengths (</s> included)
        jnp.tile((limit <= 0)[:, None], (1, k)),             # finished
    )

    def cond(state):
        t, _, _, _, logp, lengths, done = state
        # A row is settled once no live hypothesis can still beat its best finished one:
        # log-probabilities only fall, so a live one scores at most logp / lp(limit).
        finished = jnp.max(jnp.where(done, logp / length_penalty(lengths, alpha), -jnp.inf), axis=1)
        bound = jnp.max(jnp.where(done, -jnp.inf, logp / length_penalty(limit, alpha)[:, None]), axis=1)
        return (t < max_len) & ~jnp.all(finished >= bound)

    def body(state):
        t, carry, prev, tokens, logp, lengths, done = state
        carry, logits = step_fn(carry, prev)
        vocab = logits.shape[-1]
        step_logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, k, vocab)
        # A finished hypothesis has one continuation, pad, at no cost: it keeps its score.
        frozen = jnp.where(jnp.arange(vocab) == pad_id, 0.0, -jnp.inf)
        step_logp = jnp.where(done[..., None], frozen, step_logp)
        total = logp[..., None] + step_logp                                # [batch, k, vocab]
        new_len = jnp.where(done, lengths, lengths + 1)[..., None]
        ranked = total / length_penalty(jnp.broadcast_to(new_len, total.shape), alpha)
        _, flat = jax.lax.top_k(ranked.reshape(batch, k * vocab), k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        take = lambda x: jnp.take_along_axis(x, parent, axis=1)
        was_done = take(done)
        logp = jnp.take_along_axis(total.reshape(batch, k * vocab), flat, axis=1)
        lengths = jnp.where(was_done, take(lengths), take(lengths) + 1)
        tokens = jnp.take_along_axis(tokens, parent[..., None], axis=1)
        tokens = tokens.at[:, :, t].set(jnp.where(was_done, pad_id, token))
        done = was_done | (token == eos_id) | (t + 1 >= limit[:, None])
        rows = (jnp.arange(batch)[:, None] * k + parent).reshape(-1)
        carry = jax.tree_util.tree_map(lambda x: x[rows], carry)
        return t + 1, carry, token.reshape(-1), tokens, logp, lengths, done

    _, _, _, tokens, logp, lengths, _ = jax.lax.while_loop(cond, body, state)
    score = logp / length_penalty(lengths, alpha)
    best = jnp.argmax(score, axis=1)
    return tokens[jnp.arange(batch), best], score[jnp.arange(batch), best]
