"""The translation settings the tutorial recipes need (issue 18): direction, a corpus's own
vocabulary, whole dev/test sets, which pairs are kept, one-hot inputs, RMSprop, and the
loss/perplexity/accuracy metrics. Each test fails if its option is ignored."""

from __future__ import annotations

import html
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline import artifacts
from pipeline import params as P
from pipeline.data import batches, tokens
from pipeline.evaluation import heldout
from pipeline.models.seq2seq import Seq2Seq
from pipeline.sources import tatoeba
from pipeline.stages import evaluate_nmt, prepare_nmt, train_nmt
from pipeline.training.losses import masked_xent, nmt_loss

from .conftest import FIXTURES, merge
from .helpers import IWSLT, iwslt_folder

PAIRS = FIXTURES / "fra-eng-excerpt.txt"


def with_data(tiny_params_dict, **data) -> P.Params:
    return P.from_dict(merge(tiny_params_dict, {"nmt": {"data": data}}))


def fixture_pairs() -> list[tuple[str, str]]:
    return tatoeba.parse_pairs(PAIRS.read_text("utf-8"), str(PAIRS))


# --- the loader's rules ----------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"nmt": {"data": {"source": "fr", "target": "fr"}}}, r"'nmt.data.source' -> 'nmt.data.target' is 'fr' -> 'fr'"),
    ({"nmt": {"data": {"source": "de"}}}, r"must be 'en' -> 'fr' or 'fr' -> 'en'"),
    ({"sources": {"nmt": {"langs": ["en"]}}}, r"'sources.nmt.langs' is \['en'\]"),
    ({"nmt": {"data": {"vocab": "corpus"}}}, r"'nmt.data.vocab' is 'corpus': only the iwslt format"),
    ({"nmt": {"data": {"pick": "last"}}}, r"'nmt.data.pick' is 'last'; expected one of random, first"),
    ({"nmt": {"data": {"filter": "dev"}}}, r"'nmt.data.filter' is 'dev'; expected one of all, train"),
    ({"nmt": {"model": {"input": "onehot", "tie_embeddings": True}}}, r"'nmt.model.input' is 'onehot' with"),
    ({"nmt": {"train": {"rmsprop_decay": 1.0}}}, r"'nmt.train.rmsprop_decay' is 1.0; it must be > 0 and < 1"),
    ({"nmt": {"data": {"empty_lines": "drop"}}}, r"'nmt.data.empty_lines' is 'drop', but 'sources.nmt.format' is "
                                                  r"'tsv': only the iwslt format"),
    ({"nmt": {"train": {"loss_normalization": "batch"}}},
     r"'nmt.train.loss_normalization' is 'batch'; expected one of token, sentence, padded"),
    ({"nmt": {"model": {"encoder_layers": 2, "layers": 1}}},
     r"'nmt.model.encoder_layers' is 2 but 'nmt.model.layers' is 1 with 'nmt.model.bridge' dense"),
    ({"nmt": {"model": {"bridge": "copy", "bidirectional": True, "layers": 1}}},
     r"'nmt.model.bridge' is 'copy', so the encoder's 2 final state\(s\) \('nmt.model.encoder_layers' 1, "
     r"bidirectional\) must start 'nmt.model.layers' = 1"),
    ({"nmt": {"data": {"long": "truncate", "level": "subword"}}},
     r"'nmt.data.long' is 'truncate' with 'nmt.data.level' 'subword'"),
    ({"nmt": {"model": {"initializer": "glorot"}}},
     r"'nmt.model.initializer' is 'glorot'; expected one of flax, uniform, keras, tf"),
])
def test_loader_rejects_impossible_translation_settings(real_params_dict, change, message):
    with pytest.raises(P.ParamsError, match=message):
        P.from_dict(merge(real_params_dict, change))


# --- data ------------------------------------------------------------------------------
def test_space_level_keeps_pretokenized_tokens_as_they_stand():
    line = "it 's a &quot; world , except"
    assert tokens.tokenize(line, "space") == ["it", "'s", "a", "&quot;", "world", ",", "except"]
    assert tokens.detokenize(tokens.tokenize(line, "space"), "space") == line
    assert tokens.tokenize(line, "word")[:3] == ["it", "▁'", "s"]  # what word level would do instead


