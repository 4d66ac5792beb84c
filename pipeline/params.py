"""The one typed view of ``params.yaml``.

Every value the pipeline uses is declared here as a frozen dataclass field that mirrors
``params.yaml`` key for key. Nothing has a default: a value written here would be a
second source of truth. :func:`load` rejects unknown keys, missing keys and wrong types
with a message that names the file, the key, its section and the valid keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from pipeline.errors import PipelineError

Cell = Literal["lstm", "gru"]
Precision = Literal["float32", "bfloat16"]  # of the recurrent matmuls; carries stay float32


class ParamsError(PipelineError, ValueError):
    """A params.yaml problem; the message names the file and the key."""


# --- sources -------------------------------------------------------------------------
@dataclass(frozen=True)
class FetchPolicy:
    """How hard downloads try: retries with backoff, timeouts, a size limit."""

    retries: int
    backoff_seconds: float
    max_backoff_seconds: float
    connect_timeout: float
    read_timeout: float
    max_megabytes: int
    mirror: str | None


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None
    raw: str


@dataclass(frozen=True)
class PairsSource(Source):
    format: Literal["tsv", "tatoeba-zip", "iwslt"]


@dataclass(frozen=True)
class TextSource(Source):
    format: Literal["text", "gutenberg"]


@dataclass(frozen=True)
class CoindeskApi:
    """The CoinDesk Data API request (format ``coindesk-api`` only)."""

    market: str
    instruments: tuple[str, ...]
    key_env: str
    since: dt.date


@dataclass(frozen=True)
class PriceSource(Source):
    format: Literal["bpi-json", "coindesk-csv", "coindesk-api"]
    api: CoindeskApi


@dataclass(frozen=True)
class Sources:
    """Where each workload's raw data comes from, and in which format."""

    nmt: PairsSource
    charlm: TextSource
    forecast: PriceSource


# --- translation ---------------------------------------------------------------------
@dataclass(frozen=True)
class Paths:
    """Where a workload's prepared data, models, metrics, plots and samples go."""

    prepared: str
    models: str
    metrics: str
    plots: str
    samples: str


@dataclass(frozen=True)
class NmtData:
    seed: int
    level: Literal["word", "char", "subword"]
    vocab_size: int
    lowercase: bool
    max_len: int
    max_pairs: int
    valid_size: int
    test_size: int
    min_freq: int
    buckets: tuple[int, ...]


@dataclass(frozen=True)
class NmtModel:
    cells: tuple[Cell, ...]
    embed: int
    hidden: int
    layers: int
    bidirectional: bool
    attention: Literal["none", "dot", "general", "scaled", "bahdanau"]
    input_feeding: bool
    tie_embeddings: bool
    dropout: float
    precision: Precision


@dataclass(frozen=True)
class NmtTrain:
    seed: int
    steps: int
    batch_size: int
    optimizer: Literal["adam", "sgd"]
    learning_rate: float
    schedule: Literal["constant", "luong234"]
    clip_norm: float
    label_smoothing: float
    log_every: int
    patience: int


@dataclass(frozen=True)
class NmtDecode:
    method: Literal["greedy", "beam", "sample"]
    beam_size: int
    length_penalty: float
    temperature: float
    seed: int
    max_len_factor: int
    batch_size: int


@dataclass(frozen=True)
class NmtEvaluate:
    pretokenized: bool


@dataclass(frozen=True)
class Nmt:
    paths: Paths
    data: NmtData
    model: NmtModel
    train: NmtTrain
    decode: NmtDecode
    evaluate: NmtEvaluate


# --- character LM --------------------------------------------------------------------
@dataclass(frozen=True)
class CharlmData:
    valid_fraction: float


@dataclass(frozen=True)
class CharlmModel:
    cells: tuple[Cell, ...]
    input: Literal["embedding", "onehot"]
    embed: int
    hidden: int
    layers: int
    dropout: float
    precision: Precision


@dataclass(frozen=True)
class CharlmTrain:
    seed: int
    steps: int
    batch_size: int
    seq_len: int
    learning_rate: float
    schedule: Literal["constant", "cosine"]
    clip_norm: float
    log_every: int


@dataclass(frozen=True)
class CharlmSample:
    seed: int
    prime: str
    length: int
    temperature: float
    top_k: int
    top_p: float


