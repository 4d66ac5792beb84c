"""The training machinery: optimizers, schedules, best-checkpoint selection, early stopping."""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pipeline.training import loop, optim, steps


def lr_trace(tx, steps):
    """The update applied to a parameter whose gradient is always 1 (SGD: the rate)."""
    params, state, out = jnp.zeros(()), tx.init(jnp.zeros(())), []
    for _ in range(steps):
        updates, state = tx.update(jnp.ones(()), state, params)
        out.append(-float(updates))
    return out


def test_luong234_halves_four_times_over_the_last_third():
    rates = lr_trace(
        optim.make_optimizer(optim.make_schedule(1.0, "luong234", 120), clip_norm=100.0, optimizer="sgd"), 120
    )
    assert rates[:80] == [1.0] * 80
    assert rates[80:90] == [1.0] * 10 and rates[90:100] == [0.5] * 10
    assert rates[100:110] == [0.25] * 10 and rates[110:] == [0.125] * 10  # the 4th halving lands at step 120
    assert lr_trace(optim.make_optimizer(0.3, 100.0, optimizer="sgd"), 5) == pytest.approx([0.3] * 5)


def test_cosine_decays_to_a_tenth():
    rates = lr_trace(optim.make_optimizer(optim.make_schedule(2.0, "cosine", 100), 100.0, optimizer="sgd"), 101)
    assert rates[0] == pytest.approx(2.0) and rates[50] == pytest.approx(1.1, rel=1e-4)
    assert rates[100] == pytest.approx(0.2) and all(a >= b for a, b in itertools.pairwise(rates))


@pytest.mark.parametrize("schedule", ["warmup_linear", "warmup_cosine"])
def test_warmup_schedules_rise_then_end_at_zero_on_the_last_step(schedule):
    rates = lr_trace(optim.make_optimizer(optim.make_schedule(2.0, schedule, 100, 10), 100.0, optimizer="sgd"), 100)
    assert rates[:10] == pytest.approx([0.2 * (i + 1) for i in range(10)])  # the first update is not at 0
    assert max(rates) == pytest.approx(2.0) and rates[9] == pytest.approx(2.0)
    assert all(a > b for a, b in itertools.pairwise(rates[9:])) and rates[-1] == pytest.approx(0.0)
    assert rates[-2] > 0.0
    midway = rates[9 + 45]  # halfway through the decay: the straight line's middle, the cosine's too
    assert midway == pytest.approx(1.0, abs=0.05)
    quarter = rates[9 + 22]  # the cosine stays higher early and falls faster late
    assert (quarter > 1.55) == (schedule == "warmup_cosine")
    no_warmup = lr_trace(optim.make_optimizer(optim.make_schedule(2.0, schedule, 100), 100.0, optimizer="sgd"), 100)
    assert no_warmup[0] < 2.0 and no_warmup[0] > 1.9 and no_warmup[-1] == pytest.approx(0.0)


def test_clipping_bounds_the_global_norm_and_adam_differs_from_sgd():
    tx = optim.make_optimizer(1.0, clip_norm=0.5, optimizer="sgd")
    grads = {"a": jnp.array([3.0, 4.0])}
    updates, _ = tx.update(grads, tx.init(grads), grads)
    assert float(optax.tree.norm(updates)) == pytest.approx(0.5)
    adam = optim.make_optimizer(1.0, clip_norm=0.5, optimizer="adam")
    updates, _ = adam.update(grads, adam.init(grads), grads)
    assert not np.allclose(updates["a"], [-0.3, -0.4])
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        optim.make_optimizer(1.0, 1.0, optimizer="adagrad")


