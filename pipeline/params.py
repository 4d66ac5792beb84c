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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Range:
    """A bound on a number, attached to a field's type: ``Annotated[int, Range(gt=0)]``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def violated(self, value: float) -> str | None:
        """What ``value`` fails, e.g. ``"> 0"``, or None when it is in range."""
        rules = [(self.gt, ">", lambda b: value > b), (self.ge, ">=", lambda b: value >= b),
                 (self.lt, "<", lambda b: value < b), (self.le, "<=", lambda b: value <= b)]
        if all(bound is None or ok(bound) for bound, _, ok in rules):
            return None
        return " and ".join(f"{op} {bound:g}" for bound, op, _ in rules if bound is not None)


PosInt = Annotated[int, Range(gt=0)]
NonNegInt = Annotated[int, Range(ge=0)]
PosFloat = Annotated[float, Range(gt=0)]
NonNegFloat = Annotated[float, Range(ge=0)]
Rate = Annotated[float, Range(ge=0, lt=1)]  # dropout, label smoothing, momentum
Fraction = Annotated[float, Range(gt=0, lt=1)]
TopP = Annotated[float, Range(gt=0, le=1)]
Cell = Literal["lstm", "gru"]
Precision = Literal["float32", "bfloat16"]  # of the recurrent matmuls; carries stay float32
# how LSTM layers run: pipeline.models.rnn.use_onednn (CPU) and use_cudnn (GPU)
Kernel = Literal["auto", "scan", "onednn", "cudnn"]
# the learning rate over the run: pipeline.training.optim.make_schedule
Schedule = Literal["constant", "luong234", "cosine", "warmup_linear", "warmup_cosine"]
# Luong dot | general | scaled, Bahdanau additive (pipeline.models.attention)
Attention = Literal["none", "dot", "general", "scaled", "bahdanau"]


def attention_problem(attention: str, bidirectional: bool, input_feeding: bool, prefix: str = "") -> str | None:
    """Why an attention setting cannot be built, or None; keys are named ``prefix + key``.

    The one statement of these rules: the params loader and
    :mod:`pipeline.models.attention` both ask it.
    """
    if attention not in typing.get_args(Attention):
        return f"'{prefix}attention' is {attention!r}; expected one of {list(typing.get_args(Attention))}"
    if input_feeding and attention == "none":
        return (f"'{prefix}input_feeding' is true but '{prefix}attention' is 'none': input "
                "feeding feeds the attentional vector, so it needs attention")
    if attention == "dot" and bidirectional:
        return (f"'{prefix}attention' is 'dot' with '{prefix}bidirectional' true: dot attention "
                "needs encoder outputs as wide as the decoder; use general, scaled or bahdanau")
    return None


def _kernel_check(model: Any, section: str) -> str | None:
    if model.kernel in ("onednn", "cudnn") and model.precision != "float32":
        name = {"onednn": "oneDNN", "cudnn": "cuDNN"}[model.kernel]
        return (f"'{section}.kernel' is {model.kernel!r} with '{section}.precision' {model.precision!r}: "
                f"the {name} LSTM kernel runs in float32; use kernel auto or scan")
    return None


def _warmup_check(train: Any, section: str) -> str | None:
    if train.schedule.startswith("warmup_") and train.warmup_steps >= train.steps:
        return (f"'{section}.warmup_steps' is {train.warmup_steps} with '{section}.steps' {train.steps}: "
                f"the {train.schedule} schedule warms up, then decays to 0 at the last step, so the "
                "warmup must be shorter than the run")
    if not train.schedule.startswith("warmup_") and train.warmup_steps:
        return (f"'{section}.warmup_steps' is {train.warmup_steps} with '{section}.schedule' "
                f"{train.schedule!r}, which has no warmup; use warmup_linear or warmup_cosine, or set it to 0")
    return None


class ParamsError(PipelineError, ValueError):
    """A params.yaml problem; the message names the file and the key."""


# --- sources -------------------------------------------------------------------------
@dataclass(frozen=True)
class FetchPolicy:
    """How hard downloads try: retries with backoff, timeouts, a size limit."""

    retries: NonNegInt
    backoff_seconds: NonNegFloat
    max_backoff_seconds: NonNegFloat
    connect_timeout: PosFloat
    read_timeout: PosFloat
    max_megabytes: PosInt
    mirror: str | None


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None
    raw: str


@dataclass(frozen=True)
class PairsSource(Source):
    format: Literal["tsv", "tatoeba-zip", "iwslt"]
    # the corpus's two languages in its own order: the tsv's columns, the iwslt files' suffixes
    langs: tuple[str, ...]

    def cross_check(self, section: str) -> str | None:
        if len(self.langs) != 2 or self.langs[0] == self.langs[1]:
            return (f"'{section}.langs' is {list(self.langs)}; it names the corpus's two languages "
                    "in file order, e.g. [en, fr]")
        return None


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
    format: Literal["bpi-json", "bpi-json-ecb", "coindesk-csv", "coindesk-api"]
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
    """Where a workload's prepared data, models, checkpoints, curves, metrics and samples go."""

    prepared: str
    models: str
    checkpoints: str  # training checkpoints: working state, not DVC outputs
    live: str  # dvclive training curves, <live>/<workload>-<cell>/plots/metrics/
    metrics: str
    samples: str


