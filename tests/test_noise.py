"""Noise bands (pipeline/evaluation/noise.py): the spread over seeds, and what a change is called."""

from __future__ import annotations

import pytest

from pipeline.evaluation import noise


def test_bands_are_the_spread_over_seeds_of_every_numeric_metric():
    samples = [{"m/nmt.json": {"bleu": 30.0, "pairs": 10, "decode": "beam5", "per_h": [1.0]}},
               {"m/nmt.json": {"bleu": 31.5, "pairs": 10, "decode": "beam5", "per_h": [2.0]}},
               {"m/nmt.json": {"bleu": 30.5, "pairs": 10, "decode": "beam5", "per_h": [3.0]}}]
    b = noise.bands(samples)["m/nmt.json"]
    assert set(b) == {"bleu", "pairs"}  # labels and per-horizon lists are left out
    assert b["bleu"]["values"] == [30.0, 31.5, 30.5] and b["bleu"]["band"] == pytest.approx(1.5)
    assert b["bleu"]["mean"] == pytest.approx(30.6667, abs=1e-4) and b["bleu"]["std"] == pytest.approx(0.7638, abs=1e-4)
    assert b["pairs"]["band"] == 0.0


@pytest.mark.parametrize("metric, diff, band, verdict", [
    ("bleu", 2.0, 1.5, "better"), ("bleu", -2.0, 1.5, "worse"), ("bleu", 1.5, 1.5, "within noise"),
    ("valid_loss", -0.01, 0.005, "better"), ("mae", 12.0, 50.0, "within noise"), ("mae_vs_naive", 0.1, 0.0, "worse"),
    ("autoets_mae", 0.5, 0.0, "worse"),  # a seed-independent baseline: any change is real on one machine
    ("bleu", 0.3, None, "no band"),  # nothing measured: no verdict
    ("pairs", 5.0, 0.0, ""), ("bleu", 0.0, 1.0, ""), ("horizons_beating_naive", 3.0, 1.0, "better"),
    ("folds", -1.0, 0.0, ""), ("origins", 10.0, None, ""), ("every", 7.0, 0.0, ""),  # settings, not metrics
    ("autoarima_interval_score95", 0.0001, 0.0, "within noise"),  # one unit of the files' rounding
    ("autoarima_interval_score95", 0.0003, 0.0, "worse"),
])
def test_classify(metric, diff, band, verdict):
    assert noise.classify(metric, diff, band) == verdict


def test_band_of_reads_a_noise_record():
    record = {"bands": {"metrics/nmt-gru.json": {"bleu": {"band": 0.8}}}}
    assert noise.band_of(record, "metrics/nmt-gru.json", "bleu") == 0.8
    assert noise.band_of(record, "metrics/nmt-gru.json", "chrf") is None
    assert noise.band_of({}, "metrics/nmt-gru.json", "bleu") is None


def test_seed_spread_is_the_larger_of_old_and_new():
    diffs = {"mae": {"old": 1.0, "new": 2.0, "diff": 1.0}, "mae_seed_spread": {"old": 50.0, "new": 80.0}}
    assert noise.seed_spread(diffs, "mae") == 80.0
    assert noise.seed_spread({"mae_seed_spread": {"new": 3}}, "mae") == 3.0  # a file new in this revision
    assert noise.seed_spread(diffs, "rmse") is None
