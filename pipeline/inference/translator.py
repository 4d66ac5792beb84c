"""Translation: encoded sources in, detokenised hypotheses out.

:func:`make_translator` builds the jitted decoder (greedy, beam or sampling) for a
:class:`pipeline.models.seq2seq.Seq2Seq`; :func:`translate_all` batches encoded sources
by length bucket (:func:`pipeline.data.batches.eval_batches`) and decodes them all.
``train_nmt`` (dev BLEU), ``evaluate_nmt`` and, through
:mod:`pipeline.inference.sentences`, ``rnnpipe translate`` all go through it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pipeline.data.batches import eval_batches
from pipeline.data.tokens import BOS_ID, EOS_ID, PAD_ID, Vocab, detokenize
from pipeline.inference import decode
from pipeline.models.seq2seq import Seq2Seq


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


def translate_all(translate, params, arrays, buckets, batch_size, trg_vocab: Vocab, level: str,
                  key: jax.Array | None = None) -> list[str]:
    """Detokenised hypotheses for every row of ``arrays``, in the original order, batched
    by ``buckets``; a row of length 0 (an empty sentence) stays empty."""
    key = jax.random.key(0) if key is None else key
    hyps: list[str] = [""] * len(arrays["src"])
    for i, (rows, batch) in enumerate(eval_batches(arrays, buckets, batch_size)):
        ids = np.asarray(translate(params, batch["src"], batch["src_len"], jax.random.fold_in(key, i)))
        for row, out in zip(rows, ids, strict=False):  # ids has padding rows past the last real one
            hyps[row] = detokenize(trg_vocab.decode(out.tolist()), level)
    return hyps
