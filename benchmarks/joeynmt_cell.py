"""JoeyNMT 2.3.0's recurrent seq2seq as a peer in the time-to-quality benchmark.

JoeyNMT (PyTorch) trains the same model as rnnpipe's default NMT cell, on exactly the
pairs, tokens and vocabularies of rnnpipe's prepare stage, and each of its validations
is scored the way rnnpipe scores its own: greedy dev hypotheses, detokenized with
rnnpipe's tokenizer, sacrebleu BLEU (13a) against the untouched dev references.

    python benchmarks/joeynmt_cell.py --prepared data/prepared/nmt --steps 30 --validate-every 15

JoeyNMT's requirements conflict with rnnpipe's pins, so it lives in a virtual
environment of its own (:func:`ensure_venv`) and this module only talks to it through
subprocesses: it imports without torch or joeynmt. The environment holds
``torch==2.13.0+cpu`` (installed first, so that pip never pulls the CUDA build) and
``joeynmt==2.3.0``, whose pins (``torch>=1.12``, ``protobuf>=3.19.4,<3.21`` and
unpinned tools) resolve with that torch as they stand; joeynmt 2.3.0 imports
``importlib_metadata`` without declaring it, so that package is installed too.
Checked with Python 3.11.7, torch 2.13.0+cpu, joeynmt 2.3.0, numpy 2.4.6,
protobuf 3.20.3, sacrebleu 2.6.0.

How the JoeyNMT configuration matches params.yaml's ``nmt`` section
(:func:`settings_from_params` maps it, :func:`write_config` writes it):

- tokens: the files hold rnnpipe's word tokens (leading ``▁`` where a space preceded
  them) joined by single spaces; JoeyNMT reads them with ``level: word``,
  ``pretokenizer: none``, ``lowercase: false``, ``normalize: false`` (its ``normalize``
  would rewrite ``" ?"`` as ``"?"``), so it splits on spaces and nothing else;
- vocabularies: vocab.json's lists as ``voc_file`` (JoeyNMT applies neither
  ``voc_min_freq`` nor ``voc_limit`` to a file, so rnnpipe's ``min_freq`` holds as
  built). JoeyNMT puts its specials first in its own order (``<unk> <pad> <s> </s>``,
  ids 0-3, against rnnpipe's ``<pad> <unk> <s> </s>``): the same tokens relabelled;
- length filter: none (``max_length: -1``); prepare has already filtered the pairs;
- ``input_feeding``: JoeyNMT's option is Luong's input feeding (the previous
  attentional vector joins the decoder RNN's input), the same meaning as rnnpipe's,
  but it defaults to true: it is written out as false;
- attention: rnnpipe's ``bahdanau`` is JoeyNMT's ``bahdanau`` (v . tanh(W_q h + W_k s),
  queried with the decoder state after the step, as rnnpipe does), ``general`` is
  ``luong``; both then form tanh(W [h; c]) (JoeyNMT with a bias) for the output layer
  (JoeyNMT's has no bias, rnnpipe's has one). ``none``, ``dot`` and ``scaled`` have no
  JoeyNMT equivalent;
- bridge: ``init_hidden: bridge`` is tanh(W h_enc + b) from the final forward and
  backward hidden states of the last encoder layer, used for every decoder layer and,
  with an LSTM, for the cell state too; rnnpipe has one such projection per layer and
  per state (h and c, each from its own encoder state);
- dropout: rnnpipe drops the source and target embeddings, between stacked layers,
  and the attentional vector before the output layer. JoeyNMT's ``embeddings.dropout``
  (the RNN inputs) and ``dropout`` (between layers) match the first two; its
  ``hidden_dropout`` drops [h; c] just before the attentional layer rather than the
  attentional vector after it, the nearest it offers;
- loss: ``normalization: tokens`` (the mean over target tokens, ``</s>`` included, as
  rnnpipe's); Adam (betas 0.9/0.999, eps 1e-8) at ``learning_rate``; ``clip_grad_norm``
  clips the global gradient norm as optax's ``clip_by_global_norm`` does;
- constant rate: JoeyNMT 2.3.0 refuses a config without ``scheduling``;
  ``exponential`` with ``decrease_factor: 1.0`` multiplies the rate by 1 each epoch;
- steps: ``updates`` (JoeyNMT's key for the maximum number of updates) with
  ``epochs`` set high enough never to end training first; batches of
  ``batch_size`` sentences drawn at random, where rnnpipe draws them per length bucket;
- validation: every ``validate_every`` updates (``logging_freq`` equal, as JoeyNMT
  needs it to divide ``validation_freq``), always greedy, on the whole dev set, with
  ``early_stopping_metric: bleu`` so ``best.ckpt`` is the best dev BLEU, as rnnpipe keeps;
- output length: rnnpipe caps each hypothesis at ``max_len_factor`` x its own source
  length (with ``</s>``); JoeyNMT has one cap for every sentence, set to
  ``max_len_factor`` x the longest dev/test source (with ``</s>``).
  ``min_output_length: 0`` lets ``</s>`` come first, as in rnnpipe; JoeyNMT then
  writes ``<unk>`` for the empty hypothesis where rnnpipe writes nothing;
- beam search (:func:`test_bleu`): ``beam_size`` and ``beam_alpha`` = rnnpipe's
  ``length_penalty`` (both GNMT's ((5 + length) / 6) ** alpha);
- initialisation: embeddings normal with std embed ** -0.5 (flax's ``nn.Embed``
  default), orthogonal recurrent matrices and LSTM forget-gate bias 1 as rnnpipe;
  JoeyNMT's Xavier-uniform for the other matrices (rnnpipe: LeCun normal);
- CPU: ``use_cuda: false``, ``num_workers: 0``, ``fp16: false``; torch's threads come
  from ``OMP_NUM_THREADS`` (the machine's cores unless told).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data import tokens  # noqa: E402
from pipeline.evaluation import metrics  # noqa: E402
from pipeline.sources import tatoeba  # noqa: E402

DEFAULT_VENV = Path.home() / ".cache" / "rnnpipe" / "joeynmt-venv"
TORCH = "torch==2.13.0+cpu"
JOEYNMT = "joeynmt==2.3.0"
UNDECLARED = ("importlib-metadata",)  # joeynmt 2.3.0 imports it without requiring it
STAMP = ".rnnpipe-joeynmt"
META = "rnnpipe"  # the config's own section: read by run() and test_bleu(), ignored by JoeyNMT
SPLITS = {"train": "train", "valid": "dev", "test": "test"}  # rnnpipe's name -> JoeyNMT's
ATTENTION = {"bahdanau": "bahdanau", "general": "luong"}  # rnnpipe's -> JoeyNMT's
LEVELS = ("word", "space")  # token levels whose tokens contain no spaces


# -- the environment --------------------------------------------------------------------
def ensure_venv(path: Path = DEFAULT_VENV, pip_args: Sequence[str] = ()) -> Path:
    """Create (once) the virtual environment at ``path`` with JoeyNMT and a CPU torch;
    return its Python.

    The CPU torch wheel goes in first and is pinned again beside joeynmt, so pip keeps it
    rather than fetching the CUDA build. ``pip_args`` are passed to both installs (e.g.
    ``["--extra-index-url", "https://download.pytorch.org/whl/cpu"]`` where the configured
    index lacks ``+cpu`` wheels). A stamp file naming the pins marks a finished install;
    a changed pin or an interrupted install is redone.
    """
    path = Path(path).expanduser()
    python = path / "bin" / "python"
    stamp = path / STAMP
    wanted = "\n".join((TORCH, JOEYNMT, *UNDECLARED)) + "\n"
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", *pip_args]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, TORCH, JOEYNMT, *UNDECLARED], check=True)
    subprocess.run([str(python), "-c", "import torch, joeynmt.training, joeynmt.prediction"], check=True)
    stamp.write_text(wanted)
    return python


def versions(python: Path) -> dict[str, str]:
    """Python, torch and joeynmt versions of the environment ``python`` belongs to."""
    code = ("import json, platform, torch, importlib.metadata as m; print(json.dumps({'python': "
            "platform.python_version(), 'torch': torch.__version__, 'joeynmt': m.version('joeynmt')}))")
    done = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


# -- data -------------------------------------------------------------------------------
def write_data(prepared: Path, out: Path) -> dict:
    """Turn rnnpipe's prepared NMT data into JoeyNMT's plain-text files.

    Reads ``{train,valid,test}.tsv`` (source TAB target) and ``vocab.json`` from
    ``prepared``; writes under ``out`` the space-joined tokens ``{train,dev,test}.<lang>``
    (the sentences normalised and tokenised as prepare does; the TSVs are already
    normalised, so this repeats an idempotent step), the vocabularies ``vocab.<lang>``
    (vocab.json's lists without the four specials, which JoeyNMT adds itself) and the
    untouched references ``refs/{dev,test}.<trg lang>`` for scoring.

    Returns a JSON-able description that :func:`write_config` reads: the paths (strings),
    the languages, the token level, the pair counts and the longest dev/test source in
    tokens including ``</s>``.
    """
    prepared, out = Path(prepared), Path(out)
    vocab = json.loads((prepared / "vocab.json").read_text("utf-8"))
    level = vocab["level"]
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: only {' and '.join(LEVELS)} tokens can be written for JoeyNMT")
    src_lang, trg_lang = vocab["source"], vocab["target"]
    if src_lang == trg_lang:
        raise ValueError(f"source and target are both {src_lang!r}: JoeyNMT names its files by language")

    def normal(text: str) -> str:
        if vocab.get("normalize") == "tatoeba":
            text = tatoeba.normalize(text)
        return text.lower() if vocab.get("lowercase") else text

    (out / "refs").mkdir(parents=True, exist_ok=True)
    sizes, longest = {}, 0
    for name, joey in SPLITS.items():
        rows = [line.split("\t") for line in (prepared / f"{name}.tsv").read_text("utf-8").splitlines()]
        toks = [[tokens.tokenize(normal(s), level), tokens.tokenize(normal(t), level)] for s, t in rows]
        for i, pair in enumerate(toks):
            if not all(pair):
                raise ValueError(f"{prepared / name}.tsv:{i + 1}: a side has no tokens; JoeyNMT refuses it")
        for side, lang in enumerate((src_lang, trg_lang)):
            (out / f"{joey}.{lang}").write_text("".join(" ".join(p[side]) + "\n" for p in toks), "utf-8")
        if name != "train":
            (out / "refs" / f"{joey}.{trg_lang}").write_text("".join(t + "\n" for _, t in rows), "utf-8")
            longest = max(longest, *(len(s) + 1 for s, _ in toks))
        sizes[joey] = len(rows)
    for side, lang in (("src", src_lang), ("trg", trg_lang)):
        if tuple(vocab[side][:4]) != tokens.SPECIALS:
            raise ValueError(f"vocab.json {side} does not start with {' '.join(tokens.SPECIALS)}")
        (out / f"vocab.{lang}").write_text("".join(t + "\n" for t in vocab[side][4:]), "utf-8")
    return {
        "dir": str(out), "level": level, "src_lang": src_lang, "trg_lang": trg_lang,
        **{joey: str(out / joey) for joey in SPLITS.values()},
        "src_vocab": str(out / f"vocab.{src_lang}"), "trg_vocab": str(out / f"vocab.{trg_lang}"),
        "vocab_sizes": {"src": len(vocab["src"]), "trg": len(vocab["trg"])},
        "refs": {joey: str(out / "refs" / f"{joey}.{trg_lang}") for joey in ("dev", "test")},
        "pairs": sizes, "longest_source": longest,
    }


# -- configuration ----------------------------------------------------------------------
def settings_from_params(nmt: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`write_config`'s keyword arguments from params.yaml's ``nmt`` section
    (everything but the cell and the number of steps). ValueError names a setting that
    JoeyNMT cannot reproduce."""
    model, train, decode = nmt["model"], nmt["train"], nmt["decode"]
    unsupported = {
        "model.input": (model["input"], "embedding"), "model.tie_embeddings": (model["tie_embeddings"], False),
        "train.optimizer": (train["optimizer"], "adam"), "train.schedule": (train["schedule"], "constant"),
    }
    for key, (value, needed) in unsupported.items():
        if value != needed:
            raise ValueError(f"nmt.{key} = {value!r}: the JoeyNMT peer runs {needed!r} only")
    if model["attention"] not in ATTENTION:
        raise ValueError(f"nmt.model.attention = {model['attention']!r}: JoeyNMT has {sorted(ATTENTION)} only")
    return {
        "embed": model["embed"], "hidden": model["hidden"], "layers": model["layers"],
        "bidirectional": model["bidirectional"], "attention": model["attention"],
        "input_feeding": model["input_feeding"], "dropout": model["dropout"],
        "batch_size": train["batch_size"], "learning_rate": train["learning_rate"],
        "clip_norm": train["clip_norm"], "label_smoothing": train["label_smoothing"],
        "validate_every": train["log_every"], "seed": train["seed"],
        "max_len_factor": decode["max_len_factor"], "beam_size": decode["beam_size"],
        "length_penalty": decode["length_penalty"], "decode_batch_size": decode["batch_size"],
    }


def write_config(
    data: Mapping[str, Any],
    out: Path,
    cell: str,
    steps: int,
    *,
    embed: int = 128,
    hidden: int = 256,
    layers: int = 1,
    bidirectional: bool = True,
    attention: str = "bahdanau",
    input_feeding: bool = False,
    dropout: float = 0.1,
    batch_size: int = 64,
    learning_rate: float = 0.002,
    clip_norm: float = 1.0,
    label_smoothing: float = 0.0,
    validate_every: int = 100,
    seed: int = 0,
    max_len_factor: int = 2,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    decode_batch_size: int = 200,
) -> Path:
    """Write ``out/config.yaml``: JoeyNMT's recurrent model and training as rnnpipe's
    (see the module docstring for each correspondence); the model directory is
    ``out/model``. ``data`` is :func:`write_data`'s result. The defaults are
    params.yaml's values; pass :func:`settings_from_params`'s to follow it."""
    if cell not in ("lstm", "gru"):
        raise ValueError(f"cell {cell!r}: lstm or gru")
    if attention not in ATTENTION:
        raise ValueError(f"attention {attention!r}: JoeyNMT has {sorted(ATTENTION)} only")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def side(lang: str, vocab: str) -> dict:
        return {"lang": lang, "level": "word", "lowercase": False, "normalize": False,
                "max_length": -1, "min_length": -1, "voc_file": vocab, "voc_min_freq": 1,
                "tokenizer_cfg": {"pretokenizer": "none"}}

    def coder() -> dict:
        return {"type": "recurrent", "rnn_type": cell, "hidden_size": hidden, "num_layers": layers,
                "dropout": dropout, "embeddings": {"embedding_dim": embed, "scale": False, "dropout": dropout}}

    config = {
        "name": f"rnnpipe-joeynmt-{cell}",
        "joeynmt_version": "2.3.0",
        "model_dir": str(out / "model"),
        "use_cuda": False,
        "fp16": False,
        "num_workers": 0,
        "random_seed": seed,
        "data": {
            "train": data["train"], "dev": data["dev"], "test": data["test"], "dataset_type": "plain",
            "sample_train_subset": -1, "sample_dev_subset": -1,
            "src": side(data["src_lang"], data["src_vocab"]), "trg": side(data["trg_lang"], data["trg_vocab"]),
            "special_symbols": {"unk_token": tokens.UNK, "unk_id": 0, "pad_token": tokens.PAD, "pad_id": 1,
                                "bos_token": tokens.BOS, "bos_id": 2, "eos_token": tokens.EOS, "eos_id": 3},
        },
        "testing": {
            "batch_size": decode_batch_size, "batch_type": "sentence", "eval_metrics": ["bleu"],
            "max_output_length": max_len_factor * data["longest_source"], "min_output_length": 0,
            "beam_size": beam_size, "beam_alpha": length_penalty, "n_best": 1, "generate_unk": True,
            "sacrebleu_cfg": {"tokenize": "13a"},
        },
        "training": {
            "optimizer": "adam", "adam_betas": [0.9, 0.999], "learning_rate": learning_rate,
            "learning_rate_min": 0.0, "weight_decay": 0.0,
            "scheduling": "exponential", "decrease_factor": 1.0,
            "clip_grad_norm": clip_norm, "loss": "crossentropy", "label_smoothing": label_smoothing,
            "normalization": "tokens", "batch_size": batch_size, "batch_type": "sentence", "batch_multiplier": 1,
            "updates": steps, "epochs": steps + 1, "shuffle": True,
            "validation_freq": validate_every, "logging_freq": validate_every,
            "early_stopping_metric": "bleu", "keep_best_ckpts": 1, "overwrite": True,
            "print_valid_sents": [],  # no example log lines or attention plots
        },
        "model": {
            "initializer": "xavier_uniform", "bias_initializer": "zeros",
            "embed_initializer": "normal", "embed_init_weight": embed ** -0.5,
            "init_rnn_orthogonal": True, "lstm_forget_gate": 1.0,
            "tied_embeddings": False, "tied_softmax": False,
            "encoder": {**coder(), "bidirectional": bidirectional},
            "decoder": {**coder(), "hidden_dropout": dropout, "attention": ATTENTION[attention],
                        "input_feeding": input_feeding, "init_hidden": "bridge"},
        },
        META: {"level": data["level"], "refs": data["refs"], "cell": cell, "steps": steps},
    }
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), "utf-8")
    return path


