"""The typed params loader: the real file loads, and every mistake names its key."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipeline import params as P

from .conftest import ROOT


def test_the_committed_params_file_loads():
    params = P.load(ROOT / "params.yaml")
    assert params.nmt.model.cells == ("lstm", "gru")
    assert isinstance(params.nmt.data.buckets, tuple)
    assert isinstance(params.charlm.train.learning_rate, float)
    with pytest.raises(Exception):
        params.nmt.model.hidden = 1  # frozen


def test_unknown_key_names_key_section_and_valid_keys(real_params_dict):
    raw = copy.deepcopy(real_params_dict)
    raw["nmt"]["model"]["hiden"] = 64
    with pytest.raises(P.ParamsError) as err:
        P.from_dict(raw)
    msg = str(err.value)
    assert "'hiden'" in msg and "'nmt.model'" in msg
    assert "valid keys: cells, embed, hidden" in msg
    assert "did you mean 'hidden'" in msg


def test_missing_key_names_key_and_section(real_params_dict):
    raw = copy.deepcopy(real_params_dict)
    del raw["charlm"]["train"]["seq_len"]
    with pytest.raises(P.ParamsError, match=r"missing key 'seq_len' in section 'charlm.train'"):
        P.from_dict(raw)


def test_unknown_top_level_section(real_params_dict):
    raw = copy.deepcopy(real_params_dict)
    raw["nmtt"] = {}
    with pytest.raises(P.ParamsError, match=r"unknown key 'nmtt' in the top level"):
        P.from_dict(raw)


@pytest.mark.parametrize(
    "path,value,pattern",
    [
        (("nmt", "model", "hidden"), "256", r"'nmt.model.hidden' must be int, got str"),
        (("nmt", "model", "hidden"), True, r"'nmt.model.hidden' must be int, got bool"),
        (("nmt", "model", "attention"), "luong", r"'nmt.model.attention' is 'luong'; expected one of none, dot, general, scaled, bahdanau"),
        (("charlm", "model", "cells"), ["lstm", "rnn"], r"'charlm.model.cells\[1\]' is 'rnn'"),
        (("nmt", "data", "buckets"), [], r"'nmt.data.buckets' must be a non-empty list"),
        (("forecast", "train"), [1, 2], r"section 'forecast.train' must be a mapping"),
    ],
)
def test_wrong_types_name_the_key(real_params_dict, path, value, pattern):
    raw = copy.deepcopy(real_params_dict)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(P.ParamsError, match=pattern):
        P.from_dict(raw)


def test_ints_are_accepted_where_floats_are_declared(real_params_dict):
    raw = copy.deepcopy(real_params_dict)
    raw["charlm"]["train"]["learning_rate"] = 1
    assert P.from_dict(raw).charlm.train.learning_rate == 1.0


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("nmt: [unclosed\n")
    with pytest.raises(P.ParamsError, match=str(bad)):
        P.load(bad)
    with pytest.raises(P.ParamsError, match="not found"):
        P.load(tmp_path / "missing.yaml")


def test_every_dataclass_field_is_in_the_yaml(real_params_dict):
    """The YAML and the dataclasses mirror each other key for key (no silent defaults)."""
    params = P.from_dict(real_params_dict)
    assert yaml.safe_load(yaml.safe_dump(real_params_dict)) == real_params_dict
    assert params.sources.nmt.url == real_params_dict["sources"]["nmt"]["url"]


def test_model_kwargs_swap_the_cells_list_for_one_cell(real_params_dict):
    params = P.from_dict(real_params_dict)
    kwargs = P.model_kwargs(params.charlm.model, "gru")
    assert kwargs["cell"] == "gru" and "cells" not in kwargs
    assert kwargs["hidden"] == params.charlm.model.hidden
