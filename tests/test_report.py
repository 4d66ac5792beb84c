"""`rnnpipe report`: two real commits of a real DVC repository, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.commands import vega
from pipeline.commands.dvc_cli import DvcError
from pipeline.commands.report import write_report

from .helpers import sh


def commit(repo: Path, bleu: float, loss: float, lr: float, curve: list[tuple[int, float]], message: str,
           **extra) -> None:
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics/nmt-lstm.json").write_text(json.dumps({"bleu": bleu, "valid_loss": loss, "pairs": 5, **extra}))
    (repo / "params.yaml").write_text(f"nmt:\n  train:\n    learning_rate: {lr}\n    steps: 100\n")
    live = repo / "dvclive/nmt-lstm/plots/metrics"
    (live / "train").mkdir(parents=True, exist_ok=True)
    (live / "train/loss.tsv").write_text("step\tloss\n" + "".join(f"{s}\t{v}\n" for s, v in curve))
    # a picture plot, as the forecaster's: here a real PNG drawn from the same numbers
    vega.to_png({"data": {"values": [{"step": s, "loss": v} for s, v in curve]}, "mark": "line",
                 "encoding": {"x": {"field": "step", "type": "quantitative"},
                              "y": {"field": "loss", "type": "quantitative"}}}, repo / "plots/picture.png")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, sys.executable, "-m", "dvc", "init", "-q")
    (repo / "dvc.yaml").write_text("metrics:\n- metrics/nmt-lstm.json\nparams:\n- params.yaml\nplots:\n"
                                   "- nmt-loss:\n    x: step\n    y:\n"
                                   "      dvclive/nmt-lstm/plots/metrics/train/loss.tsv: loss\n"
                                   "      dvclive/nmt-gru/plots/metrics/train/loss.tsv: loss\n"  # never ran
                                   "- plots/picture.png\n")
    commit(repo, 20.0, 2.0, 0.001, [(50, 3.0), (100, 2.5)], "baseline")
    commit(repo, 22.5, 2.25, 0.002, [(50, 2.8), (100, 2.2)], "higher learning rate")
    return repo


def test_report_of_two_commits(repo, tmp_path):
    out = tmp_path / "review"
    md = write_report(repo, "HEAD~1", "HEAD", out)
    assert "## rnnpipe: `HEAD` against `HEAD~1`" in md
    assert "| metrics/nmt-lstm.json | bleu | 20 | 22.5 | +2.5 | - | no band |" in md  # no bands: no verdicts
    assert "| metrics/nmt-lstm.json | valid_loss | 2 | 2.25 | +0.25 | - | no band |" in md
    assert "changes are not compared with noise" in md and "Different machines" not in md
    assert "1 metric unchanged" in md and "| metrics/nmt-lstm.json | pairs | 5 |" in md
    assert "| params.yaml | nmt.train.learning_rate | 0.001 | 0.002 |" in md
    assert "steps" not in md.split("### Parameters that changed")[1].split("###")[0]  # unchanged params stay out
    assert "![nmt-loss](nmt-loss.png)" in md
    assert "![plots/picture.png @ HEAD~1](plots-picture-png-HEAD-1.png)" in md
    assert "![plots/picture.png @ HEAD](plots-picture-png-HEAD.png)" in md
    assert (out / "report.md").read_text() == md
    png = b"\x89PNG\r\n\x1a\n"
    assert (out / "nmt-loss.png").read_bytes()[:8] == png
    assert (out / "plots-picture-png-HEAD.png").read_bytes() == (repo / "plots/picture.png").read_bytes()
    assert (out / "plots-picture-png-HEAD-1.png").read_bytes() != (repo / "plots/picture.png").read_bytes()
    page = (out / "report.html").read_text()
    assert "<td>22.5</td>" in page and "data:image/png;base64," in page
    assert "<h2>rnnpipe: <code>HEAD</code> against <code>HEAD~1</code></h2>" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing loads from a network


def test_report_against_the_workspace(repo, tmp_path):
    (repo / "metrics/nmt-lstm.json").write_text(json.dumps({"bleu": 30.0, "valid_loss": 2.25, "pairs": 5}))
    md = write_report(repo, "HEAD", None, tmp_path / "ws")
    assert "| metrics/nmt-lstm.json | bleu | 22.5 | 30 | +7.5 | - | no band |" in md
    assert "`workspace` against `HEAD`" in md and "Parameters that changed\n\nNone." in md


def test_report_names_a_bad_revision(repo, tmp_path):
    with pytest.raises(DvcError, match="nosuchrev"):
        write_report(repo, "nosuchrev", "HEAD", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_report_command_line(repo):
    done = subprocess.run([sys.executable, "-m", "pipeline", "report", "HEAD~1", "HEAD", "--out", "r"], cwd=repo,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| bleu | 20 | 22.5 |" in done.stdout and (repo / "r/report.html").is_file()


MACHINE_A = {"cpu": "AMD EPYC (family 26, model 2, AVX-512)", "cores": "2", "device": "1 x cpu", "jax": "0.10.2",
             "jaxlib": "0.10.2", "xla_flags": ""}


def test_report_classifies_changes_against_the_noise_bands(repo, tmp_path):
    """Better, worse and within noise, on real commits, with bands as benchmarks/noise.py writes them."""
    values = {"bleu": [22.0, 22.5, 23.0], "valid_loss": [2.2, 2.25, 2.3], "chrf": [40.0, 40.5, 41.0]}
    bands = {"commit": "abc1234", "seeds": [0, 1, 2], "how": "three seeds",
             "bands": {"metrics/nmt-lstm.json": {m: {"values": v, "band": max(v) - min(v)} for m, v in values.items()}}}
    (repo / "metrics/noise.json").write_text(json.dumps(bands))
    commit(repo, 22.5, 2.25, 0.002, [(50, 2.8)], "bands measured", chrf=40.5, provenance=MACHINE_A)
    commit(repo, 25.0, 2.4, 0.002, [(50, 2.7)], "a change", chrf=40.1, provenance=MACHINE_A)
    md = write_report(repo, "HEAD~1", "HEAD", tmp_path / "r")
    assert "| metrics/nmt-lstm.json | bleu | 22.5 | 25 | +2.5 | ±1 | better |" in md
    assert "| metrics/nmt-lstm.json | valid_loss | 2.25 | 2.4 | +0.15 | ±0.1 | worse |" in md
    assert "| metrics/nmt-lstm.json | chrf | 40.5 | 40.1 | -0.4 | ±1 | within noise |" in md
    assert "seeds [0, 1, 2], at abc1234" in md
    assert "Different machines" not in md and "provenance" not in md  # same machine: no warning, no rows


def test_report_warns_when_the_machines_differ(repo, tmp_path):
    commit(repo, 22.5, 2.25, 0.002, [(50, 2.8)], "on machine A", provenance=MACHINE_A)
    intel = {**MACHINE_A, "cpu": "Intel(R) Xeon(R) Platinum (family 6, model 143, AVX-512)"}
    commit(repo, 22.5, 2.25, 0.002, [(50, 2.8)], "on machine B", provenance=intel)
    md = write_report(repo, "HEAD~1", "HEAD", tmp_path / "r")
    assert "**Different machines.**" in md and "part of every difference below may come from that" in md
    assert "cpu: AMD EPYC (family 26, model 2, AVX-512) -> Intel(R) Xeon(R) Platinum" in md
    md = write_report(repo, "HEAD~2", "HEAD", tmp_path / "r2")  # the older commit records no machine
    assert "the old revision records no machine" in md
    # a metrics file that only the new revision has is new, not a change of machine
    (repo / "dvc.yaml").write_text((repo / "dvc.yaml").read_text().replace(
        "metrics:\n", "metrics:\n- metrics/charlm-gru.json\n"))
    (repo / "metrics/charlm-gru.json").write_text(json.dumps({"valid_loss": 1.6, "provenance": intel}))
    md = write_report(repo, "HEAD", None, tmp_path / "r3")
    assert "charlm-gru.json` was produced" not in md and "charlm-gru.json`: the" not in md


def test_an_ensembles_own_seed_spread_is_its_noise_band(repo, tmp_path):
    """evaluate_forecast records the spread of MAE and MASE over the ensemble's seeds; a
    change no larger than it is within noise, even with no metrics/noise.json."""
    commit(repo, 22.5, 2.25, 0.002, [(50, 2.8)], "ensemble", mae=1800.0, mae_seed_spread=80.0,
           mase=6.0, mase_seed_spread=0.1)
    commit(repo, 22.5, 2.25, 0.002, [(50, 2.8)], "a refresh", mae=1850.0, mae_seed_spread=70.0,
           mase=6.5, mase_seed_spread=0.2)
    md = write_report(repo, "HEAD~1", "HEAD", tmp_path / "r")
    assert "| metrics/nmt-lstm.json | mae | 1,800 | 1,850 | +50 | ±80 | within noise |" in md
    assert "| metrics/nmt-lstm.json | mase | 6 | 6.5 | +0.5 | ±0.2 | worse |" in md


def test_report_links_the_model_cards_of_both_revisions(repo, tmp_path):
    cards = repo / "metrics/cards"
    cards.mkdir(parents=True)
    (cards / "nmt-lstm.md").write_text("# card: BLEU 22.5\n")
    (cards / "charlm-gru.md").write_text("# a card that stays\n")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "cards")
    (cards / "nmt-lstm.md").write_text("# card: BLEU 30\n")
    (cards / "forecast-lstm.md").write_text("# a new card\n")
    out = tmp_path / "review"
    md = write_report(repo, "HEAD", None, out)
    section = md.split("### Model cards")[1].split("###")[0]
    assert "| nmt-lstm | [nmt-lstm.md](cards/HEAD/nmt-lstm.md) | [nmt-lstm.md](cards/workspace/nmt-lstm.md) " \
           "| changed |" in section
    assert "| charlm-gru | [charlm-gru.md](cards/HEAD/charlm-gru.md) | " \
           "[charlm-gru.md](cards/workspace/charlm-gru.md) | unchanged |" in section
    assert "| forecast-lstm | - | [forecast-lstm.md](cards/workspace/forecast-lstm.md) | new |" in section
    assert (out / "cards/HEAD/nmt-lstm.md").read_text() == "# card: BLEU 22.5\n"  # the committed one, from git
    assert (out / "cards/workspace/nmt-lstm.md").read_text() == "# card: BLEU 30\n"
    assert '<a href="cards/HEAD/nmt-lstm.md">nmt-lstm.md</a>' in (out / "report.html").read_text()
    before = write_report(repo, "HEAD~2", "HEAD~1", tmp_path / "old")  # revisions without cards
    assert "### Model cards\n\nNone in either revision." in before