def test_direction_turns_the_pairs(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(PAIRS, tmp_path / "pairs.txt")
    source = {"url": "x", "sha256": None, "raw": "pairs.txt", "format": "tsv", "langs": ["en", "fr"]}
    forward = P.from_dict(merge(tiny_params_dict, {"sources": {"nmt": source}}))
    backward = P.from_dict(merge(tiny_params_dict, {"sources": {"nmt": source},
                                                    "nmt": {"data": {"source": "fr", "target": "en"}}}))
    fwd, _, _ = prepare_nmt.read_pairs(forward)
    bwd, _, _ = prepare_nmt.read_pairs(backward)
    assert fwd[0] == ("Stop being stupid.", "Cesse d'être idiot !") and bwd == [(t, s) for s, t in fwd]


def test_pick_first_keeps_the_file_order_and_random_does_not(tiny_params_dict):
    pairs = fixture_pairs()
    first = with_data(tiny_params_dict, pick="first", max_pairs=300, max_len=50, buckets=[51]).nmt.data
    random = with_data(tiny_params_dict, pick="random", max_pairs=300, max_len=50, buckets=[51]).nmt.data
    kept = lambda data: {p for rows in prepare_nmt.prepare(pairs, data)[0].values() for p in rows}
    assert kept(first) == set(pairs[:300])
    assert kept(random) != set(pairs[:300]) and len(kept(random)) == 300


def test_filter_train_scores_dev_and_test_whole(tiny_params_dict):
    pairs = fixture_pairs()
    longest = max(len(tokens.tokenize(x, "word")) for p in pairs for x in p)
    data = with_data(tiny_params_dict, filter="train", max_len=4, buckets=[3, 5]).nmt.data
    splits, _, _, arrays, _, _ = prepare_nmt.prepare(pairs, data)
    too_long = lambda rows: [p for p in rows if max(len(tokens.tokenize(x, "word")) for x in p) > 4]
    assert not too_long(splits["train"])
    assert too_long(splits["test"]) and too_long(splits["valid"])  # kept, not filtered
    assert arrays["test"]["src"].shape[1] > 5 and arrays["train"]["src"].shape[1] == 5
    assert arrays["test"]["src"].shape[1] <= longest + 1
    filtered = prepare_nmt.prepare(
        pairs, with_data(tiny_params_dict, filter="all", max_len=4, buckets=[3, 5]).nmt.data
    )[0]
    assert not too_long(filtered["test"])


def test_eval_batches_give_long_rows_extra_buckets():
    src_len = np.array([3, 9, 17, 2], np.int32)
    arrays = {"src": np.ones((4, 17), np.int32), "src_len": src_len}
    seen = {int(r): b["src"].shape[1] for rows, b in batches.eval_batches(arrays, [4, 8], 2) for r in rows}
    assert seen == {0: 4, 3: 4, 1: 16, 2: 17}  # 8 + 8 = 16 holds row 1; row 2 takes the array's width
    assert batches.extended([4, 8], 17) == [4, 8, 16, 24]


def iwslt_params(tiny_params_dict, tmp_path, **nmt) -> P.Params:
    """tensorflow/nmt's setting on the real tst2012/tst2013 files: vi -> en, vocab.vi and
    vocab.en as they are, and every dev and test sentence (tst2012 stands in for train,
    which ../shared does not hold)."""
    source = {"url": "x", "sha256": None, "raw": str(iwslt_folder(tmp_path)), "format": "iwslt", "langs": ["en", "vi"]}
    data = {"source": "vi", "target": "en", "level": "space", "vocab": "corpus", "filter": "train",
            "max_len": 50, "buckets": [20, 51], "max_pairs": 200000, "valid_size": 5000, "test_size": 5000}
    return P.from_dict(
        merge(tiny_params_dict, {"sources": {"nmt": source}, "nmt": {**nmt, "data": {**data, **nmt.get("data", {})}}})
    )


needs_iwslt = pytest.mark.skipif(not IWSLT.is_dir(), reason="needs ../shared/data (the IWSLT'15 dev and test files)")


@needs_iwslt
def test_iwslt_vi_en_with_its_own_vocabularies_and_whole_test_sets(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = iwslt_params(tiny_params_dict, tmp_path)
    prepare_nmt.run(params)

    prepared = tmp_path / params.nmt.paths.prepared
    vocab = artifacts.read_json(prepared / "vocab.json")
    vocab_vi = [html.unescape(t) for t in (IWSLT / "vocab.vi").read_text("utf-8").split("\n") if t]
    specials = {"<unk>", "<s>", "</s>"}
    assert vocab["src"][:4] == list(tokens.SPECIALS)
    assert vocab["src"][4:] == list(dict.fromkeys(t for t in vocab_vi if t not in specials))
    assert len(vocab["trg"]) == 4 + 17191 - 3  # vocab.en: its three specials are ours, plus <pad>
    assert (vocab["source"], vocab["target"]) == ("vi", "en")

    test = (prepared / "test.tsv").read_text("utf-8").splitlines()
    tst2013_vi = (IWSLT / "tst2013.vi").read_text("utf-8").splitlines()
    assert len(test) == 1268  # every sentence: none dropped for length
    assert [row.split("\t")[0] for row in test] == [html.unescape(s).strip() for s in tst2013_vi]
    arrays = artifacts.read_npz(prepared / "test.npz")
    assert arrays["src"].shape[1] > 51  # padded to the longest test sentence
    train = (prepared / "train.tsv").read_text("utf-8").splitlines()
    assert 0 < len(train) < 1553 and all(len(x.split()) <= 50 for row in train for x in row.split("\t"))


@needs_iwslt
@pytest.mark.slow
def test_iwslt_whole_test_set_is_translated_and_scored(tiny_params_dict, tmp_path, monkeypatch):
    """Sentences longer than every bucket are translated and scored too (extra buckets)."""
    monkeypatch.chdir(tmp_path)
    params = iwslt_params(tiny_params_dict, tmp_path, data={"valid_size": 40}, train={"steps": 2, "log_every": 2},
                          decode={"method": "greedy", "batch_size": 64}, evaluate={"pretokenized": True})
    prepare_nmt.run(params)
    train_nmt.run(params, "gru")
    evaluate_nmt.run(params, "gru")
    m = artifacts.read_json(tmp_path / "metrics/nmt-gru.json")
    assert m["pairs"] == 1268 and np.isfinite(m["perplexity"]) and 0 <= m["accuracy"] < 1
    hyps = (tmp_path / "samples/nmt-gru-test.hyp.txt").read_text("utf-8").split("\n")[:-1]
    assert len(hyps) == 1268


# --- model, optimiser, metrics -------------------------------------------------------------
def test_onehot_inputs_replace_the_embeddings():
    kwargs = dict(src_vocab=11, trg_vocab=13, cell="lstm", embed=6, hidden=8, layers=1, bidirectional=False,
                  attention="none", dropout=0.0)
    src, src_len, trg = jnp.array([[5, 6, 3]]), jnp.array([3]), jnp.array([[2, 7, 8]])
    embedded = Seq2Seq(**kwargs).init(jax.random.key(0), src, src_len, trg)["params"]
    model = Seq2Seq(**kwargs, input="onehot")
    onehot = model.init(jax.random.key(0), src, src_len, trg)["params"]
    assert "src_embed" in embedded and "src_embed" not in onehot and "trg_embed" not in onehot
    assert onehot["decoder_0"]["wi"].shape == (13, 32)  # the target vocabulary is the input width
    a = model.apply({"params": onehot}, src, src_len, trg)
    b = model.apply({"params": onehot}, jnp.array([[4, 6, 3]]), src_len, trg)
    assert not np.allclose(a, b)  # the source tokens reach the output


def test_nmt_rmsprop_is_the_optimiser_it_names(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(PAIRS, tmp_path / "pairs.txt")
    source = {"url": "x", "sha256": None, "raw": "pairs.txt", "format": "tsv", "langs": ["en", "fr"]}
    states = {}
    for optimizer in ("adam", "rmsprop"):
        params = P.from_dict(merge(tiny_params_dict, {"sources": {"nmt": source},
                                                      "nmt": {"train": {"optimizer": optimizer}}}))
        prepare_nmt.run(params)
        job, _ = train_nmt.setup(params, "lstm")
        states[optimizer] = job.state.opt_state
    kinds = lambda s: {type(x).__name__ for x in jax.tree_util.tree_leaves(
        s, is_leaf=lambda x: isinstance(x, tuple) and hasattr(x, "_fields"))}
    assert "ScaleByRmsState" in kinds(states["rmsprop"]) and "ScaleByRmsState" not in kinds(states["adam"])
    assert "ScaleByAdamState" in kinds(states["adam"])


def test_token_accuracy_counts_top_predictions_on_unmasked_positions():
    logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]]))
    stats = masked_xent(logits, jnp.array([[0, 2, 2]]), jnp.array([[True, True, False]]))
    assert float(stats["count"]) == 2 and float(stats["correct"]) == 1  # the third is masked
    assert float(stats["sum"]) == pytest.approx(-np.log(0.7) - np.log(0.1), rel=1e-5)


