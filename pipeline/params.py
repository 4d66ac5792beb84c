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
Schedule = Literal["constant", "luong234", "cosine", "warmup_linear", "warmup_cosine", "exponential"]
# Luong dot | general | scaled, Bahdanau additive (pipeline.models.attention)
Attention = Literal["none", "dot", "general", "scaled", "bahdanau"]
Initializer = Literal["flax", "uniform", "keras", "tf"]


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

    retries: NonNegInt  # attempts after the first for a transient failure (connection error, timeout, truncated body,
                        # HTTP 429/5xx)
    backoff_seconds: NonNegFloat  # the first retry's wait; it doubles with each retry, with full jitter (or the
                                  # server's Retry-After)
    max_backoff_seconds: NonNegFloat  # the longest wait between two attempts
    connect_timeout: PosFloat  # seconds to open a connection
    read_timeout: PosFloat  # seconds without a byte before a read is abandoned (and retried)
    max_megabytes: PosInt  # a download or archive member larger than this is refused
    mirror: str | None  # a local folder or http(s) base URL that serves every remote source by its file name
                        # (air-gapped sites); null: off


@dataclass(frozen=True)
class Source:
    url: str  # a local path, a file:// or http(s):// URL, or gutenberg:<book id> (the defaults: the embedded data)
    sha256: str | None  # the expected digest, checked before raw is replaced (iwslt: of the folder listing); null: no
                        # check
    raw: str  # where the download stage writes the source (a DVC output)


@dataclass(frozen=True)
class PairsSource(Source):
    format: Literal["tsv", "tatoeba-zip", "iwslt"]  # tsv (a pairs file) | tatoeba-zip (a manythings.org archive) |
                                                    # iwslt (a folder of train/tst2012/tst2013 + vocab)
    langs: tuple[str, ...]  # the corpus's two languages in file order: the tsv's columns, the iwslt files' suffixes

    def cross_check(self, section: str) -> str | None:
        if len(self.langs) != 2 or self.langs[0] == self.langs[1]:
            return (f"'{section}.langs' is {list(self.langs)}; it names the corpus's two languages "
                    "in file order, e.g. [en, fr]")
        return None


@dataclass(frozen=True)
class TextSource(Source):
    format: Literal["text", "gutenberg"]  # text | gutenberg (Project Gutenberg's licence header and footer cut)


@dataclass(frozen=True)
class CoindeskApi:
    """The CoinDesk Data API request (format ``coindesk-api`` only)."""

    market: str  # the Data API's index market (cadli: CoinDesk's aggregate index)
    instruments: tuple[str, ...]  # one daily series per instrument, BASE-QUOTE
    key_env: str  # the environment variable holding the API key; the key is never logged or stored
    since: dt.date  # the first day of a fresh history (quoted in params.yaml: DVC rejects YAML dates)


@dataclass(frozen=True)
class PriceSource(Source):
    format: Literal["bpi-json", "bpi-json-ecb", "coindesk-csv", "coindesk-api"]
        # bpi-json | bpi-json-ecb (+ close_<CUR> at the ECB's rate) | coindesk-csv | coindesk-api (incremental)
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

    prepared: str  # the prepare stage's output folder (a DVC output)
    models: str  # one model directory per cell (params.msgpack + config.json)
    checkpoints: str  # training checkpoints: working state, not DVC outputs
    live: str  # dvclive training curves, <live>/<workload>-<cell>/plots/metrics/
    metrics: str  # <workload>-<cell>.json and the model cards (git-tracked)
    samples: str  # translation hypotheses or char-LM samples (git-tracked)


