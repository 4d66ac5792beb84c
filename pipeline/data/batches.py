"""Batching with static shapes: length buckets, char-rnn streams, window batches.

Every batch a jitted step sees has one of a handful of shapes fixed by ``params.yaml``,
so XLA compiles once per bucket rather than once per sentence length.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def assign_buckets(src_len: np.ndarray, trg_len: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    """Index of the smallest bucket that fits both sides; -1 when none does.

    Args:
        src_len, trg_len: <int32>[n] lengths including ``</s>``.
        buckets: ascending padded widths.
    """
    need = np.maximum(src_len, trg_len)
    edges = np.asarray(buckets)
    idx = np.searchsorted(edges, need, side="left")
    return np.where(idx < len(edges), idx, -1)


def crop(arrays: dict[str, np.ndarray], rows: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """Rows of a padded pair set (or of sources alone, without ``trg``), cropped to one
    bucket's width."""
    out = {"src": arrays["src"][rows, :width]}
    if "trg" in arrays:
        out["trg"] = arrays["trg"][rows, : width + 1]
    out["src_len"] = arrays["src_len"][rows]
    if "trg_len" in arrays:
        out["trg_len"] = arrays["trg_len"][rows]
    return out


def bucket_sizes(buckets: Sequence[int], batch_size: int, batch_tokens: int = 0) -> list[int]:
    """Sentences per batch in each bucket: ``batch_size`` everywhere, or with
    ``batch_tokens`` as many as fit that many padded source positions (``batch_tokens //
    width``, a multiple of 8 so that it divides among devices), never fewer than 8."""
    if not batch_tokens:
        return [batch_size] * len(buckets)
    return [max(8, batch_tokens // width // 8 * 8) for width in buckets]


def bucket_batches(
    arrays: dict[str, np.ndarray],
    buckets: Sequence[int],
    batch_size: int,
    rng: np.random.Generator,
    batch_tokens: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless shuffled training batches, each from a single bucket.

    Each epoch shuffles within buckets, cuts full batches (a partial batch would be a new
    shape), and visits those batches in random order, so long and short sentences mix
    across steps in proportion to their counts. Batches hold ``batch_size`` pairs, or
    with ``batch_tokens`` a bucket's share of that many tokens (:func:`bucket_sizes`).
    """
    which = assign_buckets(arrays["src_len"], arrays["trg_len"], buckets)
    members = [np.flatnonzero(which == b) for b in range(len(buckets))]
    sizes = bucket_sizes(buckets, batch_size, batch_tokens)
    if not any(len(m) >= size for m, size in zip(members, sizes)):
        raise ValueError(f"no bucket holds a full batch ({', '.join(map(str, sizes))} pairs per bucket)")
    while True:
        plan = []
        for b, rows in enumerate(members):
            rows, size = rng.permutation(rows), sizes[b]
            for start in range(0, len(rows) - size + 1, size):
                plan.append((b, rows[start : start + size]))
        for i in rng.permutation(len(plan)):
            b, rows = plan[i]
            yield crop(arrays, rows, buckets[b])


def extended(buckets: Sequence[int], longest: int) -> list[int]:
    """The trained buckets, extended by multiples of the widest one until ``longest``
    fits (a longer sentence than training saw costs one more compiled shape)."""
    out = list(buckets)
    while out[-1] < longest:
        out.append(out[-1] + buckets[-1])
    return out


def eval_batches(
    arrays: dict[str, np.ndarray], buckets: Sequence[int], batch_size: int
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Every row exactly once, in bucket order, padded to full batches.

    ``arrays`` are pairs, or sources alone (no ``trg``, to translate); a source of
    length 0 (an empty sentence) is left out. Rows longer than the widest bucket (dev and
    test sentences that were not length-filtered, new sentences) go into extra buckets
    (:func:`extended`). Yields ``(rows, batch)`` where ``rows``
    <int64>[k] are the original indices of the first ``k`` batch rows; the remaining
    rows repeat row 0 with zero target lengths, which masks them out of losses.
    """
    trg_len = arrays.get("trg_len", arrays["src_len"])
    buckets = extended(buckets, int(max(np.max(arrays["src_len"], initial=0), np.max(trg_len, initial=0))))
    which = assign_buckets(arrays["src_len"], trg_len, buckets)
    which = np.where(arrays["src_len"] > 0, which, -1)
    for b, width in enumerate(buckets):
        rows_all = np.flatnonzero(which == b)
        for start in range(0, len(rows_all), batch_size):
            rows = rows_all[start : start + batch_size]
            padded = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
            batch = crop(arrays, padded, width)
            batch["src_len"] = batch["src_len"].copy()
            if "trg_len" in batch:
                batch["trg_len"] = batch["trg_len"].copy()
                batch["trg_len"][len(rows) :] = 0
            yield rows, batch


def stream_layout(ids: np.ndarray, batch_size: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Lay a token stream out as ``batch_size`` parallel streams (char-rnn style).

    Row ``b`` is a contiguous slice of the text, so window ``w`` of row ``b`` directly
    continues window ``w - 1``: the recurrent state can be carried across batches.

    Returns:
        ``inputs``, ``targets`` <int32>[windows, batch_size, seq_len] with
        ``targets`` shifted one character ahead of ``inputs``.
    """
    windows = (len(ids) - 1) // (batch_size * seq_len)
    if windows < 1:
        raise ValueError(
            f"{len(ids)} tokens are too few for {batch_size} streams of {seq_len} steps"
        )
    n = windows * batch_size * seq_len
    x = ids[:n].reshape(batch_size, windows, seq_len)
    y = ids[1 : n + 1].reshape(batch_size, windows, seq_len)
    return x.transpose(1, 0, 2), y.transpose(1, 0, 2)


def stream_windows(
    ids: np.ndarray, batch_size: int, seq_len: int, epochs: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive windows of every stream, for ``epochs`` passes (None: endlessly).

    ``reset`` (a scalar bool) is True on each pass's first window, where the carried
    state restarts. Characters past the last full window are not visited.
    """
    inputs, targets = stream_layout(ids, batch_size, seq_len)
    epoch = 0
    while epochs is None or epoch < epochs:
        for w in range(len(inputs)):
            yield {"inputs": inputs[w], "targets": targets[w], "reset": np.bool_(w == 0)}
        epoch += 1


def window_batches(
    n: int, batch_size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Endless shuffled index batches over ``n`` examples (full batches only)."""
    if n < batch_size:
        raise ValueError(f"{n} examples are fewer than one batch of {batch_size}")
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
