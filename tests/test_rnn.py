"""The recurrent core equals a hand-unrolled loop and the reference flax.linen cells."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.models.rnn import GATES, STEPS, RNNLayer, StackedRNN, scan_layer, zero_carry

B, T, D, H = 3, 7, 5, 6


def random_layer(cell, key):
    k = jax.random.split(key, 4)
    g = GATES[cell] * H
    return {
        "wi": jax.random.normal(k[0], (D, g)) * 0.4,
        "wh": jax.random.normal(k[1], (H, g)) * 0.4,
        "bi": jax.random.normal(k[2], (g,)) * 0.1,
        "bh": jax.random.normal(k[3], (g,)) * 0.1,
    }


def unrolled(cell, p, x, mask, carry, reverse=False):
    """A plain Python loop over time: the reference the scan must match."""
    ys = [None] * x.shape[1]
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in order:
        new, y = STEPS[cell](p["wh"], p["bh"], carry, x[:, t] @ p["wi"] + p["bi"])
        m = mask[:, t][:, None]
        carry = jax.tree_util.tree_map(lambda a, b: jnp.where(m, a, b), new, carry)
        ys[t] = jnp.where(m, y, 0.0)
    return carry, jnp.stack(ys, axis=1)


@pytest.fixture
def inputs():
    x = jax.random.normal(jax.random.key(1), (B, T, D))
    lengths = jnp.array([T, 4, 1])
    mask = jnp.arange(T)[None, :] < lengths[:, None]
    return x, mask, lengths


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_equals_unrolled_loop(cell, reverse, inputs):
    x, mask, _ = inputs
    p = random_layer(cell, jax.random.key(0))
    carry0 = zero_carry(cell, B, H)
    got_c, got_y = scan_layer(cell, p["wh"], p["bh"], carry0, x @ p["wi"] + p["bi"], mask, reverse)
    want_c, want_y = unrolled(cell, p, x, mask, carry0, reverse)
    np.testing.assert_allclose(got_y, want_y, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(got_c), jax.tree_util.tree_leaves(want_c)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_scan_gradient_equals_unrolled_gradient(cell, inputs):
    x, mask, _ = inputs
    p = random_layer(cell, jax.random.key(2))

    def loss(p, fn):
        carry, ys = fn(p)
        return jnp.sum(ys**2) + sum(jnp.sum(c) for c in jax.tree_util.tree_leaves(carry))

    scanned = lambda p: scan_layer(cell, p["wh"], p["bh"], zero_carry(cell, B, H), x @ p["wi"] + p["bi"], mask)  # noqa: E731
    loop = lambda p: unrolled(cell, p, x, mask, zero_carry(cell, B, H))  # noqa: E731
    g1, g2 = jax.grad(loss)(p, scanned), jax.grad(loss)(p, loop)
    for k in p:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-4, atol=1e-5)


def to_ours(cell, ref):
    """Map flax.linen LSTMCell/GRUCell parameters onto our fused layout."""
    names = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}[cell]
    cat = lambda parts: jnp.concatenate(parts, axis=-1)  # noqa: E731
    zeros = jnp.zeros((H,))
    wi = cat([ref["i" + n]["kernel"] for n in names])
    wh = cat([ref["h" + n]["kernel"] for n in names])
    bi = cat([ref["i" + n].get("bias", zeros) for n in names])
    bh = cat([ref["h" + n].get("bias", zeros) for n in names])
    return {"wi": wi, "wh": wh, "bi": bi, "bh": bh}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_matches_flax_reference_cell(cell, inputs):
    x, _, _ = inputs
    ref_cell = nn.LSTMCell(H) if cell == "lstm" else nn.GRUCell(H)
    carry0 = ref_cell.initialize_carry(jax.random.key(0), (B, D))
    ref_params = ref_cell.init(jax.random.key(3), carry0, x[:, 0])["params"]
    ref_params = jax.tree_util.tree_map(lambda a: a + 0.05, ref_params)  # non-zero biases
    carry, ref_ys = carry0, []
    for t in range(T):
        carry, y = ref_cell.apply({"params": ref_params}, carry, x[:, t])
        ref_ys.append(y)
    ours = RNNLayer(cell, H)
    got_carry, got_ys = ours.apply({"params": to_ours(cell, ref_params)}, x)
    np.testing.assert_allclose(got_ys, jnp.stack(ref_ys, 1), atol=1e-5)
    np.testing.assert_allclose(
        jax.tree_util.tree_leaves(got_carry)[-1], jax.tree_util.tree_leaves(carry)[-1], atol=1e-5
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_never_reaches_the_state(cell, inputs):
    """A row's final carry equals running its unpadded prefix alone, both directions."""
    x, mask, lengths = inputs
    layer = RNNLayer(cell, H)
    params = layer.init(jax.random.key(0), x)["params"]
    carry, ys = layer.apply({"params": params}, x, mask)
    rev = RNNLayer(cell, H, reverse=True)
    rcarry, rys = rev.apply({"params": params}, x, mask)
    for row, n in enumerate(lengths.tolist()):
        alone_c, alone_y = layer.apply({"params": params}, x[row : row + 1, :n])
        np.testing.assert_allclose(ys[row, :n], alone_y[0], atol=1e-5)
        assert np.all(ys[row, n:] == 0.0)
        np.testing.assert_allclose(
            jax.tree_util.tree_leaves(carry)[-1][row], jax.tree_util.tree_leaves(alone_c)[-1][0], atol=1e-5
        )
        ralone_c, ralone_y = rev.apply({"params": params}, x[row : row + 1, :n])
        np.testing.assert_allclose(rys[row, :n], ralone_y[0], atol=1e-5)


def test_stacked_bidirectional_shapes_and_carries(inputs):
    x, mask, _ = inputs
    model = StackedRNN("lstm", H, layers=2, dropout=0.0, bidirectional=True)
    variables = model.init(jax.random.key(0), x, mask)
    carries, ys = model.apply(variables, x, mask)
    assert ys.shape == (B, T, 2 * H)
    assert len(carries) == 2 and all(len(c) == 2 for c in carries)
    assert set(variables["params"]) == {"layer0", "layer0_reverse", "layer1", "layer1_reverse"}
    assert variables["params"]["layer1"]["wi"].shape == (2 * H, 4 * H)
