"""Scores: sacrebleu BLEU/chrF with signatures, bits per character, forecast errors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sacrebleu


def bleu_chrf(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], also_untokenized: bool = False
) -> dict[str, float | str]:
    """Corpus BLEU (13a tokenisation) and chrF of detokenised text, with signatures.

    Args:
        hyps: one detokenised hypothesis per segment.
        refs: reference *streams*, each with one reference per segment.
        also_untokenized: add ``bleu_tok_none``, BLEU on the text as it is
            (``tokenize=none``), for corpora that come tokenized, such as IWSLT, whose
            published tables are computed that way.

    The signature pins every setting that changes the number (tokeniser, smoothing,
    case, version), so scores are only compared when their signatures match.
    """
    for stream in refs:
        if len(stream) != len(hyps):
            raise ValueError(f"{len(hyps)} hypotheses for {len(stream)} references")
    streams = [list(stream) for stream in refs]
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    b = bleu.corpus_score(list(hyps), streams)
    c = chrf.corpus_score(list(hyps), streams)
    out: dict[str, float | str] = {
        "bleu": round(b.score, 4),
        "chrf": round(c.score, 4),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
    if also_untokenized:
        none = sacrebleu.BLEU(tokenize="none")
        out["bleu_tok_none"] = round(none.corpus_score(list(hyps), streams).score, 4)
        out["bleu_tok_none_signature"] = str(none.get_signature())
    return out


def bits_per_char(nats: float) -> float:
    """Convert a mean loss in nats per character to bits per character."""
    return nats / math.log(2.0)


def forecast_errors(pred: np.ndarray, true: np.ndarray, axis=None,
                    scale: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """MAE, RMSE, MAPE (percent) and, given ``scale``, MASE of ``pred`` against ``true``.

    Args:
        pred, true: <float>[windows, horizon], in price units.
        axis: None for one number over everything, 0 for one per horizon step.
        scale: <float>[windows] each window's in-sample naive error; MASE is the mean
            of |error| / scale, so a value below 1 beats the one-step naive forecast
            measured inside the input window.
    """
    err = pred - true
    out = {
        "mae": np.mean(np.abs(err), axis=axis),
        "rmse": np.sqrt(np.mean(np.square(err), axis=axis)),
        "mape": 100.0 * np.mean(np.abs(err) / np.abs(true), axis=axis),
    }
    if scale is not None:
        out["mase"] = np.mean(np.abs(err) / scale[:, None], axis=axis)
    return out


def interval_scores(lo: np.ndarray, hi: np.ndarray, true: np.ndarray, level: float,
                    axis=None) -> dict[str, np.ndarray]:
    """How a central ``level`` % prediction interval ``[lo, hi]`` did against ``true``
    (all <float>[windows, horizon]): ``coverage`` (the fraction of days inside it, to set
    beside ``level / 100``), ``width`` and the ``interval_score`` of Gneiting & Raftery
    (2007): width plus ``2 / alpha`` times the distance by which the truth falls outside,
    with ``alpha = 1 - level / 100``; lower is better, and a narrow interval that misses
    pays for it."""
    alpha = 1.0 - level / 100.0
    below, above = np.maximum(lo - true, 0.0), np.maximum(true - hi, 0.0)
    return {"coverage": np.mean((lo <= true) & (true <= hi), axis=axis),
            "width": np.mean(hi - lo, axis=axis),
            "interval_score": np.mean(hi - lo + 2.0 / alpha * (below + above), axis=axis)}
