"""evaluate_nmt@<cell>: greedy-translate the held-out test pairs and score with sacrebleu."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts, batches, inference, metrics, text
from pipeline.checkpoint import load_model
from pipeline.models.seq2seq import Seq2Seq
from pipeline.params import Params


def translate_all(translate, params, arrays, buckets, batch_size) -> list[list[int]]:
    """Hypothesis ids for every row of ``arrays``, in the original order."""
    hyps: list[list[int]] = [[] for _ in range(len(arrays["src"]))]
    for rows, batch in batches.eval_batches(arrays, buckets, batch_size):
        ids = np.asarray(translate(params, batch["src"], batch["src_len"]))
        for row, out in zip(rows, ids):
            hyps[row] = out.tolist()
    return hyps


def run(params: Params, cell: str) -> None:
    p = params.nmt
    model_params, config = load_model(Path(p.paths.models) / cell)
    model = Seq2Seq(**config["model"])
    vocab = config["vocab"]
    trg_vocab = text.Vocab(tuple(vocab["trg"]))
    prepared = Path(p.paths.prepared)
    arrays = artifacts.read_npz(prepared / "test.npz")
    pairs = [line.split("\t") for line in (prepared / "test.tsv").read_text("utf-8").splitlines()]
    translate = inference.make_translator(model, p.decode.max_len_factor)
    ids = translate_all(translate, model_params, arrays, p.data.buckets, p.decode.batch_size)
    hyps = [text.detokenize(trg_vocab.decode(row), vocab["level"]) for row in ids]
    refs = [t for _, t in pairs]
    scores = metrics.bleu_chrf(hyps, [refs])
    artifacts.write_text(Path(p.paths.samples) / f"nmt-{cell}-test.hyp.txt", "\n".join(hyps) + "\n")
    artifacts.write_json(
        Path(p.paths.metrics) / f"nmt-{cell}.json", {"test_pairs": len(hyps), **scores}
    )
    print(f"evaluate_nmt@{cell}: BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f} "
          f"on {len(hyps)} held-out pairs ({scores['bleu_signature']})")