@dataclass(frozen=True)
class NmtData:
    seed: int
    source: str  # the direction: one of sources.nmt.langs into the other
    target: str
    level: Literal["word", "char", "subword", "space"]
    vocab: Literal["build", "corpus"]  # corpus: the iwslt source's own vocab.<lang> files, as they are
    vocab_size: PosInt
    lowercase: bool
    max_len: PosInt
    filter: Literal["all", "train"]  # which splits max_len filters (train: dev and test are scored whole)
    max_pairs: int
    pick: Literal["random", "first"]  # which max_pairs pairs are kept: a seeded sample, or the first
    valid_size: PosInt
    test_size: PosInt
    min_freq: NonNegInt
    buckets: tuple[PosInt, ...]

    def cross_check(self, section: str) -> str | None:
        if list(self.buckets) != sorted(set(self.buckets)):
            return f"'{section}.buckets' is {list(self.buckets)}; it must be strictly ascending"
        if self.buckets[-1] < self.max_len + 1:
            return (f"'{section}.buckets' ends at {self.buckets[-1]}, but '{section}.max_len' + 1 = "
                    f"{self.max_len + 1} must fit (the longest sentence and its </s>)")
        return None


@dataclass(frozen=True)
class NmtModel:
    cells: tuple[Cell, ...]
    input: Literal["embedding", "onehot"]
    embed: PosInt
    hidden: PosInt
    layers: PosInt
    bidirectional: bool
    attention: Attention
    input_feeding: bool
    tie_embeddings: bool
    dropout: Rate
    precision: Precision
    kernel: Kernel
    forget_bias: float

    def cross_check(self, section: str) -> str | None:
        if problem := _kernel_check(self, section):
            return problem
        if self.input == "onehot" and self.tie_embeddings:
            return (f"'{section}.input' is 'onehot' with '{section}.tie_embeddings' true: one-hot "
                    "inputs have no embedding matrix to share with the output layer")
        return attention_problem(self.attention, self.bidirectional, self.input_feeding, f"{section}.")


@dataclass(frozen=True)
class NmtTrain:
    seed: int
    steps: PosInt
    batch_size: PosInt
    batch_tokens: NonNegInt  # 0: batch_size pairs per batch; else each bucket's batch holds this many source positions
    optimizer: Literal["adam", "sgd", "rmsprop"]
    learning_rate: PosFloat
    rmsprop_decay: Fraction  # rmsprop only: the moving average of squared gradients
    schedule: Schedule
    warmup_steps: NonNegInt  # warmup_* schedules only
    clip_norm: PosFloat
    label_smoothing: Rate
    ema_decay: Rate  # 0: off; else evaluate, keep and save a moving average of the weights
    log_every: PosInt
    max_nonfinite_steps: PosInt  # skipped non-finite steps in a row that stop the run
    checkpoint_every: PosInt  # steps between training checkpoints (pipeline.training.checkpoints)
    patience: NonNegInt

    def cross_check(self, section: str) -> str | None:
        return _warmup_check(self, section)


