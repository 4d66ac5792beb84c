"""Encoder-decoder translator with Luong attention.

The decoder has no input feeding, so during teacher forcing its recurrence runs over the
whole target at once and attention is computed for all steps in one batched matmul;
step-by-step decoding calls the very same ``decode`` with a length-1 target.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pipeline.models.rnn import Cell, StackedRNN

NEG_INF = -1e9


class Seq2Seq(nn.Module):
    """``(src, src_len, trg_in) -> logits`` <f32>[batch, trg_time, trg_vocab]."""

    src_vocab: int
    trg_vocab: int
    cell: Cell
    embed: int
    hidden: int
    layers: int
    bidirectional: bool
    attention: str  # "luong" | "none"
    dropout: float

    def setup(self):
        self.src_embed = nn.Embed(self.src_vocab, self.embed)
        self.trg_embed = nn.Embed(self.trg_vocab, self.embed)
        self.encoder = StackedRNN(
            self.cell, self.hidden, self.layers, self.dropout, self.bidirectional
        )
        self.decoder = StackedRNN(self.cell, self.hidden, self.layers, self.dropout)
        parts = 2 if self.cell == "lstm" else 1
        self.bridge = [nn.Dense(self.hidden) for _ in range(self.layers * parts)]
        if self.attention == "luong":
            # Luong "general" score h_t^T W_a h_s; W_a h_s is computed once per source.
            self.attn_key = nn.Dense(self.hidden, use_bias=False)
            self.attn_combine = nn.Dense(self.hidden, use_bias=False)
        self.drop = nn.Dropout(self.dropout)
        self.project = nn.Dense(self.trg_vocab)

    def __call__(self, src, src_len, trg_in, train: bool = False):
        enc = self.encode(src, src_len, train)
        _, logits = self.decode(trg_in, enc, enc["carries"], train)
        return logits

    def encode(self, src, src_len, train: bool = False) -> dict[str, Any]:
        """Encode a padded source batch.

        Args:
            src: <int32>[batch, src_time] ids, right-padded.
            src_len: <int32>[batch] true lengths (including ``</s>``).

        Returns:
            ``memory`` <f32>[batch, src_time, enc_width], ``keys`` (memory through W_a),
            ``mask`` <bool>[batch, src_time], and ``carries``: the decoder's initial state.
        """
        mask = jnp.arange(src.shape[1])[None, :] < src_len[:, None]
        x = self.drop(self.src_embed(src), deterministic=not train)
        enc_carries, memory = self.encoder(x, mask, train=train)
        if self.bidirectional:
            enc_carries = [
                jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], -1), fw, bw)
                for fw, bw in enc_carries
            ]
        leaves, treedef = jax.tree_util.tree_flatten(enc_carries)
        carries = jax.tree_util.tree_unflatten(
            treedef, [jnp.tanh(dense(leaf)) for dense, leaf in zip(self.bridge, leaves)]
        )
        keys = self.attn_key(memory) if self.attention == "luong" else memory
        return {"memory": memory, "keys": keys, "mask": mask, "carries": carries}

    def decode(self, trg_in, enc: dict[str, Any], carries, train: bool = False):
        """Run the decoder over ``trg_in`` <int32>[batch, time] from ``carries``.

        Returns ``(carries, logits)``; with ``time == 1`` this is one decoding step.
        """
        y = self.drop(self.trg_embed(trg_in), deterministic=not train)
        carries, h = self.decoder(y, None, carries, train=train)
        if self.attention == "luong":
            scores = jnp.einsum("bth,bsh->bts", h, enc["keys"])
            scores = jnp.where(enc["mask"][:, None, :], scores, NEG_INF)
            weights = jax.nn.softmax(scores, axis=-1)
            context = jnp.einsum("bts,bsd->btd", weights, enc["memory"])
            h = jnp.tanh(self.attn_combine(jnp.concatenate([context, h], axis=-1)))
        h = self.drop(h, deterministic=not train)
        return carries, self.project(h)

    def decode_step(self, carries, token, enc: dict[str, Any]):
        """One greedy/beam step: ``token`` <int32>[batch] -> (carries, logits <f32>[batch, V])."""
        carries, logits = self.decode(token[:, None], enc, carries)
        return carries, logits[:, 0]
