"""The recurrent core: LSTM/GRU layers whose time loop is one ``lax.scan``.

Each layer projects its whole input sequence through the input weights in one matmul
*before* the scan (nothing in it depends on the carry), so the scan body does only the
recurrent matmul and the gate arithmetic. Gates are fused into one weight matrix.

Carries: LSTM ``(c, h)``, GRU ``h``, each <float32>[batch, hidden].
Gate order matches ``flax.linen.LSTMCell`` (i, f, g, o) and ``GRUCell`` (r, z, n), so
the tests can compare against them weight for weight.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Carry = Any
Cell = Literal["lstm", "gru"]
GATES = {"lstm": 4, "gru": 3}


def lstm_step(wh: jax.Array, bh: jax.Array, carry: Carry, xp: jax.Array):
    """One LSTM step on a pre-projected input ``xp`` <f32>[batch, 4*hidden]."""
    c, h = carry
    i, f, g, o = jnp.split(xp + h @ wh + bh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


def gru_step(wh: jax.Array, bh: jax.Array, carry: Carry, xp: jax.Array):
    """One GRU step on a pre-projected input ``xp`` <f32>[batch, 3*hidden].

    The hidden bias must stay separate from the input bias because the reset gate
    multiplies the hidden part of the candidate: n = tanh(x_n + r * (h W_n + b_n)).
    """
    h = carry
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    hr, hz, hn = jnp.split(h @ wh + bh, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = (1.0 - z) * n + z * h
    return h, h


STEPS: dict[str, Callable] = {"lstm": lstm_step, "gru": gru_step}


def zero_carry(cell: Cell, batch: int, hidden: int) -> Carry:
    zeros = jnp.zeros((batch, hidden), jnp.float32)
    return (zeros, zeros) if cell == "lstm" else zeros


def initial_carries(cell: Cell, layers: int, hidden: int, batch: int) -> list[Carry]:
    """Zero carries, one per layer of a unidirectional :class:`StackedRNN`."""
    return [zero_carry(cell, batch, hidden) for _ in range(layers)]


def scan_layer(
    cell: Cell,
    wh: jax.Array,
    bh: jax.Array,
    carry: Carry,
    xp: jax.Array,
    mask: jax.Array,
    reverse: bool = False,
):
    """Run one layer over time.

    Args:
        xp: <f32>[batch, time, gates*hidden] input projections.
        mask: <bool>[batch, time]; where False the carry passes through unchanged and
            the output is zero, so right-padding never touches the state (the reverse
            direction starts from its initial carry at each row's true last token).

    Returns:
        ``(carry, ys)`` with ``ys`` <f32>[batch, time, hidden].
    """
    step = STEPS[cell]

    def body(carry, inputs):
        xp_t, m_t = inputs
        new_carry, y = step(wh, bh, carry, xp_t)
        keep = m_t[:, None]
        carry = jax.tree_util.tree_map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
        return carry, jnp.where(keep, y, 0.0)

    carry, ys = jax.lax.scan(
        body, carry, (jnp.swapaxes(xp, 0, 1), jnp.swapaxes(mask, 0, 1)), reverse=reverse
    )
    return carry, jnp.swapaxes(ys, 0, 1)


class RNNLayer(nn.Module):
    """One recurrent layer over a whole sequence: ``(x, mask, carry) -> (carry, ys)``."""

    cell: Cell
    hidden: int
    reverse: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, carry: Carry | None = None):
        wi, wh, bi, bh = gate_weights(self, self.cell, self.hidden, x.shape[-1])
        if mask is None:
            mask = jnp.ones(x.shape[:2], bool)
        if carry is None:
            carry = zero_carry(self.cell, x.shape[0], self.hidden)
        xp = x @ wi + bi  # hoisted out of the scan: one [B*T, D] x [D, G] matmul
        return scan_layer(self.cell, wh, bh, carry, xp, mask, self.reverse)


def gate_weights(module: nn.Module, cell: Cell, hidden: int, in_dim: int):
    """Declare one layer's fused weights ``(wi, wh, bi, bh)`` on ``module``."""
    g = GATES[cell] * hidden
    return (
        module.param("wi", nn.initializers.lecun_normal(), (in_dim, g)),
        module.param("wh", _stacked_orthogonal(GATES[cell]), (hidden, g)),
        module.param("bi", _gate_bias(cell, hidden), (g,)),
        module.param("bh", nn.initializers.zeros_init(), (g,)),
    )


class LayerWeights(nn.Module):
    """A layer's weights as plain arrays, for loops that call the step functions
    directly (a decoder with input feeding steps through time one token at a time)."""

    cell: Cell
    hidden: int
    in_dim: int

    @nn.compact
    def __call__(self):
        return gate_weights(self, self.cell, self.hidden, self.in_dim)


class StackedRNN(nn.Module):
    """Stacked (optionally bidirectional) layers with dropout between them.

    ``__call__(x, mask, carries, train) -> (carries, ys)``; ``carries`` is a list with one
    carry per layer (per layer a ``(forward, backward)`` pair when bidirectional), and
    ``ys`` is <f32>[batch, time, hidden * (2 if bidirectional else 1)].
    """

    cell: Cell
    hidden: int
    layers: int
    dropout: float = 0.0
    bidirectional: bool = False

    @nn.compact
    def __call__(self, x, mask=None, carries: Sequence[Carry] | None = None, train: bool = False):
        carries = list(carries) if carries is not None else [None] * self.layers
        out_carries = []
        for i in range(self.layers):
            if i > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            fw = RNNLayer(self.cell, self.hidden, name=f"layer{i}")
            if self.bidirectional:
                bw = RNNLayer(self.cell, self.hidden, reverse=True, name=f"layer{i}_reverse")
                c_fw, c_bw = carries[i] if carries[i] is not None else (None, None)
                c_fw, y_fw = fw(x, mask, c_fw)
                c_bw, y_bw = bw(x, mask, c_bw)
                out_carries.append((c_fw, c_bw))
                x = jnp.concatenate([y_fw, y_bw], axis=-1)
            else:
                c, x = fw(x, mask, carries[i])
                out_carries.append(c)
        return out_carries, x


def _gate_bias(cell: Cell, hidden: int):
    """LSTM forget-gate bias starts at 1 so early gradients flow through time."""

    def init(key, shape, dtype=jnp.float32):
        b = jnp.zeros(shape, dtype)
        if cell == "lstm":
            b = b.at[hidden : 2 * hidden].set(1.0)
        return b

    return init


def _stacked_orthogonal(gates: int):
    """An orthogonal block per gate, as each gate's recurrent matrix is square."""

    def init(key, shape, dtype=jnp.float32):
        hidden = shape[0]
        keys = jax.random.split(key, gates)
        blocks = [nn.initializers.orthogonal()(k, (hidden, hidden), dtype) for k in keys]
        return jnp.concatenate(blocks, axis=1)

    return init
