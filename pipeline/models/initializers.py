"""Initial weights as the tutorials drew them: one pure map over a parameter tree.

``flax`` keeps what the modules declare (lecun-normal input kernels, orthogonal recurrent
blocks, zero biases with the forget gate at ``forget_bias``). The other schemes redraw
each leaf by its role, read off its name:

- ``wi``, ``wh``, ``bi``, ``bh``: a recurrent layer's fused input kernel, recurrent
  kernel, input bias and recurrent bias (:func:`pipeline.models.rnn.gate_weights`);
- ``kernel`` and ``bias``: a dense layer's; ``embedding``: an embedding matrix;
- anything else (attention's vectors, the tied output layer's bias).

Schemes:

- ``uniform`` (tensorflow/nmt's ``init_weight``): every weight uniform in ±``scale``,
  except the scaled-Luong gain, which tensorflow/nmt starts at 1;
- ``keras`` (Keras 2's layer defaults): Glorot-uniform input and dense kernels, one
  orthogonal matrix for each layer's recurrent kernel, zero biases, embeddings uniform
  in ±0.05;
- ``tf`` (TensorFlow 1's ``get_variable`` default, which TFLearn's and the char-RNN
  notebook's LSTMs use): Glorot-uniform over each layer's joined ``[input; recurrent]``
  kernel, as ``BasicLSTMCell`` keeps it (a ``GRUCell`` keeps two, the gates' and the
  candidate's, each drawn alone, and starts its gate biases at 1); zero biases otherwise;
  Glorot-uniform embeddings; dense kernels truncated-normal with standard deviation
  ``scale`` (TFLearn's ``fully_connected`` 0.02, the char-RNN notebook's softmax layer
  0.1). Leaves a model declares with its own tutorial's draw (the Bitcoin notebook's
  ``w_out``, ``b_out``) stay as declared.

Every scheme but ``flax`` zeroes the recurrent bias ``bh`` (the tutorials' cells have one
bias per gate, which ``bi`` holds) and starts an LSTM's forget-gate slice of ``bi`` at
``forget_bias`` on top of its draw. TensorFlow's ``BasicLSTMCell`` adds its
``forget_bias`` at every step to a bias that starts at its draw instead; the two have the
same gradients, so under the same updates they are the same model.
"""

from __future__ import annotations

import zlib
from functools import partial

import jax
import jax.numpy as jnp
from flax import traverse_util

from pipeline.params import Cell, Initializer

RECURRENT = ("wi", "wh", "bi", "bh")
KEEP = ("attn_scale", "output_scale")  # gains that start at 1 under every initializer (tensorflow/nmt's attention_g)


def redraw(params, key: jax.Array, *, scheme: Initializer, cell: Cell, scale: float, forget_bias: float):
    """``params`` with every leaf redrawn by ``scheme`` from ``key`` (``flax``: unchanged)."""
    if scheme == "flax":
        return params
    return _redraw(params, key, scheme=scheme, cell=cell, scale=float(scale), forget_bias=float(forget_bias))


@partial(jax.jit, static_argnames=("scheme", "cell", "scale", "forget_bias"))
def _redraw(params, key, *, scheme, cell, scale, forget_bias):
    flat = traverse_util.flatten_dict(params)
    out = {}
    for path, leaf in flat.items():
        name = path[-1]
        k = jax.random.fold_in(key, zlib.crc32("/".join(path).encode()))
        if name in KEEP:
            out[path] = leaf
        elif name == "bh":
            out[path] = jnp.zeros_like(leaf)
        elif name == "bi":
            bias = _uniform(k, leaf, scale) if scheme == "uniform" else jnp.zeros_like(leaf)
            if cell == "lstm":
                hidden = leaf.shape[0] // 4
                bias = bias.at[hidden : 2 * hidden].add(forget_bias)
            elif scheme == "tf":  # TF1's GRUCell starts its reset and update gates' bias at 1
                bias = bias.at[: 2 * (leaf.shape[0] // 3)].set(1.0)
            out[path] = bias
        elif scheme == "uniform":
            out[path] = _uniform(k, leaf, scale)
        elif name == "wi" and scheme == "tf":
            # one Glorot draw over [wi; wh], split back: BasicLSTMCell's single kernel; a
            # GRUCell has two, the gates' and the candidate's
            wh = flat[(*path[:-1], "wh")]
            rows = leaf.shape[0] + wh.shape[0]
            if cell == "gru":
                gates = 2 * (leaf.shape[1] // 3)
                k_gates, k_cand = jax.random.split(k)
                joined = jnp.concatenate([_glorot(k_gates, (rows, gates), leaf.dtype),
                                          _glorot(k_cand, (rows, leaf.shape[1] - gates), leaf.dtype)], axis=1)
            else:
                joined = _glorot(k, (rows, leaf.shape[1]), leaf.dtype)
            out[path], out[(*path[:-1], "wh")] = joined[: leaf.shape[0]], joined[leaf.shape[0] :]
        elif name == "wh" and scheme == "tf":
            continue  # drawn with its wi
        elif name == "wh":  # keras: one orthogonal matrix over all the gates
            out[path] = jax.nn.initializers.orthogonal()(k, leaf.shape, leaf.dtype)
        elif name in ("wi",) or (name == "kernel" and scheme == "keras"):
            out[path] = _glorot(k, leaf.shape, leaf.dtype)
        elif name == "kernel":  # tf: the dense layers
            out[path] = scale * jax.random.truncated_normal(k, -2.0, 2.0, leaf.shape, leaf.dtype)
        elif name in ("bias", "out_bias"):
            out[path] = jnp.zeros_like(leaf)
        elif name == "embedding":
            out[path] = _uniform(k, leaf, 0.05) if scheme == "keras" else _glorot(k, leaf.shape, leaf.dtype)
        else:
            out[path] = leaf
    return traverse_util.unflatten_dict(out)


def _uniform(key, like, bound: float):
    return jax.random.uniform(key, like.shape, like.dtype, -bound, bound)


def _glorot(key, shape, dtype):
    return jax.nn.initializers.glorot_uniform()(key, shape, dtype)


def scheme(model, cell: Cell):
    """The ``redraw`` a ``<workload>.model`` section asks for, for ``create_state``
    (``None`` for ``flax``: the modules' own weights, nothing redrawn)."""
    if model.initializer == "flax":
        return None
    return partial(redraw, scheme=model.initializer, cell=cell, scale=model.init_scale,
                   forget_bias=model.forget_bias)