# -- running and scoring ----------------------------------------------------------------
def joeynmt_env(threads: int | None = None) -> dict[str, str]:
    """This environment with torch's thread count set (default: the machine's cores)."""
    n = str(threads or os.cpu_count() or 1)
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "PYTHONUNBUFFERED": "1",
            # JoeyNMT 2.3.0 loads its own checkpoints with torch.load's old default
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def _launch(cmd: list[str], workdir: Path, log: Path, timeout: float, threads: int | None) -> tuple[float, bool]:
    """Run ``cmd`` with its output in ``log``; return (wall-clock start, whether it timed out).
    A process still running at ``timeout`` seconds is stopped (its own process group)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as sink:
        started = time.time()
        proc = subprocess.Popen(cmd, cwd=workdir, env=joeynmt_env(threads), stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return started, True
    if code:
        tail = "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited with {code} (log: {log}):\n{tail}")
    return started, False


def _detokenized(path: Path, level: str) -> list[str]:
    """JoeyNMT's space-joined hypotheses in ``path`` as detokenized sentences."""
    lines = path.read_text("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [tokens.detokenize(line.split(" ") if line else [], level) for line in lines]


def _refs(path: str | Path) -> list[str]:
    return Path(path).read_text("utf-8").splitlines()


def _joeynmt_scores(model_dir: Path) -> dict[int, dict[str, float]]:
    """JoeyNMT's own per-validation scores from ``validations.txt`` (BLEU there is on
    the space-joined tokens, so only a cross-check)."""
    path, out = model_dir / "validations.txt", {}
    if not path.is_file():
        return out
    for line in path.read_text("utf-8").splitlines():
        fields = dict(re.findall(r"(\w+): ([-+0-9.eE]+|nan|inf)", line))
        if "Steps" in fields:
            out[int(fields["Steps"])] = {k: float(v) for k, v in fields.items() if k != "Steps"}
    return out


def curve(config: Path, started: float) -> list[dict]:
    """One row per validation found in ``config``'s model directory, in step order.

    ``seconds``: the modification time of ``<step>.hyps`` (JoeyNMT writes it last in a
    validation, after the dev decode, the loss and any checkpoint) minus ``started``
    (``time.time()`` when the process was launched). ``valid_bleu``/``valid_chrf``:
    those hypotheses detokenized with rnnpipe's tokenizer, scored against the raw dev
    references by :func:`pipeline.evaluation.metrics.bleu_chrf`. ``joeynmt_bleu``,
    ``valid_loss`` (per target token), ``valid_ppl``, ``valid_acc``: JoeyNMT's own log.
    A hypotheses file cut short (a stopped run) is left out.
    """
    cfg = yaml.safe_load(Path(config).read_text("utf-8"))
    model_dir, meta = Path(cfg["model_dir"]), cfg[META]
    refs = _refs(meta["refs"]["dev"])
    own = _joeynmt_scores(model_dir)
    rows = []
    for path in sorted((p for p in model_dir.glob("*.hyps") if p.stem.isdigit()), key=lambda p: int(p.stem)):
        hyps = _detokenized(path, meta["level"])
        if len(hyps) != len(refs):
            continue
        step = int(path.stem)
        scores = metrics.bleu_chrf(hyps, [refs])
        mine = own.get(step, {})
        rows.append({"step": step, "seconds": round(path.stat().st_mtime - started, 3),
                     "valid_bleu": float(scores["bleu"]), "valid_chrf": float(scores["chrf"]),
                     "joeynmt_bleu": mine.get("bleu"), "valid_loss": mine.get("loss"),
                     "valid_ppl": mine.get("ppl"), "valid_acc": mine.get("acc")})
    return rows


def run(python: Path, config: Path, workdir: Path, timeout: float, threads: int | None = None) -> list[dict]:
    """Train with ``python -m joeynmt train config --skip-test`` (cwd and log
    ``joeynmt-train.log`` in ``workdir``); return :func:`curve`'s rows.

    Seconds count from the launch of the process, so interpreter start, imports, data
    loading and model building are included (as compile time is for JAX). A run still
    going at ``timeout`` seconds is stopped and the validations it finished are
    returned; a failed run raises RuntimeError with the log's tail.
    """
    workdir = Path(workdir)
    cmd = [str(python), "-m", "joeynmt", "train", str(Path(config).resolve()), "--skip-test"]
    started, _ = _launch(cmd, workdir, workdir / "joeynmt-train.log", timeout, threads)
    return curve(config, started)


def test_bleu(python: Path, config: Path, workdir: Path, timeout: float = 1800.0,
              threads: int | None = None, ckpt: Path | None = None) -> dict:
    """Translate dev and test with beam search (the config's ``beam_size`` and
    ``beam_alpha``) from ``ckpt`` (default: the run's ``best.ckpt``, the best dev BLEU)
    and score them detokenized, as rnnpipe's evaluate stage does.

    Returns ``bleu``, ``chrf``, ``bleu_signature`` (test), ``valid_bleu`` (dev, beam)
    and ``seconds`` (the whole ``joeynmt test`` process).
    """
    workdir = Path(workdir)
    cfg = yaml.safe_load(Path(config).read_text("utf-8"))
    meta = cfg[META]
    if ckpt is not None:
        cfg["testing"]["load_model"] = str(Path(ckpt).resolve())
        config = workdir / "config-test.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), "utf-8")
    prefix = (workdir / "beam").resolve()
    cmd = [str(python), "-m", "joeynmt", "test", str(Path(config).resolve()), "--output-path", str(prefix)]
    started, timed_out = _launch(cmd, workdir, workdir / "joeynmt-test.log", timeout, threads)
    if timed_out:
        raise TimeoutError(f"joeynmt test ran past {timeout} s (log: {workdir / 'joeynmt-test.log'})")
    seconds = time.time() - started
    scores = {split: metrics.bleu_chrf(_detokenized(Path(f"{prefix}.{split}"), meta["level"]),
                                       [_refs(meta["refs"][split])]) for split in ("dev", "test")}
    return {"bleu": scores["test"]["bleu"], "chrf": scores["test"]["chrf"],
            "bleu_signature": scores["test"]["bleu_signature"], "valid_bleu": scores["dev"]["bleu"],
            "seconds": round(seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepared", default=str(ROOT / "data/prepared/nmt"), help="rnnpipe's prepared NMT folder")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="JoeyNMT's virtual environment (default: %(default)s)")
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    ap.add_argument("--steps", type=int, help="default: params.yaml's nmt.train.steps")
    ap.add_argument("--validate-every", type=int, help="default: params.yaml's nmt.train.log_every")
    ap.add_argument("--threads", type=int, help="torch threads (default: the machine's cores)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before training is stopped")
    ap.add_argument("--test", action="store_true", help="also decode the test set with beam search")
    ap.add_argument("--work", help="keep the files here (default: a temporary folder)")
    args = ap.parse_args()
    nmt = yaml.safe_load((ROOT / "params.yaml").read_text())["nmt"]
    settings = settings_from_params(nmt)
    if args.validate_every:
        settings["validate_every"] = args.validate_every
    python = ensure_venv(Path(args.venv))
    with tempfile.TemporaryDirectory(prefix="rnnpipe-joeynmt-") as scratch:
        work = Path(args.work or scratch)
        data = write_data(Path(args.prepared), work / "data")
        config = write_config(data, work / args.cell, args.cell, args.steps or nmt["train"]["steps"], **settings)
        rows = run(python, config, work / args.cell, args.timeout, args.threads)
        record = {**versions(python), "cell": args.cell, "rows": rows}
        if args.test:
            record["test"] = test_bleu(python, config, work / args.cell, threads=args.threads)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
