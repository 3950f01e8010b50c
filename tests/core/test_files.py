"""The one atomic writer: whole files or nothing, no temporary file left behind; a failed write is
one line naming the file; the temporary files of killed writers are cleaned; a folder is set aside, never
deleted."""
import errno
import json
import os
import time

import pytest
import torch

from inverse_vae.core import files
from inverse_vae.core.checkpoints import save_checkpoint
from inverse_vae.core.files import WriteError, atomic_write, clean_stale_temps, set_aside, write_json
from inverse_vae.errors import StudyError


def test_writes_bytes_text_and_through_a_writer(tmp_path):
    assert atomic_write(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "t.txt", "é\n").read_text(encoding="utf-8") == "é\n"
    assert atomic_write(tmp_path / "w.bin", lambda f: f.write(b"xyz")).read_bytes() == b"xyz"
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "t.txt", "w.bin"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path, error):
    path = atomic_write(tmp_path / "f.json", "old")

    def crash(f):
        f.write(b"partial")
        raise error

    with pytest.raises(error):
        atomic_write(path, crash)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_write_json_is_atomic_and_json_safe(tmp_path):
    path = write_json(tmp_path / "m" / "metrics.json", {"a": float("inf"), "b": (1, 2)})
    assert json.loads(path.read_text()) == {"a": "inf", "b": [1, 2]}
    assert path.read_text().endswith("\n") and [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_write_json_takes_a_configs_read_only_values(tmp_path, root):
    from inverse_vae.core.config import load_config

    methods = load_config(root / "params" / "smoke.yaml").methods
    path = write_json(tmp_path / "m.json", {"overrides": methods.overrides, "levels": methods.noise_levels})
    assert json.loads(path.read_text())["overrides"]["optimize_lm"] == {"steps": 10}


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "the disk is full"), (errno.EIO, "Input/output error")])
def test_a_failed_fsync_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, code, cause):
    path = write_json(tmp_path / "metrics" / "01_train.json", {"a": 1})
    monkeypatch.setattr(files.os, "fsync", _raise(code))
    with pytest.raises(WriteError) as e:
        write_json(path, {"a": 2})
    message = str(e.value)
    assert str(path) in message and cause in message and "\n" not in message
    assert isinstance(e.value, StudyError) and isinstance(e.value, OSError)  # old handlers still apply
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "model_1.pt")
    monkeypatch.setattr(files.os, "fsync", _raise(errno.ENOSPC))  # the bytes written, not yet on the disk
    with pytest.raises(WriteError, match=r"model_1\.pt: the disk is full"):
        save_checkpoint({"epoch": 2}, path)
    assert torch.load(path)["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["model_1.pt"]


def test_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    # Tests run as root, which chmod does not stop: the refusal is simulated where the file is created.
    monkeypatch.setattr(files.tempfile, "mkstemp", _raise(errno.EACCES))
    with pytest.raises(WriteError, match=r"cannot write .*page\.html: permission denied"):
        atomic_write(tmp_path / "page.html", "<p>")


def test_a_figure_can_be_saved_atomically(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = atomic_write(tmp_path / "f.png", lambda f: fig.savefig(f, format="png", dpi=20))
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_clean_stale_temps_removes_only_old_temporaries_of_the_writer(tmp_path):
    old = time.time() - 3600
    (tmp_path / "checkpoints").mkdir()
    orphan = tmp_path / "checkpoints" / ".model_4.pt.a1b2_c3d.tmp"  # mkstemp's name for model_4.pt
    fresh = tmp_path / ".01_train.ipynb.zz99yy88.tmp"  # a write in flight elsewhere
    foreign = tmp_path / ".notes.tmp"  # not a name atomic_write makes
    for p in (orphan, fresh, foreign):
        p.write_bytes(b"partial")
    for p in (orphan, foreign):
        os.utime(p, (old, old))
    assert clean_stale_temps(tmp_path) == [orphan]
    assert not orphan.exists() and fresh.exists() and foreign.exists()


def test_set_aside_moves_everything_but_the_lock_and_deletes_nothing(tmp_path):
    folder = tmp_path / "reports" / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "model_2.pt").write_bytes(b"weights")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.txt").write_text("x")
    (folder / ".lock").write_text("")
    moved = set_aside(folder, tmp_path / "reports" / ".old", "run-checkpoints")
    assert moved.parent == tmp_path / "reports" / ".old" and moved.name.startswith("run-checkpoints-")
    assert (moved / "model_2.pt").read_bytes() == b"weights" and (moved / "sub" / "x.txt").read_text() == "x"
    assert [p.name for p in folder.iterdir()] == [".lock"] and not (moved / ".lock").exists()


def test_set_aside_twice_in_one_second_keeps_both_and_nothing_to_move_is_none(tmp_path):
    folder, old = tmp_path / "run", tmp_path / ".old"
    assert set_aside(folder, old, "run") is None  # no folder
    folder.mkdir()
    assert set_aside(folder, old, "run") is None and not old.exists()  # an empty folder
    (folder / "a").write_text("1")
    first = set_aside(folder, old, "run")
    (folder / "a").write_text("2")
    second = set_aside(folder, old, "run")
    assert first != second and (first / "a").read_text() == "1" and (second / "a").read_text() == "2"


def test_set_aside_moves_a_linked_folder_as_a_link_and_nothing_it_points_to(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "thesis.tex").write_text("mine")
    run = tmp_path / "reports" / "run"
    run.parent.mkdir()
    run.symlink_to(outside)
    moved = set_aside(run, tmp_path / "reports" / ".old", "run")
    assert (outside / "thesis.tex").read_text() == "mine" and [p.name for p in outside.iterdir()] == ["thesis.tex"]
    assert not run.exists() and not run.is_symlink()
    assert (moved / "run").is_symlink() and (moved / "run").resolve() == outside


def test_set_aside_of_a_run_with_a_name_near_the_limit_of_a_folder_name(tmp_path):
    folder = tmp_path / ("r" * 245)  # what --fresh of such a run (run_all.sh --all) sets aside
    folder.mkdir()
    (folder / "a").write_text("1")
    moved = set_aside(folder, tmp_path / ".old", folder.name)
    assert (moved / "a").read_text() == "1" and moved.name.startswith("r" * 200 + "-")


def test_set_aside_that_cannot_move_is_one_line_and_deletes_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "a").write_text("1")
    monkeypatch.setattr(files.os, "rename", _raise(errno.EXDEV))
    with pytest.raises(StudyError) as info:
        set_aside(folder, tmp_path / ".old", "run")
    message = str(info.value)
    assert "\n" not in message and str(folder) in message and "nothing was deleted" in message
    assert (folder / "a").read_text() == "1"
