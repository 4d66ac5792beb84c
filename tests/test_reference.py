"""The generated documentation: every params key documented, and no committed text stale."""

from __future__ import annotations

import json
import re
import shutil
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

import yaml

from pipeline import params as params_module
from pipeline.commands import reference

from .helpers import ROOT


@dataclass(frozen=True)
class Example:
    documented: int  # what it means
    wrapped: Annotated[int, params_module.Range(gt=0)]  # a first line
                                                         # and its continuation
    bare: bool
    # a comment above the next field belongs to no field
    choice: Literal["a", "b"] | None  # one of two, or nothing


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_every_params_key_is_documented():
    assert reference.undocumented(raw_params()) == []
    assert len(reference.keys(raw_params())) > 150  # the walk reaches every section


def test_a_field_without_a_comment_has_no_documentation():
    docs = reference.field_docs(Example)
    assert docs == {"documented": "what it means", "wrapped": "a first line and its continuation", "bare": "",
                    "choice": "one of two, or nothing"}


def test_types_are_described_with_their_rules():
    hints = typing.get_type_hints(Example, include_extras=True)
    assert reference.describe_type(hints["wrapped"]) == ("integer", "> 0")
    assert reference.describe_type(hints["choice"]) == ("string or null", "`a` \\| `b`")
    assert reference.describe_type(params_module.Rate) == ("number", "≥ 0 and < 1")


def test_the_reference_lists_every_key_with_its_default():
    text = reference.params_markdown(raw_params())
    assert "## `nmt.model`" in text and "## `forecast.serve`" in text
    assert "| `hidden` | integer | `256` | > 0 | units per recurrent layer (each direction) |" in text
    assert "| `cells` | list of string | `[lstm, gru]` | `lstm` \\| `gru` |" in text


def test_the_committed_documentation_is_what_the_code_generates():
    assert reference.stale(ROOT) == [], f"run `{reference.COMMAND}` and commit the result"


def test_the_results_tables_follow_the_metrics(tmp_path):
    metrics = tmp_path / "metrics"
    shutil.copytree(ROOT / "metrics", metrics)
    scores = json.loads((metrics / "nmt-lstm.json").read_text())
    scores["bleu"] = 12.3456
    (metrics / "nmt-lstm.json").write_text(json.dumps(scores))
    table = reference.results_table(metrics, raw_params())
    assert "| 12.35 |" in table.splitlines()[2]
    doc = "intro\n<!-- begin generated: results -->\nold text\n<!-- end generated: results -->\nafter\n"
    filled = reference.fill(doc, reference.blocks(metrics, raw_params()))
    assert "old text" not in filled and "12.35" in filled and filled.endswith("after\n")
    assert reference.fill(filled, reference.blocks(metrics, raw_params())) == filled  # idempotent


def test_a_stale_document_is_named(tmp_path):
    for name in ("params.yaml", "README.md", "docs/results.md", "docs/params.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "metrics", tmp_path / "metrics")
    assert reference.stale(tmp_path) == []
    scores = json.loads((tmp_path / "metrics/charlm-gru.json").read_text())
    scores["valid_loss"] = 9.87654
    (tmp_path / "metrics/charlm-gru.json").write_text(json.dumps(scores))
    assert reference.stale(tmp_path) == [tmp_path / "README.md", tmp_path / "docs/results.md"]


def test_the_site_lists_every_page_and_every_page_exists():
    site = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = [next(iter(entry.values())) for entry in site["nav"]]
    assert sorted(pages) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))


def test_the_readme_stays_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300  # measurements go to benchmarks/results/ and docs/
    assert not re.search(r"\b[Ii]ssues? \d", text)  # nothing a clone cannot follow
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).exists(), f"README.md links to {link}, which the repository lacks"