def scripted_fit(scores, patience):
    """fit on a 1-parameter model whose 'dev score' after each evaluation is scripted."""
    state = steps.create_state(Vector(()), jax.random.key(0), optim.make_optimizer(1.0, 10.0, optimizer="sgd"))

    def step(state, batch, carry, key):  # w counts the steps
        out = {"loss": jnp.float32(0.0), "grad_norm": jnp.float32(1.0), "tokens": jnp.float32(1.0)}
        return state.apply_gradients(grads={"w": -jnp.ones(())}), carry, out

    script = iter(scores)
    options = loop.FitOptions(steps=len(scores) * 10, log_every=10, batch_size=1, select="dev", patience=patience)
    return loop.fit(loop.Job(state, step, itertools.repeat({}), jax.random.key(0), options,
                             evaluate=lambda params: {"dev": next(script)}))


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
    tx = optim.make_optimizer(0.1, clip_norm=100.0, optimizer="rmsprop", rmsprop_decay=0.9, momentum=0.5)
    params = jnp.zeros(())
    state, nu, trace, got, want = tx.init(params), 0.0, 0.0, [], []
    for _ in range(3):
        updates, state = tx.update(jnp.full((), 2.0), state, params)
        nu = 0.9 * nu + 0.1 * 4.0
        trace = 0.5 * trace + 2.0 / (np.sqrt(nu) + 1e-8)
        got.append(float(updates))
        want.append(-0.1 * trace)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def quadratic_loss(params, batch, carry, key, train):
    """(w - x)^2: a NaN or inf in the batch's x makes the loss and gradient non-finite."""
    loss = jnp.sum((params["w"] - batch["x"]) ** 2)
    return loss, (carry, {"sum": loss, "count": jnp.float32(1.0)})


class Vector(nn.Module):
    """A model that is one zero-initialised parameter ``w`` of ``shape``."""

    shape: tuple[int, ...] = (3,)

    @nn.compact
    def __call__(self):
        return self.param("w", nn.initializers.zeros_init(), self.shape)


def quadratic_state():
    return steps.create_state(Vector(), jax.random.key(0), optim.make_optimizer(0.1, 10.0, optimizer="sgd"))


def test_a_non_finite_step_is_skipped_and_counted():
    step = steps.make_train_step(quadratic_loss)
    state = quadratic_state()
    state, _, out = step(state, {"x": jnp.ones(3)}, None, jax.random.key(0))
    before = np.asarray(state.params["w"]), int(state.step)
    assert np.isfinite(float(out["loss"])) and before[1] == 1
    for bad in (jnp.nan, jnp.inf):
        state, _, out = step(state, {"x": jnp.array([1.0, bad, 1.0])}, None, jax.random.key(0))
        assert np.isnan(float(out["loss"])) and np.isnan(float(out["grad_norm"]))
        np.testing.assert_array_equal(state.params["w"], before[0])  # no update, not even partly
        assert int(state.step) == before[1]
    assert int(state.skipped) == 2 and int(state.bad_run) == 2
    state, _, out = step(state, {"x": jnp.ones(3)}, None, jax.random.key(0))
    assert np.isfinite(float(out["loss"])) and int(state.step) == 2
    assert int(state.skipped) == 2 and int(state.bad_run) == 0  # the run resets, the total stays


def test_the_moving_average_follows_the_weights_and_is_what_fit_evaluates_and_returns():
    decay = 0.5
    state = steps.create_state(Vector(), jax.random.key(0), optim.make_optimizer(0.1, 10.0, optimizer="sgd"), ema=True)
    step = steps.make_train_step(quadratic_loss, ema_decay=decay)
    expected = np.zeros(3)
    for x in [jnp.ones(3), jnp.array([1.0, jnp.nan, 1.0]), 2 * jnp.ones(3), 3 * jnp.ones(3)]:
        updates = int(state.step)
        state, _, _ = step(state, {"x": x}, None, jax.random.key(0))
        if int(state.step) > updates:  # a skipped step leaves the average alone too
            d = min(decay, (1 + updates) / (10 + updates))
            expected = d * expected + (1 - d) * np.asarray(state.params["w"])
        np.testing.assert_allclose(np.asarray(state.ema["w"]), expected, rtol=1e-6)
    assert not np.allclose(state.ema["w"], state.params["w"])
    seen = []
    options = loop.FitOptions(steps=4, log_every=2, batch_size=3)
    start = steps.create_state(Vector(), jax.random.key(0), optim.make_optimizer(0.1, 10.0, optimizer="sgd"), ema=True)
    final, _ = loop.fit(loop.Job(start, step, itertools.repeat({"x": jnp.ones(3)}), jax.random.key(0), options,
                                 evaluate=lambda prm: seen.append(np.asarray(prm["w"])) or {}))
    np.testing.assert_array_equal(final.params["w"], final.ema["w"])  # fit hands back the average
    np.testing.assert_array_equal(seen[-1], final.ema["w"])
    off = steps.create_state(Vector(), jax.random.key(0), optim.make_optimizer(0.1, 10.0, optimizer="sgd"))
    assert off.ema is None and off.weights is off.params


