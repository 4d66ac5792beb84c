"""Model cards: what a trained model is, what it was trained and scored on, and how far to trust it.

Each evaluate stage writes one per trained model, ``<metrics>/cards/<workload>-<cell>.md``,
git-tracked beside the metrics so a reviewer diffs it across commits. The sections follow
the Hugging Face model card (details, uses, limitations, training, evaluation, technical
specifications), with its YAML metadata block on top. Every number comes from the
stage's own inputs: the model directory's config, the metrics just computed, the seed
bands in ``metrics/noise.json`` and ``params.yaml``. Pure: the stages write the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from pipeline.evaluation.noise import band_of

REPO = "rnnpipe"
SEED_NOTE = "Single numbers move with the training seed by about the ± above."


@dataclass(frozen=True)
class Metric:
    """One evaluation row: a value, its seed band (None: not measured) and what it is."""

    name: str
    value: float | str
    band: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Card:
    name: str  # <workload>-<cell>: the file name and the model's id
    title: str
    summary: str
    tags: tuple[str, ...]
    languages: tuple[str, ...]
    metric_names: tuple[str, ...]
    details: Mapping[str, Any]  # the architecture and the parameters that matter
    data: Mapping[str, Any]  # the data and its split
    training: Mapping[str, Any]
    results: Sequence[Metric]
    noise: str  # where the bands come from
    provenance: Mapping[str, Any]
    uses: str
    out_of_scope: str
    limitations: Sequence[str]
    reproduce: Sequence[str]
    extra: Mapping[str, str] = field(default_factory=dict)  # further sections: title -> text


def parameter_count(tree: Any) -> int:
    """The number of trained values in a parameter tree (an ensemble: all its networks)."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(tree)))


