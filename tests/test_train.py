"""The training machinery: optimizers, schedules, best-checkpoint selection, early stopping."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pipeline import train


def lr_trace(tx, steps):
    """The update applied to a parameter whose gradient is always 1 (SGD: the rate)."""
    params, state, out = jnp.zeros(()), tx.init(jnp.zeros(())), []
    for _ in range(steps):
        updates, state = tx.update(jnp.ones(()), state, params)
        out.append(-float(updates))
    return out


def test_luong234_halves_four_times_over_the_last_third():
    rates = lr_trace(train.make_optimizer(1.0, clip_norm=100.0, optimizer="sgd", schedule="luong234", steps=120), 120)
    assert rates[:80] == [1.0] * 80
    assert rates[80:90] == [1.0] * 10 and rates[90:100] == [0.5] * 10
    assert rates[100:110] == [0.25] * 10 and rates[110:] == [0.125] * 10  # the 4th halving lands at step 120
    assert lr_trace(train.make_optimizer(0.3, 100.0, optimizer="sgd"), 5) == pytest.approx([0.3] * 5)


def test_cosine_decays_to_a_tenth():
    rates = lr_trace(train.make_optimizer(2.0, 100.0, optimizer="sgd", schedule="cosine", steps=100), 101)
    assert rates[0] == pytest.approx(2.0) and rates[50] == pytest.approx(1.1, rel=1e-4)
    assert rates[100] == pytest.approx(0.2) and all(a >= b for a, b in zip(rates, rates[1:]))


def test_clipping_bounds_the_global_norm_and_adam_differs_from_sgd():
    tx = train.make_optimizer(1.0, clip_norm=0.5, optimizer="sgd")
    grads = {"a": jnp.array([3.0, 4.0])}
    updates, _ = tx.update(grads, tx.init(grads), grads)
    assert float(optax.tree.norm(updates)) == pytest.approx(0.5)
    adam = train.make_optimizer(1.0, clip_norm=0.5, optimizer="adam")
    updates, _ = adam.update(grads, adam.init(grads), grads)
    assert not np.allclose(updates["a"], [-0.3, -0.4])
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        train.make_optimizer(1.0, 1.0, optimizer="adagrad")


def scripted_fit(scores, patience):
    """fit on a 1-parameter model whose 'dev score' after each evaluation is scripted."""
    state = train.TrainState.create(apply_fn=None, params={"w": jnp.zeros(())},
                                    tx=train.make_optimizer(1.0, 10.0, optimizer="sgd"))

    def step(state, batch, carry, key):  # w counts the steps
        return state.apply_gradients(grads={"w": -jnp.ones(())}), carry, jnp.float32(0.0)

    script = iter(scores)
    return train.fit(state, step, itertools.repeat({}), steps=len(scores) * 10, key=jax.random.key(0),
                     log_every=10, evaluate=lambda params: {"dev": next(script)}, select="dev",
                     patience=patience)


def test_fit_keeps_the_best_evaluation_not_the_last():
    state, history = scripted_fit([1.0, 3.0, 2.0, 2.5], patience=0)
    assert [r["step"] for r in history] == [10, 20, 30, 40]
    assert float(state.params["w"]) == 20.0  # the parameters as they were at step 20


def test_fit_stops_after_patience_evaluations_without_improvement():
    state, history = scripted_fit([1.0, 3.0, 2.0, 2.5, 4.0, 5.0], patience=2)
    assert [r["step"] for r in history] == [10, 20, 30, 40]
    assert float(state.params["w"]) == 20.0


def test_rmsprop_with_momentum_follows_its_recurrence():
    """RMSProp (decay 0.9, momentum 0.5) on a constant gradient g = 2, by hand."""
    tx = train.make_optimizer(0.1, clip_norm=100.0, optimizer="rmsprop", rmsprop_decay=0.9, momentum=0.5)
    params = jnp.zeros(())
    state, nu, trace, got, want = tx.init(params), 0.0, 0.0, [], []
    for _ in range(3):
        updates, state = tx.update(jnp.full((), 2.0), state, params)
        nu = 0.9 * nu + 0.1 * 4.0
        trace = 0.5 * trace + 2.0 / (np.sqrt(nu) + 1e-8)
        got.append(float(updates))
        want.append(-0.1 * trace)
    np.testing.assert_allclose(got, want, rtol=1e-4)