def test_scores_average_exactly_across_batches():
    model = Seq2Seq(src_vocab=9, trg_vocab=9, cell="gru", embed=4, hidden=4, layers=1, bidirectional=False,
                    attention="none", dropout=0.0)
    rng = np.random.default_rng(0)
    arrays = {"src": rng.integers(4, 9, (5, 4)).astype(np.int32), "trg": rng.integers(4, 9, (5, 5)).astype(np.int32),
              "src_len": np.array([4, 2, 3, 4, 1], np.int32), "trg_len": np.array([4, 3, 2, 1, 4], np.int32)}
    arrays["trg"][:, 0] = tokens.BOS_ID
    prm = model.init(jax.random.key(1), arrays["src"], arrays["src_len"], arrays["trg"][:, :-1])["params"]
    step = heldout.make_eval_step(nmt_loss(model))
    split = heldout.scores(step, prm, (b for _, b in batches.eval_batches(arrays, [2, 4], 2)))
    whole = heldout.scores(step, prm, [batches.crop(arrays, np.arange(5), 4)])
    assert split == pytest.approx(whole, rel=1e-5)
    assert split["perplexity"] == pytest.approx(np.exp(split["loss"]))
    logits = model.apply({"params": prm}, arrays["src"], arrays["src_len"], arrays["trg"][:, :-1])
    mask = np.arange(4)[None, :] < arrays["trg_len"][:, None]
    hits = (np.asarray(logits).argmax(-1) == arrays["trg"][:, 1:]) & mask
    assert split["accuracy"] == pytest.approx(hits.sum() / mask.sum())


