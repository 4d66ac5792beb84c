"""`dvc plots show/diff` pages that need no network, and PNGs of Vega-Lite specs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.commands import vega

from .conftest import ROOT
from .helpers import sh

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_committed_template_is_what_the_pinned_bundle_generates():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.commands.vega", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (ROOT / vega.TEMPLATE).read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC fills the plots, and adds no CDN scripts
    assert "window.vegaEmbed=" in page and "<script src" not in page


def test_check_reports_a_stale_template(tmp_path):
    stale = tmp_path / "t.html"
    stale.write_text("<html>{plot_divs}</html>")
    args = [sys.executable, "-m", "pipeline.commands.vega", "--out", str(stale)]
    assert subprocess.run([*args, "--check"], capture_output=True).returncode == 1
    assert subprocess.run(args, capture_output=True).returncode == 0
    assert stale.read_text() == vega.template_html()


def test_dvc_plots_diff_writes_a_page_with_no_network_dependency(tmp_path):
    """The project's .dvc/config and template, in a fresh DVC repository: the page DVC
    writes carries vega inline and loads nothing from anywhere."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, sys.executable, "-m", "dvc", "init", "-q")
    shutil.copyfile(ROOT / ".dvc/config", repo / ".dvc/config")
    shutil.copyfile(ROOT / vega.TEMPLATE, repo / vega.TEMPLATE)
    (repo / "loss.tsv").write_text("step\tloss\n10\t2.5\n20\t2.0\n")
    (repo / "dvc.yaml").write_text("plots:\n- loss:\n    x: step\n    y:\n      loss.tsv: loss\n")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "one")
    (repo / "loss.tsv").write_text("step\tloss\n10\t2.25\n20\t1.5\n")
    sh(repo, sys.executable, "-m", "dvc", "plots", "diff", "HEAD", "-o", "out")
    page = (repo / "out/index.html").read_text(encoding="utf-8")
    assert "vegaEmbed('#loss'" in page and "window.vegaEmbed=" in page
    assert re.findall(r"<script[^>]*\bsrc=", page) == [] and "cdn." not in page
    assert '"rev": "HEAD"' in page and '"rev": "workspace"' in page  # both revisions' data, inline


def test_to_png_renders_a_spec(tmp_path):
    spec = {"data": {"values": [{"x": 1, "y": 2}, {"x": 2, "y": 3}]}, "mark": "line",
            "encoding": {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"}}}
    target = vega.to_png(spec, tmp_path / "a/b.png")
    assert target.read_bytes()[:8] == PNG and target.stat().st_size > 1000
    assert not list(Path(tmp_path / "a").glob(".*.tmp"))
