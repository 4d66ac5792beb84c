"""The typed params loader: the real file loads, and every mistake names its key."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from pipeline import params as P

from .conftest import ROOT


def test_the_committed_params_file_loads():
    params = P.load(ROOT / "params.yaml")
    assert params.nmt.model.cells == ("lstm", "gru")
    assert isinstance(params.nmt.data.buckets, tuple)
    assert isinstance(params.charlm.train.learning_rate, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.nmt.model.hidden = 1


def test_unknown_key_names_key_section_and_valid_keys(real_params_dict):
    raw = copy.deepcopy(real_params_dict)
    raw["nmt"]["model"]["hiden"] = 64
    with pytest.raises(P.ParamsError) as err:
        P.from_dict(raw)
    msg = str(err.value)
    assert "'hiden'" in msg and "'nmt.model'" in msg
    assert "valid keys: cells, input, embed, hidden" in msg
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


def with_value(raw, path, value):
    """A copy of ``raw`` with the key at ``path`` set to ``value``."""
    raw = copy.deepcopy(raw)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    "path,value,pattern",
    [
        (("nmt", "model", "hidden"), "256", r"'nmt.model.hidden' must be int, got str"),
        (("nmt", "model", "hidden"), True, r"'nmt.model.hidden' must be int, got bool"),
        (
            ("nmt", "model", "attention"),
            "luong",
            r"'nmt.model.attention' is 'luong'; expected one of none, dot, general, scaled, bahdanau",
        ),
        (("charlm", "model", "cells"), ["lstm", "rnn"], r"'charlm.model.cells\[1\]' is 'rnn'"),
        (
            ("nmt", "model", "kernel"),
            "cudnn2",
            r"'nmt.model.kernel' is 'cudnn2'; expected one of auto, scan, onednn, cudnn",
        ),
        (("nmt", "data", "buckets"), [], r"'nmt.data.buckets' must be a non-empty list"),
        (("forecast", "train"), [1, 2], r"section 'forecast.train' must be a mapping"),
    ],
)
def test_wrong_types_name_the_key(real_params_dict, path, value, pattern):
    with pytest.raises(P.ParamsError, match=pattern):
        P.from_dict(with_value(real_params_dict, path, value))


@pytest.mark.parametrize(
    "path,value,pattern",
    [
        (("nmt", "model", "hidden"), 0, r"'nmt.model.hidden' is 0; it must be > 0"),
        (("charlm", "model", "dropout"), 1.0, r"'charlm.model.dropout' is 1.0; it must be >= 0 and < 1"),
        (("forecast", "model", "dropout"), -0.1, r"'forecast.model.dropout' is -0.1; it must be >= 0 and < 1"),
        (("nmt", "train", "learning_rate"), 0, r"'nmt.train.learning_rate' is 0.0; it must be > 0"),
        (("nmt", "data", "buckets"), [8, -16], r"'nmt.data.buckets\[1\]' is -16; it must be > 0"),
        (("charlm", "sample", "top_p"), 1.5, r"'charlm.sample.top_p' is 1.5; it must be > 0 and <= 1"),
        (("charlm", "data", "valid_fraction"), 1, r"'charlm.data.valid_fraction' is 1.0; it must be > 0 and < 1"),
        (("forecast", "baselines", "fit_days"), 5, r"'forecast.baselines.fit_days' is 5; it must be >= 10"),
        (("charlm", "train", "max_nonfinite_steps"), 0, r"'charlm.train.max_nonfinite_steps' is 0; it must be > 0"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_bound(real_params_dict, path, value, pattern):
    with pytest.raises(P.ParamsError, match=pattern):
        P.from_dict(with_value(real_params_dict, path, value))


@pytest.mark.parametrize(
    "changes,pattern",
    [
        (
            {("nmt", "data", "buckets"): [8, 16, 12]},
            r"'nmt.data.buckets' is \[8, 16, 12\]; it must be strictly ascending",
        ),
        ({("nmt", "data", "buckets"): [8, 8, 16]}, r"'nmt.data.buckets' is \[8, 8, 16\]; it must be strictly"),
        (
            {("nmt", "data", "max_len"): 40, ("nmt", "data", "buckets"): [8, 16, 32]},
            r"'nmt.data.buckets' ends at 32, but 'nmt.data.max_len' \+ 1 = 41 must fit",
        ),
        (
            {("nmt", "model", "attention"): "none", ("nmt", "model", "input_feeding"): True},
            r"'nmt.model.input_feeding' is true but 'nmt.model.attention' is 'none'",
        ),
        (
            {("nmt", "model", "attention"): "dot", ("nmt", "model", "bidirectional"): True},
            r"'nmt.model.attention' is 'dot' with 'nmt.model.bidirectional' true",
        ),
        (
            {("charlm", "model", "kernel"): "onednn", ("charlm", "model", "precision"): "bfloat16"},
            r"'charlm.model.kernel' is 'onednn' with 'charlm.model.precision' 'bfloat16'",
        ),
        (
            {("forecast", "model", "kernel"): "onednn", ("forecast", "model", "precision"): "bfloat16"},
            r"'forecast.model.kernel' is 'onednn' with 'forecast.model.precision' 'bfloat16'",
        ),
        (
            {("nmt", "model", "kernel"): "cudnn", ("nmt", "model", "precision"): "bfloat16"},
            r"'nmt.model.kernel' is 'cudnn' with 'nmt.model.precision' 'bfloat16': "
            r"the cuDNN LSTM kernel runs in float32",
        ),
        (
            {
                ("nmt", "train", "schedule"): "warmup_linear",
                ("nmt", "train", "steps"): 100,
                ("nmt", "train", "warmup_steps"): 100,
            },
            r"'nmt.train.warmup_steps' is 100 with 'nmt.train.steps' 100: the warmup_linear schedule",
        ),
        (
            {("charlm", "train", "schedule"): "constant", ("charlm", "train", "warmup_steps"): 10},
            r"'charlm.train.warmup_steps' is 10 with 'charlm.train.schedule' 'constant', which has no warmup",
        ),
    ],
)
def test_rules_between_keys_name_both_keys(real_params_dict, changes, pattern):
    raw = real_params_dict
    for path, value in changes.items():
        raw = with_value(raw, path, value)
    with pytest.raises(P.ParamsError, match=r"^params.yaml: " + pattern):
        P.from_dict(raw)


def test_the_same_keys_pass_when_the_rule_holds(real_params_dict):
    raw = with_value(real_params_dict, ("nmt", "model", "attention"), "dot")
    raw = with_value(raw, ("nmt", "model", "bidirectional"), False)
    raw = with_value(raw, ("nmt", "data", "buckets"), [4, real_params_dict["nmt"]["data"]["max_len"] + 1])
    p = P.from_dict(raw)
    assert p.nmt.model.attention == "dot" and p.nmt.data.buckets[-1] == p.nmt.data.max_len + 1


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


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a block pasted beside the old
    one would quietly replace it."""
    text = (ROOT / "params.yaml").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  backtest:"))
    block = [lines[at]] + [line for line in lines[at + 1:at + 12] if line.startswith("    ")][:4]
    doubled = tmp_path / "params.yaml"
    doubled.write_text("\n".join(lines[:at] + block + lines[at:]) + "\n")
    with pytest.raises(P.ParamsError, match=rf"{doubled}: not valid YAML: [\s\S]*found the key 'backtest' twice "
                                            rf"\(first on line {at + 1}\)[\s\S]*line {at + len(block) + 1}"):
        P.load(doubled)
    assert P.load(ROOT / "params.yaml").forecast.backtest.every > 0