@pytest.mark.parametrize("policy", ["drop", "error"])
def test_iwslt_pairs_with_an_empty_side_are_dropped_and_counted_or_refused(tiny_params_dict, tmp_path, monkeypatch,
                                                                           policy):
    """As in the Stanford train files: an empty line on both sides, and one on one side."""
    from pipeline.sources.iwslt import IwsltError

    monkeypatch.chdir(tmp_path)
    params = iwslt_params(tiny_params_dict, tmp_path, data={"empty_lines": policy})
    folder = tmp_path / "iwslt"
    en, vi = (folder / "train.en").read_text().split("\n"), (folder / "train.vi").read_text().split("\n")
    en.insert(2, "")
    vi.insert(2, "")  # line 3: empty on both sides
    vi[5] = "  "  # line 6: an empty Vietnamese side
    (folder / "train.en").write_text("\n".join(en))
    (folder / "train.vi").write_text("\n".join(vi))
    if policy == "error":
        with pytest.raises(IwsltError, match=r"train.en:3: empty line \(set nmt.data.empty_lines: drop"):
            prepare_nmt.run(params)
        return
    prepare_nmt.run(params)
    stats = artifacts.read_json(tmp_path / params.nmt.paths.prepared / "stats.json")
    assert stats["dropped_empty"] == {"train": 2, "valid": 0, "test": 0}
    train = (tmp_path / params.nmt.paths.prepared / "train.tsv").read_text("utf-8").splitlines()
    assert all(all(side.strip() for side in row.split("\t")) for row in train)


