"""Attention over the encoder's memory, one module per family (JoeyNMT's layout).

Each module maps decoder outputs ``h`` <f32>[batch, time, hidden] to Luong's
attentional vector tanh(W_c [c_t; h_t]), where the context c_t weighs the memory by
softmax-normalised scores:

- :class:`LuongAttention`: ``dot`` (h_t . h_s), ``general`` (h_t . W_a h_s) and
  ``scaled`` (general times a learned scalar g, tensorflow/nmt's ``scaled_luong``);
- :class:`BahdanauAttention`: additive, v . tanh(W_q h_t + W_k h_s);
- :class:`NoAttention` (``none``): the decoder output itself.

``keys(memory)`` is what scores compare against, computed once per source (the
encoder calls it). The options and their rules are
:data:`pipeline.params.Attention` and :func:`pipeline.params.attention_problem`;
:func:`make` builds the module for an option.

The parameters keep their names (``attn_key``, ``attn_combine``, ``attn_scale``,
``attn_query``, ``attn_v``) in the scope of the model that holds the module
(``nn.share_scope``), so model directories written before this module existed load
unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from pipeline.params import attention_problem

NEG_INF = -1e9


def _combine(module: nn.Module, memory_width: int, hidden: int):
    return module.param("attn_combine", nn.initializers.lecun_normal(), (memory_width + hidden, hidden))


def _attentional(scores, h, enc, combine):
    """tanh(W_c [c_t; h_t]) from ``scores`` <f32>[B, T, S], masked to the source length."""
    scores = jnp.where(enc["mask"][:, None, :], scores, NEG_INF)
    context = jnp.einsum("bts,bsd->btd", jax.nn.softmax(scores, axis=-1), enc["memory"])
    return jnp.tanh(jnp.concatenate([context, h], axis=-1) @ combine)


class NoAttention(nn.Module):
    """``none``: no context; the decoder output goes to the output layer as it is."""

    def keys(self, memory):
        return memory

    def __call__(self, h, enc):
        return h


class LuongAttention(nn.Module):
    """Multiplicative scores: ``dot``, ``general`` or ``scaled``."""

    score: str  # dot | general | scaled
    hidden: int
    memory_width: int

    def setup(self):
        if self.score != "dot":
            self.attn_key = nn.Dense(self.hidden, use_bias=False)  # W_a, applied once per source
        self.attn_combine = _combine(self, self.memory_width, self.hidden)
        if self.score == "scaled":
            self.attn_scale = self.param("attn_scale", nn.initializers.ones_init(), ())

    def keys(self, memory):
        return memory if self.score == "dot" else self.attn_key(memory)

    def __call__(self, h, enc):
        scores = jnp.einsum("bth,bsh->bts", h, enc["keys"])
        if self.score == "scaled":
            scores = scores * self.attn_scale
        return _attentional(scores, h, enc, self.attn_combine)


class BahdanauAttention(nn.Module):
    """Additive scores: v . tanh(W_q h_t + W_k h_s)."""

    hidden: int
    memory_width: int

    def setup(self):
        self.attn_key = nn.Dense(self.hidden, use_bias=False)  # W_k, applied once per source
        self.attn_combine = _combine(self, self.memory_width, self.hidden)
        self.attn_query = self.param("attn_query", nn.initializers.lecun_normal(), (self.hidden, self.hidden))
        self.attn_v = self.param("attn_v", nn.initializers.normal(self.hidden**-0.5), (self.hidden,))

    def keys(self, memory):
        return self.attn_key(memory)

    def __call__(self, h, enc):
        q = h @ self.attn_query
        scores = jnp.einsum("btsh,h->bts", jnp.tanh(q[:, :, None, :] + enc["keys"][:, None, :, :]), self.attn_v)
        return _attentional(scores, h, enc, self.attn_combine)


def make(kind: str, hidden: int, memory_width: int, bidirectional: bool = False,
         input_feeding: bool = False) -> nn.Module:
    """The attention module for option ``kind``; ValueError when the setting cannot work."""
    if problem := attention_problem(kind, bidirectional, input_feeding):
        raise ValueError(problem)
    if kind == "none":
        return NoAttention()
    if kind == "bahdanau":
        return BahdanauAttention(hidden, memory_width)
    return LuongAttention(kind, hidden, memory_width)
