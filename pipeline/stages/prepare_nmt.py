"""prepare_nmt: parse pairs, tokenize, split by source sentence, build vocabularies, encode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.data import subword, tokens
from pipeline.params import NmtData, Params
from pipeline.sources import iwslt, tatoeba
from pipeline.sources.plaintext import read_corpus

SPLITS = ("train", "valid", "test")


def prepare(pairs: list[tuple[str, str]] | dict[str, list[tuple[str, str]]], data: NmtData):
    """Pure core: raw pairs -> token splits, vocabularies and encoded arrays.

    ``pairs`` is one pool that is split here by source sentence, or a corpus's own
    ``{train, valid, test}`` splits (IWSLT), which are only length-filtered and capped.
    """
    cache: dict[str, list[str]] = {}
    filter_level = "word" if data.level == "subword" else data.level  # subwords: filter by words

    def tok(sentence: str) -> list[str]:
        if sentence not in cache:
            cache[sentence] = tokens.tokenize(sentence, filter_level)
        return cache[sentence]

    def fitting(rows: list[tuple[str, str]], cap: int) -> list[tuple[str, str]]:
        if data.lowercase:
            rows = [(s.lower(), t.lower()) for s, t in rows]
        fits = [p for p in rows if all(0 < len(tok(x)) <= data.max_len for x in p)]
        chosen = np.random.default_rng(data.seed).permutation(len(fits))[:cap]
        return [fits[i] for i in sorted(chosen)]

    if isinstance(pairs, dict):
        caps = {"train": data.max_pairs, "valid": data.valid_size, "test": data.test_size}
        splits = {name: fitting(pairs[name], caps[name]) for name in SPLITS}
    else:
        kept = fitting(pairs, data.max_pairs)
        splits = dict(zip(SPLITS, tokens.split_by_source(kept, data.valid_size, data.test_size, data.seed)))
    width, models = data.max_len + 1, None
    if data.level == "subword":
        # One SentencePiece model per side, from the training split only; pairs whose
        # pieces do not fit the widest bucket are dropped (from every split alike).
        models = {side: subword.Subword(subword.train((p[i] for p in splits["train"]), data.vocab_size))
                  for i, side in enumerate(("src", "trg"))}
        width = data.buckets[-1]
        toks = {name: [(models["src"].tokenize(s), models["trg"].tokenize(t)) for s, t in rows]
                  for name, rows in splits.items()}
        keep = {name: [i for i, (s, t) in enumerate(toks[name]) if len(s) < width and len(t) < width]
                for name in SPLITS}
        splits = {name: [splits[name][i] for i in keep[name]] for name in SPLITS}
        toks = {name: [toks[name][i] for i in keep[name]] for name in SPLITS}
    else:
        toks = {name: [(tok(s), tok(t)) for s, t in rows] for name, rows in splits.items()}
    src_vocab = tokens.build_vocab((s for s, _ in toks["train"]), data.min_freq)
    trg_vocab = tokens.build_vocab((t for _, t in toks["train"]), data.min_freq)
    arrays = {name: tokens.encode_pairs(rows, src_vocab, trg_vocab, width) for name, rows in toks.items()}
    return splits, src_vocab, trg_vocab, arrays, models


def read_pairs(params: Params) -> list[tuple[str, str]] | dict[str, list[tuple[str, str]]]:
    source = params.sources.nmt
    raw = Path(source.raw)
    if source.format == "iwslt":
        splits, _ = iwslt.read_folder(raw)
        return splits
    if source.format == "tatoeba-zip":
        return tatoeba.pairs_from_zip(raw, params.fetch.max_megabytes << 20)
    return tatoeba.parse_pairs(read_corpus(raw.read_bytes(), str(raw)), str(raw))


def run(params: Params, variant: str | None = None) -> None:
    pairs = read_pairs(params)
    splits, src_vocab, trg_vocab, arrays, models = prepare(pairs, params.nmt.data)
    out = Path(params.nmt.paths.prepared)
    for name in SPLITS:
        artifacts.write_text(out / f"{name}.tsv", "".join(f"{s}\t{t}\n" for s, t in splits[name]))
        artifacts.write_npz(out / f"{name}.npz", **arrays[name])
    artifacts.write_json(
        out / "vocab.json",
        {"level": params.nmt.data.level, "lowercase": params.nmt.data.lowercase,
         # what the sentences went through before tokenisation (rnnpipe translate repeats it)
         "normalize": "none" if params.sources.nmt.format == "iwslt" else "tatoeba",
         "src": list(src_vocab.tokens), "trg": list(trg_vocab.tokens),
         **({"subword": {side: m.to_text() for side, m in models.items()}} if models else {})},
    )
    sizes = ", ".join(f"{n} {len(splits[n])}" for n in SPLITS)
    read = sum(map(len, pairs.values())) if isinstance(pairs, dict) else len(pairs)
    print(f"prepare_nmt: {read} pairs read; {sizes}; "
          f"vocab src {len(src_vocab)} / trg {len(trg_vocab)} -> {out}")