@dataclass(frozen=True)
class NmtDecode:
    method: Literal["greedy", "beam", "sample"]
    beam_size: PosInt
    length_penalty: NonNegFloat
    temperature: NonNegFloat
    seed: int
    max_len_factor: PosInt
    batch_size: PosInt


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
    valid_fraction: Fraction


@dataclass(frozen=True)
class CharlmModel:
    cells: tuple[Cell, ...]
    input: Literal["embedding", "onehot"]
    embed: PosInt
    hidden: PosInt
    layers: PosInt
    dropout: Rate
    precision: Precision
    kernel: Kernel
    forget_bias: float

    def cross_check(self, section: str) -> str | None:
        return _kernel_check(self, section)


@dataclass(frozen=True)
class CharlmTrain:
    seed: int
    steps: PosInt
    batch_size: PosInt
    seq_len: PosInt
    learning_rate: PosFloat
    schedule: Schedule
    warmup_steps: NonNegInt  # warmup_* schedules only
    clip_norm: PosFloat
    ema_decay: Rate  # 0: off; else evaluate, keep and save a moving average of the weights
    log_every: PosInt
    max_nonfinite_steps: PosInt  # skipped non-finite steps in a row that stop the run
    checkpoint_every: PosInt  # steps between training checkpoints (pipeline.training.checkpoints)

    def cross_check(self, section: str) -> str | None:
        return _warmup_check(self, section)


@dataclass(frozen=True)
class CharlmSample:
    seed: int
    prime: str
    length: PosInt
    temperature: NonNegFloat
    top_k: NonNegInt
    top_p: TopP
    every: NonNegInt  # training steps between samples drawn during training (0: none)
    temperatures: tuple[NonNegFloat, ...]  # the temperatures of those samples


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
    checkpoints: str  # training checkpoints: working state, not DVC outputs
    live: str  # dvclive training curves, <live>/<workload>-<cell>/plots/metrics/
    metrics: str
    plots: str


@dataclass(frozen=True)
class ForecastData:
    currency: str
    first_day: dt.date | None  # days before it are dropped (None: the source's whole history)
    gap_policy: Literal["error", "ffill", "linear"]
    features: tuple[str, ...]  # close | open | high | low | close_<CUR> (checked against the source)
    targets: PosInt  # the first this many features are forecast (output series)
    input_len: PosInt
    output_len: PosInt
    stride: PosInt
    test_fraction: Fraction

    def cross_check(self, section: str) -> str | None:
        if self.targets > len(self.features):
            return (f"'{section}.targets' is {self.targets}, but '{section}.features' lists only "
                    f"{len(self.features)}: the forecast series are the first 'targets' features")
        return None


@dataclass(frozen=True)
class ForecastModel:
    cells: tuple[Cell, ...]
    hidden: PosInt
    layers: PosInt
    dropout: Rate
    precision: Precision
    kernel: Kernel
    forget_bias: float

    def cross_check(self, section: str) -> str | None:
        return _kernel_check(self, section)


@dataclass(frozen=True)
class ForecastTrain:
    seed: int
    seeds: Annotated[
        int, Range(ge=1, le=32)
    ]  # the model is the mean of this many networks, from seeds seed, seed + 1, ...
    steps: PosInt
    batch_size: PosInt
    optimizer: Literal["adam", "rmsprop"]
    learning_rate: PosFloat
    rmsprop_decay: Fraction
    momentum: Rate
    clip_norm: PosFloat
    loss: Literal["mae", "mse"]
    weight_decay: NonNegFloat
    decay: Literal["all", "weights"]  # what weight_decay applies to: every parameter, or not the biases
    heldout_loss: bool  # log the loss on the held-out (test) windows at every row
    log_every: PosInt
    max_nonfinite_steps: PosInt  # skipped non-finite steps in a row that stop the run
    checkpoint_every: PosInt  # steps between training checkpoints (pipeline.training.checkpoints)


