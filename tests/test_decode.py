"""Decoders driven by a fake deterministic step function: no model involved."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pipeline import decode

V, EOS, PAD = 8, 3, 0
# Next token after each token: 4 -> 5 -> 6 -> 7 -> EOS; BOS (2) -> 4; 1 -> 1 (never ends).
NEXT = jnp.array([0, 1, 4, 3, 5, 6, 7, 3])


def chain_step(carry, token):
    """Counts calls in the carry; logits put all mass on NEXT[token]."""
    logits = jax.nn.one_hot(NEXT[token], V) * 10.0
    return carry + 1, logits


def test_greedy_follows_the_argmax_chain_and_pads_after_eos():
    out = decode.greedy(chain_step, jnp.zeros(()), jnp.array([2, 5]), 8, EOS, PAD)
    np.testing.assert_array_equal(out[0], [4, 5, 6, 7, 3, 0, 0, 0])
    np.testing.assert_array_equal(out[1], [6, 7, 3, 0, 0, 0, 0, 0])


def test_greedy_respects_per_row_limits():
    out = decode.greedy(chain_step, jnp.zeros(()), jnp.array([2, 2]), 8, EOS, PAD, limit=jnp.array([2, 8]))
    np.testing.assert_array_equal(out[0], [4, 5, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out[1], [4, 5, 6, 7, 3, 0, 0, 0])


def test_greedy_exits_once_every_row_is_done():
    """The step function counts its calls in the carry; greedy must stop calling it."""
    calls = []

    def step(carry, token):
        jax.debug.callback(lambda: calls.append(1))
        return chain_step(carry, token)

    out = decode.greedy(step, jnp.zeros(()), jnp.array([2, 6]), 50, EOS, PAD)
    jax.effects_barrier()
    assert int((out[0] != PAD).sum()) == 5
    assert len(calls) == 5  # not 50: the loop ended when the longest row emitted </s>


def test_a_row_that_never_ends_runs_to_max_len():
    never = decode.greedy(chain_step, jnp.zeros(()), jnp.array([1]), 6, EOS, PAD)
    np.testing.assert_array_equal(never[0], [1] * 6)


def test_greedy_is_jittable_with_static_max_len():
    f = jax.jit(lambda first: decode.greedy(chain_step, jnp.zeros(()), first, 6, EOS, PAD))
    np.testing.assert_array_equal(f(jnp.array([2]))[0], [4, 5, 6, 7, 3, 0])


def noisy_step(carry, token):
    """Fixed, token-dependent logits with a clear ranking."""
    table = jnp.log(jnp.array([[0.02, 0.5, 0.3, 0.1, 0.05, 0.03]] * 6))
    return carry, table[token]


def test_top_k_one_and_zero_temperature_are_greedy():
    key = jax.random.key(0)
    for kwargs in ({"temperature": 1.0, "top_k": 1}, {"temperature": 0.0, "top_k": 0}):
        out = decode.sample(noisy_step, None, jnp.zeros(4, jnp.int32), 10, key, **kwargs)
        assert np.all(np.asarray(out) == 1)


def test_top_k_samples_only_the_k_most_likely():
    out = decode.sample(noisy_step, None, jnp.zeros(64, jnp.int32), 20, jax.random.key(1), 1.0, 2)
    assert set(np.unique(np.asarray(out)).tolist()) == {1, 2}


def test_sampling_is_a_function_of_the_key():
    a = decode.sample(noisy_step, None, jnp.zeros(8, jnp.int32), 30, jax.random.key(5), 1.0, 0)
    b = decode.sample(noisy_step, None, jnp.zeros(8, jnp.int32), 30, jax.random.key(5), 1.0, 0)
    c = decode.sample(noisy_step, None, jnp.zeros(8, jnp.int32), 30, jax.random.key(6), 1.0, 0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert a.shape == (8, 30)


def test_low_temperature_concentrates_on_the_mode():
    hot = decode.sample(noisy_step, None, jnp.zeros(256, jnp.int32), 4, jax.random.key(2), 2.0, 0)
    cold = decode.sample(noisy_step, None, jnp.zeros(256, jnp.int32), 4, jax.random.key(2), 0.2, 0)
    assert (np.asarray(cold) == 1).mean() > (np.asarray(hot) == 1).mean() + 0.2
