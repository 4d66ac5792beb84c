"""cuDNN's packed LSTM weights, converted to and from :class:`pipeline.models.rnn.StackedRNN`'s.

``jax.experimental.rnn.lstm`` runs a whole stacked (optionally bidirectional) LSTM as
one cuDNN call, on one flat weight vector laid out as cuDNN (and PyTorch) lay it out:
for each pseudo-layer (layer ``i`` forward, then its reverse direction when
bidirectional), ``W_ih`` <[4H, in]> and ``W_hh`` <[4H, H]>, all of them first, then every
pseudo-layer's ``b_ih`` and ``b_hh`` <[4H]>. Both use the gate order (i, f, g, o), as
``flax.linen.LSTMCell`` and our fused layers do, so a conversion is a transpose and a
concatenation: ``W_ih = wi.T``, ``W_hh = wh.T``, ``b_ih = bi``, ``b_hh = bh``. One
checkpoint therefore runs on either path, and the conversion is differentiable, so the
gradients of the packed vector flow back to our parameters.

Our carry per layer is ``(c, h)``; cuDNN takes ``h_0`` and ``c_0`` stacked over
pseudo-layers <[layers * directions, batch, H]> (:func:`carries`).

:func:`layer` runs one layer (both directions when bidirectional) through
``jax.experimental.rnn.lstm``: what :class:`~pipeline.models.rnn.StackedRNN` and the NMT
decoder call with ``kernel: cudnn`` (:func:`pipeline.models.rnn.use_cudnn`). Per layer rather than
the whole stack in one call, so that our dropout between layers, the parameter names and
the carries stay as they are on the scan. cuDNN's limits, handled here or by the caller:

- LSTM only (a GRU layer stays on the scan);
- float32 only (``precision: bfloat16`` is refused by the params and never routed here);
  the matmuls run at JAX's default float32 precision on the GPU (TF32 on Ampere and
  later), as the scan's do and as PyTorch's cuDNN LSTM does by default;
- a row of length 0 breaks cuDNN's backward: its length is raised to 1 for the call, and
  its output (zeros) and final carry (its initial one) are put back afterwards, as the
  scan leaves them.

Pure functions of arrays: nothing here needs a GPU except the ``lstm`` call itself, and
the tests run :func:`layer` on the CPU with ``jax.experimental.rnn.lstm_ref`` (cuDNN's
reference) in its place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
from jax.experimental import rnn as jrnn

LSTM = jrnn.lstm  # the cuDNN call; the CPU tests swap in the reference


def pseudo_layers(layers: int, bidirectional: bool) -> list[str]:
    """Our layer names in cuDNN's pseudo-layer order."""
    return [name for i in range(layers) for name in ((f"layer{i}", f"layer{i}_reverse") if bidirectional
                                                      else (f"layer{i}",))]


def to_cudnn(stack: Mapping[str, Any], layers: int, bidirectional: bool) -> jnp.ndarray:
    """The flat cuDNN weight vector of a :class:`StackedRNN` LSTM's parameters ``stack``
    (``{"layer0": {"wi", "wh", "bi", "bh"}, "layer0_reverse": ..., ...}``)."""
    names = pseudo_layers(layers, bidirectional)
    linear = [w for n in names for w in (stack[n]["wi"].T.ravel(), stack[n]["wh"].T.ravel())]
    biases = [b for n in names for b in (stack[n]["bi"], stack[n]["bh"])]
    return jnp.concatenate(linear + biases)


def from_cudnn(weights: jnp.ndarray, input_size: int, hidden: int, layers: int,
               bidirectional: bool) -> dict[str, dict[str, jnp.ndarray]]:
    """The inverse of :func:`to_cudnn`: our per-layer parameters from the flat vector.
    Raises ``ValueError`` when its length does not fit the sizes."""
    names = pseudo_layers(layers, bidirectional)
    directions = 2 if bidirectional else 1
    g = 4 * hidden
    in_dims = [input_size if k < directions else directions * hidden for k in range(len(names))]
    expected = sum(g * (d + hidden) + 2 * g for d in in_dims)
    if weights.shape != (expected,):
        raise ValueError(f"a cuDNN LSTM of {layers} layer(s), input {input_size}, hidden {hidden}"
                         f"{', bidirectional' if bidirectional else ''} has {expected} weights, not {weights.shape}")
    out: dict[str, dict[str, jnp.ndarray]] = {}
    at = 0
    for name, d in zip(names, in_dims, strict=True):
        wi = weights[at:at + g * d].reshape(g, d).T
        at += g * d
        wh = weights[at:at + g * hidden].reshape(g, hidden).T
        at += g * hidden
        out[name] = {"wi": wi, "wh": wh}
    for name in names:
        out[name]["bi"], out[name]["bh"] = weights[at:at + g], weights[at + g:at + 2 * g]
        at += 2 * g
    return out


def carries(per_layer: Sequence[Any], bidirectional: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(h_0, c_0)`` <[layers * directions, batch, H]> from our carries: per layer a
    ``(c, h)`` pair, or with ``bidirectional`` a ``((c, h), (c, h))`` pair of directions."""
    flat = [d for layer in per_layer for d in (layer if bidirectional else (layer,))]
    return jnp.stack([h for _, h in flat]), jnp.stack([c for c, _ in flat])


def layer(directions: Sequence[Sequence[jnp.ndarray]], carry: Any, x: jnp.ndarray,
          mask: jnp.ndarray | None = None) -> tuple[Any, jnp.ndarray]:
    """One LSTM layer on cuDNN: ``(carry, ys)`` as the scan returns them.

    Args:
        directions: ``[(wi, wh, bi, bh)]``, or forward and reverse weights when bidirectional.
        carry: ``(c, h)``, a pair of them when bidirectional.
        x: <f32>[batch, time, in] batch-major; mask: ``None`` or <bool>[batch, time],
            right-padded (the true length of each row is its count of True).

    Returns:
        ``(carry, ys)``, ``ys`` <f32>[batch, time, hidden * len(directions)], zero where padded.
    """
    bidirectional = len(directions) == 2
    batch, time, in_dim = x.shape
    hidden = directions[0][1].shape[0]
    names = pseudo_layers(1, bidirectional)
    stack = {n: dict(zip(("wi", "wh", "bi", "bh"), w, strict=True)) for n, w in zip(names, directions, strict=True)}
    h0, c0 = carries([carry], bidirectional)
    if mask is None:
        lengths = jnp.full((batch,), time, jnp.int32)
    else:
        lengths = jnp.maximum(mask.sum(1).astype(jnp.int32), 1)  # cuDNN's backward fails on 0
    ys, h_n, c_n = LSTM(x, h0, c0, to_cudnn(stack, 1, bidirectional), lengths, in_dim, hidden, 1, 0.0,
                        bidirectional)
    if mask is not None:  # rows of length 0: zero outputs and the initial carry, as on the scan
        empty = ~mask.any(1)[None, :, None]
        h_n, c_n = jnp.where(empty, h0, h_n), jnp.where(empty, c0, c_n)
        ys = jnp.where(mask[:, :, None], ys, 0.0)
    out = [(c_n[d], h_n[d]) for d in range(len(directions))]
    return (tuple(out) if bidirectional else out[0]), ys