@dataclass(frozen=True)
class ForecastBaselines:
    methods: tuple[Literal["autoarima", "autoets", "autotheta"], ...]  # beside naive and drift, always fitted
    fit_days: Annotated[int, Range(ge=10)]  # days before each forecast origin the statistical models are fitted on
    workers: PosInt  # processes for the per-window fits (statsforecast's n_jobs; the result does not depend on it)


@dataclass(frozen=True)
class ForecastIntervals:
    calibration_days: (
        PosInt  # days before a cut that a calibration twin is not trained on; its errors there give the widths
    )


@dataclass(frozen=True)
class ForecastBacktest:
    cell: Cell  # the network cell retrained at each fold
    every: PosInt  # days between forecast origins
    min_history: PosInt  # days before the first origin: the first fold's training data
    folds: PosInt  # the network is retrained this many times, on every window before the fold's first origin


@dataclass(frozen=True)
class ForecastEvaluate:
    plot_windows: NonNegInt


@dataclass(frozen=True)
class ForecastServe:
    cell: Cell  # the cell the scheduled refresh retrains, compares and serves
    dir: str  # the served model (model/), decisions.jsonl and the latest forecast
    recent_windows: PosInt  # candidate and served model are compared on the newest test windows
    tolerance: NonNegFloat  # promote when candidate MASE <= served MASE * (1 + tolerance)
    branch: str | None  # commit each refresh's dvc.lock, metrics and decision to this git branch; None: off


@dataclass(frozen=True)
class Forecast:
    paths: ForecastPaths
    data: ForecastData
    model: ForecastModel
    train: ForecastTrain
    baselines: ForecastBaselines
    intervals: ForecastIntervals
    backtest: ForecastBacktest
    evaluate: ForecastEvaluate
    serve: ForecastServe


@dataclass(frozen=True)
class Params:
    fetch: FetchPolicy
    sources: Sources
    nmt: Nmt
    charlm: Charlm
    forecast: Forecast

    def cross_check(self, section: str) -> str | None:
        """Rules between sections: the translation direction and the vocabulary's origin."""
        langs, data = list(self.sources.nmt.langs), self.nmt.data
        if data.source not in langs or data.target not in langs or data.source == data.target:
            return (f"'nmt.data.source' -> 'nmt.data.target' is {data.source!r} -> {data.target!r}; "
                    f"with 'sources.nmt.langs' {langs} it must be {langs[0]!r} -> {langs[1]!r} or "
                    f"{langs[1]!r} -> {langs[0]!r}")
        if data.vocab == "corpus" and (self.sources.nmt.format != "iwslt" or data.level != "space"):
            return ("'nmt.data.vocab' is 'corpus': only the iwslt format ships vocabulary files, and "
                    "they list whitespace tokens, so it needs 'sources.nmt.format' iwslt and "
                    f"'nmt.data.level' space (they are {self.sources.nmt.format!r} and {data.level!r})")
        return None


def model_kwargs(model: NmtModel | CharlmModel | ForecastModel, cell: str) -> dict[str, Any]:
    """A ``<workload>.model`` section as constructor arguments, with one ``cell``
    (a DVC matrix branch) in place of the ``cells`` list."""
    fields = {k: v for k, v in dataclasses.asdict(model).items() if k != "cells"}
    return {"cell": cell, **fields}


# --- loading -------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error (PyYAML
    keeps the last one silently, so an edit pasted beside the old block would be lost)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice (first on line {seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raises :class:`ParamsError` naming the key."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
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
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {
        name: _coerce(hints[name], raw[name], _join(section, name), source) for name in fields
    }
    built = cls(**values)
    # rules between keys of one section: a section class may name what it breaks
    if (check := getattr(built, "cross_check", None)) and (problem := check(section)):
        raise ParamsError(f"{source}: {problem}")
    return built


def _join(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *bounds = typing.get_args(tp)
        value = _coerce(base, value, key, source)
        for bound in bounds:
            if isinstance(bound, Range) and (rule := bound.violated(value)):
                raise ParamsError(f"{source}: '{key}' is {value!r}; it must be {rule}")
        return value
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
