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


Pairs = list[tuple[str, str]]


def prepare(pairs: Pairs | dict[str, Pairs], data: NmtData, corpus_vocab: dict[str, list[str]] | None = None):
    """Pure core: raw ``(source, target)`` pairs -> token splits, vocabularies and encoded arrays.

    ``pairs`` is one pool that is split here by source sentence, or a corpus's own
    ``{train, valid, test}`` splits (IWSLT). ``data.filter`` says which splits lose the
    pairs longer than ``max_len``: all of them, or training only, so that dev and test
    are scored whole and comparable with published numbers. ``data.pick`` says which
    ``max_pairs`` are kept. ``corpus_vocab`` (``{"src": tokens, "trg": tokens}``) replaces
    the vocabularies built from training. With ``data.long: truncate`` the filter cuts each
    side of a longer pair to ``max_len`` tokens instead of dropping it (tensorflow/nmt's
    ``src_max_len``/``tgt_max_len``); the text kept in the splits stays whole.

    Returns ``(splits, src_vocab, trg_vocab, arrays, models, truncated)``, the last the
    pairs cut per split.
    """
    cache: dict[str, list[str]] = {}
    filter_level = "word" if data.level == "subword" else data.level  # subwords: filter by words

    def tok(sentence: str) -> list[str]:
        if sentence not in cache:
            cache[sentence] = tokens.tokenize(sentence, filter_level)
        return cache[sentence]

    truncate = data.long == "truncate"

    def fitting(rows: Pairs) -> Pairs:
        longest = float("inf") if truncate else data.max_len
        return [p for p in rows if all(0 < len(tok(x)) <= longest for x in p)]

    def keep(rows: Pairs, cap: int) -> Pairs:
        if data.pick == "first":
            return rows[:cap]
        chosen = np.random.default_rng(data.seed).permutation(len(rows))[:cap]
        return [rows[i] for i in sorted(chosen)]

    def lower(rows: Pairs) -> Pairs:
        return [(s.lower(), t.lower()) for s, t in rows] if data.lowercase else rows

    everywhere = data.filter == "all"
    if isinstance(pairs, dict):
        caps = {"train": data.max_pairs, "valid": data.valid_size, "test": data.test_size}
        splits = {name: keep(fitting(lower(pairs[name])) if everywhere or name == "train" else lower(pairs[name]),
                             caps[name]) for name in SPLITS}
    else:
        pool = lower(pairs)
        kept = keep(fitting(pool) if everywhere else pool, data.max_pairs)
        splits = dict(
            zip(SPLITS, tokens.split_by_source(kept, data.valid_size, data.test_size, data.seed), strict=True)
        )
        if not everywhere:
            splits["train"] = fitting(splits["train"])
    widths = {name: data.max_len + 1 for name in SPLITS}
    models = None
    if data.level == "subword":
        # One SentencePiece model per side, from the training split only; pairs whose
        # pieces do not fit the widest bucket are dropped (from every filtered split).
        models = {side: subword.Subword(subword.train((p[i] for p in splits["train"]), data.vocab_size))
                  for i, side in enumerate(("src", "trg"))}
        widths = {name: data.buckets[-1] for name in SPLITS}
        toks = {name: [(models["src"].tokenize(s), models["trg"].tokenize(t)) for s, t in rows]
                for name, rows in splits.items()}
        kept_rows = {name: [i for i, (s, t) in enumerate(toks[name])
                            if not (everywhere or name == "train") or (len(s) < widths[name] and len(t) < widths[name])]
                     for name in SPLITS}
        splits = {name: [splits[name][i] for i in kept_rows[name]] for name in SPLITS}
        toks = {name: [toks[name][i] for i in kept_rows[name]] for name in SPLITS}
    else:
        toks = {name: [(tok(s), tok(t)) for s, t in rows] for name, rows in splits.items()}
    truncated = {name: 0 for name in SPLITS}
    if truncate:
        for name in SPLITS if everywhere else ("train",):
            truncated[name] = sum(len(s) > data.max_len or len(t) > data.max_len for s, t in toks[name])
            toks[name] = [(s[: data.max_len], t[: data.max_len]) for s, t in toks[name]]
    # an unfiltered split is padded to its own longest sentence
    widths = {name: max([widths[name], *(len(x) + 1 for pair in toks[name] for x in pair)]) for name in SPLITS}
    if corpus_vocab is not None:
        src_vocab, trg_vocab = (tokens.Vocab(tokens.SPECIALS + tuple(t for t in corpus_vocab[side]
                                                                     if t not in tokens.SPECIALS))
                                for side in ("src", "trg"))
    else:
        src_vocab = tokens.build_vocab((s for s, _ in toks["train"]), data.min_freq)
        trg_vocab = tokens.build_vocab((t for _, t in toks["train"]), data.min_freq)
    arrays = {name: tokens.encode_pairs(rows, src_vocab, trg_vocab, widths[name]) for name, rows in toks.items()}
    return splits, src_vocab, trg_vocab, arrays, models, truncated


