"""Training survives interruption: orbax checkpoints, resume == uninterrupted, damaged checkpoints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.data import batches
from pipeline.evaluation import heldout
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries
from pipeline.training import checkpoints, loop, losses, optim, steps
from pipeline.training.curves import Curves

from .conftest import merge, tiny_overrides
from .helpers import dvc, make_repo

B, T, V, STEPS = 4, 8, 11, 20
IDS = np.random.default_rng(0).integers(0, V, 3000).astype(np.int32)


def run_fit(ckpt_dir: Path | None, fail_at: int | None = None, sigterm_at: int | None = None,
            curves: Path | None = None):
    """A 2-layer LSTM char LM with dropout, carried state and best-row selection: every
    part of fit that a checkpoint must hold. ``curves``: log them there through dvclive."""
    model = CharLM(vocab=V, cell="lstm", embed=8, hidden=16, layers=2, dropout=0.2)
    carry = initial_carries("lstm", 2, 16, B)
    state = steps.create_state(model, jax.random.key(0), optim.make_optimizer(1e-2, 1.0),
                               np.zeros((B, T), np.int32), carry)
    eval_step = heldout.make_eval_step(losses.charlm_loss(model))

    def stream():
        for i, batch in enumerate(batches.stream_windows(IDS, B, T), 1):
            if i == fail_at:
                raise RuntimeError("the process died")
            if i == sigterm_at:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    hooks = ([] if ckpt_dir is None else [checkpoints.Checkpoints(ckpt_dir, every=4)]) + \
        ([] if curves is None else [Curves(curves)])
    job = loop.Job(state, steps.make_train_step(losses.charlm_loss(model)), stream(), jax.random.key(1),
                   loop.FitOptions(steps=STEPS, log_every=5, batch_size=B, select="valid_score"),
                   evaluate=lambda p: {"valid_score": -heldout.stream_loss(eval_step, p, IDS[:400], model, B, T)},
                   carry=carry, learning_rate=optim.make_schedule(1e-2))
    return loop.fit(job, hooks)


def timeless(history):
    """History rows without the one wall-clock value, throughput."""
    return [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in history]


def curve_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_run(a, b):
    (state_a, history_a), (state_b, history_b) = a, b
    assert timeless(history_a) == timeless(history_b)
    assert [set(row) for row in history_a] == [set(row) for row in history_b]
    for x, y in zip(jax.tree_util.tree_leaves(state_a.params), jax.tree_util.tree_leaves(state_b.params), strict=True):
        np.testing.assert_array_equal(x, y)  # bit for bit
    for x, y in zip(
        jax.tree_util.tree_leaves(state_a.opt_state), jax.tree_util.tree_leaves(state_b.opt_state), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert int(state_a.step) == int(state_b.step) == STEPS


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    live = tmp_path_factory.mktemp("live")
    return (*run_fit(None, curves=live), curve_files(live))


def test_a_crashed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, capsys):
    live = tmp_path / "live"
    with pytest.raises(RuntimeError, match="died"):
        run_fit(tmp_path, fail_at=11, curves=live)  # after the checkpoints of steps 4 and 8
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [4, 8]
    assert (live / "plots/metrics/train/loss.tsv").read_text().splitlines()[1:] != []  # rows 5 and 10 were logged
    capsys.readouterr()
    assert_same_run(run_fit(tmp_path, curves=live), uninterrupted[:2])
    out = capsys.readouterr().out
    assert "resuming at step 8" in out and "skipping" not in out
    assert "step 5/20" not in out and "step 10/20" in out  # rows before step 8 came from the checkpoint
    # the dvclive curves: each row once (row 10 was logged before the crash and again
    # after it), byte-identical to the uninterrupted run's but for wall-clock throughput
    got, want = curve_files(live), uninterrupted[2]
    assert sorted(got) == sorted(want) == [f"plots/metrics/{q}.tsv" for q in (
        "train/grad_norm", "train/loss", "train/lr", "train/tokens_per_s", "valid/score")]
    for name in want:
        if "tokens_per_s" not in name:
            assert got[name] == want[name], name
    assert len(got["plots/metrics/train/tokens_per_s.tsv"].splitlines()) == 1 + 4
    assert timeless(run_fit(tmp_path)[1]) == timeless(uninterrupted[1])  # a finished run resumes as finished
    assert "resuming at step 20" in capsys.readouterr().out


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path, uninterrupted, capsys):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(loop.Interrupted, match=r"stopped by SIGTERM at step 7/20") as err:
        run_fit(tmp_path, sigterm_at=7)
    assert err.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    assert 7 in [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]
    assert_same_run(run_fit(tmp_path), uninterrupted[:2])
    assert "resuming at step 7" in capsys.readouterr().out


def test_a_damaged_checkpoint_is_skipped_for_the_previous_one(tmp_path, capsys):
    ckpt = checkpoints.Checkpoints(tmp_path, every=1)
    tree = {"w": jnp.arange(6.0), "n": jnp.int32(0)}
    for step in (1, 2, 3):
        ckpt.save(step, {"w": tree["w"] * step, "n": jnp.int32(step)}, {"step": step})
    for data in (tmp_path / "3" / "state").rglob("d/*"):  # the array data files, truncated
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    step, got, meta = checkpoints.Checkpoints(tmp_path, every=1).restore(tree)
    assert step == 2 and meta == {"step": 2} and int(got["n"]) == 2
    np.testing.assert_array_equal(got["w"], np.arange(6.0) * 2)
    assert "skipping an unreadable checkpoint" in capsys.readouterr().out
    assert not (tmp_path / "3").exists()


def test_a_checkpoint_whose_bytes_changed_is_detected(tmp_path, capsys):
    """Damage that still decodes (a flipped value) fails the recorded sha256."""
    ckpt = checkpoints.Checkpoints(tmp_path, every=1)
    ckpt.save(1, {"w": jnp.ones(4)}, {"step": 1})
    ckpt.save(2, {"w": jnp.full(4, 2.0)}, {"step": 2})
    meta = next((tmp_path / "2" / "meta").glob("metadata"))
    meta.write_text(meta.read_text().replace('"sha256": "', '"sha256": "0'))
    step, got, _ = checkpoints.Checkpoints(tmp_path, every=1).restore({"w": jnp.zeros(4)})
    assert step == 1 and "do not match the sha256" in capsys.readouterr().out


def test_the_fingerprint_separates_configs_and_data(tmp_path):
    data = tmp_path / "train.npz"
    data.write_bytes(b"abc")
    a = checkpoints.fingerprint({"lr": 1.0}, [data])
    assert a == checkpoints.fingerprint({"lr": 1.0}, [data])
    assert a != checkpoints.fingerprint({"lr": 2.0}, [data])
    data.write_bytes(b"abd")
    assert a != checkpoints.fingerprint({"lr": 1.0}, [data])


@pytest.mark.e2e
def test_a_killed_training_process_resumes_to_the_same_model(tmp_path, real_params_dict):
    """The real stage in a real process: SIGTERM (clean stop), then SIGKILL (no chance to
    save), then ``dvc repro``, which deletes the stage's outputs and reruns it to the end;
    the model, the training curves (dvclive) and the samples drawn during training equal
    a run from scratch byte for byte, throughput aside."""
    params = merge(real_params_dict, tiny_overrides(root=tmp_path))
    params["charlm"]["model"]["cells"] = ["lstm"]
    params["charlm"]["train"].update(steps=1500, log_every=100, checkpoint_every=25)
    params["charlm"]["sample"].update(every=20, length=10)
    repo = make_repo(tmp_path / "repo", params)
    dvc(repo, "repro", "prepare_charlm")
    cmd = [sys.executable, "-m", "pipeline", "train_charlm", "lstm"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    runs = repo / "checkpoints" / "charlm" / "train_charlm@lstm"

    def steps_saved() -> list[int]:
        return sorted(int(p.name) for p in runs.glob("*/*") if p.name.isdigit())

    def start_and(sig: int, after_step: int) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not [s for s in steps_saved() if s >= after_step]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    stopped = start_and(signal.SIGTERM, 25)
    assert stopped.returncode == 143, stopped.stderr
    assert "stopped by SIGTERM at step" in stopped.stderr and "run the stage again to resume" in stopped.stderr
    assert not (repo / "models/charlm/lstm").exists()
    last = steps_saved()[-1]
    killed = start_and(signal.SIGKILL, last + 50)
    assert killed.returncode == -signal.SIGKILL
    assert f"resuming at step {last}" in killed.stdout and "skipping" not in killed.stdout
    assert max(steps_saved()) < 1500  # really killed mid-run
    samples = repo / "dvclive/charlm-lstm/samples"
    assert max(int(p.name[5:11]) for p in samples.iterdir()) < 1500  # drawn before the kill
    resumed = dvc(repo, "repro", "train_charlm@lstm")  # deletes the outputs, samples included
    assert "resuming at step" in resumed.stdout and "restored from the checkpoint" in resumed.stdout
    curves = "dvclive/charlm-lstm/plots/metrics/"
    outputs = ["models/charlm/lstm/params.msgpack"] + [curves + q for q in (
        "train/loss.tsv", "train/grad_norm.tsv", "train/lr.tsv", "valid/loss.tsv")]
    outputs += [str(p.relative_to(repo)) for p in sorted(samples.iterdir())]
    assert len(outputs) == 5 + 2 * 1500 // 20  # every sample, at both temperatures, none lost
    got = {name: (repo / name).read_bytes() for name in outputs}
    speed = (repo / curves / "train/tokens_per_s.tsv").read_text().splitlines()
    assert len(got[curves + "valid/loss.tsv"].splitlines()) == 1 + 15  # every row once: none lost or repeated
    shutil.rmtree(repo / "checkpoints")
    fresh = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout
    assert sorted(p.name for p in samples.iterdir()) == sorted(Path(n).name for n in outputs[5:])
    for name in outputs:
        assert (repo / name).read_bytes() == got[name], name
    # throughput is wall clock: the same steps, other values
    fresh_speed = (repo / curves / "train/tokens_per_s.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in speed] == [r.split("\t")[0] for r in fresh_speed]


def test_a_checkpoint_written_by_other_code_is_not_resumed(tmp_path, monkeypatch):
    """DVC reruns a train stage with unchanged params and data only when its code changed:
    resuming that run's finished checkpoint would hand back the old model."""
    package = tmp_path / "pkg"
    (package / "models").mkdir(parents=True)
    (package / "models" / "charlm.py").write_text("A = 1\n")
    before = checkpoints.code_digest(package)
    (package / "models" / "charlm.py").write_text("A = 2\n")
    assert checkpoints.code_digest(package) != before
    after = checkpoints.code_digest(package)
    (package / "notes.txt").write_text("not code")
    assert checkpoints.code_digest(package) == after
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.npz").write_bytes(b"x")
    one = checkpoints.for_run(tmp_path / "ck", "train_charlm@lstm", {"seed": 0}, data, 4)
    two = checkpoints.for_run(tmp_path / "ck", "train_charlm@lstm", {"seed": 0}, data, 4)
    assert one.directory == two.directory  # same run, same code: the kill-and-resume case
    monkeypatch.setattr(checkpoints, "code_digest", lambda: "other code")
    other = checkpoints.for_run(tmp_path / "ck", "train_charlm@lstm", {"seed": 0}, data, 4)
    assert other.directory != one.directory


@pytest.mark.parametrize("keep", [1, 3])
def test_a_train_stage_keeps_as_many_checkpoints_as_params_say(tiny_params, tmp_path, monkeypatch, keep):
    import dataclasses

    from pipeline.training import hooks

    monkeypatch.chdir(tmp_path)
    section = tiny_params.charlm
    section = dataclasses.replace(section, train=dataclasses.replace(section.train, keep_checkpoints=keep,
                                                                     checkpoint_every=1))
    Path(section.paths.prepared).mkdir(parents=True)
    (saves, _) = hooks.for_stage("charlm", section, "gru", "train_charlm@gru", {"model": {}})
    for step in range(1, 6):
        saves.save(step, {"w": np.full(3, step, np.float32)}, {"rows": []})
    assert sorted(saves.manager.all_steps()) == list(range(6 - keep, 6))
