"""Jitted inference built from a model and the generic decoders."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pipeline import decode
from pipeline.batches import eval_batches, stream_windows
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries
from pipeline.models.seq2seq import Seq2Seq
from pipeline.text import BOS_ID, EOS_ID, PAD_ID, Vocab, detokenize


def make_translator(
    model: Seq2Seq,
    max_len_factor: int,
    method: str = "greedy",
    beam_size: int = 5,
    length_penalty: float = 1.0,
    temperature: float = 1.0,
):
    """``translate(params, src, src_len, key) -> ids <int32>[batch, factor * src_time]``.

    ``method`` is ``greedy``, ``beam`` (with GNMT's length penalty) or ``sample``
    (temperature; ``key`` seeds it, the others ignore it). Each row stops at ``</s>`` or
    at ``factor`` times its own source length. Compiled once per source bucket width.
    """
    if method not in ("greedy", "beam", "sample"):
        raise ValueError(f"unknown decoding method {method!r}")

    @jax.jit
    def translate(params, src, src_len, key):
        enc = model.apply({"params": params}, src, src_len, method=Seq2Seq.encode)
        state = enc.pop("state")

        def step(state, token, enc=enc):
            return model.apply({"params": params}, state, token, enc, method=Seq2Seq.decode_step)

        first = jnp.full((src.shape[0],), BOS_ID, jnp.int32)
        max_len, limit = max_len_factor * src.shape[1], max_len_factor * src_len
        if method == "greedy":
            return decode.greedy(step, state, first, max_len, EOS_ID, PAD_ID, limit=limit)
        if method == "sample":
            ids = decode.sample(step, state, first, max_len, key, temperature, 0)
            return jnp.where(jnp.arange(max_len)[None, :] < limit[:, None], ids, PAD_ID)

        # Beams never leave their sentence, so the encoder outputs are tiled once here
        # rather than carried (and reordered) through every step of the search.
        tiled = jax.tree_util.tree_map(lambda x: jnp.repeat(x, beam_size, axis=0), enc)
        ids, _ = decode.beam_search(lambda s, tok: step(s, tok, tiled), state, first, beam_size,
                                    max_len, EOS_ID, PAD_ID, length_penalty, limit=limit)
        return ids

    return translate


def make_sampler(model: CharLM, length: int, temperature: float, top_k: int, top_p: float = 1.0):
    """``sample(params, prime_ids <int32>[batch, p], key) -> ids <int32>[batch, length]``.

    The prime is read in one pass; sampling continues from its last character. Every
    row of a batch draws its own sample (independent noise per row).
    """

    @jax.jit
    def sample(params, prime, key):
        carries = initial_carries(model.cell, model.layers, model.hidden, prime.shape[0])
        if prime.shape[1] > 1:
            carries, _ = model.apply({"params": params}, prime[:, :-1], carries)

        def step(carries, token):
            return model.apply({"params": params}, carries, token, method=CharLM.step)

        return decode.sample(step, carries, prime[:, -1], length, key, temperature, top_k, top_p)

    return sample


def translate_all(translate, params, arrays, buckets, batch_size, trg_vocab: Vocab, level: str,
                  key: jax.Array | None = None) -> list[str]:
    """Detokenised hypotheses for every row of ``arrays``, in the original order."""
    key = jax.random.key(0) if key is None else key
    hyps: list[str] = [""] * len(arrays["src"])
    for i, (rows, batch) in enumerate(eval_batches(arrays, buckets, batch_size)):
        ids = np.asarray(translate(params, batch["src"], batch["src_len"], jax.random.fold_in(key, i)))
        for row, out in zip(rows, ids):
            hyps[row] = detokenize(trg_vocab.decode(out.tolist()), level)
    return hyps


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