def read_pairs(params: Params) -> tuple[Pairs | dict[str, Pairs], dict[str, list[str]] | None, dict[str, int]]:
    """The source's pairs turned to ``nmt.data.source`` -> ``target``; with
    ``nmt.data.vocab: corpus``, the corpus's own vocabularies as ``{"src", "trg"}``; and
    the pairs dropped per split for an empty side (iwslt, ``nmt.data.empty_lines: drop``)."""
    source, data = params.sources.nmt, params.nmt.data
    raw = Path(source.raw)
    flip = data.source != source.langs[0]
    turn = (lambda rows: [(t, s) for s, t in rows]) if flip else (lambda rows: rows)
    if source.format == "iwslt":
        splits, vocabs, dropped = iwslt.read_folder(raw, source.langs, data.empty_lines)
        corpus = {"src": vocabs[data.source], "trg": vocabs[data.target]} if data.vocab == "corpus" else None
        return {name: turn(rows) for name, rows in splits.items()}, corpus, dropped
    if source.format == "tatoeba-zip":
        return turn(tatoeba.pairs_from_zip(raw, params.fetch.max_megabytes << 20)), None, {}
    return turn(tatoeba.parse_pairs(read_corpus(raw.read_bytes(), str(raw)), str(raw))), None, {}


def run(params: Params, variant: str | None = None) -> None:
    pairs, corpus_vocab, dropped = read_pairs(params)
    splits, src_vocab, trg_vocab, arrays, models, truncated = prepare(pairs, params.nmt.data, corpus_vocab)
    out = Path(params.nmt.paths.prepared)
    for name in SPLITS:
        artifacts.write_text(out / f"{name}.tsv", "".join(f"{s}\t{t}\n" for s, t in splits[name]))
        artifacts.write_npz(out / f"{name}.npz", **arrays[name])
    artifacts.write_json(
        out / "vocab.json",
        {"level": params.nmt.data.level, "lowercase": params.nmt.data.lowercase,
         "source": params.nmt.data.source, "target": params.nmt.data.target,
         # what the sentences went through before tokenisation (rnnpipe translate repeats it)
         "normalize": "none" if params.sources.nmt.format == "iwslt" else "tatoeba",
         "src": list(src_vocab.tokens), "trg": list(trg_vocab.tokens),
         **({"subword": {side: m.to_text() for side, m in models.items()}} if models else {})},
    )
    sizes = ", ".join(f"{n} {len(splits[n])}" for n in SPLITS)
    read = sum(map(len, pairs.values())) if isinstance(pairs, dict) else len(pairs)
    artifacts.write_json(out / "stats.json", {"pairs_read": read, "pairs": {n: len(splits[n]) for n in SPLITS},
                                              "dropped_empty": dropped, "truncated": truncated})
    empties = f"; {sum(dropped.values())} pair(s) with an empty side dropped ({dropped})" if any(dropped.values()) \
        else ""
    if any(truncated.values()):
        empties += f"; {sum(truncated.values())} pair(s) cut to {params.nmt.data.max_len} tokens ({truncated})"
    print(f"prepare_nmt: {read} pairs read{empties}; {sizes}; "
          f"vocab src {len(src_vocab)} / trg {len(trg_vocab)} -> {out}")
