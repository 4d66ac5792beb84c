"""Profiles rewrite params.yaml values in place, keep its comments, and never its schema."""

from __future__ import annotations

import shutil

import pytest

from pipeline import params as params_module
from pipeline.commands import profile
from pipeline.params import ParamsError

from .conftest import ROOT
from .helpers import run_cli

SHIPPED = profile.available(ROOT / "profiles")


def copy_params(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


def test_the_shipped_profiles_exist():
    assert {"remote", "iwslt", "anna", "anna-full"} <= set(SHIPPED)


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
    differing = [a for a, b in zip(original, after) if a != b]
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
