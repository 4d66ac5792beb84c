"""Sampling text from a character LM: the prime in one pass, then one jitted scan."""

from __future__ import annotations

import functools

import jax
import numpy as np

from pipeline.data import tokens
from pipeline.inference import decode
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries


@functools.lru_cache(maxsize=32)
def make_sampler(model: CharLM, length: int, temperature: float, top_k: int, top_p: float = 1.0):
    """``sample(params, prime_ids <int32>[batch, p], key) -> ids <int32>[batch, length]``.

    The prime is read in one pass; sampling continues from its last character. Every
    row of a batch draws its own sample (independent noise per row). Cached, so samples
    drawn again during training reuse one compilation (Flax modules hash by their fields).
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


def texts(model: CharLM, params, chars, prime: str, length: int, temperature: float, top_k: int,
          top_p: float, key: jax.Array, num: int = 1) -> list[str]:
    """``num`` samples of ``length`` characters, each after ``prime``; raises KeyError
    naming a prime character the vocabulary ``chars`` lacks."""
    ids = tokens.encode_chars(prime, chars)
    out = np.asarray(make_sampler(model, length, temperature, top_k, top_p)(params, np.tile(ids, (num, 1)), key))
    return [prime + "".join(chars[i] for i in row) for row in out]