@dataclass(frozen=True)
class NmtData:
    seed: int  # the split and the random pick of pairs
    source: str  # the direction: one of sources.nmt.langs into the other
    target: str  # the language translated into: the other one
    level: Literal["word", "char", "subword", "space"]  # word | char (Keras lstm_seq2seq) | subword (SentencePiece) |
                                                        # space (whitespace tokens as they stand)
    vocab: Literal["build", "corpus"]  # corpus: the iwslt source's own vocab.<lang> files, as they are
    vocab_size: PosInt  # subword only: the SentencePiece vocabulary per side
    lowercase: bool  # lowercase both sides before tokenizing
    max_len: PosInt  # tokens per side, before </s>; longer pairs are dropped (see filter)
    filter: Literal["all", "train"]  # which splits max_len filters (train: dev and test are scored whole)
    max_pairs: int  # cap on the pairs kept (after the length filter when it covers all splits)
    pick: Literal["random", "first"]  # which max_pairs pairs are kept: a seeded sample, or the first
    valid_size: PosInt  # held-out source sentences for dev (every translation of each goes with it)
    test_size: PosInt  # held-out source sentences for test, unseen in training
    min_freq: NonNegInt  # tokens seen fewer times in training map to <unk>
    buckets: tuple[PosInt, ...]  # padded lengths, </s> included, strictly ascending: one compiled shape per bucket
    long: Literal["drop", "truncate"]  # what the max_len filter does to a longer pair: drop it, or cut each side to
                                       # max_len tokens (tensorflow/nmt's src_max_len and tgt_max_len)
    empty_lines: Literal["error", "drop"]  # iwslt: a pair with an empty side is refused, or dropped and counted
                                           # (tensorflow/nmt drops them); the count is in prepared/stats.json

    def cross_check(self, section: str) -> str | None:
        if list(self.buckets) != sorted(set(self.buckets)):
            return f"'{section}.buckets' is {list(self.buckets)}; it must be strictly ascending"
        if self.long == "truncate" and self.level == "subword":
            return (f"'{section}.long' is 'truncate' with '{section}.level' 'subword': subword pairs are filtered "
                    "by the pieces that fit the widest bucket; truncate works on word, char and space tokens")
        if self.buckets[-1] < self.max_len + 1:
            return (f"'{section}.buckets' ends at {self.buckets[-1]}, but '{section}.max_len' + 1 = "
                    f"{self.max_len + 1} must fit (the longest sentence and its </s>)")
        return None


@dataclass(frozen=True)
class NmtModel:
    cells: tuple[Cell, ...]  # the recurrent cells trained, one DVC matrix branch each: lstm | gru
    input: Literal["embedding", "onehot"]  # embedding | onehot (the Keras lstm_seq2seq's one-hot input; no tied
                                           # embeddings)
    embed: PosInt  # embedding width (input: embedding)
    hidden: PosInt  # units per recurrent layer (each direction)
    layers: PosInt  # stacked recurrent layers in the decoder, and in the encoder unless encoder_layers says otherwise
    encoder_layers: NonNegInt  # the encoder's stacked layers (each direction); 0: the same as layers
    bidirectional: bool  # a bidirectional encoder (dot attention needs a unidirectional one)
    bridge: Literal["dense", "copy"]  # how the encoder's final states start the decoder: dense (a learned dense +
                                      # tanh per state) | copy (as they are: Keras and tensorflow/nmt; a bidirectional
                                      # layer's forward and backward states start two decoder layers)
    attention: Attention  # none | dot | general | scaled (Luong) | bahdanau (additive)
    input_feeding: bool  # feed the previous attentional vector into the next decoder step (Luong et al.); needs
                         # attention
    tie_embeddings: bool  # the output layer shares the target embedding matrix (hidden -> embed -> vocab)
    dropout: Rate  # the dropout rate, where dropout_on says
    dropout_on: Literal["layers", "cell_inputs"]  # layers: the embeddings, between layers and before the output |
                                                  # cell_inputs: every cell's input, the fed attentional vector
                                                  # included, none before the output (tensorflow/nmt's DropoutWrapper)
    precision: Precision  # float32 | bfloat16 recurrent matmuls (carries stay float32; for accelerators)
    kernel: Kernel  # how LSTM layers run: auto | scan | onednn (CPU, float32, unpadded) | cudnn (NVIDIA GPU, float32)
    forget_bias: float  # the LSTM forget gate's initial bias (GRU ignores it)
    initializer: Initializer  # the initial weights: flax | uniform (every weight in +-init_scale: tensorflow/nmt) |
                              # keras (Glorot kernels, orthogonal recurrent ones) | tf (TF1's Glorot over each layer's
                              # joined input and recurrent kernel; output layer normal with std init_scale)
    init_scale: PosFloat  # uniform: the bound; tf: the output layer's standard deviation; unused otherwise

    def cross_check(self, section: str) -> str | None:
        if problem := _kernel_check(self, section):
            return problem
        depth = self.encoder_layers or self.layers
        if self.bridge == "dense" and depth != self.layers:
            return (f"'{section}.encoder_layers' is {depth} but '{section}.layers' is {self.layers} with "
                    f"'{section}.bridge' dense: the dense bridge maps each encoder layer to its decoder layer; "
                    "set bridge: copy or make the depths equal")
        states = depth * (2 if self.bidirectional else 1)
        if self.bridge == "copy" and states != self.layers:
            return (f"'{section}.bridge' is 'copy', so the encoder's {states} final state(s) "
                    f"('{section}.encoder_layers' {depth}{', bidirectional' if self.bidirectional else ''}) must start "
                    f"'{section}.layers' = {self.layers} decoder layers one for one")
        if self.input == "onehot" and self.tie_embeddings:
            return (f"'{section}.input' is 'onehot' with '{section}.tie_embeddings' true: one-hot "
                    "inputs have no embedding matrix to share with the output layer")
        return attention_problem(self.attention, self.bidirectional, self.input_feeding, f"{section}.")


