"""Translation options end to end on tiny models: subword and char levels, the decoding
methods in evaluate_nmt, and the `translate` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline import params as params_module
from pipeline.data import tokens
from pipeline.data.subword import Subword
from pipeline.stages import download, evaluate_nmt, prepare_nmt, train_nmt

from .conftest import ROOT, merge

LEVELS = {
    "word": {},
    "subword": {"data": {"level": "subword", "vocab_size": 200, "buckets": [8, 16]}},
    "char": {"data": {"level": "char", "max_len": 24, "buckets": [12, 25]},
             "model": {"attention": "none", "bidirectional": False}},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_params_dict):
    """One tiny model per tokenisation level, trained and evaluated in a scratch folder."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for level, overrides in LEVELS.items():
            work = tmp_path_factory.mktemp(level)
            mp.chdir(work)
            params = params_module.from_dict(merge(tiny_params_dict, {"nmt": overrides}))
            download.run(params, "nmt")
            prepare_nmt.run(params)
            train_nmt.run(params, "gru")
            evaluate_nmt.run(params, "gru")
            out[level] = (work, params)
    return out


@pytest.mark.slow  # trains a translator at every token level (about 40 s)
def test_subword_pieces_are_learned_on_train_and_detokenize_exactly(trained):
    work, params = trained["subword"]
    vocab = json.loads((work / "data/prepared/nmt/vocab.json").read_text())
    src = Subword.from_text(vocab["subword"]["src"])
    train_pairs = [line.split("\t") for line in (work / "data/prepared/nmt/train.tsv").read_text().splitlines()]
    assert len(train_pairs) > 100
    for s, _ in train_pairs:
        pieces = src.tokenize(s)
        assert tokens.detokenize(pieces, "subword") == s and len(pieces) < 16
    assert 100 < len(vocab["src"]) <= 200 + 4 and any(len(t) > 2 and t.startswith("\u2581") for t in vocab["src"])
    # Deterministic: preparing again gives the same bytes.
    before = (work / "data/prepared/nmt/vocab.json").read_bytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        prepare_nmt.run(params)
    assert (work / "data/prepared/nmt/vocab.json").read_bytes() == before


@pytest.mark.slow  # trains a translator at every token level (about 40 s)
def test_char_level_uses_characters_and_scores(trained):
    work, _ = trained["char"]
    vocab = json.loads((work / "data/prepared/nmt/vocab.json").read_text())
    assert all(len(t) == 1 for t in vocab["trg"][4:]) and " " in vocab["trg"]
    metrics = json.loads((work / "metrics/nmt-gru.json").read_text())
    assert metrics["decode"] == "beam5" and metrics["pairs"] > 0


@pytest.mark.slow  # trains a translator at every token level (about 40 s)
@pytest.mark.parametrize("level", list(LEVELS))
def test_every_level_writes_dev_and_test_hypotheses(trained, level):
    work, _ = trained[level]
    metrics = json.loads((work / "metrics/nmt-gru.json").read_text())
    for split, n in (("valid", metrics["valid_pairs"]), ("test", metrics["pairs"])):
        assert len((work / f"samples/nmt-gru-{split}.hyp.txt").read_text().split("\n")[:-1]) == n


@pytest.mark.slow  # trains a translator at every token level (about 40 s)
def test_sampling_and_pretokenized_scores(trained, tiny_params_dict):
    work, _ = trained["word"]
    params = params_module.from_dict(merge(tiny_params_dict, {"nmt": {
        "decode": {"method": "sample", "temperature": 0.7, "seed": 3}, "evaluate": {"pretokenized": True}}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        evaluate_nmt.run(params, "gru")
    metrics = json.loads((work / "metrics/nmt-gru.json").read_text())
    assert metrics["decode"] == "sample" and "bleu_greedy" in metrics
    assert metrics["bleu_tok_none_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:none")


def run_translate(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pipeline", "translate", *args], input=stdin, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # trains a translator at every token level (about 40 s)
@pytest.mark.parametrize("level", ["word", "subword"])
def test_translate_command_keeps_lines_in_order(trained, level):
    model = trained[level][0] / "models/nmt/gru"
    lines = ["I'm hungry.", "", "Xylophones zzzqqq are unknown words!", "Where is the station?"]
    out = run_translate(str(model), stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    got = out.stdout.split("\n")[:-1]
    assert len(got) == len(lines) and got[1] == ""
    assert all(isinstance(g, str) for g in got)
    greedy = run_translate(str(model), "--greedy", lines[0], lines[3])
    sampled = run_translate(str(model), "--sample", "--temperature", "0.5", "--seed", "1", lines[0], lines[3])
    assert greedy.returncode == sampled.returncode == 0
    assert len(greedy.stdout.split("\n")[:-1]) == len(sampled.stdout.split("\n")[:-1]) == 2


def test_translate_names_a_missing_model(tmp_path):
    out = run_translate(str(tmp_path / "nope"), "hello")
    assert out.returncode == 1 and "not a model directory" in out.stderr and "Traceback" not in out.stderr
