"""Failure behaviour end to end: the shell commands' exit codes, a real kill, a failing notebook."""
import copy
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from inverse_vae.core.checkpoints import checkpoints_newest_first, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _run_all(*args, env=None):
    return subprocess.run(["bash", str(ROOT / "run_all.sh"), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["train"].__setitem__("epochs", 3), "train.epochs: unknown key (did you mean 'plot_epochs'?)"),
    (lambda r: r["train"].__setitem__("batch_size", -1), "train.batch_size:"),
    (lambda r: r["model"]["architecture"]["decoder"].__setitem__(1, {"ReLU": None}), "cannot be inverted"),
])
def test_run_all_exits_2_on_bad_params_and_writes_nothing(default_raw, write_params, edit, expected):
    raw = copy.deepcopy(default_raw)
    edit(raw)
    params = write_params(raw, "refused_run")
    done = _run_all(params)
    assert done.returncode == 2, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0]
    assert not (ROOT / "reports" / "refused_run").exists()


TRAIN_SCRIPT = textwrap.dedent("""
    import dataclasses, sys, time
    from pathlib import Path
    import torch
    from inverse_vae.runs.run import open_run
    from inverse_vae.core.training import train

    run = open_run(Path(sys.argv[1]) / "params" / "smoke.yaml", root=sys.argv[1], say=lambda line: None)
    config = run.config.replace(train={"train_epochs": 6, "batch_size": 32, "plot_epochs": 1})
    run = dataclasses.replace(run, config=config, dir=Path(sys.argv[2]))
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(256, 1, 28, 28, generator=g) > 0.7).float()
    v = (torch.rand(64, 1, 28, 28, generator=g) > 0.7).float()
    slow = sys.argv[3] == "slow"
    result = train(run, x, v, progress=False, on_epoch=(lambda e, h: time.sleep(0.3)) if slow else None)
    torch.save(result.model.state_dict(), Path(sys.argv[2]) / "final.pt")
""")


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([sys.executable, str(script), str(ROOT), str(whole), "fast"], check=True)

    proc = subprocess.Popen([sys.executable, str(script), str(ROOT), str(killed), "slow"])
    deadline, saved = time.time() + 120, killed / "checkpoints"
    while not checkpoints_newest_first(saved) or load_checkpoint(checkpoints_newest_first(saved)[0])["epoch"] < 2:
        assert time.time() < deadline and proc.poll() is None, "training never reached epoch 2"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
    proc.wait()
    assert not (killed / "final.pt").exists()
    epoch_at_kill = load_checkpoint(checkpoints_newest_first(saved)[0])["epoch"]
    assert 2 <= epoch_at_kill < 6

    subprocess.run([sys.executable, str(script), str(ROOT), str(killed), "fast"], check=True)
    a, b = torch.load(whole / "final.pt"), torch.load(killed / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- issue #35: run_all.sh's --cores and --threads


@pytest.mark.parametrize("args, named", [(["--cores", "0"], "--cores needs a whole number from 1"),
                                         (["--threads", "abc"], "--threads needs a whole number from 1"),
                                         (["--cores", "-2"], "--cores needs a whole number from 1")])
def test_run_all_refuses_cores_or_threads_that_are_no_count_before_any_work(args, named):
    done = _run_all(*args)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and named in done.stderr, done.stderr


def _engine_command(tmp_path: Path, *args: str, dry: bool = True, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess:
    """run_all.sh (--dry-run) in a copy of the project whose set-up, Python and Snakemake only say how they were called."""
    shutil.copy(ROOT / "run_all.sh", tmp_path / "run_all.sh")
    plans = '[[ " $* " == *" plan "* ]] && echo "01_train [default]: not run yet"; exit 0'  # something to run
    for stub, text in (("tools/ensure_env.sh", "exit 0"), (".venv/bin/python", plans),
                       (".venv/bin/snakemake", 'echo "snakemake $*"')):
        (tmp_path / stub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / stub).write_text(f"#!/usr/bin/env bash\n{text}\n")
        (tmp_path / stub).chmod(0o755)
    (tmp_path / "reports").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(tmp_path / "run_all.sh"), *(["--dry-run"] if dry else []), *args], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PATH": path})


def test_a_run_takes_the_projects_lock_and_without_flock_says_it_cannot(tmp_path):
    done = _engine_command(tmp_path, dry=False)
    assert done.returncode == 0 and "snakemake " in done.stdout and (tmp_path / "reports" / ".lock").is_file(), done.stderr
    tools = tmp_path / "tools-without-flock"  # a system without util-linux's flock (macOS)
    tools.mkdir()
    for name in ("bash", "dirname", "nproc", "sed", "mktemp", "rm", "cat", "env"):
        (tools / name).symlink_to(shutil.which(name))
    done = _engine_command(tmp_path, dry=False, path=str(tools))
    assert done.returncode == 0 and "snakemake " in done.stdout, done.stderr
    assert "note: no flock(1) here: a second ./run_all.sh at the same time is not refused" in done.stderr


def test_one_core_still_runs_each_notebook_with_the_committed_numbers_two_threads(tmp_path):
    done = _engine_command(tmp_path, "--cores", "1")
    assert done.returncode == 0, done.stderr
    engine = next(line for line in done.stdout.splitlines() if line.startswith("snakemake "))
    assert " --cores 2 " in engine and "threads=2" in engine, engine  # Snakemake cuts a rule's threads to --cores
    assert "note: 1 core(s): one notebook at a time, each still with its 2 torch threads" in done.stdout


def test_other_threads_than_the_committed_numbers_are_said_to_change_them(tmp_path):
    done = _engine_command(tmp_path, "--threads", "4", "--cores", "8")
    assert done.returncode == 0, done.stderr
    assert "note: --threads 4: each notebook computes with 4 torch threads, not the committed numbers' 2" in done.stdout
    assert "differ from the committed ones in their last digits" in done.stdout
    assert "threads=4" in done.stdout and " --cores 8 " in done.stdout
    assert "note:" not in _engine_command(tmp_path, "--cores", "8").stdout