@dataclass(frozen=True)
class NmtTrain:
    seed: int  # parameter initialisation, batch order and dropout
    steps: PosInt  # training steps (updates)
    batch_size: PosInt  # sentence pairs per batch (when batch_tokens is 0)
    batch_tokens: NonNegInt  # 0: batch_size pairs per batch; else each bucket's batch holds this many source positions
    optimizer: Literal["adam", "sgd", "rmsprop"]  # adam | sgd (tensorflow/nmt) | rmsprop (Keras)
    learning_rate: PosFloat  # the rate, or the schedule's peak
    rmsprop_decay: Fraction  # rmsprop only: the moving average of squared gradients
    schedule: Schedule  # constant | luong234 | cosine | warmup_linear | warmup_cosine (pipeline.training.optim)
    warmup_steps: NonNegInt  # warmup_* schedules only
    decay_factor: Fraction  # exponential only: the rate is multiplied by this ...
    decay_steps: PosInt  # exponential only: ... once every this many updates (a staircase) ...
    start_decay_step: NonNegInt  # exponential only: ... from this update on (tensorflow/nmt's keys)
    clip_norm: PosFloat  # clip the gradient to this global norm
    label_smoothing: Rate  # smoothing of the training loss's targets (the validation loss stays plain)
    loss_normalization: Literal["token", "sentence", "padded"]  # the training loss averaged over target tokens |
                                                  # summed per sentence and averaged over sentences (tensorflow/nmt) |
                                                  # summed and divided by batch x (max_len + 1) positions, padding
                                                  # scoring 0 (Keras's loss over padded one-hot targets)
    ema_decay: Rate  # 0: off; else evaluate, keep and save a moving average of the weights
    log_every: PosInt  # steps between curve rows and dev evaluations (loss and greedy dev BLEU); the best dev BLEU is
                       # kept
    max_nonfinite_steps: PosInt  # skipped non-finite steps in a row that stop the run
    checkpoint_every: PosInt  # steps between training checkpoints (pipeline.training.checkpoints)
    keep_checkpoints: PosInt  # how many of the newest checkpoints are kept (generate --step reads any of them)
    patience: NonNegInt  # stop after this many evaluations without a better dev BLEU (0: never)

    def cross_check(self, section: str) -> str | None:
        return _warmup_check(self, section)


