"""Jitted inference built from a model and the generic decoders."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pipeline import decode
from pipeline.batches import stream_windows
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries
from pipeline.models.seq2seq import Seq2Seq
from pipeline.text import BOS_ID, EOS_ID, PAD_ID


def make_translator(model: Seq2Seq, max_len_factor: int):
    """``translate(params, src, src_len) -> ids <int32>[batch, factor * src_time]``.

    Greedy; each row stops at ``</s>`` or at ``factor`` times its own source length.
    Compiled once per source bucket width.
    """

    @jax.jit
    def translate(params, src, src_len):
        enc = model.apply({"params": params}, src, src_len, method=Seq2Seq.encode)

        def step(carries, token):
            return model.apply({"params": params}, carries, token, enc, method=Seq2Seq.decode_step)

        first = jnp.full((src.shape[0],), BOS_ID, jnp.int32)
        return decode.greedy(
            step, enc["carries"], first, max_len_factor * src.shape[1], EOS_ID, PAD_ID,
            limit=max_len_factor * src_len,
        )

    return translate


def make_sampler(model: CharLM, length: int, temperature: float, top_k: int):
    """``sample(params, prime_ids <int32>[batch, p], key) -> ids <int32>[batch, length]``.

    The prime is read in one pass; sampling continues from its last character.
    """

    @jax.jit
    def sample(params, prime, key):
        carries = initial_carries(model.cell, model.layers, model.hidden, prime.shape[0])
        if prime.shape[1] > 1:
            carries, _ = model.apply({"params": params}, prime[:, :-1], carries)

        def step(carries, token):
            return model.apply({"params": params}, carries, token, method=CharLM.step)

        return decode.sample(step, carries, prime[:, -1], length, key, temperature, top_k)

    return sample


def stream_loss(eval_step, params, ids: np.ndarray, model: CharLM, batch: int, seq_len: int) -> float:
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
