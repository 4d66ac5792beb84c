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

Pure functions of arrays: nothing here needs a GPU, and the tests check the conversion
on the CPU against ``jax.experimental.rnn.lstm_ref``, cuDNN's reference.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax.numpy as jnp


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
    for name, d in zip(names, in_dims):
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