@dataclass(frozen=True)
class NmtDecode:
    method: Literal["greedy", "beam", "sample"]  # how evaluate_nmt decodes the test set: greedy | beam | sample
    beam_size: PosInt  # beam search's width
    length_penalty: NonNegFloat  # GNMT's alpha: a hypothesis's score is divided by ((5 + length) / 6) ** alpha
    temperature: NonNegFloat  # sample only: the softmax temperature
    seed: int  # sample only
    max_len_factor: PosInt  # the output is capped at this many times the source length
    batch_size: PosInt  # sentences decoded at once


@dataclass(frozen=True)
class NmtEvaluate:
    pretokenized: bool  # the text is already tokenized (IWSLT): also report BLEU with tokenize=none


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
    valid_fraction: Fraction  # the text's tail held out for validation, as nanoGPT and char-rnn do


@dataclass(frozen=True)
class CharlmModel:
    cells: tuple[Cell, ...]  # the recurrent cells trained, one DVC matrix branch each: lstm | gru
    input: Literal["embedding", "onehot"]  # embedding | onehot (char-rnn's input)
    embed: PosInt  # embedding width (input: embedding)
    hidden: PosInt  # units per recurrent layer
    layers: PosInt  # stacked recurrent layers
    dropout: Rate  # dropout between layers and before the output layer
    precision: Precision  # float32 | bfloat16 recurrent matmuls (carries stay float32; for accelerators)
    kernel: Kernel  # how LSTM layers run: auto | scan | onednn (CPU, float32) | cudnn (NVIDIA GPU, float32)
    forget_bias: float  # the LSTM forget gate's initial bias (GRU ignores it)
    initializer: Initializer  # the initial weights: flax | uniform | keras | tf (as in nmt.model.initializer)
    init_scale: PosFloat  # uniform: the bound; tf: the output layer's standard deviation; unused otherwise

    def cross_check(self, section: str) -> str | None:
        return _kernel_check(self, section)


@dataclass(frozen=True)
class CharlmTrain:
    seed: int  # parameter initialisation, stream offsets and dropout
    steps: PosInt  # training steps (updates)
    batch_size: PosInt  # parallel streams through the text; each carries its state to its next window
    seq_len: PosInt  # the truncated-BPTT window, in characters
    learning_rate: PosFloat  # the rate, or the schedule's peak
    schedule: Schedule  # constant | luong234 | cosine | warmup_linear | warmup_cosine (pipeline.training.optim)
    warmup_steps: NonNegInt  # warmup_* schedules only
    decay_factor: Fraction  # exponential only: the rate is multiplied by this ...
    decay_steps: PosInt  # exponential only: ... once every this many updates (a staircase) ...
    start_decay_step: NonNegInt  # exponential only: ... from this update on (tensorflow/nmt's keys)
    clip_norm: PosFloat  # clip the gradient to this global norm
    ema_decay: Rate  # 0: off; else evaluate, keep and save a moving average of the weights
    log_every: PosInt  # steps between curve rows and validation losses
    max_nonfinite_steps: PosInt  # skipped non-finite steps in a row that stop the run
    checkpoint_every: PosInt  # steps between training checkpoints (pipeline.training.checkpoints)
    keep_checkpoints: PosInt  # how many of the newest checkpoints are kept (generate --step reads any of them)

    def cross_check(self, section: str) -> str | None:
        return _warmup_check(self, section)


@dataclass(frozen=True)
class CharlmSample:
    seed: int  # the sample's random draws
    prime: str  # the text the sample starts from
    length: PosInt  # characters generated after the prime
    temperature: NonNegFloat  # the softmax temperature (0: argmax)
    top_k: NonNegInt  # sample only from the k likeliest characters (0: no cut)
    top_p: TopP  # nucleus sampling: the smallest set of characters holding this much probability
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
    prepared: str  # windows.npz + meta.json (a DVC output)
    baselines: str  # the statistical baselines' forecasts per test window, and the model each search chose
    models: str  # one model directory per cell (the ensemble's networks, interval widths)
    checkpoints: str  # training checkpoints: working state, not DVC outputs
    live: str  # dvclive training curves, <live>/<workload>-<cell>/plots/metrics/
    metrics: str  # forecast-<cell>.json, backtest.json and the model cards (git-tracked)
    plots: str  # error by horizon (CSV) and forecast-vs-truth PNGs (git-tracked)


