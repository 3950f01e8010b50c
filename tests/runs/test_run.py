"""A run: checked in full before any work, bound to its folder, names that collide refused, scratch runs
that start from the committed model without writing anything git tracks."""
import copy
import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from inverse_vae.__main__ import main
from inverse_vae.core.checkpoints import checkpoint_layout, load_checkpoint, params_fingerprint, save_checkpoint
from inverse_vae.core.model import build_model
from inverse_vae.errors import ParamsError
from inverse_vae.runs.run import SCRATCH_ROOT, load_checked_config, open_run

ROOT = Path(__file__).resolve().parents[2]


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def _refused(capsys, params, *named) -> str:
    assert main(["check-params", str(params)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"error: {params}: "), lines
    assert all(name in lines[0] for name in named), lines[0]
    return lines[0]


@pytest.mark.parametrize("section, key, value", [
    ("train", "model_path", "/tmp/elsewhere"), ("train", "progress_path", "../../figures"),
    ("test", "model_path", "checkpoints/../../x.pt"), ("test", "results_path", ".."), ("test", "results_path", "~/r"),
])
def test_a_path_leaving_the_run_folder_is_refused(default_raw, write_params, capsys, section, key, value):
    raw = copy.deepcopy(default_raw)
    raw[section][key] = value
    _refused(capsys, write_params(raw, "escaping"), f"{section}.{key}", "run folder")


@pytest.mark.parametrize("stem", ["..", ".hidden", "two words", "semi;colon", "index.html", "summary", "scratch", "Site"])
def test_a_run_name_that_is_not_plain_or_is_one_reports_holds_is_refused(tmp_path, capsys, stem):
    params = tmp_path / f"{stem}.yaml"
    params.write_text((ROOT / "params" / "default.yaml").read_text())
    _refused(capsys, params, f"run name {stem!r}")


def test_a_params_file_named_like_another_runs_is_refused(tmp_path, capsys, monkeypatch):
    twin = tmp_path / "default.yaml"  # reports/default/ is params/default.yaml's
    twin.write_text((ROOT / "params" / "default.yaml").read_text().replace("seed: 0", "seed: 5"))
    monkeypatch.chdir(ROOT)
    _refused(capsys, twin, "params/default.yaml", "rename it")
    assert main(["check-params", "params/default.yaml"]) == 0  # the run's own file is fine


def test_plain_relative_paths_and_names_are_accepted(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["test"]["model_path"] = "./pretrained/../checkpoints/model_90.pt"  # climbs, but stays inside
    load_checked_config(write_params(raw, "v1_2_run-b"), ROOT)  # (check-params also wants the file in the project)


@pytest.mark.parametrize("edit, named", [
    (lambda r: r["model"]["architecture"]["decoder"].__setitem__(3, {"ReLU": None}), "cannot be inverted"),
    (lambda r: r["model"]["architecture"]["decoder"].insert(1, {"BatchNorm1d": {"args": [128]}}), "decoder[1].BatchNorm1d"),
    (lambda r: r["model"]["architecture"]["encoder"]["conv"].insert(1, {"LayerNorm": {"args": [500]}}), "conv[1].LayerNorm"),
    (lambda r: r["model"]["architecture"]["decoder"][0]["Linear"].__setitem__("device", "cuda"), "decoder[0].Linear.device"),
    (lambda r: r.__setitem__("methods", {"overrides": {"optimize_adam": {"stpes": 3}}}), "optimize_adam.stpes"),
    (lambda r: r.__setitem__("methods", {"overrides": {"optimize_adam": {"steps": "many"}}}), "optimize_adam.steps"),
    (lambda r: r.__setitem__("methods", {"overrides": {"optimize_adam": {"steps": 10**9}}}), "optimize_adam.steps"),
    (lambda r: r.__setitem__("methods", {"overrides": {"optimize_lm": {"restarts": 10**6}}}), "optimize_lm.restarts"),
    (lambda r: r.__setitem__("methods", {"overrides": {"adam": {"steps": 3}}}), "unknown method 'adam'"),
    (lambda r: r.__setitem__("seed", 2**40), "seed"),
])
def test_what_a_run_would_fail_on_later_is_refused_before_any_work(default_raw, write_params, capsys, edit, named):
    raw = copy.deepcopy(default_raw)
    edit(raw)
    _refused(capsys, write_params(raw, "late"), named)


def test_a_run_whose_config_changed_afterwards_still_cannot_leave(tmp_path):
    run = open_run(ROOT / "params" / "smoke.yaml", reports_root=tmp_path, root=ROOT)
    moved = dataclasses.replace(run, config=run.config.replace(test={"model_path": "/etc/model.pt"}))
    with pytest.raises(ParamsError, match="test.model_path"):
        moved.model_file  # noqa: B018 (the property is the code under test)
    assert run.model_file == tmp_path / "smoke" / "checkpoints" / "model_4.pt"


def test_opening_a_run_cleans_what_a_killed_write_left(tmp_path):
    folder = tmp_path / "smoke" / "checkpoints"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".model_2.pt.abcd1234.tmp", tmp_path / "smoke" / ".01_train.ipynb.wxyz6789.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in flight")
    os.utime(stale, (time.time() - 3600,) * 2)
    open_run(ROOT / "params" / "smoke.yaml", reports_root=tmp_path, root=ROOT)
    assert not stale.exists() and fresh.exists()


@pytest.fixture
def project(tmp_path):
    """A copy of the project's params and the committed default model, to open scratch runs in."""
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(ROOT / "params", tmp_path / "params")
    committed = tmp_path / "reports" / "default" / "checkpoints"
    committed.mkdir(parents=True)
    shutil.copy2(ROOT / "reports" / "default" / "checkpoints" / "model_90.pt", committed)
    return tmp_path


def test_a_scratch_run_starts_from_the_committed_model_copied_not_shared(project):
    said = []
    run = open_run("params/default.yaml", None, project, say=said.append)
    committed = project / "reports" / "default" / "checkpoints" / "model_90.pt"
    assert run.dir == project / SCRATCH_ROOT / "default" and run.model_file.read_bytes() == committed.read_bytes()
    assert run.model_file.stat().st_ino != committed.stat().st_ino  # a copy: nothing tracked is written
    assert any("starts from the committed model" in line for line in said)
    assert load_checkpoint(run.model_file)["epoch"] == 90


def test_a_scratch_run_starts_from_the_committed_runs_cache_and_uses_it(project):
    """The probe and the t-SNE cost minutes: a scratch run takes the committed run's entries, valid for its model."""
    from inverse_vae.study import shared

    committed = open_run("params/default.yaml", "reports", project, say=lambda *_: None)
    made = shared.cached(committed, "probe", shared._key(committed, what="test"), lambda: {"w": np.arange(3.0)})
    said = []
    run = open_run("params/default.yaml", None, project, say=said.append)
    assert (run.dir / "cache" / "probe.npz").read_bytes() == (committed.dir / "cache" / "probe.npz").read_bytes()
    assert any("and its cache (probe)" in line for line in said)
    again = shared.cached(run, "probe", shared._key(run, what="test"), lambda: pytest.fail("recomputed"))
    assert np.array_equal(again["w"], made["w"])
    other = shared.cached(run, "probe", shared._key(run, what="other"), lambda: {"w": np.zeros(1)})  # another key
    assert np.array_equal(other["w"], np.zeros(1))


def test_a_scratch_run_of_other_params_does_not_take_the_committed_model(project):
    (project / "params" / "default.yaml").write_text(
        (project / "params" / "default.yaml").read_text().replace("alpha: 0.1", "alpha: 0.2"))
    said = []
    run = open_run("params/default.yaml", None, project, say=said.append)
    assert not run.model_file.exists() and any("trained with other params (train.alpha)" in line for line in said)


def _project_with_a_trained_smoke_run(tmp_path: Path) -> Path:
    """A project folder whose smoke run holds a full final checkpoint (weights of the smoke model, Adam's state)."""
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(ROOT / "params", tmp_path / "params")
    run = open_run("params/smoke.yaml", root=tmp_path, say=lambda *_: None)
    model = build_model(run.config)
    optimizer = torch.optim.Adam(model.parameters())
    sum(p.square().sum() for p in model.parameters()).backward()
    optimizer.step()
    epochs = run.config.train.train_epochs
    save_checkpoint({"epoch": epochs, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                     "history": {"train": [0.3] * epochs, "validation": [0.3] * epochs},
                     "lr_scheduler_state_dict": {}, "params_fingerprint": params_fingerprint(run.config)}, run.model_file)
    return run.model_file


def test_compact_rewrites_a_runs_final_checkpoint_and_refuses_another_runs(tmp_path, monkeypatch, capsys):
    model_file = _project_with_a_trained_smoke_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = load_checkpoint(model_file)
    assert main(["compact", "params/smoke.yaml"]) == 0
    assert capsys.readouterr().out.strip() == "wrote reports/smoke/checkpoints/model_4.pt"
    after = load_checkpoint(model_file)
    assert "optimizer_state_dict" not in after and after["params_fingerprint"] == before["params_fingerprint"]
    assert all(v.equal(before["model_state_dict"][k]) for k, v in after["model_state_dict"].items())
    params = tmp_path / "params" / "smoke.yaml"
    params.write_text(params.read_text().replace("train: {batch_size: 128,", "train: {batch_size: 64,"))
    written = model_file.read_bytes()
    assert main(["compact", "params/smoke.yaml"]) == 2  # the checkpoint is not this config's: left as it is
    lines = _error_lines(capsys)
    assert len(lines) == 1 and "trained with other params" in lines[0] and "train.batch_size" in lines[0], lines
    assert model_file.read_bytes() == written


# --- issue #35: what check-params accepts, the workflow takes; compact stamps nothing and rewrites no compact file


def test_compact_keeps_a_checkpoint_without_a_fingerprint_without_one_and_says_so(tmp_path, monkeypatch, capsys):
    model_file = _project_with_a_trained_smoke_run(tmp_path)
    state = load_checkpoint(model_file)
    del state["params_fingerprint"]  # an original train.py checkpoint, or any model of this shape
    save_checkpoint(state, model_file)
    monkeypatch.chdir(tmp_path)
    assert main(["compact", "params/smoke.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "wrote reports/smoke/checkpoints/model_4.pt" and len(out) == 2, out
    assert out[1].startswith("note: reports/smoke/checkpoints/model_4.pt has no params fingerprint"), out
    after = load_checkpoint(model_file)
    assert checkpoint_layout(after) == "compact" and "params_fingerprint" not in after


def test_compact_leaves_a_compact_checkpoint_as_it_is(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(ROOT / "params", tmp_path / "params")
    committed = tmp_path / "reports" / "default" / "checkpoints" / "model_90.pt"
    committed.parent.mkdir(parents=True)
    shutil.copy2(ROOT / "reports" / "default" / "checkpoints" / "model_90.pt", committed)
    before = committed.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["compact", "params/default.yaml"]) == 0
    assert capsys.readouterr().out.strip() == "reports/default/checkpoints/model_90.pt: already compact, left as it is"
    assert committed.read_bytes() == before


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(ROOT / "params", tmp_path / "params")
    return tmp_path


def test_check_params_refuses_a_file_outside_the_project(tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere" / "mine.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text((ROOT / "params" / "default.yaml").read_text())
    monkeypatch.chdir(ROOT)
    _refused(capsys, elsewhere, "outside the project", "copy it into params/")


@pytest.mark.parametrize("value, named", [("params/nope.yaml", "params/nope.yaml: params file not found"),
                                          ("/etc/hostname", "must name a params file of the project"),
                                          ("../outside.yaml", "must name a params file of the project")])
def test_check_params_refuses_a_squeezed_params_the_workflow_cannot_read(tmp_path, monkeypatch, capsys, value, named):
    project = _project(tmp_path)
    (tmp_path.parent / "outside.yaml").write_text("secret: 1\n")
    params = project / "params" / "sq.yaml"
    params.write_text(f"base: default.yaml\nfailure: {{squeezed_params: {value}}}\n")
    monkeypatch.chdir(project)
    line = _refused(capsys, "params/sq.yaml", "failure.squeezed_params", named)
    assert "secret" not in line


def test_check_params_refuses_two_runs_whose_names_are_one_rule_name(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)
    for name in ("ag-r", "ag_r"):
        (project / "params" / f"{name}.yaml").write_text("base: default.yaml\n")
    monkeypatch.chdir(project)
    _refused(capsys, "params/ag-r.yaml", "params/ag_r.yaml", "same workflow rules")
    (project / "params" / "ag_r.yaml").unlink()
    (project / "runs").mkdir()
    for name in ("x-y", "x_y"):
        (project / "runs" / f"{name}.yaml").write_text((ROOT / "params" / "default.yaml").read_text())
    assert main(["check-params", "runs/x-y.yaml", "runs/x_y.yaml", "runs/x-y.yaml"]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: runs/x_y.yaml: ") and "runs/x-y.yaml" in lines[0], lines


def test_check_params_refuses_a_run_name_too_long_for_a_folder_name(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)
    name = "r" * 245  # --fresh would set reports/<name>/ aside as reports/.old/<name>-<time>/: over 255 characters
    (project / "params" / f"{name}.yaml").write_text("base: smoke.yaml\n")
    monkeypatch.chdir(project)
    _refused(capsys, f"params/{name}.yaml", "245 characters; at most 100")