def nan_stream(bad_steps):
    for step in itertools.count(1):
        yield {"x": jnp.full(3, jnp.nan if step in bad_steps else 1.0)}


def test_fit_survives_scattered_nans_and_averages_only_finite_losses():
    options = loop.FitOptions(steps=10, log_every=5, batch_size=3, max_nonfinite=3)
    state, history = loop.fit(loop.Job(quadratic_state(), steps.make_train_step(quadratic_loss), nan_stream({2, 5, 6}),
                                       jax.random.key(0), options))
    assert [r["step"] for r in history] == [5, 10]
    assert all(np.isfinite(r["loss"]) for r in history)
    assert int(state.skipped) == 3 and int(state.step) == 7
    assert np.all(np.isfinite(state.params["w"]))


def test_fit_stops_after_too_many_non_finite_steps_in_a_row():
    with pytest.raises(loop.DivergedError) as err:
        options = loop.FitOptions(steps=50, log_every=2, batch_size=3, max_nonfinite=3, desc="train_test@lstm")
        loop.fit(loop.Job(quadratic_state(), steps.make_train_step(quadratic_loss), nan_stream(set(range(4, 100))),
                          jax.random.key(0), options))
    msg = str(err.value)
    assert "train_test@lstm" in msg and "from 4 to step 6 (3 in a row, limit 3" in msg
    assert "learning_rate" in msg


def test_the_train_step_reports_the_gradient_norm_before_clipping_and_the_tokens():
    """(w - x)^2 at w = 0, x = (3, 4, 0): gradient -2x, norm 10, far above clip_norm 0.5."""
    tx = optim.make_optimizer(1.0, clip_norm=0.5, optimizer="sgd")
    state = steps.create_state(Vector(), jax.random.key(0), tx)

    def loss_fn(params, batch, carry, key, train):
        loss = jnp.sum((params["w"] - batch["x"]) ** 2)
        return loss, (carry, {"sum": loss, "count": jnp.float32(7.0)})

    state, _, out = steps.make_train_step(loss_fn)(state, {"x": jnp.array([3.0, 4.0, 0.0])}, None, jax.random.key(0))
    assert float(out["loss"]) == 25.0 and float(out["grad_norm"]) == pytest.approx(10.0)
    assert float(out["tokens"]) == 7.0
    np.testing.assert_allclose(state.params["w"], [0.3, 0.4, 0.0], rtol=1e-6)  # the update was clipped


def test_fit_rows_hold_grad_norm_learning_rate_and_throughput():
    """Rows average the loss and the gradient norm over their steps; lr is the schedule's
    rate for the latest update (luong234 over 40 steps: 1.0 until step 27, then halving)."""
    rate = optim.make_schedule(1.0, "luong234", 40)
    state = steps.create_state(Vector(), jax.random.key(0), optim.make_optimizer(rate, 1e6, optimizer="sgd"))
    stream = ({"x": jnp.array([3.0, 4.0, 0.0]) * (step % 2)} for step in itertools.count(1))

    def loss_fn(params, batch, carry, key, train):  # value sum(x): 7 or 0; gradient x: norm 5 or 0
        wx = jnp.sum(params["w"] * batch["x"])
        loss = wx - jax.lax.stop_gradient(wx) + jnp.sum(batch["x"])
        return loss, (carry, {"sum": loss, "count": jnp.float32(4.0)})

    options = loop.FitOptions(steps=40, log_every=10, batch_size=3)
    _, history = loop.fit(loop.Job(state, steps.make_train_step(loss_fn), stream, jax.random.key(0), options,
                                   evaluate=lambda p: {"valid_x": 1.5}, learning_rate=rate))
    assert [r["step"] for r in history] == [10, 20, 30, 40]
    assert [r["loss"] for r in history] == [3.5] * 4
    assert [r["grad_norm"] for r in history] == [2.5] * 4
    assert [r["lr"] for r in history] == [1.0, 1.0, 0.5, 0.0625]
    assert all(r["tokens_per_s"] > 0 and r["valid_x"] == 1.5 for r in history)


def test_exponential_schedule_is_a_staircase_from_its_start():
    rate = optim.make_schedule(1.0, "exponential", 100, 0, decay_factor=0.98, decay_steps=10, start_decay_step=5)
    assert [float(rate(u)) for u in (0, 5, 14, 15, 24, 25)] == pytest.approx([1.0, 1.0, 1.0, 0.98, 0.98, 0.98 ** 2])
