"""The tutorials' initial weights (``<workload>.model.initializer``), through the train stages."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

from pipeline import params as P
from pipeline.models import initializers
from pipeline.stages import prepare_charlm, prepare_nmt, train_charlm, train_nmt

from .conftest import FIXTURES, merge


def leaves(params) -> dict[tuple[str, ...], np.ndarray]:
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def nmt_state(tiny_params_dict, tmp_path, **model):
    shutil.copy(FIXTURES / "fra-eng-excerpt.txt", tmp_path / "pairs.txt")
    source = {"url": "x", "sha256": None, "raw": "pairs.txt", "format": "tsv", "langs": ["en", "fr"]}
    params = P.from_dict(merge(tiny_params_dict, {"sources": {"nmt": source}, "nmt": {"model": model}}))
    prepare_nmt.run(params)
    job, _ = train_nmt.setup(params, "lstm")
    return leaves(job.state.params), params.nmt.model


def test_uniform_is_tensorflow_nmts_every_weight_in_the_bound(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flax_init, _ = nmt_state(tiny_params_dict, tmp_path, attention="scaled", input_feeding=True, forget_bias=1.0)
    uniform, model = nmt_state(tiny_params_dict, tmp_path, attention="scaled", input_feeding=True, forget_bias=1.0,
                               initializer="uniform", init_scale=0.05)
    assert uniform.keys() == flax_init.keys()
    hidden = model.hidden
    for path, value in uniform.items():
        name = path[-1]
        if name == "attn_scale":
            assert value == 1.0  # tensorflow/nmt's attention_g starts at 1
        elif name == "bh":
            assert not value.any()  # one bias per gate, held by bi
        elif name == "bi":
            forget = value[hidden:2 * hidden]
            others = np.delete(value, np.s_[hidden:2 * hidden])
            assert np.abs(forget - 1.0).max() <= 0.05 and np.abs(others).max() <= 0.05
        else:
            assert np.abs(value).max() <= 0.05, path
            assert np.abs(value).max() > 0.04, path  # drawn across the bound, not left at Flax's
    assert not np.array_equal(uniform[("src_embed", "embedding")], flax_init[("src_embed", "embedding")])


def test_keras_draws_glorot_kernels_and_one_orthogonal_recurrent_matrix(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got, model = nmt_state(tiny_params_dict, tmp_path, bidirectional=False, attention="none", bridge="copy",
                           tie_embeddings=False, forget_bias=1.0, initializer="keras")
    wh = got[("decoder_0", "wh")]
    np.testing.assert_allclose(wh @ wh.T, np.eye(model.hidden), atol=1e-5)  # one [hidden, 4 hidden] matrix
    wi = got[("encoder", "layer0", "wi")]
    limit = np.sqrt(6.0 / sum(wi.shape))
    assert np.abs(wi).max() <= limit and np.abs(wi).max() > 0.9 * limit
    assert np.abs(got[("src_embed", "embedding")]).max() <= 0.05
    bi = got[("decoder_0", "bi")]
    forget = np.s_[model.hidden:2 * model.hidden]
    assert (bi[forget] == 1.0).all() and not np.delete(bi, forget).any()
    assert not got[("project", "bias")].any()


def test_tf_draws_one_glorot_kernel_per_layer_and_a_normal_output_layer(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "text.txt"
    corpus.write_text((FIXTURES / "fra-eng-excerpt.txt").read_text("utf-8"), "utf-8")
    params = P.from_dict(merge(tiny_params_dict, {
        "sources": {"charlm": {"url": "x", "sha256": None, "raw": str(corpus), "format": "text"}},
        "charlm": {"model": {"input": "onehot", "forget_bias": 1.0, "initializer": "tf", "init_scale": 0.1}}}))
    prepare_charlm.run(params)
    job, _ = train_charlm.setup(params, "lstm")
    got = leaves(job.state.params)
    hidden = params.charlm.model.hidden
    for layer in ("layer0", "layer1"):
        wi, wh = got[("rnn", layer, "wi")], got[("rnn", layer, "wh")]
        limit = np.sqrt(6.0 / (wi.shape[0] + hidden + 4 * hidden))  # Glorot over [wi; wh] as one kernel
        joined = np.concatenate([wi, wh])
        assert np.abs(joined).max() <= limit and np.abs(joined).max() > 0.9 * limit
        assert (got[("rnn", layer, "bi")][hidden:2 * hidden] == 1.0).all()
    kernel = got[("project", "kernel")]
    assert np.abs(kernel).max() <= 0.2 and 0.07 < kernel.std() < 0.1  # truncated at 2 standard deviations
    assert not got[("project", "bias")].any()


def test_flax_draws_nothing_again():
    params = {"layer": {"wi": np.ones((2, 4)), "bi": np.ones(4)}}
    assert initializers.redraw(params, jax.random.key(0), scheme="flax", cell="lstm", scale=0.1,
                               forget_bias=1.0) is params


@pytest.mark.parametrize("workload", ["nmt", "charlm"])
def test_the_loader_refuses_an_unknown_initializer(real_params_dict, workload):
    with pytest.raises(P.ParamsError, match=rf"'{workload}.model.initializer' is 'xavier'"):
        P.from_dict(merge(real_params_dict, {workload: {"model": {"initializer": "xavier"}}}))
