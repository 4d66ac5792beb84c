"""Encoder-decoder translator: the tensorflow/nmt and JoeyNMT family on one recurrent core.

- encoder: stacked LSTM/GRU, optionally bidirectional, as deep as the decoder or not;
  its final states start the decoder through a learned bridge (``bridge="dense"``) or as
  they are (``"copy"``, Keras's and tensorflow/nmt's: a bidirectional layer's forward and
  backward states start two consecutive decoder layers);
- attention (:mod:`pipeline.models.attention`): ``none``, Luong ``dot``, ``general``,
  ``scaled`` or Bahdanau ``bahdanau``; the model holds one attention module and asks
  it for the keys and the attentional vector;
- input feeding (Luong et al. 2015, 3.3): the previous attentional vector joins the next
  input. Without it the decoder's recurrence runs over the whole target in one scan and
  attention is one batched matmul; with it the decoder steps through time in a
  ``lax.scan`` whose body calls the same cell step functions;
- tied embeddings: the output layer reuses the target embedding matrix;
- one-hot inputs (``input="onehot"``): tokens enter the recurrences as one-hot vectors,
  as in the Keras ``lstm_seq2seq``, instead of through embedding matrices;
- dropout (``dropout_on``): on the embeddings, between layers and before the output layer
  (``"layers"``), or on every cell's input and not before the output layer
  (``"cell_inputs"``, tensorflow/nmt's ``DropoutWrapper``; the fed attentional vector is
  part of the first decoder cell's input, and a bidirectional encoder's two directions
  draw their own masks over the embeddings).

The decoder state is ``(carries, feed)`` where ``feed`` is the last attentional vector
<f32>[batch, hidden]; ``decode_step`` maps ``(state, token) -> (state, logits)``, the
step-function shape every decoder in :mod:`pipeline.inference.decode` takes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pipeline.models import attention, cudnn
from pipeline.models.rnn import (
    STEPS,
    Cell,
    Kernel,
    LayerWeights,
    Precision,
    StackedRNN,
    matmul,
    onednn_layer,
    scan_layer,
    use_cudnn,
    use_onednn,
)
from pipeline.params import Attention


class Seq2Seq(nn.Module):
    """``(src, src_len, trg_in) -> logits`` <f32>[batch, trg_time, trg_vocab]."""

    src_vocab: int
    trg_vocab: int
    cell: Cell
    embed: int
    hidden: int
    layers: int
    bidirectional: bool
    attention: Attention
    dropout: float
    input_feeding: bool = False
    tie_embeddings: bool = False
    # bfloat16: the recurrent and input matmuls of the encoder and of either decoder
    # (scanned, or stepping through time with input feeding); attention stays float32
    precision: Precision = "float32"
    kernel: Kernel = "auto"  # LSTM layers on the scan, oneDNN or cuDNN (pipeline.models.rnn.use_onednn, use_cudnn)
    input: str = "embedding"  # embedding | onehot (then `embed` is unused)
    forget_bias: float = 1.0  # the LSTM forget gate's initial bias, encoder and decoder
    encoder_layers: int = 0  # the encoder's depth; 0: `layers`
    bridge: str = "dense"  # dense | copy: how the encoder's final states start the decoder
    dropout_on: str = "layers"  # layers | cell_inputs (see the module docstring)

    def setup(self):
        memory_width = self.hidden * (2 if self.bidirectional else 1)
        # its parameters live in this module's scope, under their historical names
        self.attend = attention.make(self.attention, self.hidden, memory_width, self.bidirectional,
                                     self.input_feeding)
        nn.share_scope(self, self.attend)
        # Run its setup now, before out_bias below: parameters draw their init keys in
        # creation order, and this is the order they were created in before attention
        # was a module of its own (same seed, same initial weights).
        self.attend._try_setup()
        if self.input == "embedding":
            self.src_embed = nn.Embed(self.src_vocab, self.embed)
            self.trg_embed = nn.Embed(self.trg_vocab, self.embed)
        else:
            self.src_embed = lambda ids: jax.nn.one_hot(ids, self.src_vocab)
            self.trg_embed = lambda ids: jax.nn.one_hot(ids, self.trg_vocab)
        width = self.embed if self.input == "embedding" else self.trg_vocab
        self.encoder = StackedRNN(
            self.cell, self.hidden, self.encoder_layers or self.layers, self.dropout, self.bidirectional,
            self.precision, self.kernel, self.forget_bias,
        )
        if self.bridge == "dense":
            parts = 2 if self.cell == "lstm" else 1
            self.bridge_dense = [nn.Dense(self.hidden, name=f"bridge_{i}") for i in range(self.layers * parts)]
        first_in = width + (self.hidden if self.input_feeding else 0)
        self.decoder = [
            LayerWeights(self.cell, self.hidden, first_in if i == 0 else self.hidden, self.forget_bias)
            for i in range(self.layers)
        ]
        self.drop = nn.Dropout(self.dropout)
        if self.tie_embeddings:
            self.to_embed = nn.Dense(self.embed, use_bias=False)
            self.out_bias = self.param("out_bias", nn.initializers.zeros_init(), (self.trg_vocab,))
        else:
            self.project = nn.Dense(self.trg_vocab)

    def __call__(self, src, src_len, trg_in, train: bool = False):
        enc = self.encode(src, src_len, train)
        _, logits = self.decode(trg_in, enc, enc["state"], train)
        return logits

    def encode(self, src, src_len, train: bool = False) -> dict[str, Any]:
        """Encode a padded source batch.

        Args:
            src: <int32>[batch, src_time] ids, right-padded.
            src_len: <int32>[batch] true lengths (including ``</s>``).

        Returns:
            ``memory`` <f32>[batch, src_time, enc_width], ``keys`` (what scores compare
            against), ``mask`` <bool>[batch, src_time], and ``state``: the decoder's
            initial ``(carries, feed)``.
        """
        mask = jnp.arange(src.shape[1])[None, :] < src_len[:, None]
        embedded = self.src_embed(src)
        x = self.drop(embedded, deterministic=not train)
        # tensorflow/nmt wraps each direction's cell in its own DropoutWrapper: its own mask
        own = self.dropout_on == "cell_inputs" and self.bidirectional
        x_reverse = self.drop(embedded, deterministic=not train) if own else None
        enc_carries, memory = self.encoder(x, mask, train=train, x_reverse=x_reverse)
        if self.bridge == "copy":
            # one decoder layer per final state: a bidirectional layer's forward, then its backward
            carries = [c for pair in enc_carries for c in pair] if self.bidirectional else list(enc_carries)
        else:
            if self.bidirectional:
                enc_carries = [
                    jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], -1), fw, bw)
                    for fw, bw in enc_carries
                ]
            leaves, treedef = jax.tree_util.tree_flatten(enc_carries)
            carries = jax.tree_util.tree_unflatten(
                treedef, [jnp.tanh(dense(leaf)) for dense, leaf in zip(self.bridge_dense, leaves, strict=True)]
            )
        keys = self.attend.keys(memory)
        feed = jnp.zeros((src.shape[0], self.hidden), memory.dtype)
        return {"memory": memory, "keys": keys, "mask": mask, "state": (carries, feed)}

    def decode(self, trg_in, enc: dict[str, Any], state, train: bool = False):
        """Run the decoder over ``trg_in`` <int32>[batch, time] from ``state``.

        Returns ``(state, logits)``; with ``time == 1`` this is one decoding step.
        """
        y = self.drop(self.trg_embed(trg_in), deterministic=not train)
        weights = [layer() for layer in self.decoder]
        if self.input_feeding:
            state, h = self._fed(weights, y, enc, state, train)
        else:
            state, h = self._parallel(weights, y, enc, state, train)
        if self.dropout_on == "layers":
            h = self.drop(h, deterministic=not train)
        if self.tie_embeddings:
            return state, self.trg_embed.attend(self.to_embed(h)) + self.out_bias
        return state, self.project(h)

    def decode_step(self, state, token, enc: dict[str, Any]):
        """One step for the decoders: ``token`` <int32>[batch] -> (state, logits <f32>[batch, V])."""
        state, logits = self.decode(token[:, None], enc, state)
        return state, logits[:, 0]

    # -- the two decoder loops --------------------------------------------------------
    def _parallel(self, weights, y, enc, state, train):
        """No input feeding: each layer is one scan over the whole target."""
        carries, _ = state
        new_carries, x = [], y
        for i, (wi, wh, bi, bh) in enumerate(weights):
            if i > 0:
                x = self.drop(x, deterministic=not train)
            if use_cudnn(self.kernel, self.cell, self.precision):
                carry, x = cudnn.layer([(wi, wh, bi, bh)], carries[i], x)
            elif use_onednn(self.kernel, self.cell, False, self.precision):
                carry, x = onednn_layer(wi, wh, bi, bh, carries[i], x, time_major=False)
            else:
                carry, x = scan_layer(self.cell, wh, bh, carries[i], matmul(x, wi, self.precision) + bi,
                                      precision=self.precision)
            new_carries.append(carry)
        h = self.attend(x, enc)
        return (new_carries, h[:, -1]), h

    def _fed(self, weights, y, enc, state, train):
        """Input feeding: one scan over time; each step reads the previous attentional vector."""
        keep = 1.0 - self.dropout
        # one mask per step for what enters layers 1.. (and, with cell_inputs, for the fed
        # vector entering layer 0: masks[0] then, layers 1.. after it)
        fed = self.dropout_on == "cell_inputs"
        count = self.layers - 1 + fed
        if train and self.dropout > 0 and count > 0:
            shape = (count, y.shape[1], y.shape[0], self.hidden)
            masks = jax.random.bernoulli(self.make_rng("dropout"), keep, shape) / keep
        else:
            masks = jnp.ones((count, y.shape[1], 1, 1), y.dtype)
        step = STEPS[self.cell]

        def body(state, inputs):
            carries, feed = state
            y_t, masks_t = inputs
            if fed:
                feed, masks_t = feed * masks_t[0], masks_t[1:]
            x, new_carries = jnp.concatenate([y_t, feed], -1), []
            for i, (wi, wh, bi, bh) in enumerate(weights):
                if i > 0:
                    x = x * masks_t[i - 1]
                carry, x = step(wh, bh, carries[i], matmul(x, wi, self.precision) + bi, self.precision)
                new_carries.append(carry)
            h = self.attend(x[:, None], enc)[:, 0]
            return (new_carries, h), h

        state, hs = jax.lax.scan(body, state, (jnp.swapaxes(y, 0, 1), jnp.swapaxes(masks, 0, 1)))
        return state, jnp.swapaxes(hs, 0, 1)
