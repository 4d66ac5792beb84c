"""evaluate_nmt@<cell>: translate the dev and test pairs and score them with sacrebleu; their
teacher-forced loss, perplexity and token accuracy beside."""

from __future__ import annotations

from pathlib import Path

import jax

from pipeline import artifacts
from pipeline.data import batches, tokens
from pipeline.evaluation import cards, heldout, metrics, noise, provenance
from pipeline.inference import translator
from pipeline.models.seq2seq import Seq2Seq
from pipeline.models.store import load_model
from pipeline.params import NmtDecode, Params
from pipeline.training.losses import nmt_loss


def translators(model: Seq2Seq, d: NmtDecode) -> dict[str, object]:
    """The configured decoder, and greedy beside it as the baseline when it differs."""
    chosen = translator.make_translator(model, d.max_len_factor, d.method, d.beam_size,
                                        d.length_penalty, d.temperature)
    if d.method == "greedy":
        return {"greedy": chosen}
    return {d.method: chosen, "greedy": translator.make_translator(model, d.max_len_factor)}


def run(params: Params, cell: str) -> None:
    p = params.nmt
    model_params, config = load_model(Path(p.paths.models) / cell)
    model = Seq2Seq(**config["model"])
    vocab = config["vocab"]
    trg_vocab = tokens.Vocab(tuple(vocab["trg"]))
    prepared = Path(p.paths.prepared)
    results: dict[str, object] = {}
    key = jax.random.key(p.decode.seed)
    eval_step = heldout.make_eval_step(nmt_loss(model))
    for split in ("valid", "test"):
        arrays = artifacts.read_npz(prepared / f"{split}.npz")
        refs = [line.split("\t")[1] for line in (prepared / f"{split}.tsv").read_text("utf-8").splitlines()]
        prefix = "" if split == "test" else "valid_"
        results[f"{prefix}pairs"] = len(refs)
        held = heldout.scores(eval_step, model_params,
                              (b for _, b in batches.eval_batches(arrays, p.data.buckets, p.decode.batch_size)))
        results.update({f"{prefix}{k}": v for k, v in held.items()})
        for method, translate in translators(model, p.decode).items():
            hyps = translator.translate_all(translate, model_params, arrays, p.data.buckets,
                                            p.decode.batch_size, trg_vocab, vocab["level"], key)
            scores = metrics.bleu_chrf(hyps, [refs], also_untokenized=p.evaluate.pretokenized)
            if method == p.decode.method:
                results.update({f"{prefix}{k}": v for k, v in scores.items()
                                if not (prefix and k.endswith("_signature"))})  # one signature each
                artifacts.write_text(Path(p.paths.samples) / f"nmt-{cell}-{split}.hyp.txt", "\n".join(hyps) + "\n")
            else:
                results[f"{prefix}bleu_{method}"] = scores["bleu"]
    results["decode"] = p.decode.method if p.decode.method != "beam" else f"beam{p.decode.beam_size}"
    stamped = provenance.stamped(results, config.get("kernel"))
    artifacts.write_json(Path(p.paths.metrics) / f"nmt-{cell}.json", stamped)
    train_pairs = len((prepared / "train.tsv").read_text("utf-8").splitlines())
    card = cards.nmt_card(cell, config, cards.parameter_count(model_params), stamped, p,
                          params.sources.nmt, artifacts.read_json_if_exists(noise.NOISE_FILE), train_pairs)
    artifacts.write_text(Path(p.paths.metrics) / "cards" / f"nmt-{cell}.md", cards.render(card))
    gain = f" (greedy {results['bleu_greedy']:.2f})" if "bleu_greedy" in results else ""
    print(f"evaluate_nmt@{cell}: test BLEU {results['bleu']:.2f}{gain} chrF {results['chrf']:.2f} "
          f"perplexity {results['perplexity']:.2f} accuracy {results['accuracy']:.3f}, "
          f"dev BLEU {results['valid_bleu']:.2f}, {results['decode']} ({results['bleu_signature']})")
