"""Character language model: embedding (or one-hot) -> stacked LSTM/GRU -> softmax."""

from __future__ import annotations

import flax.linen as nn
import jax

from pipeline.models.rnn import Cell, Kernel, Precision, StackedRNN


class CharLM(nn.Module):
    """``(tokens, carries) -> (carries, logits)``; the carry continues across windows."""

    vocab: int
    cell: Cell
    embed: int
    hidden: int
    layers: int
    dropout: float
    input: str = "embedding"  # "embedding" | "onehot" (char-rnn's original input)
    precision: Precision = "float32"  # of the recurrent matmuls (see pipeline.models.rnn)
    kernel: Kernel = "auto"  # LSTM layers on the scan, oneDNN or cuDNN (pipeline.models.rnn.use_onednn, use_cudnn)
    forget_bias: float = 1.0  # the LSTM forget gate's initial bias

    def setup(self):
        if self.input not in ("embedding", "onehot"):
            raise ValueError(f"input must be embedding or onehot, got {self.input!r}")
        if self.input == "embedding":
            self.embedding = nn.Embed(self.vocab, self.embed)
        self.rnn = StackedRNN(self.cell, self.hidden, self.layers, self.dropout, precision=self.precision,
                              kernel=self.kernel, forget_bias=self.forget_bias)
        self.drop = nn.Dropout(self.dropout)
        self.project = nn.Dense(self.vocab)

    def __call__(self, tokens, carries, train: bool = False):
        """
        Args:
            tokens: <int32>[batch, time].
            carries: one carry per layer (see :func:`pipeline.models.rnn.initial_carries`).

        Returns:
            ``(carries, logits <f32>[batch, time, vocab])``.
        """
        x = self.embedding(tokens) if self.input == "embedding" else jax.nn.one_hot(tokens, self.vocab)
        carries, h = self.rnn(x, None, carries, train=train)
        return carries, self.project(self.drop(h, deterministic=not train))

    def step(self, carries, token):
        """One sampling step: ``token`` <int32>[batch] -> (carries, logits <f32>[batch, V])."""
        carries, logits = self(token[:, None], carries)
        return carries, logits[:, 0]