@dataclass(frozen=True)
class Charlm:
    paths: Paths
    data: CharlmData
    model: CharlmModel
    train: CharlmTrain
    sample: CharlmSample


# --- forecaster ----------------------------------------------------------------------
@dataclass(frozen=True)
class ForecastPaths:
    prepared: str
    baselines: str
    models: str
    metrics: str
    plots: str


@dataclass(frozen=True)
class ForecastData:
    currency: str
    gap_policy: Literal["error", "ffill", "linear"]
    features: tuple[str, ...]  # close | open | high | low | close_<CUR> (checked against the source)
    input_len: int
    output_len: int
    stride: int
    test_fraction: float


@dataclass(frozen=True)
class ForecastModel:
    cells: tuple[Cell, ...]
    hidden: int
    layers: int
    dropout: float
    precision: Precision


@dataclass(frozen=True)
class ForecastTrain:
    seed: int
    steps: int
    batch_size: int
    optimizer: Literal["adam", "rmsprop"]
    learning_rate: float
    rmsprop_decay: float
    momentum: float
    clip_norm: float
    weight_decay: float
    log_every: int


@dataclass(frozen=True)
class ForecastBaselines:
    methods: tuple[Literal["autoarima", "autoets"], ...]  # beside naive and drift, always computed
    fit_days: int  # days before each forecast origin the statistical models are fitted on
    workers: int  # processes for the per-window fits (the result does not depend on it)


@dataclass(frozen=True)
class ForecastEvaluate:
    plot_windows: int


@dataclass(frozen=True)
class ForecastServe:
    cell: Cell  # the cell the scheduled refresh retrains, compares and serves
    dir: str  # the served model (model/), decisions.jsonl and the latest forecast
    recent_windows: int  # candidate and served model are compared on the newest test windows
    tolerance: float  # promote when candidate MASE <= served MASE * (1 + tolerance)


@dataclass(frozen=True)
class Forecast:
    paths: ForecastPaths
    data: ForecastData
    model: ForecastModel
    train: ForecastTrain
    baselines: ForecastBaselines
    evaluate: ForecastEvaluate
    serve: ForecastServe


@dataclass(frozen=True)
class Params:
    fetch: FetchPolicy
    sources: Sources
    nmt: Nmt
    charlm: Charlm
    forecast: Forecast


def model_kwargs(model: NmtModel | CharlmModel | ForecastModel, cell: str) -> dict[str, Any]:
    """A ``<workload>.model`` section as constructor arguments, with one ``cell``
    (a DVC matrix branch) in place of the ``cells`` list."""
    fields = {k: v for k, v in dataclasses.asdict(model).items() if k != "cells"}
    return {"cell": cell, **fields}


# --- loading -------------------------------------------------------------------------
def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raises :class:`ParamsError` naming the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    return from_dict(raw, source=str(path))


def from_dict(raw: Any, source: str = "params.yaml") -> Params:
    """Build :class:`Params` from an already-parsed mapping (tests use this)."""
    return _build(Params, raw, section="", source=source)


def _build(cls: type, raw: Any, section: str, source: str) -> Any:
    where = f"section '{section}'" if section else "the top level"
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    valid = ", ".join(fields)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ParamsError(
                f"{source}: unknown key '{key}' in {where}{hint}; valid keys: {valid}"
            )
    missing = [name for name in fields if name not in raw]
    if missing:
        raise ParamsError(
            f"{source}: missing key '{missing[0]}' in {where}; valid keys: {valid}"
        )
    hints = typing.get_type_hints(cls)
    values = {
        name: _coerce(hints[name], raw[name], _join(section, name), source) for name in fields
    }
    return cls(**values)


def _join(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, source)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _coerce(inner[0], value, key, source)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ParamsError(
                f"{source}: '{key}' is {value!r}; expected one of {', '.join(map(str, choices))}"
            )
        return value
    if origin is tuple:
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{source}: '{key}' must be a non-empty list, got {value!r}")
        (item_tp, _) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is dt.date and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ParamsError(f"{source}: '{key}' must be a date (YYYY-MM-DD), got {value!r}") from None
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ParamsError(
            f"{source}: '{key}' must be {tp.__name__}, got {type(value).__name__} {value!r}"
        )
    return value
