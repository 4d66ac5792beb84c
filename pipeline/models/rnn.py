"""The recurrent core: LSTM/GRU layers whose time loop is one ``lax.scan``.

What makes it fast (benchmarks/rnn_speed.py measures it against plain Flax and PyTorch):

- each layer projects its whole input sequence through the input weights in one matmul
  *before* the scan (nothing in it depends on the carry), and the gates are fused into
  one weight matrix, so the scan body does one recurrent matmul and the gate arithmetic;
- the loop runs time-major (``[time, batch, ...]``): a step reads and writes contiguous
  memory, and a stack of layers transposes once, not per layer;
- every gate nonlinearity is a ``tanh`` (a sigmoid is ``0.5 * tanh(x / 2) + 0.5``; the
  halving is folded into the weights before the loop), so the step body is one matmul
  and a handful of fused elementwise kernels;
- :func:`recurrence` has a custom VJP. The backward scan does only the recurrent matmul
  and the few elementwise kernels that depend on the carry; the gate derivatives are
  computed before it over all steps at once, and the recurrent weight gradient *after*
  it as one ``[hidden, time*batch] x [time*batch, gates]`` matmul instead of ``time``
  small ones;
- the loop bodies stay within XLA:CPU's budget for running a loop body in order on one
  thread (8 kernels): a step's outputs that do not feed the next step (the outputs
  ``h``, the gate activations) are computed outside the loop over all steps at once, and
  the inputs arrive split per gate, because a loop fusion that slices its step of a
  gate slab runs several times slower (``benchmarks/step_cost.py`` measures both);
- without padding (``mask=None``: the char LM, the forecaster, the NMT decoder) the step
  has no selects at all.

LSTM layers can instead run on oneDNN's fused LSTM (``kernel``, :func:`use_onednn`):
the primitive PyTorch's ``nn.LSTM`` runs on the CPU, called through XLA's FFI
(:mod:`pipeline.kernels.onednn`); or, on an NVIDIA GPU, on cuDNN's (:func:`use_cudnn`,
:mod:`pipeline.models.cudnn`), what PyTorch's ``nn.LSTM`` runs there. The parameters are
the same on every path, so one checkpoint runs on any of them.

``unroll=1``: unrolling 2 or 4 steps measured no faster on CPU (char-LM S, 2 cores).

Carries: LSTM ``(c, h)``, GRU ``h``, each <float32>[batch, hidden].
Gate order matches ``flax.linen.LSTMCell`` (i, f, g, o) and ``GRUCell`` (r, z, n), so
the tests compare against them weight for weight. :func:`lstm_step`/:func:`gru_step`
are the textbook single steps: the reference the core is tested against, and what the
input-feeding decoder, which must step through time itself, calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp

from pipeline.models import cudnn
from pipeline.params import Cell, Kernel, Precision  # the option lists, owned by the params schema

Carry = Any
GATES = {"lstm": 4, "gru": 3}
UNROLL = 1


def matmul(a: jax.Array, b: jax.Array, precision: Precision = "float32") -> jax.Array:
    """``a @ b``; with ``bfloat16`` the operands are cast to bf16 and the products are
    accumulated and returned in float32 (what accelerators' matrix units do fast)."""
    if precision == "float32":
        return a @ b
    return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def lstm_step(wh: jax.Array, bh: jax.Array, carry: Carry, xp: jax.Array, precision: Precision = "float32"):
    """One LSTM step on a pre-projected input ``xp`` <f32>[batch, 4*hidden]."""
    c, h = carry
    i, f, g, o = jnp.split(xp + matmul(h, wh, precision) + bh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


def gru_step(wh: jax.Array, bh: jax.Array, carry: Carry, xp: jax.Array, precision: Precision = "float32"):
    """One GRU step on a pre-projected input ``xp`` <f32>[batch, 3*hidden].

    The hidden bias must stay separate from the input bias because the reset gate
    multiplies the hidden part of the candidate: n = tanh(x_n + r * (h W_n + b_n)).
    """
    h = carry
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    hr, hz, hn = jnp.split(matmul(h, wh, precision) + bh, 3, axis=-1)
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


# -- the kernel choice -------------------------------------------------------------------

_warned: set[str] = set()
_KERNEL_NAMES = ("onednn", "cudnn", "scan")


def kernels_in(jaxpr: Any) -> str:
    """The recurrent kernels a traced program runs, read off its (closed) jaxpr:
    ``onednn`` (the fused LSTM's custom call), ``cudnn`` (``jax.experimental.rnn``'s) and
    ``scan`` (the models' only scans are their recurrences), joined by ``+``; ``none``
    where it has no recurrence. What ``kernel: auto`` chose, after any fallback."""
    found: set[str] = set()

    def walk(j) -> None:
        for eqn in j.eqns:
            name = eqn.primitive.name
            if name == "ffi_call" and str(eqn.params.get("target_name", "")).startswith("rnnpipe_lstm_onednn"):
                found.add("onednn")
            elif name == "rnn":
                found.add("cudnn")
            elif name == "scan":
                found.add("scan")
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(getattr(jaxpr, "jaxpr", jaxpr))
    return "+".join(k for k in _KERNEL_NAMES if k in found) or "none"


def use_onednn(kernel: Kernel, cell: Cell, padded: bool, precision: Precision) -> bool:
    """Whether a layer runs on oneDNN's fused LSTM (:mod:`pipeline.kernels.onednn`).

    Only an LSTM layer without padding (``mask=None``) in float32 can. ``kernel``:
    ``scan`` never; ``onednn`` always when it can, and an error if the kernel cannot run
    here; ``auto`` when the kernel can run and there is a single CPU device (XLA's
    partitioner cannot split a custom call across devices, so a data-parallel run
    keeps the scan), else the scan, with one warning if the CPU kernel failed to load.
    """
    if kernel not in get_args(Kernel):
        raise ValueError(f"kernel must be one of {', '.join(get_args(Kernel))}, got {kernel!r}")
    if kernel in ("scan", "cudnn") or cell != "lstm" or padded or precision != "float32":
        return False
    from pipeline.kernels import onednn

    why = onednn.unavailable()
    if kernel == "onednn":
        if why:
            raise onednn.Unavailable(f"kernel 'onednn' cannot run here: {why}")
        return True
    if why and jax.default_backend() == "cpu" and why not in _warned:
        _warned.add(why)
        warnings.warn(f"LSTM layers use the scan: the oneDNN kernel is unavailable ({why})", stacklevel=2)
    return why is None and jax.device_count() == 1


def _backend() -> str:
    """JAX's default backend: ``cpu``, ``gpu`` or ``tpu`` (a seam for the CPU tests)."""
    return jax.default_backend()


def use_cudnn(kernel: Kernel, cell: Cell, precision: Precision, backend: str | None = None) -> bool:
    """Whether an LSTM layer runs on cuDNN (:mod:`pipeline.models.cudnn`): only with
    ``kernel: cudnn``, and only LSTM layers (a GRU layer keeps the scan). An error when
    JAX's backend is not a GPU or the precision is not float32.

    ``auto`` keeps the scan on a GPU too: on an H200 our scan trained the char LM 2.8x
    (lstm-S) and 2.0x (lstm-M) faster than this cuDNN path, and 3.4x and 2.5x faster than
    PyTorch's cuDNN LSTM (README, "On a GPU"). The scan stays the only path on TPUs.
    ``backend`` (default: JAX's) asks the rule for another backend than this process's.
    """
    if kernel != "cudnn" or cell != "lstm":
        return False
    if precision != "float32":
        raise ValueError(f"kernel 'cudnn' runs in float32, not {precision}; use kernel auto or scan")
    backend = backend or _backend()
    if backend != "gpu":
        raise ValueError(f"kernel 'cudnn' needs an NVIDIA GPU; JAX is running on {backend!r} "
                         f"(use kernel auto, which picks the scan or oneDNN here)")
    return True


def forced_kernel_problem(kernel: Kernel) -> str | None:
    """Why a forced ``kernel`` (``onednn`` or ``cudnn``) cannot run in this process, or
    None: what a stage checks before it builds a model, so the user gets one line naming
    the params key instead of a traceback from the first LSTM layer."""
    if kernel == "onednn":
        from pipeline.kernels import onednn

        why = onednn.unavailable()
        return f"the oneDNN LSTM kernel cannot run here ({onednn.one_line(why)})" if why else None
    if kernel == "cudnn" and _backend() != "gpu":
        return f"cuDNN needs an NVIDIA GPU; JAX is running on {_backend()!r}"
    return None


def onednn_layer(wi, wh, bi, bh, carry, x, reverse: bool = False, time_major: bool = True):
    """An LSTM layer on oneDNN: ``(carry, ys)``, as :func:`recurrence` returns them after
    the input projection ``x @ wi + bi`` (oneDNN does the projection itself)."""
    from pipeline.kernels import onednn

    x = x if time_major else jnp.swapaxes(x, 0, 1)
    carry, ys = onednn.lstm(x, carry, wi, wh, bi + bh, reverse)
    return carry, ys if time_major else jnp.swapaxes(ys, 0, 1)


# -- the fast core ----------------------------------------------------------------------


def _operand(w: jax.Array, precision: Precision) -> jax.Array:
    """A loop-invariant matmul operand, cast once before the loop rather than every step."""
    return w if precision == "float32" else w.astype(jnp.bfloat16)


def _scales(hidden: int, kinds: str) -> jax.Array:
    """Per-column scale of a gate slab: 0.5 for a sigmoid gate (``s``), 1 for tanh (``t``)."""
    return jnp.concatenate([jnp.full((hidden,), 0.5 if k == "s" else 1.0, jnp.float32) for k in kinds])


def _before(seq: jax.Array, first: jax.Array, reverse: bool) -> jax.Array:
    """The carry each step starts from: ``first`` then ``seq`` shifted by one step."""
    if reverse:
        return jnp.concatenate([seq[1:], first[None]], 0)
    return jnp.concatenate([first[None], seq[:-1]], 0)


def _tiled(parts: Sequence[jax.Array]) -> jax.Array:
    """One [..., k*hidden] slab of per-gate multipliers (the carry cotangents each gate's
    derivative scales), so a backward step does one multiply over the whole gate slab."""
    return jnp.concatenate(parts, -1)


def _split(xs: jax.Array, gates: int) -> list[jax.Array]:
    """A gate slab as one array per gate, split once before the loop: XLA:CPU runs a loop
    fusion that slices its step of a slab several times slower than one that reads
    whole per-gate arrays (benchmarks/step_cost.py)."""
    return jnp.split(xs, gates, axis=-1)


# XLA:CPU runs a loop body of at most 8 thunks (kernels) in order on the calling thread;
# with more it dispatches each kernel to the thread pool, and on a 2-core VM every
# hand-off costs several microseconds (benchmarks/step_cost.py). So the loop bodies below
# hold only what depends on the carry: the recurrent matmul and the few fused elementwise
# kernels of the new carry. Everything else (the outputs h, the backward step's gate
# factors, the gate gradients) is computed over all steps at once outside the loop.


def _lstm_forward(reverse, precision, wh, bh, carry, xp, mask):
    hidden = wh.shape[0]
    s = _scales(hidden, "ssts")  # i f g o
    xs, whs = (xp + bh) * s, _operand(wh * s, precision)

    def body(carry, inputs):
        c, h = carry
        xi, xf, xg, xo, m_t = inputs
        z = matmul(h, whs, precision)
        gate = lambda x, k: jnp.tanh(x + z[:, k * hidden:(k + 1) * hidden])
        i, f, o = (0.5 * gate(x, k) + 0.5 for x, k in ((xi, 0), (xf, 1), (xo, 3)))
        c_new = f * c + i * gate(xg, 2)
        h_new = o * jnp.tanh(c_new)
        if m_t is None:
            return (c_new, h_new), (z, c_new)
        c_new, h_new = jnp.where(m_t, c_new, c), jnp.where(m_t, h_new, h)
        return (c_new, h_new), (z, c_new, h_new)

    carry, res = jax.lax.scan(body, carry, (*_split(xs, 4), mask), reverse=reverse, unroll=UNROLL)
    act = jnp.tanh(xs + res[0]) * s + (1.0 - s)  # sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    hs = act[..., 3 * hidden:] * jnp.tanh(res[1]) if mask is None else res[2]
    return carry, (act, res[1], hs)


def _lstm_backward(reverse, precision, wh, carry0, res, mask, dcarry, dys):
    act, cs, hs = res
    c0, h0 = carry0
    i, f, g, o = jnp.split(act, 4, axis=-1)
    tc = jnp.tanh(cs)
    # d loss / d pre-activation of each gate = (dc or dh) * factor; derivatives folded in.
    factors = _tiled([g * i * (1.0 - i), _before(cs, c0, reverse) * f * (1.0 - f), i * (1.0 - g * g),
                      tc * o * (1.0 - o)])
    dc_dh = o * (1.0 - tc * tc)  # d c / d h through h = o * tanh(c)
    wht = _operand(wh.T, precision)

    def body(dcarry, inputs):
        dc, dh = dcarry
        dy, q, u, f_t, m_t = inputs
        dh_new = dh + dy
        if m_t is not None:
            dh_new, dc_in = jnp.where(m_t, dh_new, 0.0), jnp.where(m_t, dc, 0.0)
        else:
            dc_in = dc
        dc_new = dh_new * u + dc_in
        dz = q * _tiled([dc_new, dc_new, dc_new, dh_new])
        dh_prev, dc_prev = matmul(dz, wht, precision), dc_new * f_t
        if m_t is not None:
            dh_prev = dh_prev + jnp.where(m_t, 0.0, dh)
            dc_prev = dc_prev + jnp.where(m_t, 0.0, dc)
        return (dc_prev, dh_prev), dz

    dcarry0, dz = jax.lax.scan(body, dcarry, (dys, factors, dc_dh, f, mask), reverse=not reverse, unroll=UNROLL)
    return _weight_grads(_before(hs, h0, reverse), dz, dz, precision), dcarry0


def _gru_forward(reverse, precision, wh, bh, carry, xp, mask):
    hidden = wh.shape[0]
    s = _scales(hidden, "sst")  # r z n
    xs, whs, bhs = xp * s, _operand(wh * s, precision), bh * s

    def body(h, inputs):
        xr, xz, xn, m_t = inputs
        a = matmul(h, whs, precision) + bhs
        r = jnp.tanh(xr + a[:, :hidden]) * 0.5 + 0.5
        z = jnp.tanh(xz + a[:, hidden:2 * hidden]) * 0.5 + 0.5
        n = jnp.tanh(xn + r * a[:, 2 * hidden:])
        h_new = n + z * (h - n)
        if m_t is not None:
            h_new = jnp.where(m_t, h_new, h)
        return h_new, (a, h_new)

    carry, (a, hs) = jax.lax.scan(body, carry, (*_split(xs, 3), mask), reverse=reverse, unroll=UNROLL)
    return carry, (xs, a, hs)  # the gates are recomputed from xs and a, outside the loop


def _gru_backward(reverse, precision, wh, h0, res, mask, dh, dys):
    xs, a, hs = res
    hidden = wh.shape[0]
    rz = jnp.tanh(xs[..., : 2 * hidden] + a[..., : 2 * hidden]) * 0.5 + 0.5
    r, z, an = rz[..., :hidden], rz[..., hidden:], a[..., 2 * hidden:]
    n = jnp.tanh(xs[..., 2 * hidden:] + r * an)
    h_prev = _before(hs, h0, reverse)
    dn = (1.0 - z) * (1.0 - n * n)  # d loss / d pre-activation of n, per unit of dh
    factors = _tiled([dn * an * r * (1.0 - r), (h_prev - n) * z * (1.0 - z), dn * r])
    wht = _operand(wh.T, precision)

    def body(dh, inputs):
        dy, q, z_t, m_t = inputs
        dh_new = dh + dy
        if m_t is not None:
            dh_new = jnp.where(m_t, dh_new, 0.0)
        dh_prev = matmul(q * _tiled([dh_new, dh_new, dh_new]), wht, precision) + dh_new * z_t
        if m_t is not None:
            dh_prev = dh_prev + jnp.where(m_t, 0.0, dh)
        return dh_prev, dh_new

    dh0, dhs = jax.lax.scan(body, dh, (dys, factors, z, mask), reverse=not reverse, unroll=UNROLL)
    da = factors * _tiled([dhs, dhs, dhs])
    dxp = jnp.concatenate([da[..., : 2 * hidden], dhs * dn], -1)
    return _weight_grads(h_prev, da, dxp, precision), dh0


def _weight_grads(h_prev, da, dxp, precision):
    """``(d wh, d bh, d xp)``: the recurrent weight gradient as one matmul over all steps."""
    t, b, hidden = h_prev.shape
    dwh = matmul(h_prev.reshape(t * b, hidden).T, da.reshape(t * b, -1), precision)
    return dwh, da.sum((0, 1)), dxp


_FORWARD = {"lstm": _lstm_forward, "gru": _gru_forward}
_BACKWARD = {"lstm": _lstm_backward, "gru": _gru_backward}


def _outputs(carry, res, mask):
    """``(carry, ys)``: the saved carries ``h`` (last in ``res``), zero where padded."""
    hs = res[-1]
    return carry, hs if mask is None else jnp.where(mask, hs, 0.0)


def recurrence(cell: Cell, reverse: bool, wh, bh, carry, xp, mask=None, precision: Precision = "float32"):
    """Run one layer's recurrence over time, time-major. The fast core.

    Args:
        cell: ``"lstm"`` or ``"gru"``; reverse: run from the last step to the first.
        wh: <f32>[hidden, gates*hidden] recurrent weights; bh: <f32>[gates*hidden] bias.
        carry: the initial carry (see :func:`zero_carry`).
        xp: <f32>[time, batch, gates*hidden] input projections (input bias included).
        mask: ``None`` (no padding) or <bool>[time, batch, 1]; where False the carry
            passes through unchanged and the output is zero, so right-padding never
            touches the state (the reverse direction starts from its initial carry at
            each row's true last token).
        precision: ``bfloat16`` runs the recurrent matmuls (forward and backward) on bf16
            operands with float32 accumulation; carries, gates and gradients stay float32.

    Returns:
        ``(carry, ys)`` with ``ys`` <f32>[time, batch, hidden].
    """
    return _recurrence(cell, reverse, precision, wh, bh, carry, xp, mask)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _recurrence(cell, reverse, precision, wh, bh, carry, xp, mask):
    carry, res = _FORWARD[cell](reverse, precision, wh, bh, carry, xp, mask)
    return _outputs(carry, res, mask)


def _recurrence_fwd(cell, reverse, precision, wh, bh, carry, xp, mask):
    carry_out, res = _FORWARD[cell](reverse, precision, wh, bh, carry, xp, mask)
    return _outputs(carry_out, res, mask), (wh, carry, res, mask)


def _recurrence_bwd(cell, reverse, precision, saved, cotangents):
    wh, carry0, res, mask = saved
    dcarry, dys = cotangents  # where padded, the step bodies drop dys (the output there is a constant 0)
    (dwh, dbh, dxp), dcarry0 = _BACKWARD[cell](reverse, precision, wh, carry0, res, mask, dcarry, dys)
    return dwh, dbh, dcarry0, dxp, None


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def scan_layer(
    cell: Cell,
    wh: jax.Array,
    bh: jax.Array,
    carry: Carry,
    xp: jax.Array,
    mask: jax.Array | None = None,
    reverse: bool = False,
    precision: Precision = "float32",
):
    """:func:`recurrence` on batch-major arrays.

    Args:
        xp: <f32>[batch, time, gates*hidden] input projections.
        mask: ``None`` or <bool>[batch, time] (see :func:`recurrence`).

    Returns:
        ``(carry, ys)`` with ``ys`` <f32>[batch, time, hidden].
    """
    tm_mask = None if mask is None else jnp.swapaxes(mask, 0, 1)[:, :, None]
    carry, ys = recurrence(cell, reverse, wh, bh, carry, jnp.swapaxes(xp, 0, 1), tm_mask, precision)
    return carry, jnp.swapaxes(ys, 0, 1)


class RNNLayer(nn.Module):
    """One recurrent layer over a whole sequence: ``(x, mask, carry) -> (carry, ys)``.

    ``x`` is <f32>[batch, time, features] and ``mask`` <bool>[batch, time] (or ``None``:
    no padding); with ``time_major`` both have time first and ``mask`` a trailing 1.
    """

    cell: Cell
    hidden: int
    reverse: bool = False
    time_major: bool = False
    precision: Precision = "float32"
    kernel: Kernel = "auto"
    forget_bias: float = 1.0  # the LSTM forget gate's initial bias

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, carry: Carry | None = None):
        wi, wh, bi, bh = gate_weights(self, self.cell, self.hidden, x.shape[-1], self.forget_bias)
        if carry is None:
            carry = zero_carry(self.cell, x.shape[1 if self.time_major else 0], self.hidden)
        if use_onednn(self.kernel, self.cell, mask is not None, self.precision):
            return onednn_layer(wi, wh, bi, bh, carry, x, self.reverse, self.time_major)
        xp = matmul(x, wi, self.precision) + bi  # hoisted out of the scan: one [B*T, D] x [D, G] matmul
        if self.time_major:
            return recurrence(self.cell, self.reverse, wh, bh, carry, xp, mask, self.precision)
        return scan_layer(self.cell, wh, bh, carry, xp, mask, self.reverse, self.precision)


def gate_weights(module: nn.Module, cell: Cell, hidden: int, in_dim: int, forget_bias: float = 1.0):
    """Declare one layer's fused weights ``(wi, wh, bi, bh)`` on ``module``."""
    g = GATES[cell] * hidden
    return (
        module.param("wi", nn.initializers.lecun_normal(), (in_dim, g)),
        module.param("wh", _stacked_orthogonal(GATES[cell]), (hidden, g)),
        module.param("bi", _gate_bias(cell, hidden, forget_bias), (g,)),
        module.param("bh", nn.initializers.zeros_init(), (g,)),
    )


class LayerWeights(nn.Module):
    """A layer's weights as plain arrays, for loops that call the step functions
    directly (a decoder with input feeding steps through time one token at a time)."""

    cell: Cell
    hidden: int
    in_dim: int
    forget_bias: float = 1.0

    @nn.compact
    def __call__(self):
        return gate_weights(self, self.cell, self.hidden, self.in_dim, self.forget_bias)


class StackedRNN(nn.Module):
    """Stacked (optionally bidirectional) layers with dropout between them.

    ``__call__(x, mask, carries, train, x_reverse) -> (carries, ys)``; ``carries`` is a
    list with one carry per layer (per layer a ``(forward, backward)`` pair when
    bidirectional), and ``ys`` is <f32>[batch, time, hidden * (2 if bidirectional else 1)].
    ``x_reverse`` (bidirectional only) is the first backward layer's own input, where it
    differs from the forward one's ``x`` (a dropout mask drawn per direction).
    """

    cell: Cell
    hidden: int
    layers: int
    dropout: float = 0.0
    bidirectional: bool = False
    precision: Precision = "float32"
    kernel: Kernel = "auto"
    forget_bias: float = 1.0  # the LSTM forget gate's initial bias, every layer

    @nn.compact
    def __call__(self, x, mask=None, carries: Sequence[Carry] | None = None, train: bool = False,
                 x_reverse: jax.Array | None = None):
        carries = list(carries) if carries is not None else [None] * self.layers
        out_carries = []
        if use_cudnn(self.kernel, self.cell, self.precision):
            for i in range(self.layers):
                if i > 0:
                    x = nn.Dropout(self.dropout, deterministic=not train)(x)
                # the same parameter names as the scan's RNNLayers: one checkpoint runs on both
                names = [f"layer{i}"] + ([f"layer{i}_reverse"] if self.bidirectional else [])
                weights = [LayerWeights(self.cell, self.hidden, x.shape[-1], self.forget_bias, name=n)() for n in names]
                carry = carries[i]
                if carry is None:
                    zeros = [zero_carry(self.cell, x.shape[0], self.hidden) for _ in names]
                    carry = tuple(zeros) if self.bidirectional else zeros[0]
                if i == 0 and x_reverse is not None:
                    # cuDNN runs both directions on one input: run it on each, keep each's own direction
                    (c_fw, _), y_fw = cudnn.layer(weights, carry, x, mask)
                    (_, c_bw), y_bw = cudnn.layer(weights, carry, x_reverse, mask)
                    carry, x = (c_fw, c_bw), jnp.concatenate([y_fw[..., : self.hidden], y_bw[..., self.hidden :]], -1)
                else:
                    carry, x = cudnn.layer(weights, carry, x, mask)
                out_carries.append(carry)
            return out_carries, x
        x = jnp.swapaxes(x, 0, 1)  # time-major through the whole stack: one transpose each way
        x_bw = None if x_reverse is None else jnp.swapaxes(x_reverse, 0, 1)
        if mask is not None:
            mask = jnp.swapaxes(mask, 0, 1)[:, :, None]
        for i in range(self.layers):
            if i > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            fw = RNNLayer(self.cell, self.hidden, time_major=True, precision=self.precision, kernel=self.kernel,
                          forget_bias=self.forget_bias, name=f"layer{i}")
            if self.bidirectional:
                bw = RNNLayer(self.cell, self.hidden, reverse=True, time_major=True, precision=self.precision,
                              kernel=self.kernel, forget_bias=self.forget_bias, name=f"layer{i}_reverse")
                c_fw, c_bw = carries[i] if carries[i] is not None else (None, None)
                c_fw, y_fw = fw(x, mask, c_fw)
                c_bw, y_bw = bw(x if i > 0 or x_bw is None else x_bw, mask, c_bw)
                out_carries.append((c_fw, c_bw))
                x = jnp.concatenate([y_fw, y_bw], axis=-1)
            else:
                c, x = fw(x, mask, carries[i])
                out_carries.append(c)
        return out_carries, jnp.swapaxes(x, 0, 1)


def _gate_bias(cell: Cell, hidden: int, forget_bias: float):
    """Zero input biases, but an LSTM's forget gate starts at ``forget_bias``.

    1.0 is the usual advice (early gradients flow through time) and suits sentences.
    A char LM whose carry runs across a whole epoch of windows does better with 0:
    with 1 its cell states grew to thousands within the first epoch
    (benchmarks/results/levers-charlm-forget-bias.md).
    """

    def init(key, shape, dtype=jnp.float32):
        b = jnp.zeros(shape, dtype)
        if cell == "lstm":
            b = b.at[hidden : 2 * hidden].set(forget_bias)
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