def noise_source(noise: Mapping[str, Any]) -> str:
    if not noise.get("bands"):
        return "No seed bands are recorded (`metrics/noise.json` is missing): treat single numbers with care."
    seeds = ", ".join(str(s) for s in noise.get("seeds", []))
    return (f"± is the metric's seed band: max − min over training seeds {seeds}, measured at "
            f"{noise.get('commit', '?')} by `python benchmarks/noise.py` (`metrics/noise.json`). A change within "
            "it is noise.")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _table(rows: Mapping[str, Any]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {_value(v)} |" for k, v in rows.items())]


def render(card: Card) -> str:
    """The card as Markdown with Hugging Face's metadata block."""
    meta = ["---", "library_name: flax", f"tags: [{', '.join((REPO, *card.tags))}]"]
    if card.languages:
        meta.append(f"language: [{', '.join(card.languages)}]")
    meta += [f"metrics: [{', '.join(card.metric_names)}]", f"model_name: {card.name}", "---", ""]
    results = ["| metric | value | ± | |", "|---|---:|---:|---|"]
    for m in card.results:
        shown = _value(m.value) if not isinstance(m.value, float) else \
            f"{m.value:,.{2 if abs(m.value) >= 100 else 4}f}".rstrip("0").rstrip(".")
        results.append(f"| {m.name} | {shown} | {'–' if m.band is None else f'{m.band:,.4g}'} | {m.note} |")
    lines = [
        *meta,
        f"# Model card: {card.title}",
        "",
        f"<!-- Written by the evaluate stage for `{card.name}` (pipeline/evaluation/cards.py): do not edit. -->",
        "",
        card.summary,
        "",
        "## Model details",
        "",
        *_table(card.details),
        "",
        "## Uses",
        "",
        f"**Intended use.** {card.uses}",
        "",
        f"**Out of scope.** {card.out_of_scope}",
        "",
        "## Bias, risks and limitations",
        "",
        *(f"- {item}" for item in card.limitations),
        "",
        "## Training details",
        "",
        "### Training data",
        "",
        *_table(card.data),
        "",
        "### Training procedure",
        "",
        *_table(card.training),
        "",
        "## Evaluation",
        "",
        *results,
        "",
        card.noise,
        "",
    ]
    for title, text in card.extra.items():
        lines += [f"## {title}", "", text, ""]
    lines += [
        "## Technical specifications",
        "",
        "The machine that produced these numbers (the metrics file's `provenance`). Another CPU kind gives "
        "slightly different floats: compare across machines with the bands, not digit for digit.",
        "",
        *_table(card.provenance),
        "",
        "## How to reproduce",
        "",
        "```bash",
        *card.reproduce,
        "```",
        "",
    ]
    return "\n".join(lines)


def _a(word: str, capital: bool = False) -> str:
    """``word`` with its indefinite article, as said aloud: "an LSTM", "a GRU"."""
    article = "an" if word[0].upper() in "AEFHILMNORSX" else "a"
    return f"{article.capitalize() if capital else article} {word}"


def _training(t: Any) -> dict[str, Any]:
    """The training settings shared by the three workloads' train sections."""
    rows = {"steps": f"{t.steps:,}", "batch size": t.batch_size}
    if hasattr(t, "optimizer"):
        rows["optimizer"] = t.optimizer
    rows["learning rate"] = t.learning_rate
    if hasattr(t, "schedule"):
        rows["schedule"] = t.schedule + (f" ({t.warmup_steps} warm-up steps)" if "warmup" in t.schedule else "")
    rows["gradient clipping (global norm)"] = t.clip_norm
    rows["seed"] = t.seed
    return rows


def nmt_card(cell: str, config: Mapping[str, Any], parameters: int, scores: Mapping[str, Any],
             section: Any, source: Any, noise: Mapping[str, Any], train_pairs: int) -> Card:
    p, m, vocab = section, config["model"], config["vocab"]
    src, trg = vocab["source"], vocab["target"]
    file = f"{p.paths.metrics}/nmt-{cell}.json"
    encoder = f"{m['layers']} × {m['hidden']} {cell.upper()}" + (", bidirectional" if m["bidirectional"] else "")
    results = [Metric(f"test BLEU ({scores.get('decode', '')})", scores["bleu"], band_of(noise, file, "bleu"),
                      f"sacrebleu `{scores.get('bleu_signature', '')}`".replace("|", "\\|")),
               Metric("test chrF", scores["chrf"], band_of(noise, file, "chrf")),
               Metric("test BLEU, greedy", scores.get("bleu_greedy", "–"), band_of(noise, file, "bleu_greedy")),
               Metric("dev BLEU", scores["valid_bleu"], band_of(noise, file, "valid_bleu")),
               Metric("test perplexity (per target token)", scores["perplexity"], band_of(noise, file, "perplexity")),
               Metric("test token accuracy (teacher-forced)", scores["accuracy"], band_of(noise, file, "accuracy"))]
    return Card(
        name=f"nmt-{cell}", title=f"{src}→{trg} translator, {cell.upper()} seq2seq with {m['attention']} attention",
        summary=(f"{_a(cell.upper(), capital=True)} encoder-decoder with {m['attention']} attention that translates "
                 f"short {src} sentences into {trg}, trained by `train_nmt@{cell}` in a few minutes on a CPU."),
        tags=("translation", "seq2seq", cell), languages=(src, trg), metric_names=("bleu", "chrf"),
        details={"architecture": f"encoder {encoder}; decoder {m['layers']} × {m['hidden']} {cell.upper()}; "
                                 f"{m['attention']} attention" + (", input feeding" if m["input_feeding"] else ""),
                 "embeddings": (f"{m['embed']} wide" + (", tied with the output layer" if m["tie_embeddings"]
                                                        else "")) if m["input"] == "embedding" else "one-hot inputs",
                 "vocabulary": f"{m['src_vocab']:,} {src} and {m['trg_vocab']:,} {trg} {vocab['level']} tokens",
                 "parameters": f"{parameters:,}", "dropout": m["dropout"], "precision": m["precision"],
                 "recurrent kernel that ran": config.get("kernel", "?")},
        data={"corpus": source.url, "sha256": source.sha256 or "not checked",
              "split": (f"{train_pairs:,} training pairs; {scores.get('valid_pairs', 0):,} dev and "
                        f"{scores.get('pairs', 0):,} test pairs, whose source sentences never occur in training"),
              "filter": f"at most {p.data.max_len} tokens per side", "tokens": vocab["level"]
              + (", lowercased" if vocab.get("lowercase") else ""),
              "rare tokens": (f"seen fewer than {p.data.min_freq} times in training → `<unk>`" if p.data.min_freq > 1
                              else "none: every training token is in the vocabulary")},
        training={**_training(p.train), "label smoothing": p.train.label_smoothing,
                  "model kept": f"the step with the best greedy dev BLEU (every {p.train.log_every} steps)"},
        results=results, noise=noise_source(noise), provenance=scores.get("provenance", {}),
        uses=(f"Translating short, everyday {src} sentences like Tatoeba's (at most {p.data.max_len} tokens) into "
              f"{trg}, and comparing recurrent architectures and training settings under `dvc exp`."),
        out_of_scope=("Anything a person relies on: long or technical text, other domains, other languages. "
                      "The model has seen only short sentence pairs and has a closed vocabulary."),
        limitations=[f"Trained for {p.train.steps:,} steps on {train_pairs:,} pairs: far below a production "
                     "system; its BLEU is not comparable to WMT or IWSLT numbers.",
                     "Tatoeba's sentences are short, simple and often about a few recurring people (Tom, Mary); "
                     "the model reproduces that register and its biases, such as gendered defaults.",
                     "Words outside the training vocabulary come out as `<unk>`.",
                     SEED_NOTE],
        reproduce=[f"dvc repro evaluate_nmt@{cell}",
                   f"rnnpipe translate {p.paths.models}/{cell} \"I'm hungry.\""],
    )


def charlm_card(cell: str, config: Mapping[str, Any], parameters: int, scores: Mapping[str, Any],
                section: Any, source: Any, noise: Mapping[str, Any], train_chars: int, valid_chars: int) -> Card:
    p, m = section, config["model"]
    file = f"{p.paths.metrics}/charlm-{cell}.json"
    text = source.url
    return Card(
        name=f"charlm-{cell}", title=f"character-level {cell.upper()} language model",
        summary=(f"A char-rnn style {m['layers']} × {m['hidden']} {cell.upper()} that predicts the next character "
                 f"of {text.rsplit('/', 1)[-1]}, trained by `train_charlm@{cell}` with truncated backpropagation "
                 "through time, the state carried from one window to the next."),
        tags=("text-generation", "char-rnn", cell), languages=("en",), metric_names=("loss", "bits_per_character"),
        details={"architecture": f"{m['layers']} × {m['hidden']} {cell.upper()}, "
                                 + (f"embedding {m['embed']}" if m["input"] == "embedding" else "one-hot inputs"),
                 "vocabulary": f"{m['vocab']} characters", "parameters": f"{parameters:,}",
                 "dropout": m["dropout"], "precision": m["precision"],
                 "recurrent kernel that ran": config.get("kernel", "?")},
        data={"text": text, "sha256": source.sha256 or "not checked",
              "split": f"the first {train_chars:,} characters train, the last {valid_chars:,} "
                       f"({p.data.valid_fraction:.0%}) validate"},
        training={**_training(p.train), "window (truncated BPTT)": f"{p.train.seq_len} characters",
                  "streams": f"{p.train.batch_size} parallel streams, each carrying its state"},
        results=[Metric("validation loss (nats/char)", scores["valid_loss"], band_of(noise, file, "valid_loss"),
                        "the state carried through the whole held-out text"),
                 Metric("validation bits/char", scores["valid_bpc"], band_of(noise, file, "valid_bpc"), "nats ÷ ln 2")],
        noise=noise_source(noise), provenance=scores.get("provenance", {}),
        uses="Generating text in the style of its training text, and studying recurrent language models.",
        out_of_scope="Facts, advice, or any text presented as written by a person.",
        limitations=["It has learnt spelling, names and layout, not meaning: its samples are plausible-looking "
                     "nonsense.",
                     "It reproduces its training text's language, period and register.",
                     SEED_NOTE],
        reproduce=[f"dvc repro evaluate_charlm@{cell}",
                   f"rnnpipe generate {p.paths.models}/{cell} --prime \"ROMEO:\" --length 300"],
    )


def forecast_card(cell: str, config: Mapping[str, Any], parameters: int, scores: Mapping[str, Any],
                  section: Any, source: Any, noise: Mapping[str, Any], meta: Mapping[str, Any]) -> Card:
    p, m = section, config["model"]
    file = f"{p.paths.metrics}/forecast-{cell}.json"
    seeds = config.get("seeds", [])
    ratio = scores["mae_vs_naive"]
    verdict = ("It does **not** beat the naive forecast (tomorrow = today)" if ratio >= 1 else
               "It beats the naive forecast on these windows, by less than many single changes move it")
    spread = (f"; each seed's network alone scored {scores['seed_mae_min']:,.2f} … {scores['seed_mae_max']:,.2f}"
              if "seed_mae_min" in scores else "")
    results = [Metric("MAE, USD", scores["mae"], band_of(noise, file, "mae"), f"the mean of {len(seeds)} networks"
                      + spread),
               Metric("MAE of the naive forecast", scores["naive_mae"], band_of(noise, file, "naive_mae")),
               Metric("MAE ÷ naive's", ratio, band_of(noise, file, "mae_vs_naive"), "below 1: better than naive"),
               Metric("MASE", scores["mase"], band_of(noise, file, "mase")),
               Metric("horizons (of 40) where it beats naive", scores["horizons_beating_naive"],
                      band_of(noise, file, "horizons_beating_naive"))]
    results += [Metric(f"{name} MAE", scores[f"{name}_mae"], band_of(noise, file, f"{name}_mae"))
                for name in ("autoets", "autoarima", "autotheta", "drift") if f"{name}_mae" in scores]
    results += [Metric(f"coverage of the {level} % interval", scores[f"model_coverage{level}"],
                       band_of(noise, file, f"model_coverage{level}"), f"nominal 0.{level}")
                for level in (80, 95) if f"model_coverage{level}" in scores]
    features = ", ".join(config.get("features", []))
    return Card(
        name=f"forecast-{cell}", title=f"Bitcoin price forecaster, {cell.upper()} seq2seq",
        summary=(f"{_a(cell.upper(), capital=True)} encoder-decoder that reads {config['input_len']} days of "
                 f"{features} prices and forecasts the next {m['output_len']}, with split-conformal 80 % and 95 % "
                 f"intervals; the mean of {len(seeds)} networks trained from seeds {', '.join(map(str, seeds))}. "
                 f"{verdict}: on {scores['test_windows']} test windows its MAE is {ratio:.3f} × naive's."),
        tags=("time-series-forecasting", "seq2seq", cell), languages=(), metric_names=("mae", "mase"),
        details={"architecture": f"encoder and decoder {m['layers']} × {m['hidden']} {cell.upper()}, predicting the "
                                 "change from the last observed price",
                 "ensemble": f"{len(seeds)} networks (seeds {', '.join(map(str, seeds))}), forecasts averaged",
                 "parameters": f"{parameters:,} (all networks)", "dropout": m["dropout"],
                 "precision": m["precision"], "recurrent kernel that ran": config.get("kernel", "?"),
                 "intervals": "split conformal, from calibration twins trained without the last "
                              f"{p.intervals.calibration_days} days of the training windows"},
        data={"prices": source.url, "format": source.format,
              "history": f"{meta.get('first_day')} … {meta.get('last_day')}",
              "split": (f"{meta.get('train_windows', 0):,} training windows; {meta.get('test_windows', 0):,} test "
                        f"windows from {meta.get('test_from')} (the last {p.data.test_fraction:.0%}); training "
                        "windows end a whole window before the first test day"),
              "windows": f"{p.data.input_len} → {p.data.output_len} days, stride {p.data.stride}"},
        training={**_training(p.train), "loss": p.train.loss, "weight decay": p.train.weight_decay},
        results=results, noise=noise_source(noise), provenance=scores.get("provenance", {}),
        uses=("A worked example of forecasting a random-walk-like series honestly: scored per horizon against "
              "naive, drift, AutoARIMA and AutoETS on the same windows, with calibrated intervals."),
        out_of_scope="Trading, investment or any financial decision.",
        limitations=[f"{verdict}: daily Bitcoin prices are close to a random walk, and over the rolling-origin "
                     "backtest no method is measurably better than naive (`metrics/backtest.json`).",
                     "The test period is one market episode (the 2017 bubble and the 2018 crash); another period can "
                     "flatter or sink any method.",
                     f"One network's error moves by about the seed spread{spread and ' above'}; the ensemble is "
                     "the mean of several for that reason.",
                     "The intervals assume the calibration days resemble the future; in a regime change they cover "
                     "less than they claim."],
        reproduce=[f"dvc repro evaluate_forecast@{cell}", f"rnnpipe forecast {p.paths.models}/{cell}"],
    )
