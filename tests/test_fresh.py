"""--fresh: a run's earlier outputs are moved into reports/.old/<run>-<time>/, never deleted, and the
run then starts from nothing; run_all.sh passes the flag on and keeps its other forms."""
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import papermill
import pytest

from inverse_vae.__main__ import main
from inverse_vae.errors import StudyError
from inverse_vae.runs import notebooks
from inverse_vae.runs.paths import LOCK_NAME, run_lock, set_aside

ROOT = Path(__file__).resolve().parents[1]
NOON = time.mktime((2026, 11, 28, 12, 0, 0, 0, 0, -1))


def _contents(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256), the lock left out."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def _a_run(run_dir: Path) -> dict[str, str]:
    for name, data in {"checkpoints/model_90.pt": b"weights", "figures/loss.png": b"png", "metrics/01_train.json": b"{}",
                       "01_train.ipynb": b"nb", "01_train.html": b"html", "cache/prior.npz": b"npz",
                       "variants/squeezed/checkpoints/model_90.pt": b"squeezed", "train_progress/10_epochs.png": b"p"}.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(data)
    return _contents(run_dir)


def test_set_aside_moves_everything_and_deletes_nothing(tmp_path):
    run_dir = tmp_path / "reports" / "default"
    before = _a_run(run_dir)
    with run_lock(run_dir):
        moved = set_aside(run_dir, now=NOON)
    assert moved == tmp_path / "reports" / ".old" / "default-20261128-120000"
    assert _contents(moved) == before  # every file, byte for byte
    assert [p.name for p in run_dir.iterdir()] == [LOCK_NAME]  # the folder is empty but for the lock


def test_set_aside_twice_in_one_second_keeps_both(tmp_path):
    run_dir = tmp_path / "default"
    first = _a_run(run_dir)
    assert set_aside(run_dir, now=NOON).name == "default-20261128-120000"
    (run_dir / "metrics").mkdir()
    (run_dir / "metrics" / "01_train.json").write_text("second")
    second = set_aside(run_dir, now=NOON)
    assert second.name == "default-20261128-120000-2"
    assert _contents(tmp_path / ".old" / "default-20261128-120000") == first
    assert (second / "metrics" / "01_train.json").read_text() == "second"


def test_nothing_to_set_aside(tmp_path):
    assert set_aside(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / LOCK_NAME).write_text("")
    assert set_aside(tmp_path / "empty") is None
    assert not (tmp_path / ".old").exists()


def _fake_papermill(monkeypatch, seen):
    def execute_notebook(notebook, output, **kwargs):
        seen.append(sorted(p.name for p in (ROOT / Path(output)).parent.iterdir()))
        Path(output).write_text(nbformat.writes(nbformat.v4.new_notebook()))
    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    monkeypatch.setattr(notebooks, "_kernel_name", lambda: "python3")


def test_run_notebooks_fresh_sets_the_old_run_aside_then_runs(tmp_path, monkeypatch, capsys):
    reports = tmp_path / "reports"
    before = _a_run(reports / "smoke")
    seen = []
    _fake_papermill(monkeypatch, seen)
    assert main(["run-notebooks", "params/smoke.yaml", "--only", "01", "--reports-root", str(reports), "--fresh"]) == 0
    old = list((reports / ".old").iterdir())
    assert len(old) == 1 and old[0].name.startswith("smoke-") and _contents(old[0]) == before
    # ran from nothing: the folder held only the lock and papermill's temporary output
    assert len(seen[0]) == 2 and LOCK_NAME in seen[0] and any(n.startswith(".01_train.ipynb.") for n in seen[0])
    assert sorted(p.name for p in (reports / "smoke").iterdir()) == [LOCK_NAME, "01_train.ipynb"]
    out = capsys.readouterr().out
    assert "smoke: earlier outputs set aside in " in out and "01_train [smoke] ... " in out


def test_fresh_refuses_a_selection_without_the_first_notebook(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    before = _a_run(reports / "smoke")
    _fake_papermill(monkeypatch, [])
    with pytest.raises(StudyError, match="--fresh starts a run from nothing, so it must run 01_train"):
        notebooks.run_study(["params/smoke.yaml"], only=["02"], reports_root=str(reports), root=ROOT, fresh=True)
    assert _contents(reports / "smoke") == before and not (reports / ".old").exists()


@pytest.mark.parametrize(("args", "only", "expected"), [
    ([], "", "run-notebooks params/default.yaml"),
    (["--fresh"], "", "run-notebooks params/default.yaml --fresh"),
    (["params/a.yaml", "--fresh", "params/b.yaml"], "", "run-notebooks params/a.yaml params/b.yaml --fresh"),
    (["params/smoke.yaml"], "01,02", "run-notebooks params/smoke.yaml --only 01,02"),
])
def test_run_all_passes_fresh_on_and_keeps_its_other_forms(tmp_path, args, only, expected):
    """run_all.sh against a stand-in interpreter that records its arguments."""
    shutil.copy(ROOT / "run_all.sh", tmp_path / "run_all.sh")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "ensure_env.sh").write_text("#!/usr/bin/env bash\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text('#!/usr/bin/env bash\necho "${*:3}" >> calls.txt\n')
    for script in ("run_all.sh", "tools/ensure_env.sh", ".venv/bin/python"):
        (tmp_path / script).chmod(0o755)
    env = {**os.environ, "ONLY": only}
    subprocess.run(["bash", str(tmp_path / "run_all.sh"), *args], cwd=tmp_path, env=env, check=True, timeout=30)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls[2] == expected and "--fresh" not in calls[0]  # check-params never sees the flag