def tsv_params(tiny_params_dict, tmp_path, **nmt) -> P.Params:
    shutil.copy(PAIRS, tmp_path / "pairs.txt")
    source = {"url": "x", "sha256": None, "raw": "pairs.txt", "format": "tsv", "langs": ["en", "fr"]}
    return P.from_dict(merge(tiny_params_dict, {"sources": {"nmt": source}, "nmt": nmt}))


def test_sentence_normalisation_sums_over_tokens_and_averages_over_sentences(tiny_params_dict, tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = {}
    for norm in ("token", "sentence", "padded"):
        params = tsv_params(tiny_params_dict, tmp_path, train={"loss_normalization": norm})
        prepare_nmt.run(params)
        job, _ = train_nmt.setup(params, "lstm")
        batch = next(job.batches)
        _, _, out = job.train_step(job.state, batch, job.carry, jax.random.key(0))
        seen[norm] = (float(out["loss"]), float(out["tokens"]), batch["trg"].shape[0])
    (token, tokens, sentences), sentence, padded = seen["token"], seen["sentence"][0], seen["padded"][0]
    assert tokens > sentences  # so the two differ
    assert sentence == pytest.approx(token * tokens / sentences, rel=1e-5)
    positions = params.nmt.data.max_len + 1  # Keras: every padded position counts, scoring 0
    assert tokens < sentences * positions
    assert padded == pytest.approx(token * tokens / (sentences * positions), rel=1e-5)


def test_truncate_cuts_long_training_pairs_instead_of_dropping_them(tiny_params_dict):
    pairs = fixture_pairs()
    length = lambda x: len(tokens.tokenize(x, "word"))
    long_pairs = [p for p in pairs if max(map(length, p)) > 4]
    assert long_pairs
    data = lambda long: with_data(tiny_params_dict, filter="train", max_len=4, buckets=[3, 5], long=long,
                                  max_pairs=100000).nmt.data
    dropped = prepare_nmt.prepare(pairs, data("drop"))
    cut = prepare_nmt.prepare(pairs, data("truncate"))
    assert not set(long_pairs) & set(dropped[0]["train"])
    kept_long = [p for p in cut[0]["train"] if max(map(length, p)) > 4]
    assert kept_long and cut[5]["train"] == len(kept_long) and cut[5]["valid"] == cut[5]["test"] == 0
    assert len(cut[0]["train"]) == len(dropped[0]["train"]) + len(kept_long)
    arrays = cut[3]["train"]
    assert arrays["src"].shape[1] == 5 and arrays["src_len"].max() == 5 and arrays["trg_len"].max() == 5  # 4 + </s>
    assert cut[0]["test"] == dropped[0]["test"] and dropped[5] == {"train": 0, "valid": 0, "test": 0}


def test_exponential_decay_is_tensorflow_nmts_staircase(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tsv_params(tiny_params_dict, tmp_path, train={
        "schedule": "exponential", "warmup_steps": 0, "learning_rate": 2.0, "decay_factor": 0.5, "decay_steps": 3,
        "start_decay_step": 2})
    prepare_nmt.run(params)
    job, _ = train_nmt.setup(params, "lstm")
    rates = [float(job.learning_rate(u)) for u in range(9)]
    assert rates == [2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5]


# --- how the encoder meets the decoder, and where dropout falls -----------------------------
@pytest.mark.parametrize("bidirectional, encoder_layers, layers", [(False, 2, 2), (True, 1, 2)])
def test_copy_bridge_starts_the_decoder_from_the_encoders_own_final_states(bidirectional, encoder_layers, layers):
    """Keras and tensorflow/nmt: no bridge weights; a bidirectional layer's forward and backward
    states start two decoder layers (tensorflow/nmt's 1 bidirectional layer under 2 decoder layers)."""
    model = Seq2Seq(src_vocab=11, trg_vocab=13, cell="lstm", embed=6, hidden=8, layers=layers,
                    encoder_layers=encoder_layers, bidirectional=bidirectional, attention="scaled", dropout=0.0,
                    input_feeding=True, bridge="copy")
    src, src_len, trg = jnp.array([[5, 6, 3, 0], [4, 4, 4, 3]]), jnp.array([3, 4]), jnp.array([[2, 7, 8]] * 2)
    params = model.init(jax.random.key(0), src, src_len, trg)["params"]
    assert not any(name.startswith("bridge") for name in params)
    assert sorted(params["encoder"]) == sorted(
        f"layer{i}{d}" for i in range(encoder_layers) for d in ("", "_reverse")[: 1 + bidirectional])

    def both(m, src, src_len):
        mask = jnp.arange(src.shape[1])[None, :] < src_len[:, None]
        return m.encoder(m.src_embed(src), mask)[0], m.encode(src, src_len)["state"][0]

    encoder_states, decoder_start = model.apply({"params": params}, src, src_len, method=both)
    expected = [c for pair in encoder_states for c in pair] if bidirectional else encoder_states
    assert len(decoder_start) == layers
    for got, want in zip(decoder_start, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    logits = model.apply({"params": params}, src, src_len, trg)
    assert logits.shape == (2, 3, 13) and np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("dropout_on, output_dropped", [("layers", True), ("cell_inputs", False)])
def test_cell_input_dropout_leaves_the_output_layer_undropped(dropout_on, output_dropped):
    """With every unit dropped, the output layer sees zeros (only its bias: every logit row the
    same) where dropout falls before it, and the decoder's state where it does not."""
    model = Seq2Seq(src_vocab=11, trg_vocab=13, cell="lstm", embed=6, hidden=8, layers=1, bidirectional=False,
                    attention="none", dropout=1.0, bridge="copy", dropout_on=dropout_on, forget_bias=1.0)
    src, src_len, trg = jnp.array([[5, 6, 3, 0], [4, 4, 4, 3]]), jnp.array([3, 4]), jnp.array([[2, 7, 8]] * 2)
    params = model.init(jax.random.key(0), src, src_len, trg)["params"]
    params["project"]["bias"] = jnp.arange(13.0)
    # zero inputs and zero biases would leave every state at zero: give the gates a bias
    params["encoder"]["layer0"]["bi"] = jax.random.normal(jax.random.key(2), params["encoder"]["layer0"]["bi"].shape)
    logits = np.asarray(model.apply({"params": params}, src, src_len, trg, train=True,
                                    rngs={"dropout": jax.random.key(1)})).reshape(-1, 13)
    rows_equal = np.allclose(logits, logits[:1])
    assert rows_equal == output_dropped


def test_cell_input_dropout_draws_its_own_mask_for_each_direction_of_the_encoder():
    """tensorflow/nmt wraps the forward and the backward cell each in its own DropoutWrapper."""
    import flax.linen as nn

    from pipeline.models.rnn import StackedRNN

    seen = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, StackedRNN) and context.method_name == "__call__":
            seen.append((args[0], kwargs.get("x_reverse")))
        return next_fun(*args, **kwargs)

    src, src_len, trg = jnp.array([[5, 6, 3, 0], [4, 4, 4, 3]]), jnp.array([3, 4]), jnp.array([[2, 7, 8]] * 2)
    for dropout_on, apart in (("cell_inputs", True), ("layers", False)):
        model = Seq2Seq(src_vocab=11, trg_vocab=13, cell="lstm", embed=6, hidden=8, layers=2, encoder_layers=1,
                        bidirectional=True, attention="scaled", input_feeding=True, dropout=0.5, bridge="copy",
                        dropout_on=dropout_on)
        params = model.init(jax.random.key(0), src, src_len, trg)["params"]
        seen.clear()
        with nn.intercept_methods(record):
            model.apply({"params": params}, src, src_len, trg, train=True, rngs={"dropout": jax.random.key(1)})
        (x, x_reverse), = seen
        assert (x_reverse is not None) == apart
        if apart:
            assert not np.array_equal(np.asarray(x) == 0, np.asarray(x_reverse) == 0)  # two masks

    layer = StackedRNN("lstm", 4, 1, bidirectional=True)
    x = jax.random.normal(jax.random.key(2), (2, 5, 3))
    weights = layer.init(jax.random.key(3), x)
    (same,), y_same = layer.apply(weights, x)
    (other,), y_other = layer.apply(weights, x, x_reverse=x * 0.5)
    np.testing.assert_array_equal(y_same[..., :4], y_other[..., :4])  # the forward direction reads x
    assert not np.allclose(y_same[..., 4:], y_other[..., 4:])  # the backward one reads x_reverse
