"""Decoders driven by a fake deterministic step function: no model involved."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.inference import decode

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


@pytest.mark.parametrize(
    "top_p,allowed", [(0.5, {1}), (0.8, {1, 2}), (0.85, {1, 2, 3}), (0.97, {1, 2, 3, 4, 5}), (0.99, {0, 1, 2, 3, 4, 5})]
)
def test_nucleus_keeps_the_smallest_set_reaching_top_p(top_p, allowed):
    # probabilities 0.5, 0.3, 0.1, 0.05, 0.03, 0.02 (ids 1, 2, 3, 4, 5, 0)
    out = decode.sample(noisy_step, None, jnp.zeros(512, jnp.int32), 8, jax.random.key(3), 1.0, 0, top_p)
    assert set(np.unique(np.asarray(out)).tolist()) == allowed


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


# --- beam search -----------------------------------------------------------------------
BOS, A, B = 2, 4, 5
# Greedy's trap: A is likelier first (0.6), but after A the sentence cannot end well,
# while B is followed by </s> almost surely. Rows of TRAP give next-token probabilities.
TRAP = np.full((V, V), 1e-6)
TRAP[BOS, A], TRAP[BOS, B] = 0.6, 0.4
TRAP[A, 6], TRAP[A, 7], TRAP[A, EOS] = 0.35, 0.35, 0.3   # A -> 6|7|</s>
TRAP[6, EOS] = TRAP[7, EOS] = 1.0
TRAP[B, EOS], TRAP[B, 6] = 0.99, 0.01
TRAP[EOS, EOS] = 1.0
TRAP_LOGITS = jnp.log(jnp.asarray(TRAP / TRAP.sum(1, keepdims=True), jnp.float32))


def trap_step(carry, token):
    return carry + 1, TRAP_LOGITS[token]


def test_beam_search_escapes_greedys_trap_golden():
    greedy = decode.greedy(trap_step, jnp.zeros(2), jnp.array([BOS, BOS]), 5, EOS, PAD)
    np.testing.assert_array_equal(greedy[0], [A, 6, EOS, 0, 0])  # 0.6 * 0.35 = 0.21
    ids, score = decode.beam_search(trap_step, jnp.zeros(2), jnp.array([BOS, BOS]), 3, 5, EOS, PAD, alpha=0.0)
    np.testing.assert_array_equal(ids, [[B, EOS, 0, 0, 0]] * 2)  # 0.4 * 0.99 = 0.396
    np.testing.assert_allclose(score, np.log(0.4 * 0.99) * np.ones(2), rtol=1e-4)  # the 1e-6 floor


def test_beam_of_one_is_greedy():
    first = jnp.array([2, 5, 1])
    greedy = decode.greedy(chain_step, jnp.zeros(3), first, 8, EOS, PAD, limit=jnp.array([8, 8, 3]))
    ids, _ = decode.beam_search(chain_step, jnp.zeros(3), first, 1, 8, EOS, PAD, limit=jnp.array([8, 8, 3]))
    np.testing.assert_array_equal(ids, greedy)


def prefix_step(carry, token):
    """Logits that depend on the whole prefix (the carry encodes it), never on the row:
    a beam that reorders carries wrongly gets different scores."""
    carry = carry * 7 + token + 1
    table = jax.random.normal(jax.random.key(42), (97, V)) * 2.0
    logits = table[carry % 97]
    return carry, jnp.where(jnp.isin(jnp.arange(V), jnp.array([PAD, BOS])), -1e9, logits)


def brute_force(max_len, alpha):
    """The best complete hypothesis by exhaustive enumeration (tokens 1, 3..7)."""
    tokens = [t for t in range(V) if t not in (PAD, BOS)]
    best = (-np.inf, None)
    frontier = [((), 0, 0.0)]  # (prefix, carry, logp)
    while frontier:
        prefix, carry, logp = frontier.pop()
        new_carry, logits = prefix_step(jnp.int32(carry), jnp.int32(prefix[-1] if prefix else BOS))
        step = np.asarray(jax.nn.log_softmax(logits))
        for t in tokens:
            seq, total = prefix + (t,), logp + float(step[t])
            if t == EOS or len(seq) == max_len:
                score = total / ((5 + len(seq)) / 6) ** alpha
                best = max(best, (score, seq))
            else:
                frontier.append((seq, int(new_carry), total))
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_wide_enough_beam_finds_the_exhaustive_optimum(alpha):
    max_len = 3  # 6 tokens: 6 + 36 + 216 hypotheses, all inside a beam of 216
    score, seq = brute_force(max_len, alpha)
    ids, got = decode.beam_search(prefix_step, jnp.zeros(1, jnp.int32), jnp.array([BOS]), 216, max_len,
                                  EOS, PAD, alpha=alpha)
    np.testing.assert_array_equal(np.asarray(ids[0])[: len(seq)], seq)
    np.testing.assert_allclose(float(got[0]), score, rtol=1e-5)


def test_beam_rows_are_independent_and_respect_limits():
    first = jnp.array([BOS, BOS, BOS])
    both, _ = decode.beam_search(prefix_step, jnp.zeros(3, jnp.int32), first, 4, 6, EOS, PAD,
                                 limit=jnp.array([6, 2, 6]))
    alone, _ = decode.beam_search(prefix_step, jnp.zeros(1, jnp.int32), first[:1], 4, 6, EOS, PAD)
    np.testing.assert_array_equal(both[0], alone[0])
    np.testing.assert_array_equal(both[0], both[2])
    assert (np.asarray(both[1])[2:] == PAD).all()


def test_beam_search_jits_and_exits_early():
    calls = []

    def step(carry, token):
        jax.debug.callback(lambda: calls.append(1))
        return chain_step(carry, token)

    run = jax.jit(lambda first: decode.beam_search(step, jnp.zeros(2), first, 3, 20, EOS, PAD)[0])
    ids = run(jnp.array([2, 6]))
    jax.effects_barrier()
    np.testing.assert_array_equal(ids[1, :3], [7, EOS, 0])
    assert len(calls) == 5  # the longest row ends after 5 tokens, not max_len = 20
