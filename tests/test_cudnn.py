"""Our fused LSTM weights and cuDNN's packed ones: the same outputs and gradients, on the CPU.

cuDNN itself needs a GPU; ``jax.experimental.rnn.lstm_ref`` is its reference
implementation (the layout and arithmetic the cuDNN call follows), and runs anywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jrnn

from pipeline.models import cudnn
from pipeline.models.rnn import StackedRNN

BATCH, TIME, IN, HIDDEN = 3, 7, 5, 8


def reference(weights, x, h0, c0, layers, bidirectional):
    w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, IN, HIDDEN, layers, bidirectional)
    lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
    return jrnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, IN, HIDDEN, layers, 0.0, bidirectional)


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, False), (2, True)])
def test_converted_weights_give_the_same_outputs_and_gradients(layers, bidirectional):
    model = StackedRNN("lstm", HIDDEN, layers, bidirectional=bidirectional, kernel="scan")
    kx, kp, kc, kr = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (BATCH, TIME, IN))
    params = model.init(kp, x)["params"]
    directions = 2 if bidirectional else 1
    # a non-zero initial state, so that the carry's layout is checked too
    state = jax.random.normal(kc, (2, layers * directions, BATCH, HIDDEN))
    ours_carries = []
    for i in range(layers):
        pairs = [(state[1, i * directions + d], state[0, i * directions + d]) for d in range(directions)]
        ours_carries.append(tuple(pairs) if bidirectional else pairs[0])
    h0, c0 = cudnn.carries(ours_carries, bidirectional)
    np.testing.assert_array_equal(h0, state[0])
    np.testing.assert_array_equal(c0, state[1])
    weights = cudnn.to_cudnn(params, layers, bidirectional)
    assert weights.shape == (jrnn.get_num_params_in_lstm(IN, HIDDEN, layers, bidirectional),)

    carries_out, ys = model.apply({"params": params}, x, carries=ours_carries)
    y_ref, h_n, c_n = reference(weights, x, h0, c0, layers, bidirectional)
    np.testing.assert_allclose(ys, y_ref, rtol=1e-5, atol=1e-5)
    h_ours, c_ours = cudnn.carries(carries_out, bidirectional)
    np.testing.assert_allclose(h_ours, h_n, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_ours, c_n, rtol=1e-5, atol=1e-5)

    probe = jax.random.normal(kr, ys.shape)  # a random linear loss of the outputs

    def ours(p):
        return jnp.sum(model.apply({"params": p}, x, carries=ours_carries)[1] * probe)

    def theirs(p):  # through the conversion: the packed vector's gradient reaches our parameters
        return jnp.sum(reference(cudnn.to_cudnn(p, layers, bidirectional), x, h0, c0, layers, bidirectional)[0]
                       * probe)

    g_ours, g_theirs = jax.grad(ours)(params), jax.grad(theirs)(params)
    for a, b in zip(jax.tree_util.tree_leaves(g_ours), jax.tree_util.tree_leaves(g_theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (3, True)])
def test_the_conversion_round_trips_exactly(layers, bidirectional):
    model = StackedRNN("lstm", HIDDEN, layers, bidirectional=bidirectional, kernel="scan")
    params = model.init(jax.random.key(1), jnp.zeros((1, 2, IN)))["params"]
    back = cudnn.from_cudnn(cudnn.to_cudnn(params, layers, bidirectional), IN, HIDDEN, layers, bidirectional)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(jax.tree_util.tree_map(
        lambda a: a, dict(params)))
    for a, b in zip(jax.tree_util.tree_leaves(dict(params)), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(a, b)


def test_a_vector_of_the_wrong_size_is_named():
    size = jrnn.get_num_params_in_lstm(IN, HIDDEN, 2, False)  # cuDNN's own count: 1056
    with pytest.raises(ValueError, match=rf"2 layer\(s\), input 5, hidden 8 has {size} weights, not \(7,\)"):
        cudnn.from_cudnn(jnp.zeros(7), IN, HIDDEN, 2, False)
