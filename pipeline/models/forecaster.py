"""Sequence-to-sequence price forecaster.

An encoder reads the normalised input window; its final state seeds a decoder that
unrolls ``output_len`` steps. The decoder's input at step t is only the horizon
position t / output_len (a clock), not its previous prediction, so its recurrence runs
as one scan with the input projection hoisted and no exposure bias from feeding back
its own errors. The first ``outputs`` features are the forecast series.

``architecture="notebook"`` is instead the seq2seq-signal-prediction notebook's Bitcoin
model (``basic_rnn_seq2seq``): the decoder reads a zero GO step and then the encoder's
own inputs shifted by one day (so input and output windows are as long), and the output
is ``output_scale * (h @ w_out + b_out)``, with ``w_out`` and ``b_out`` drawn from a
standard normal and ``output_scale`` starting at 1, as the notebook drew them.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from pipeline.models.rnn import Cell, Kernel, Precision, StackedRNN


class Forecaster(nn.Module):
    """``inputs`` <f32>[batch, input_len, features] -> <f32>[batch, output_len, outputs]."""

    cell: Cell
    hidden: int
    layers: int
    dropout: float
    output_len: int
    precision: Precision = "float32"  # of the recurrent matmuls (see pipeline.models.rnn)
    kernel: Kernel = "auto"  # LSTM layers on the scan, oneDNN or cuDNN (pipeline.models.rnn.use_onednn, use_cudnn)
    outputs: int = 1  # the first this many input features are forecast
    forget_bias: float = 1.0  # the LSTM forget gate's initial bias
    architecture: str = "delta"  # delta | notebook (see the module docstring)

    @nn.compact
    def __call__(self, inputs, train: bool = False):
        batch = inputs.shape[0]
        rnn = lambda name: StackedRNN(self.cell, self.hidden, self.layers, self.dropout,
                                      precision=self.precision, kernel=self.kernel,
                                      forget_bias=self.forget_bias, name=name)
        carries, _ = rnn("encoder")(inputs, train=train)
        if self.architecture == "notebook":
            go = jnp.zeros_like(inputs[:, :1])
            _, h = rnn("decoder")(jnp.concatenate([go, inputs[:, :-1]], axis=1), None, carries, train=train)
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
            normal = nn.initializers.normal(stddev=1.0)
            w_out = self.param("w_out", normal, (self.hidden, self.outputs))
            b_out = self.param("b_out", normal, (self.outputs,))
            scale = self.param("output_scale", nn.initializers.ones_init(), ())
            return scale * (h @ w_out + b_out)
        clock = jnp.arange(self.output_len, dtype=jnp.float32) / self.output_len
        dec_in = jnp.broadcast_to(clock[None, :, None], (batch, self.output_len, 1))
        _, h = rnn("decoder")(dec_in, None, carries, train=train)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        # Predict the change from the last observed value. With a near-zero projection the
        # untrained model is (almost exactly) the naive baseline, and training has to earn
        # every departure from it. Not exactly zero: that would block every gradient to
        # the recurrent layers on the first step.
        small = nn.initializers.normal(stddev=1e-3)
        delta = nn.Dense(self.outputs, kernel_init=small, name="project")(h)
        return inputs[:, -1:, : self.outputs] + delta
