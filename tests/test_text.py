"""Tokenisation, vocabularies, splits and batching for translation and the char LM."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.data import batches, tokens
from pipeline.sources import tatoeba


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40))
def test_word_tokens_detokenize_to_the_normalised_sentence(sentence):
    normal = tatoeba.normalize(sentence)
    assert tokens.detokenize(tokens.tokenize(normal, "word"), "word") == normal
    assert tokens.detokenize(tokens.tokenize(normal, "char"), "char") == normal


def test_word_tokens_mark_preceding_spaces():
    assert tokens.tokenize("Je l'aime !", "word") == ["Je", "▁l", "'", "aime", "▁!"]
    assert tokens.detokenize(["Je", "▁l", "'", "<unk>", "▁!"], "word") == "Je l' <unk> !"


def test_parse_pairs_handles_both_formats_and_odd_spaces():
    raw = "Go.\tVa\u202f!\nHi.\tSalut\u00a0!\tCC-BY 2.0 (France) Attribution: tatoeba.org #1\nOk\u200b.\tD'accord.\n"
    assert tatoeba.parse_pairs(raw, "x.txt") == [("Go.", "Va !"), ("Hi.", "Salut !"), ("Ok.", "D'accord.")]


@pytest.mark.parametrize(
    "line,why", [("only one field", "got 1"), ("a\tb\tc\td", "got 4"), ("a\t \t", "empty sentence")]
)
def test_malformed_lines_name_file_and_line(line, why):
    raw = f"Go.\tVa !\n{line}\n"
    with pytest.raises(tatoeba.CorpusError, match=rf"pairs.txt:2: .*{why}"):
        tatoeba.parse_pairs(raw, "pairs.txt")


def test_split_by_source_keeps_every_translation_of_a_source_together():
    pairs = [(f"s{i}", f"t{i}-{j}") for i in range(50) for j in range(i % 3 + 1)]
    train, valid, test = tokens.split_by_source(pairs, 5, 10, seed=0)
    src = lambda rows: {s for s, _ in rows}
    assert not src(train) & src(test) and not src(train) & src(valid) and not src(valid) & src(test)
    assert len(src(valid)) == 5 and len(src(test)) == 10
    assert sorted(train + valid + test) == sorted(pairs)
    assert tokens.split_by_source(pairs, 5, 10, seed=0) == (train, valid, test)


def test_vocab_min_freq_and_unk():
    vocab = tokens.build_vocab([["a", "b", "a"], ["a", "c"]], min_freq=2)
    assert vocab.tokens == (*tokens.SPECIALS, "a")
    assert vocab.encode(["a", "zzz"]) == [4, tokens.UNK_ID]
    assert vocab.decode([4, tokens.UNK_ID, tokens.EOS_ID, 4]) == ["a", "<unk>"]


def test_encode_pairs_layout():
    vocab = tokens.Vocab((*tokens.SPECIALS, "x", "y"))
    out = tokens.encode_pairs([(["x"], ["y", "y"])], vocab, vocab, width=4)
    np.testing.assert_array_equal(out["src"][0], [4, tokens.EOS_ID, 0, 0])
    np.testing.assert_array_equal(out["trg"][0], [tokens.BOS_ID, 5, 5, tokens.EOS_ID, 0])
    assert out["src_len"][0] == 2 and out["trg_len"][0] == 3


def make_pairs(n, rng):
    lens = rng.integers(1, 9, size=(n, 2))
    vocab = tokens.Vocab((*tokens.SPECIALS, "w"))
    return tokens.encode_pairs([(["w"] * a, ["w"] * b) for a, b in lens], vocab, vocab, width=10)


def test_bucket_batches_have_static_shapes_from_one_bucket():
    rng = np.random.default_rng(0)
    arrays = make_pairs(300, rng)
    stream = batches.bucket_batches(arrays, [5, 10], 16, rng)
    shapes = set()
    for _ in range(40):
        b = next(stream)
        shapes.add((b["src"].shape, b["trg"].shape))
        width = b["src"].shape[1]
        assert np.all(np.maximum(b["src_len"], b["trg_len"]) <= width)
    assert shapes == {((16, 5), (16, 6)), ((16, 10), (16, 11))}


def test_token_batches_hold_a_buckets_share_of_the_tokens():
    rng = np.random.default_rng(0)
    arrays = make_pairs(600, rng)
    assert batches.bucket_sizes([5, 10], 16) == [16, 16]
    assert batches.bucket_sizes([5, 10], 16, batch_tokens=400) == [80, 40]  # multiples of 8
    assert batches.bucket_sizes([5, 100], 16, batch_tokens=400) == [80, 8]  # never fewer than 8
    stream = batches.bucket_batches(arrays, [5, 10], 16, rng, batch_tokens=400)
    shapes = {next(stream)["src"].shape for _ in range(40)}
    assert shapes == {(80, 5), (40, 10)}
    with pytest.raises(ValueError, match=r"no bucket holds a full batch \(1600, 800 pairs per bucket\)"):
        next(batches.bucket_batches(arrays, [5, 10], 16, rng, batch_tokens=8000))


def test_eval_batches_cover_every_row_once():
    arrays = make_pairs(101, np.random.default_rng(1))
    seen = []
    for rows, batch in batches.eval_batches(arrays, [5, 10], 16):
        assert batch["src"].shape[0] == 16
        assert np.all(batch["trg_len"][len(rows):] == 0)
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(101))


def test_stream_layout_continues_each_stream_across_windows():
    ids = np.arange(1000, dtype=np.int32)
    x, y = batches.stream_layout(ids, batch_size=4, seq_len=10)
    assert x.shape == (24, 4, 10)
    np.testing.assert_array_equal(y, x + 1)
    assert np.all(x[1:, :, 0] == x[:-1, :, -1] + 1)  # window w+1 continues window w
    with pytest.raises(ValueError, match="too few"):
        batches.stream_layout(ids[:20], 4, 10)


def test_char_vocab_round_trip():
    chars = tokens.char_vocab("hello\n")
    assert "".join(chars[i] for i in tokens.encode_chars("hello\n", chars)) == "hello\n"
    with pytest.raises(KeyError, match="'z'"):
        tokens.encode_chars("z", chars)


def test_stream_windows_reset_only_at_each_pass_start():
    ids = np.arange(200, dtype=np.int32)
    windows = list(batches.stream_windows(ids, batch_size=2, seq_len=10, epochs=2))
    assert len(windows) == 2 * 9
    assert [bool(w["reset"]) for w in windows] == ([True] + [False] * 8) * 2
    np.testing.assert_array_equal(windows[9]["inputs"], windows[0]["inputs"])
    endless = batches.stream_windows(ids, 2, 10)
    assert sum(bool(next(endless)["reset"]) for _ in range(30)) == 4  # windows 0, 9, 18, 27
