"""``rnnpipe report [OLD] [NEW]``: a review of two revisions, ready to paste into a pull request.

Compares two git revisions of this repository (NEW defaults to the workspace, OLD to
HEAD), the way DVC's CML examples report on a pull request, but with no service and no
network:

- every metric of ``dvc metrics diff --all`` with its change, classified as better,
  worse (BLEU, chrF and dev BLEU up; losses, bits per char, MAE, MASE and the ratios to
  the baselines down) or *within noise*: no larger than the spread the same metric
  showed over training seeds (a metric with no measured spread, a count or a setting
  such as a backtest's folds gets no verdict) (``metrics/noise.json``, measured by
  ``benchmarks/noise.py``; :mod:`pipeline.evaluation.noise`), or, for the forecaster's
  MAE and MASE, than the spread over its ensemble's seeds that the metrics file itself
  records (``mae_seed_spread``), whichever is larger;
- a warning when the two revisions' metrics were produced on different machines or
  software (the ``provenance`` each metrics file records): floats differ across CPUs, so
  part of every difference may come from that;
- every parameter that changed (``dvc params diff``);
- every plot of ``dvc plots diff`` (dvc.yaml's top-level plots: the dvclive training
  curves, the forecaster's error by horizon and its forecast pictures), both revisions
  in each, rendered to PNG from DVC's own Vega-Lite specs without a browser
  (:mod:`pipeline.commands.vega`);
- the model cards of both revisions (``metrics/cards/``, written by the evaluate stages),
  copied beside the report and linked, each marked changed or not.

It writes ``report.md`` (the PNGs beside it) and ``report.html`` (the same, with the
images embedded: one self-contained file) into ``--out``, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_dir
from pipeline.commands import vega
from pipeline.commands.dvc_cli import dvc_json
from pipeline.evaluation import noise, provenance

PROVENANCE = "provenance."
CARDS = noise.NOISE_FILE.parent / "cards"  # metrics/cards/<workload>-<cell>.md


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rnnpipe report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", nargs="?", default="HEAD", help="the baseline revision (default: %(default)s)")
    ap.add_argument("new", nargs="?", default=None, help="the revision under review (default: the workspace)")
    ap.add_argument("--out", default="reports", help="folder for report.md, report.html and the curves "
                    "(default: %(default)s)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    markdown = write_report(Path.cwd(), args.old, args.new, Path(args.out))
    print(markdown)
    return 0


def write_report(repo: Path, old: str, new: str | None, out: Path) -> str:
    """Build the report of ``old`` against ``new`` (None: the workspace) into ``out``."""
    revs = [old] + ([new] if new else [])
    metrics = dvc_json("metrics", "diff", "--all", *revs, cwd=repo)
    params = dvc_json("params", "diff", *revs, cwd=repo)
    new_name = new or "workspace"
    bands = _noise(repo, new) or _noise(repo, old)
    with atomic_dir(out) as tmp, tempfile.TemporaryDirectory() as scratch:
        plots = dvc_json("plots", "diff", *revs, "-o", scratch, cwd=repo).get("data", {})
        images = _render(plots, Path(scratch), tmp)
        cards = {"old": _cards(repo, old, tmp / "cards" / _slug(old)),
                 "new": _cards(repo, new, tmp / "cards" / _slug(new_name))}
        markdown = _markdown(old, new_name, metrics, params, images, bands, cards)
        (tmp / "report.md").write_text(markdown, encoding="utf-8")
        (tmp / "report.html").write_text(_html(markdown, tmp), encoding="utf-8")
    return markdown


def _render(plots: dict[str, list[dict]], scratch: Path, folder: Path) -> list[tuple[str, str]]:
    """``(alt text, file)`` for each plot of ``dvc plots diff --json``: Vega-Lite specs as
    PNGs, image plots copied (one per revision). A plot with no data in either revision
    (a cell that neither ran) is left out."""
    images = []
    for name, entries in plots.items():
        slug = _slug(name)
        for i, entry in enumerate(entries):
            if entry.get("type") == "vega":
                spec = entry["content"]
                if not spec.get("data", {}).get("values"):
                    continue
                target = folder / f"{slug}.png" if i == 0 else folder / f"{slug}-{i}.png"
                vega.to_png(spec, target)
                images.append((name, target.name))
            elif entry.get("type") == "image":
                rev = "-".join(entry.get("revisions", [])) or str(i)
                source = Path(entry["url"])
                source = source if source.is_absolute() else scratch / source
                target = folder / f"{slug}-{_slug(rev)}{source.suffix}"
                shutil.copyfile(source, target)
                images.append((f"{name} @ {rev}", target.name))
    return images


def _cards(repo: Path, rev: str | None, folder: Path) -> dict[str, tuple[str, str]]:
    """The model cards of revision ``rev`` (None: the workspace), copied into ``folder``:
    ``{card name: (link relative to the report, text)}``."""
    if rev is None:
        texts = {path.name: path.read_text(encoding="utf-8") for path in sorted((repo / CARDS).glob("*.md"))}
    else:
        listed = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{CARDS.as_posix()}"], cwd=repo,
                                capture_output=True, text=True)
        names = [n for n in listed.stdout.split() if n.endswith(".md")] if listed.returncode == 0 else []
        texts = {n: subprocess.run(["git", "show", f"{rev}:{(CARDS / n).as_posix()}"], cwd=repo, capture_output=True,
                                   text=True, check=True).stdout for n in names}
    out = {}
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        out[name] = (f"{folder.parent.name}/{folder.name}/{name}", text)
    return out


def _slug(text: str) -> str:
    """A file-name-safe form of a plot id or a revision: ``plots/a.png`` -> ``plots-a-png``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _noise(repo: Path, rev: str | None) -> dict[str, Any]:
    """The noise bands of revision ``rev`` (None: the workspace), or {} if it has none."""
    if rev is None:
        path = repo / noise.NOISE_FILE
        return noise.load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    done = subprocess.run(["git", "show", f"{rev}:{noise.NOISE_FILE.as_posix()}"], cwd=repo, capture_output=True,
                          text=True)
    return noise.load(done.stdout) if done.returncode == 0 else {}