@dataclass(frozen=True)
class ForecastData:
    currency: str  # the series modelled (bpi-json and coindesk-csv are USD only)
    first_day: dt.date | None  # days before it are dropped (None: the source's whole history)
    last_day: dt.date | None  # days after it are dropped (None: up to the source's last day)
    gap_policy: Literal["error", "ffill", "linear"]  # missing days: error (name them) | ffill (repeat the last day) |
                                                     # linear
    features: tuple[str, ...]  # close | open | high | low | close_<CUR> (checked against the source)
    targets: PosInt  # the first this many features are forecast (output series)
    input_len: PosInt  # days the encoder reads
    output_len: PosInt  # days forecast (the horizon)
    stride: PosInt  # days between consecutive windows' starts
    std_factor: PosFloat  # each window is scaled by this many standard deviations of its input (the notebook: 2.5)
    test_fraction: Fraction  # the chronological tail held out for test; training windows end a whole window before it

    def cross_check(self, section: str) -> str | None:
        if self.first_day and self.last_day and self.last_day <= self.first_day:
            return (f"'{section}.last_day' is {self.last_day}, not after '{section}.first_day' "
                    f"({self.first_day}): no days would be left")
        if self.targets > len(self.features):
            return (f"'{section}.targets' is {self.targets}, but '{section}.features' lists only "
                    f"{len(self.features)}: the forecast series are the first 'targets' features")
        return None


@dataclass(frozen=True)
class ForecastModel:
    cells: tuple[Cell, ...]  # the recurrent cells trained, one DVC matrix branch each: lstm | gru
    hidden: PosInt  # units per recurrent layer
    layers: PosInt  # stacked recurrent layers, in the encoder and in the decoder
    dropout: Rate  # dropout between layers
    precision: Precision  # float32 | bfloat16 recurrent matmuls (carries stay float32; for accelerators)
    kernel: Kernel  # how LSTM layers run: auto | scan | onednn (CPU, float32) | cudnn (NVIDIA GPU, float32)
    forget_bias: float  # the LSTM forget gate's initial bias (GRU ignores it)
    architecture: Literal["delta", "notebook"]  # delta: the decoder reads a clock and forecasts the change from the
                                                # last day | notebook: the seq2seq-signal-prediction notebook's (the
                                                # decoder reads GO and the input shifted; a scaled linear output)
    initializer: Initializer  # the initial weights: flax | uniform | keras | tf (as in nmt.model.initializer)
    init_scale: PosFloat  # uniform: the bound; tf: the output layer's standard deviation; unused otherwise

    def cross_check(self, section: str) -> str | None:
        return _kernel_check(self, section)


