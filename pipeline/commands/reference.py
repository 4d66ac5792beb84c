"""The generated parts of the documentation: the parameters reference and the results tables.

Nothing here is typed by hand, so nothing here can go stale unnoticed:

- ``docs/params.md``, every key of ``params.yaml``: its type and allowed values from the
  typed loader (:mod:`pipeline.params`), its value in the committed ``params.yaml`` (the
  default run), and one line of meaning, the comment beside its field in ``params.py``;
- the results tables between ``<!-- begin generated: NAME -->`` and ``<!-- end generated:
  NAME -->`` markers in ``README.md`` and ``docs/results.md``, from ``metrics/*.json`` and
  the seed bands in ``metrics/noise.json``.

``python -m pipeline.commands.reference`` writes them; ``--check`` writes nothing and exits
1 naming what is stale. A test runs the check, and another fails on an undocumented key.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from pipeline import artifacts
from pipeline import params as params_module
from pipeline.evaluation import noise as noise_module

PARAMS_DOC = Path("docs/params.md")
README = Path("README.md")
RESULTS_DOC = Path("docs/results.md")
METRICS = Path("metrics")
COMMAND = "python -m pipeline.commands.reference"


# --- the parameters reference ----------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """Each field's comment in the source of ``cls`` and its dataclass bases: the text after
    ``#`` on the field's lines, and on comment-only lines right below it that are indented
    deeper than the field (a continuation)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and klass is not object:
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = {tok.start[0]: (tok.start[1], tok.string.lstrip("#").strip())
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    (classdef,) = [node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]
    docs = {}
    for node in classdef.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = [comments[n][1] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        n = node.end_lineno + 1
        while n in comments and lines[n - 1].lstrip().startswith("#") and comments[n][0] > node.col_offset:
            text.append(comments[n][1])
            n += 1
        docs[node.target.id] = " ".join(text)
    return docs


def describe_type(tp: Any) -> tuple[str, str]:
    """``(type, allowed values)`` of an annotation, in words: ``("integer", "> 0")``."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *bounds = typing.get_args(tp)
        kind, allowed = describe_type(base)
        rules = [_range_words(b) for b in bounds if isinstance(b, params_module.Range)]
        return kind, "; ".join(filter(None, [allowed, *rules]))
    if origin in (typing.Union, types.UnionType):
        inner = [o for o in typing.get_args(tp) if o is not type(None)]
        kind, allowed = describe_type(inner[0])
        return f"{kind} or null", allowed
    if origin is Literal:
        return "string", " \\| ".join(f"`{c}`" for c in typing.get_args(tp))
    if origin is tuple:
        kind, allowed = describe_type(typing.get_args(tp)[0])
        return f"list of {kind}", allowed
    names = {int: "integer", float: "number", str: "string", bool: "boolean", dt.date: "date (YYYY-MM-DD)"}
    return names.get(tp, getattr(tp, "__name__", str(tp))), ""


def _range_words(bound: params_module.Range) -> str:
    rules = [(bound.gt, ">"), (bound.ge, "≥"), (bound.lt, "<"), (bound.le, "≤")]
    return " and ".join(f"{op} {value:g}" for value, op in rules if value is not None)


@dataclasses.dataclass(frozen=True)
class Key:
    """One leaf key of ``params.yaml``."""

    path: str
    section: str
    kind: str
    allowed: str
    default: Any
    meaning: str


def sections(cls: type = params_module.Params, prefix: str = "") -> list[tuple[str, type]]:
    """Every section (a dataclass) of the typed params, depth first: ``[("", Params),
    ("fetch", FetchPolicy), ...]``."""
    out = [(prefix, cls)]
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            out += sections(hints[field.name], f"{prefix}.{field.name}" if prefix else field.name)
    return out


def keys(raw: Mapping[str, Any]) -> list[Key]:
    """Every leaf key of the typed params, with its value in ``raw`` (a parsed params.yaml)."""
    out = []
    for section, cls in sections():
        hints = typing.get_type_hints(cls, include_extras=True)
        docs = field_docs(cls)
        values = _lookup(raw, section)
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[field.name]):
                continue
            kind, allowed = describe_type(hints[field.name])
            path = f"{section}.{field.name}" if section else field.name
            out.append(Key(path, section, kind, allowed, values.get(field.name), docs.get(field.name, "")))
    return out


def _lookup(raw: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    for part in filter(None, section.split(".")):
        raw = raw.get(part) or {}
    return raw


def undocumented(raw: Mapping[str, Any]) -> list[str]:
    """The keys whose field in ``pipeline/params.py`` has no comment."""
    return [key.path for key in keys(raw) if not key.meaning]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None:
        return "`null`"
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def params_markdown(raw: Mapping[str, Any]) -> str:
    lines = ["# Parameters", "",
             f"<!-- Generated by `{COMMAND}` from pipeline/params.py and params.yaml: do not edit. -->", "",
             "Every value the pipeline uses is a key of `params.yaml`. `pipeline/params.py` reads it into",
             "frozen dataclasses and refuses an unknown or missing key, a wrong type, a value out of range",
             "and contradicting keys, naming the key. *Default* is the value in the committed",
             "`params.yaml`: the default run. Change one for an experiment with",
             "`dvc exp run -S <key>=<value>`; the profiles (`rnnpipe profile --help`) change several.", ""]
    by_section: dict[str, list[Key]] = {}
    for key in keys(raw):
        by_section.setdefault(key.section, []).append(key)
    for section, cls in sections():
        if section not in by_section:
            continue
        lines += [f"## `{section}`", ""]
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            lines += [" ".join(cls.__doc__.split()), ""]
        lines += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for key in by_section[section]:
            name = key.path.rsplit(".", 1)[-1]
            lines.append(f"| `{name}` | {key.kind} | {_value(key.default)} | {key.allowed} | "
                         f"{key.meaning.replace('|', chr(92) + '|').replace('<', '&lt;')} |")
        lines.append("")
    return "\n".join(lines)


# --- the results tables ----------------------------------------------------------------
Metrics = Mapping[str, dict]  # a metrics folder's JSON files by name ({} for a missing one)


def read_metrics(metrics: Path | Metrics = METRICS) -> Metrics:
    """Every ``*.json`` of the folder ``metrics``, parsed once (a mapping passes through)."""
    if not isinstance(metrics, Path):
        return metrics
    return {path.name: json.loads(path.read_text("utf-8")) for path in sorted(metrics.glob("*.json"))}


def _band(noise: Mapping[str, Any], name: str, metric: str) -> float | None:
    return noise_module.band_of(noise, f"metrics/{name}", metric)


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def results_table(metrics: Path | Metrics = METRICS, raw: Mapping[str, Any] | None = None) -> str:
    """The default run's headline table: each workload's held-out metrics for both cells,
    each with its seed band (±)."""
    m = read_metrics(metrics)
    raw = raw if raw is not None else yaml.safe_load(Path("params.yaml").read_text("utf-8"))
    noise = m.get("noise.json", {})
    cells = ("lstm", "gru")
    nmt = {c: m.get(f"nmt-{c}.json", {}) for c in cells}
    lm = {c: m.get(f"charlm-{c}.json", {}) for c in cells}
    fc = {c: m.get(f"forecast-{c}.json", {}) for c in cells}
    n, f = raw["nmt"], raw["forecast"]

    def row(label: str, files: dict, name: str, metric: str | None, digits: int,
            show: Callable[[dict], str] | None = None) -> str:
        """A table row; ``metric`` None: ``show`` gives the value, and there is no band."""
        cols = []
        for c in cells:
            cols.append(show(files[c]) if show else _num(files[c].get(metric), digits))
            cols.append(_num(_band(noise, name.format(c), metric) if metric else None, digits))
        return f"| {label} | " + " | ".join(cols) + " |"

    first = nmt["lstm"]
    translation = (f"translation {n['data']['source']}→{n['data']['target']} ({first.get('pairs', 0):,} test pairs), "
                   f"{n['model']['attention']} attention, {n['train']['steps']:,} steps")
    bleu = f"BLEU (sacrebleu `{first.get('bleu_signature', '')}`), {first.get('decode', '')}"
    text = raw["sources"]["charlm"]["url"].rsplit("/", 1)[-1]
    lm_label = f"char LM ({text}, the last {raw['charlm']['data']['valid_fraction']:.0%} held out), " \
        f"{raw['charlm']['train']['steps']:,} steps"
    first_fc = fc["lstm"]
    fc_label = (f"forecaster, BPI close ({first_fc.get('test_windows', 0)} test windows, "
                f"{f['data']['input_len']} → {f['data']['output_len']} days), the mean of "
                f"{f['train']['seeds']} seeds' networks")
    esc = lambda text: text.replace("|", "\\|")
    lines = ["| workload | metric (held-out data) | LSTM | ± | GRU | ± |", "|---|---|---:|---:|---:|---:|",
             row(f"{esc(translation)} | {esc(bleu)}", nmt, "nmt-{}.json", "bleu", 2),
             row(" | chrF", nmt, "nmt-{}.json", "chrf", 2),
             row(" | greedy BLEU", nmt, "nmt-{}.json", "bleu_greedy", 2),
             row(f"{lm_label} | validation loss, nats/char (bits/char)", lm, "charlm-{}.json", "valid_loss", 3,
                 lambda m: f"{_num(m.get('valid_loss'), 3)} ({_num(m.get('valid_bpc'), 3)})"),
             row(f"{fc_label} | MAE in USD", fc, "forecast-{}.json", "mae", 2),
             row(" | MAE of the naive forecast (tomorrow = today)", fc, "forecast-{}.json", "naive_mae", 2),
             row(" | `mae_vs_naive` (below 1: better than naive)", fc, "forecast-{}.json", "mae_vs_naive", 3),
             row(" | each seed's network alone (`seed_mae_min` … `max`)", fc, "forecast-{}.json", None, 2,
                 lambda m: f"{_num(m.get('seed_mae_min'), 2)} … {_num(m.get('seed_mae_max'), 2)}"),
             row(" | coverage of the 80 % / 95 % intervals", fc, "forecast-{}.json", None, 3,
                 lambda m: f"{_num(m.get('model_coverage80'), 3)} / {_num(m.get('model_coverage95'), 3)}")]
    return "\n".join(lines)


def machine_line(metrics: Path | Metrics = METRICS) -> str:
    """Which machine produced the committed metrics, and where the bands come from."""
    m = read_metrics(metrics)
    prov = m.get("nmt-lstm.json", {}).get("provenance", {})
    noise = m.get("noise.json", {})
    seeds = ", ".join(str(s) for s in noise.get("seeds", []))
    return (f"Produced by `dvc repro` on {prov.get('cpu', 'an unrecorded CPU')}, {prov.get('cores', '?')} cores, "
            f"jax {prov.get('jax', '?')} (every metrics file's `provenance`). ± is the metric's seed band: "
            f"max − min over training seeds {seeds or '–'} (`metrics/noise.json`, measured at "
            f"{noise.get('commit', '–')} by `python benchmarks/noise.py`).")


def forecaster_verdict(metrics: Path | Metrics = METRICS, raw: Mapping[str, Any] | None = None) -> str:
    """The forecaster's result in plain words, from its test-window and backtest metrics."""
    m = read_metrics(metrics)
    fc = {c: m.get(f"forecast-{c}.json", {}) for c in ("lstm", "gru")}
    back = m.get("backtest.json", {})
    ratios = [(c, m["mae_vs_naive"]) for c, m in fc.items() if "mae_vs_naive" in m]
    worse = [c.upper() for c, r in ratios if r > 1]
    parts = []
    if ratios:
        each = ", ".join(f"{c.upper()} {r:.2f}×" for c, r in ratios)
        if len(worse) == len(ratios):
            parts.append(f"**The forecaster does not beat the naive forecast (tomorrow = today).** On the test "
                         f"windows its MAE is {each} naive's")
        else:
            parts.append(f"On the test windows the forecaster's MAE is {each} naive's")
    if "model_mase" in back:
        cell = ((raw or {}).get("forecast", {}).get("backtest", {}).get("cell") or "served").upper()
        parts.append(f"over the rolling-origin backtest ({back.get('origins')} origins, "
                     f"{back.get('first_origin')} … {back.get('last_origin')}) the {cell} ensemble's MASE is "
                     f"{back['model_mase']:.2f} "
                     f"against naive's {back['naive_mase']:.2f}, better than naive at "
                     f"{int(back.get('model_beats_naive_at', 0))} of 40 horizon steps and worse at "
                     f"{int(back.get('model_loses_to_naive_at', 0))} (Diebold-Mariano, 5 %)")
    return "; ".join(parts) + ". Daily Bitcoin prices are close to a random walk; the forecaster is a " \
        "worked example of honest scoring, not a trading signal." if parts else ""


def backtest_table(metrics: Path | Metrics = METRICS) -> str:
    m = read_metrics(metrics)
    back = m.get("backtest.json", {})
    names = {"naive": "naive last value", "autoets": "AutoETS", "autoarima": "AutoARIMA",
             "drift": "random walk with drift", "model": "the served network (ensemble), conformal intervals",
             "single": "its first network alone"}
    lines = ["| method | MASE 1–10 | 11–20 | 21–30 | 31–40 | all | better than naive at | worse at | "
             "coverage 80 % / 95 % |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key, label in names.items():
        if f"{key}_mase" not in back:
            continue
        mase = [back.get(f"{key}_mase_h{a}_{b}") for a, b in ((1, 10), (11, 20), (21, 30), (31, 40))]
        lines.append(f"| {label} | " + " | ".join(_num(m, 2) for m in mase) + f" | {_num(back[f'{key}_mase'], 2)} | "
                     + ("–" if key == "naive" else str(int(back.get(f"{key}_beats_naive_at", 0)))) + " | "
                     + ("–" if key == "naive" else str(int(back.get(f"{key}_loses_to_naive_at", 0)))) + " | "
                     + f"{_num(back.get(f'{key}_coverage80'), 2)} / {_num(back.get(f'{key}_coverage95'), 2)} |")
    return "\n".join(lines)


def forecast_methods_table(metrics: Path | Metrics = METRICS) -> str:
    m = read_metrics(metrics)
    fc = {c: m.get(f"forecast-{c}.json", {}) for c in ("lstm", "gru")}
    lines = ["| method (test windows) | MAE | MASE | coverage 80 % / 95 % | interval score 80 % / 95 % |",
             "|---|---:|---:|---|---|"]
    base = fc["lstm"]
    rows = [(f"{c.upper()} (the mean of its seeds' networks)", fc[c], "") for c in ("lstm", "gru")]
    rows += [(label, base, f"{key}_") for key, label in
             (("naive", "naive last value"), ("autoets", "AutoETS"), ("autoarima", "AutoARIMA"),
              ("drift", "random walk with drift"))]
    for label, m, p in rows:
        cov = "model_" if not p else p
        if f"{p}mae" not in m:
            continue
        lines.append(f"| {label} | {_num(m[f'{p}mae'], 2)} | {_num(m.get(f'{p}mase'), 3)} | "
                     f"{_num(m.get(f'{cov}coverage80'), 3)} / {_num(m.get(f'{cov}coverage95'), 3)} | "
                     f"{_num(m.get(f'{cov}interval_score80'), 0)} / {_num(m.get(f'{cov}interval_score95'), 0)} |")
    return "\n".join(lines)


def nmt_table(metrics: Path | Metrics = METRICS) -> str:
    m = read_metrics(metrics)
    noise = m.get("noise.json", {})
    rows = (("bleu", "test BLEU", 2), ("chrf", "test chrF", 2), ("bleu_greedy", "test BLEU, greedy", 2),
            ("valid_bleu", "dev BLEU", 2), ("loss", "test loss (nats/token)", 3),
            ("perplexity", "test perplexity", 2), ("accuracy", "test token accuracy", 3))
    lines = ["| metric | LSTM | ± | GRU | ± |", "|---|---:|---:|---:|---:|"]
    files = {c: m.get(f"nmt-{c}.json", {}) for c in ("lstm", "gru")}
    for key, label, digits in rows:
        cols = []
        for c in ("lstm", "gru"):
            cols += [_num(files[c].get(key), digits), _num(_band(noise, f"nmt-{c}.json", key), digits)]
        lines.append(f"| {label} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def blocks(metrics: Path | Metrics = METRICS, raw: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The generated blocks by name, as they go between the markers."""
    metrics = read_metrics(metrics)
    return {"results": results_table(metrics, raw) + "\n\n" + machine_line(metrics),
            "verdict": forecaster_verdict(metrics, raw),
            "nmt": nmt_table(metrics),
            "forecast": forecast_methods_table(metrics),
            "backtest": backtest_table(metrics)}


_MARKER = re.compile(r"(<!-- begin generated: (\w+) -->\n)(.*?)(<!-- end generated: \2 -->)", re.S)


def fill(text: str, generated: Mapping[str, str]) -> str:
    """``text`` with every marked block replaced by its generated version."""
    def one(match: re.Match) -> str:
        name = match.group(2)
        if name not in generated:
            raise KeyError(f"no generated block named {name!r} (known: {', '.join(generated)})")
        return f"{match.group(1)}{generated[name]}\n{match.group(4)}"
    return _MARKER.sub(one, text)


def expected(root: Path = Path(".")) -> dict[Path, str]:
    """Every generated file's expected text."""
    raw = yaml.safe_load((root / "params.yaml").read_text("utf-8"))
    generated = blocks(root / METRICS, raw)
    out = {root / PARAMS_DOC: params_markdown(raw) + "\n"}
    for doc in (README, RESULTS_DOC):
        if (root / doc).is_file():
            out[root / doc] = fill((root / doc).read_text("utf-8"), generated)
    return out


def stale(root: Path = Path(".")) -> list[Path]:
    """The generated files whose committed text differs from what the code generates now."""
    return [path for path, text in expected(root).items()
            if not path.is_file() or path.read_text("utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Write the generated documentation: docs/params.md (every params.yaml key) "
        "and the results tables marked in README.md and docs/results.md (from metrics/).")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming the stale files")
    args = parser.parse_args(argv)
    raw = yaml.safe_load(Path("params.yaml").read_text("utf-8"))
    if missing := undocumented(raw):
        print(f"error: pipeline/params.py: no comment documents {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.check:
        if paths := stale():
            print("stale: " + ", ".join(map(str, paths)) + f" (run `{COMMAND}`)", file=sys.stderr)
            return 1
        return 0
    for path, text in expected().items():
        if not path.is_file() or path.read_text("utf-8") != text:
            artifacts.write_text(path, text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
