"""Scores pinned to golden values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluation import metrics

# sacrebleu's own documented example (README, "Using SacreBLEU from Python").
HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]


def test_bleu_and_chrf_match_golden_values():
    scores = metrics.bleu_chrf(HYPS, REFS)
    assert scores["bleu"] == pytest.approx(48.53, abs=0.01)
    assert scores["chrf"] == pytest.approx(59.73, abs=0.01)
    assert scores["bleu_signature"].startswith("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp")
    assert scores["chrf_signature"].startswith("nrefs:2|case:mixed|eff:yes|nc:6|nw:0")


def test_single_reference_stream_and_perfect_match():
    assert metrics.bleu_chrf(REFS[0], [REFS[0]])["bleu"] == pytest.approx(100.0)
    low = metrics.bleu_chrf(["a b c d"], [["w x y z"]])
    assert low["bleu"] < 1.0 and low["chrf"] < 10.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 hypotheses for 3 references"):
        metrics.bleu_chrf(HYPS[:2], REFS)


def test_bits_per_char():
    assert metrics.bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert metrics.bits_per_char(1.0) == pytest.approx(1.442695, rel=1e-6)


def test_forecast_errors_by_hand():
    true = np.array([[100.0, 200.0], [50.0, 100.0]])
    pred = np.array([[110.0, 180.0], [50.0, 130.0]])
    e = metrics.forecast_errors(pred, true)
    assert e["mae"] == pytest.approx((10 + 20 + 0 + 30) / 4)
    assert e["rmse"] == pytest.approx(math.sqrt((100 + 400 + 0 + 900) / 4))
    assert e["mape"] == pytest.approx(100 * (0.1 + 0.1 + 0 + 0.3) / 4)
    per_h = metrics.forecast_errors(pred, true, axis=0)
    np.testing.assert_allclose(per_h["mae"], [5.0, 25.0])


def test_mase_scales_each_windows_error_by_its_own_naive_error():
    pred = np.array([[1.0, 2.0], [10.0, 10.0]])
    true = np.array([[2.0, 2.0], [14.0, 10.0]])
    out = metrics.forecast_errors(pred, true, scale=np.array([0.5, 4.0]))
    assert out["mase"] == pytest.approx(np.mean([1 / 0.5, 0, 4 / 4.0, 0]))
    np.testing.assert_allclose(metrics.forecast_errors(pred, true, axis=0, scale=np.array([0.5, 4.0]))["mase"],
                               [(2.0 + 1.0) / 2, 0.0])
    assert "mase" not in metrics.forecast_errors(pred, true)
