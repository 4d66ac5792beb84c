"""Profiles rewrite params.yaml values in place, keep its comments, and never its schema."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest
import yaml

from pipeline import params as params_module
from pipeline.commands import profile
from pipeline.params import ParamsError

from .conftest import ROOT, merge
from .helpers import EMPTY_PAIRS, iwslt_folder, run_cli

SHIPPED = profile.available(ROOT / "profiles")


def copy_params(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


# The tutorial systems rnnpipe grew out of, one profile each (issue 18)
RECIPES = ["keras-char-seq2seq", "keras-word-seq2seq", "char-rnn-anna", "tflearn-shakespeare",
           "tf-nmt-iwslt-vien", "tf-nmt-iwslt-vien-attention", "tf-nmt-iwslt-envi", "btc-gru-seq2seq"]


def test_the_shipped_profiles_exist():
    assert {"remote", "anna", "anna-full", "tflearn-shakespeare-full", *RECIPES} <= set(SHIPPED)


@pytest.mark.parametrize("names", [[n] for n in SHIPPED] + [SHIPPED])
def test_every_shipped_profile_applies_and_loads(tmp_path, names):
    path = copy_params(tmp_path)
    changed = profile.apply(names, path, ROOT / "profiles")
    assert changed
    params_module.load(path)  # the result is a valid params.yaml
    assert profile.apply(names, path, ROOT / "profiles") == []  # applying again changes nothing


def test_remote_profile_switches_sources_and_keeps_everything_else(tmp_path):
    path = copy_params(tmp_path)
    original = path.read_text().splitlines()
    changed = dict((k, new) for k, _, new in profile.apply(["remote"], path, ROOT / "profiles"))
    p = params_module.load(path)
    assert p.sources.nmt.url.startswith("https://") and p.sources.nmt.format == "tatoeba-zip"
    assert p.sources.forecast.format == "coindesk-api" and p.sources.forecast.api.key_env == "COINDESK_API_KEY"
    assert changed["sources.forecast.format"] == "coindesk-api"
    after = path.read_text().splitlines()
    assert len(after) == len(original)
    differing = [a for a, b in zip(original, after, strict=True) if a != b]
    assert len(differing) == len(changed) and "sources.charlm.sha256" not in changed  # same value: no change
    assert [line for line in after if line.lstrip().startswith("#")] == [
        line for line in original if line.lstrip().startswith("#")]  # comments survive


def test_a_profile_cannot_add_keys_or_break_types(tmp_path):
    path = copy_params(tmp_path)
    before = path.read_text()
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "typo.yaml").write_text("sources:\n  nmt:\n    urll: x\n")
    with pytest.raises(ParamsError, match=r"typo.yaml: key 'sources.nmt.urll' is not in params.yaml"):
        profile.apply(["typo"], path, folder)
    (folder / "badtype.yaml").write_text("nmt:\n  train:\n    steps: many\n")
    with pytest.raises(ParamsError, match=r"'nmt.train.steps' must be int"):
        profile.apply(["badtype"], path, folder)
    with pytest.raises(ParamsError, match="no such profile; available: badtype, typo"):
        profile.apply(["nope"], path, folder)
    assert path.read_text() == before


def test_profile_command_dry_run_and_apply(tmp_path):
    path = copy_params(tmp_path)
    before = path.read_text()
    out = run_cli("profile", "anna-full", "--params", str(path), "--dry-run")
    assert out.returncode == 0 and "sources.charlm.url: 'data/embedded" in out.stdout and "would change" in out.stdout
    assert path.read_text() == before
    out = run_cli("profile", "anna-full", "--params", str(path))
    assert out.returncode == 0 and params_module.load(path).sources.charlm.url == "gutenberg:1399"
    out = run_cli("profile", "nope", "--params", str(path))
    assert out.returncode == 2 and "no such profile" in out.stderr and "Traceback" not in out.stderr


# Each recipe's own settings, at sizes that run in seconds: the options it sets (one-hot
# inputs, RMSprop, the direction, the corpus vocabulary, several series...) stay.
SHRINK = {
    "nmt": {"data": {"max_pairs": 1000, "valid_size": 20, "test_size": 30},
            "model": {"embed": 8, "hidden": 16},
            "train": {"steps": 4, "batch_size": 8, "log_every": 2},
            "decode": {"batch_size": 16, "beam_size": 2}},
    "charlm": {"model": {"hidden": 16},
               "train": {"steps": 4, "batch_size": 4, "seq_len": 8, "log_every": 2, "checkpoint_every": 2},
               "sample": {"length": 20, "every": 2}},
    "forecast": {"data": {"stride": 20}, "model": {"hidden": 4},
                 "train": {"steps": 4, "batch_size": 8, "log_every": 2}},
}


def recipe_params(tmp_path, names):
    """params.yaml with the profiles applied by the real command, then shrunk; the
    IWSLT source is a local folder of the real dev/test files (tst2012 as train), or of
    their heads under tests/fixtures where ../shared is absent."""
    path = copy_params(tmp_path)
    profile.apply(names, path, ROOT / "profiles")
    raw = yaml.safe_load(path.read_text())
    if raw["sources"]["nmt"]["format"] == "iwslt":
        raw["sources"]["nmt"].update(url=str(iwslt_folder(tmp_path, empty_lines=True)), sha256=None)
    raw = merge(raw, SHRINK)
    for workload in ("nmt", "charlm"):  # a recipe's warmup, if it has one, shrinks with its steps
        train = raw[workload]["train"]
        train["warmup_steps"] = min(train["warmup_steps"], 1)
    return params_module.from_dict(raw)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_runs_end_to_end_on_tiny_params(tmp_path, monkeypatch, recipe):
    names = profile.expand([recipe], ROOT / "profiles")  # with the profile it extends, if any
    params = recipe_params(tmp_path, names)
    overlay = {k for name in names for k in profile.load_overlay(name, ROOT / "profiles")}
    sources = {k for name in names for k in profile.load_overlay(name, ROOT / "profiles").get("sources", {})}
    workloads = [w for w in ("nmt", "charlm", "forecast") if w in overlay or w in sources]
    assert workloads, recipe
    (tmp_path / "data").mkdir()
    (tmp_path / "data/embedded").symlink_to(ROOT / "data/embedded")
    monkeypatch.chdir(tmp_path)
    run = lambda stage, variant=None: importlib.import_module(f"pipeline.stages.{stage}").run(params, variant)
    for workload in workloads:
        run("download", workload)
        run(f"prepare_{workload}")
        if params.sources.nmt.format == "iwslt" and workload == "nmt":  # the train files' empty lines
            stats = json.loads((tmp_path / params.nmt.paths.prepared / "stats.json").read_text())
            assert stats["dropped_empty"] == {"train": EMPTY_PAIRS, "valid": 0, "test": 0}
        if workload == "forecast":
            run("baseline_forecast")
        for cell in getattr(params, workload).model.cells:
            run(f"train_{workload}", cell)
            run(f"evaluate_{workload}", cell)
            assert (tmp_path / "metrics" / f"{workload}-{cell}.json").is_file()


def test_a_profile_applies_the_profile_it_extends(tmp_path):
    assert profile.expand(["tf-nmt-iwslt-vien-attention"], ROOT / "profiles") == \
        ["tf-nmt-iwslt-vien", "tf-nmt-iwslt-vien-attention"]
    assert profile.expand(["tflearn-shakespeare-full"], ROOT / "profiles") == \
        ["tflearn-shakespeare", "tflearn-shakespeare-full"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    alone, both = copy_params(tmp_path / "a"), copy_params(tmp_path / "b")
    profile.apply(["tf-nmt-iwslt-vien-attention"], alone, ROOT / "profiles")
    profile.apply(["tf-nmt-iwslt-vien", "tf-nmt-iwslt-vien-attention"], both, ROOT / "profiles")
    assert alone.read_text() == both.read_text()
    raw = yaml.safe_load(alone.read_text())
    assert raw["nmt"]["data"]["source"] == "vi" and raw["nmt"]["model"]["attention"] == "scaled"  # base and own


def test_a_missing_or_circular_base_is_named(tmp_path):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "child.yaml").write_text("extends: nowhere\nnmt:\n  train:\n    steps: 5\n")
    with pytest.raises(ParamsError, match=r"nowhere\.yaml: no such profile"):
        profile.expand(["child"], folder)
    (folder / "a.yaml").write_text("extends: b\nnmt:\n  train:\n    steps: 5\n")
    (folder / "b.yaml").write_text("extends: a\nnmt:\n  train:\n    steps: 6\n")
    with pytest.raises(ParamsError, match="makes a cycle: a -> b -> a"):
        profile.expand(["a"], folder)