def _machines(metrics: dict) -> list[str]:
    """Warnings for metrics files whose ``provenance`` differs between the revisions."""
    warnings = []
    for path, values in sorted(metrics.items()):
        fields = {k[len(PROVENANCE):]: v for k, v in values.items() if k.startswith(PROVENANCE)}
        old = {k: v["old"] for k, v in fields.items() if v.get("old") is not None}
        new = {k: v["new"] for k, v in fields.items() if v.get("new") is not None}
        if not fields or any(all(v.get(side) is None for v in values.values()) for side in ("old", "new")):
            continue  # no provenance in either revision, or a file only one revision has
        if not old or not new:
            which = "old" if not old else "new"
            warnings.append(f"- `{path}`: the {which} revision records no machine, so whether both came from the "
                            "same kind of machine is unknown.")
            continue
        changed = provenance.differences(old, new)
        if changed:
            what = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
            warnings.append(f"- `{path}` was produced on a different machine or software ({what}).")
    return warnings


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def _markdown(old: str, new: str, metrics: dict, params: dict, images: list[tuple[str, str]],
              bands: dict[str, Any], cards: dict[str, dict[str, tuple[str, str]]] | None = None) -> str:
    changed, same = [], []
    for path, values in sorted(metrics.items()):
        for metric, v in sorted(values.items()):
            if isinstance(v.get("old", v.get("new")), (list, dict)) or metric.startswith(PROVENANCE):
                continue
            diff = v.get("diff")
            if v.get("old") != v.get("new"):
                number = isinstance(diff, (int, float))
                change = f"{diff:+,.4f}".rstrip("0").rstrip(".") if number else "-"
                band = noise.band_of(bands, path, metric)
                spread = noise.seed_spread(values, metric)  # an ensemble's own spread over its seeds
                if spread is not None:
                    band = spread if band is None else max(band, spread)
                verdict = noise.classify(metric, diff if number else None, band)
                shown = "-" if band is None else "±" + _fmt(round(band, 4))
                changed.append(f"| {path} | {metric} | {_fmt(v.get('old'))} | {_fmt(v.get('new'))} | {change} | "
                               f"{shown} | {verdict} |")
            else:
                same.append(f"| {path} | {metric} | {_fmt(v.get('new'))} |")
    lines = [f"## rnnpipe: `{new}` against `{old}`", ""]
    machines = _machines(metrics)
    if machines:
        lines += ["> **Different machines.** The two revisions' metrics were not produced on the same kind of "
                  "machine and software, and the same code and seeds give different floats on different CPUs: "
                  "part of every difference below may come from that. The noise bands were measured on one "
                  "machine only.", ">", *(f"> {w}" for w in machines), ""]
    lines += ["### Metrics that changed", ""]
    if changed:
        how = (f"noise bands from `{noise.NOISE_FILE.as_posix()}` ({bands.get('how', 'measured over seeds')}; "
               f"seeds {bands.get('seeds')}, at {bands.get('commit')})" if bands else
               f"no `{noise.NOISE_FILE.as_posix()}` in either revision: changes are not compared with noise")
        lines += [f"A change no larger than its noise band is what changing the training seed alone produced: "
                  f"{how}. A metric with no band gets no verdict, and counts and settings (a backtest's "
                  "origins or folds) get none either.", "",
                  "| file | metric | old | new | change | noise band | |", "|---|---|---:|---:|---:|---:|---|",
                  *changed]
    else:
        lines.append("None.")
    if same:
        lines += ["", f"<details><summary>{len(same)} metric{'' if len(same) == 1 else 's'} unchanged</summary>", "",
                  "| file | metric | value |", "|---|---|---:|", *same, "", "</details>"]
    lines += ["", "### Parameters that changed", ""]
    params_changed = [(f, k, v) for f, keys in sorted(params.items()) for k, v in sorted(keys.items())]
    if params_changed:
        lines += ["| file | key | old | new |", "|---|---|---|---|"]
        lines += [f"| {f} | {k} | {_fmt(v.get('old'))} | {_fmt(v.get('new'))} |" for f, k, v in params_changed]
    else:
        lines.append("None.")
    cards = cards or {"old": {}, "new": {}}
    lines += ["", "### Model cards", ""]
    names = sorted(set(cards["old"]) | set(cards["new"]))
    if names:
        lines += ["What each model is, what it was trained and scored on, and its limits "
                  f"(`{CARDS.as_posix()}/`, written by the evaluate stages).", "",
                  f"| model | `{old}` | `{new}` | |", "|---|---|---|---|"]
        for name in names:
            a, b = cards["old"].get(name), cards["new"].get(name)
            state = "new" if a is None else "removed" if b is None else "changed" if a[1] != b[1] else "unchanged"
            links = ["-" if card is None else f"[{name}]({card[0]})" for card in (a, b)]
            lines.append(f"| {name.removesuffix('.md')} | {links[0]} | {links[1]} | {state} |")
    else:
        lines.append("None in either revision.")
    lines += ["", "### Plots", "", "From `dvc plots diff`: each revision in its own colour.", ""]
    lines += [f"![{name}]({image})" for name, image in images] or ["No plots."]
    return "\n".join(lines) + "\n"


def _inline(text: str) -> str:
    """Escaped text with Markdown's `code` spans as <code> and [links](href) as <a>."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def _html(markdown: str, folder: Path) -> str:
    """The Markdown as a self-contained page: tables as tables, images inlined."""
    body, table = [], []

    def flush():
        if table:
            cells = [[c.strip() for c in row.strip("|").split("|")] for row in table if not set(row) <= set("|-: ")]
            head, *rest = cells
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rest)
                        + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("!["):
            name, src = line[2:].split("](")
            data = base64.b64encode((folder / src.rstrip(")")).read_bytes()).decode()
            body.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith(("<details>", "</details>")):
            body.append(line)  # already HTML
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line.lstrip('# '))}</h{level}>")
        elif line:
            body.append(f"<p>{_inline(line)}</p>")
    flush()
    style = "body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}"
    return f"<!doctype html><meta charset=utf-8><title>rnnpipe report</title><style>{style}</style>\n" + \
        "\n".join(body) + "\n"
