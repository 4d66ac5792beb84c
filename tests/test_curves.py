"""Training curves through dvclive (pipeline.training.curves)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.training.curves import Curves, metric_name


def test_history_keys_map_to_train_and_valid_metrics():
    assert metric_name("loss") == "train/loss" and metric_name("tokens_per_s") == "train/tokens_per_s"
    assert metric_name("valid_bleu") == "valid/bleu" and metric_name("valid_loss") == "valid/loss"


def test_rows_become_one_tsv_per_quantity_and_a_restart_replays_instead_of_appending(tmp_path, monkeypatch):
    """Inside a DVC project with a dvc.yaml, as in a stage: dvclive must leave dvc.yaml,
    git and the experiments alone, and write no summary (the curves are all it writes)."""
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], check=True)
    rows = [{"step": 10, "loss": 2.5, "lr": 0.001, "valid_bleu": 3.25},
            {"step": 20, "loss": 2.0, "lr": 0.0005, "valid_bleu": 4.5}]
    curves = Curves(tmp_path / "dvclive/nmt-lstm")
    with pytest.raises(RuntimeError, match="before Curves.start"):
        curves.log(rows[0])
    curves.start()
    for row in rows:
        curves.log(row)
    folder = tmp_path / "dvclive/nmt-lstm"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["plots/metrics/train/loss.tsv", "plots/metrics/train/lr.tsv", "plots/metrics/valid/bleu.tsv"]
    assert (folder / "plots/metrics/valid/bleu.tsv").read_text() == "step\tbleu\n10\t3.25\n20\t4.5\n"
    assert (tmp_path / "dvc.yaml").read_text() == "stages: {}\n"
    assert (
        subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "list", "--all-commits"], capture_output=True, text=True
        ).stdout
        == ""
    )
    # a resumed run: begin again with the rows its checkpoint held, then go on
    again = Curves(folder)
    again.start(rows[:1])
    again.log({"step": 20, "loss": 1.75, "lr": 0.0005, "valid_bleu": 5.0})
    assert (folder / "plots/metrics/train/loss.tsv").read_text() == "step\tloss\n10\t2.5\n20\t1.75\n"


def test_text_samples_resume_without_samples_from_the_future(tmp_path):
    import types

    from pipeline.training.samples import TextSamples, file_name

    drawn = []
    hook = TextSamples(tmp_path, 3, lambda params, step: drawn.append(step) or {"t1": f"text {step}"})
    for step in (3, 6, 9):
        (tmp_path / file_name(step, "t1")).write_text("old\n")
    (tmp_path / "notes.txt").write_text("kept\n")
    hook.begin(types.SimpleNamespace(step=6, extras={}), "train")  # a run restored at step 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", file_name(3, "t1"), file_name(6, "t1")]
    run = types.SimpleNamespace(step=0, state=types.SimpleNamespace(params=None, weights=None), extras={})
    for step in (7, 8, 9):
        run.step = step
        hook.record(run)
    assert drawn == [9] and (tmp_path / file_name(9, "t1")).read_text() == "text 9\n"
    assert run.extras == {hook.key: {file_name(9, "t1"): "text 9\n"}}


def test_text_samples_come_back_from_the_checkpoint_when_dvc_removed_the_folder(tmp_path):
    """DVC deletes a stage's outputs before it runs it: a resumed run writes the samples
    its checkpoint kept (``run.extras``) again, and none from later steps."""
    import shutil
    import types

    from pipeline.training.samples import TextSamples, file_name

    folder = tmp_path / "samples"
    hook = TextSamples(folder, 2, lambda params, step: {"t1": f"text {step}", "t0.5": f"cold {step}"})
    run = types.SimpleNamespace(step=0, state=types.SimpleNamespace(params=None, weights=None), extras={})
    hook.begin(run, "train")
    for step in range(1, 5):
        run.step = step
        hook.record(run)
    written = {p.name: p.read_text() for p in folder.iterdir()}
    assert sorted(written) == sorted(file_name(s, t) for s in (2, 4) for t in ("t1", "t0.5"))
    kept = json.loads(json.dumps(run.extras))  # as the checkpoint's JSON meta holds it
    shutil.rmtree(folder)
    TextSamples(folder, 2, lambda params, step: {}).begin(types.SimpleNamespace(step=4, extras=kept), "train")
    assert {p.name: p.read_text() for p in folder.iterdir()} == written