@dataclass(frozen=True)
class ForecastTrain:
    seed: int  # the first network's seed (parameters, batch order); the others follow
    seeds: Annotated[
        int, Range(ge=1, le=32)
    ]  # the model is the mean of this many networks, from seeds seed, seed + 1, ...
    steps: PosInt  # training steps (updates) per network
    batch_size: PosInt  # windows per batch
    optimizer: Literal["adam", "rmsprop"]  # adam | rmsprop
    learning_rate: PosFloat  # the rate
    rmsprop_decay: Fraction  # rmsprop only: the moving average of squared gradients
    momentum: Rate  # rmsprop only
    clip_norm: PosFloat  # clip the gradient to this global norm
    loss: Literal["mae", "mse", "l2_loss"]  # mae | mse, averaged over windows, days and series | l2_loss: half
                                           # their summed squared errors (tf.nn.l2_loss, the seed notebook)
    weight_decay: NonNegFloat  # L2: weight_decay × the parameter added to the clipped gradient, before the optimizer
    l2_reg: NonNegFloat  # adds l2_reg × sum(w²) / 2 to the training loss (tf.nn.l2_loss), scaled as the loss is
    decay: Literal["all", "weights"]  # what weight_decay and l2_reg apply to: every parameter, or not the biases
    heldout_loss: bool  # log the loss on the held-out (test) windows at every row
    log_every: PosInt  # steps between curve rows
    max_nonfinite_steps: PosInt  # skipped non-finite steps in a row that stop the run
    checkpoint_every: PosInt  # steps between training checkpoints (pipeline.training.checkpoints)
    keep_checkpoints: PosInt  # how many of the newest checkpoints are kept (generate --step reads any of them)


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
    plot_windows: NonNegInt  # test windows drawn in the forecast-vs-truth PNG


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

    def cross_check(self, section: str) -> str | None:
        """The backtest and the refresh name a cell the pipeline trains; the notebook's
        decoder reads the input window, so it is as long as the horizon."""
        if self.model.architecture == "notebook" and self.data.input_len != self.data.output_len:
            return (f"'{section}.model.architecture' is 'notebook', whose decoder reads the input window shifted by "
                    f"a day, so '{section}.data.input_len' ({self.data.input_len}) must equal "
                    f"'{section}.data.output_len' ({self.data.output_len})")
        cells = list(self.model.cells)
        for key, cell, what in (("backtest.cell", self.backtest.cell, "the backtest retrains"),
                                ("serve.cell", self.serve.cell, "the scheduled refresh retrains and serves")):
            if cell not in cells:
                return (f"'{section}.{key}' is {cell!r}, but '{section}.model.cells' is {cells}: {what} "
                        f"a cell that dvc.yaml trains, so name one of them (or add {cell!r} to the cells)")
        return None


@dataclass(frozen=True)
class Params:
    fetch: FetchPolicy
    sources: Sources
    nmt: Nmt
    charlm: Charlm
    forecast: Forecast

    def cross_check(self, section: str) -> str | None:
        """Rules between sections: the translation direction, the vocabulary's origin, and
        empty-line handling only where the format has line-aligned files."""
        langs, data = list(self.sources.nmt.langs), self.nmt.data
        if data.source not in langs or data.target not in langs or data.source == data.target:
            return (f"'nmt.data.source' -> 'nmt.data.target' is {data.source!r} -> {data.target!r}; "
                    f"with 'sources.nmt.langs' {langs} it must be {langs[0]!r} -> {langs[1]!r} or "
                    f"{langs[1]!r} -> {langs[0]!r}")
        if data.vocab == "corpus" and (self.sources.nmt.format != "iwslt" or data.level != "space"):
            return ("'nmt.data.vocab' is 'corpus': only the iwslt format ships vocabulary files, and "
                    "they list whitespace tokens, so it needs 'sources.nmt.format' iwslt and "
                    f"'nmt.data.level' space (they are {self.sources.nmt.format!r} and {data.level!r})")
        if data.empty_lines == "drop" and self.sources.nmt.format != "iwslt":
            return ("'nmt.data.empty_lines' is 'drop', but 'sources.nmt.format' is "
                    f"{self.sources.nmt.format!r}: only the iwslt format's line-aligned files have empty lines "
                    "to drop (a pairs file with an empty side is refused, naming its line); set it to error")
        return None


INIT_FIELDS = ("initializer", "init_scale")  # used once, when training starts (pipeline.models.initializers)


def model_kwargs(model: NmtModel | CharlmModel | ForecastModel, cell: str) -> dict[str, Any]:
    """A ``<workload>.model`` section as constructor arguments, with one ``cell``
    (a DVC matrix branch) in place of the ``cells`` list."""
    fields = {k: v for k, v in dataclasses.asdict(model).items() if k not in ("cells", *INIT_FIELDS)}
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
