"""The workflow engine (Snakemake) over the study: what re-runs when params change, the one command's
forms, the cluster profiles, a failing notebook, and a fresh clone that plans no work."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from inverse_vae.constants import NOTEBOOKS
from inverse_vae.core.config import family, load_config
from workflow import plan

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"
CODE = os.pathsep.join([str(ROOT / "lib"), str(ROOT)])  # this checkout's study and workflow packages, in any project
ACTIVATED = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}  # the rules run `python`


def _depends(config) -> dict[str, str]:
    return {nb: plan.depends_on(config, nb, ROOT) for nb in NOTEBOOKS}


@pytest.mark.parametrize("updates, rerun", [
    ({"hypothesis": "an edited hypothesis changes no result"}, []),
    ({"train": {"plot_epochs": 30}}, ["01_train"]),  # only where 01 writes its figures
    ({"train": {"optim": {"name": "adam", "learning_rate": 0.002}}}, list(NOTEBOOKS)),  # another model: all
    ({"seed": 3}, list(NOTEBOOKS)),
    ({"methods": {"realizable_n": 10}}, ["05_inverse_methods"]),
    ({"invert": {"n_prior": 500}}, ["03_invert", "04_failure_analysis", "05_inverse_methods"]),
    ({"evaluate": {"tsne_samples": 100}}, ["02_evaluate", "03_invert"]),
    ({"failure": {"delta": 0.01}}, ["04_failure_analysis"]),
])
def test_a_changed_params_key_reruns_exactly_the_notebooks_that_read_it(updates, rerun):
    config = load_config(ROOT / "params" / "default.yaml")
    before, after = _depends(config), _depends(config.replace(**updates))
    assert [nb for nb in NOTEBOOKS if before[nb] != after[nb]] == rerun


def test_an_edited_explanation_reruns_nothing_an_edited_computation_reruns_its_notebook(tmp_path):
    notebook = nbformat.read(ROOT / "notebooks" / "03_invert.ipynb", as_version=4)
    digest = plan.code_digest(ROOT / "notebooks" / "03_invert.ipynb")
    next(c for c in notebook.cells if c.cell_type == "markdown").source += "\nOne more sentence."
    nbformat.write(notebook, tmp_path / "prose.ipynb")
    next(c for c in notebook.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])).source += "\n1"
    nbformat.write(notebook, tmp_path / "code.ipynb")
    assert plan.code_digest(tmp_path / "prose.ipynb") == digest != plan.code_digest(tmp_path / "code.ipynb")


def test_the_default_runs_04_waits_for_the_squeezed_model_and_every_rule_writes_only_its_receipt():
    study = plan.Study.of(ROOT)
    assert study.upstream("default", "04_failure_analysis") == [("default", "model"), ("squeezed", "model")]
    assert study.upstream("default", "01_train") == []
    runs = [p.stem for p in family(ROOT / "params")]  # every run's five notebooks, whatever the family's size
    assert sorted(study.upstream("summary", "99_summary")) == sorted((run, nb) for run in runs for nb in NOTEBOOKS)
    # Snakemake deletes a rule's outputs before it runs: a receipt, never a result (a notebook, metrics, a model, a page)
    outputs = re.findall(r"^\s+output: (.+)$", (ROOT / "workflow" / "Snakefile").read_text(), re.M)
    assert len(outputs) == 4 and all(o.startswith("receipt(") for o in outputs), outputs


def _run_all(*args, cwd=ROOT, env=None, timeout=600):
    return subprocess.run(["./run_all.sh", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_prints_usage_and_does_nothing_else():
    index = ROOT / "reports" / "index.html"
    before = index.stat().st_mtime_ns
    done = _run_all("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: ./run_all.sh") and "--dry-run" in done.stdout
    assert index.stat().st_mtime_ns == before


@pytest.mark.parametrize("args, expected", [(["--bogus"], "unknown option --bogus"),
                                            (["--all", "params/default.yaml"], "give no params files with it")])
def test_a_wrong_command_line_is_one_line_and_exit_2(args, expected):
    done = _run_all(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0]


def test_a_bad_params_file_exits_2_before_any_work(tmp_path, default_raw, write_params):
    default_raw["train"]["optim"]["learning_rate"] = -1
    bad = write_params(default_raw, "bad")
    done = _run_all(str(bad))
    assert done.returncode == 2 and "train.optim.learning_rate" in done.stderr and not (ROOT / "reports" / "bad").exists()


@pytest.mark.slow
def test_the_family_dag_builds_under_the_slurm_profile_without_a_cluster():
    receipts = tempfile.mkdtemp()  # none: every result of the family is planned
    done = subprocess.run([str(SNAKEMAKE), "--profile", "profiles/slurm", "--dry-run", "all", "--quiet", "rules",
                           "--config", f"receipts={receipts}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=ACTIVATED)
    assert done.returncode == 0, done.stderr[-2000:]
    family = len([p for p in (ROOT / "params").glob("*.yaml") if p.stem != "smoke"])
    jobs = done.stdout + done.stderr
    assert re.search(rf"^notebook\s+{family * 5 + 2}$", jobs, re.M) and re.search(rf"^page\s+{family * 5 + 2}$", jobs, re.M), jobs


def _smoke_variant(tmp_path: Path, **edits) -> Path:
    """A params file beside params/ (the workflow reads params/ and notebooks/ of the project)."""
    text = "base: smoke.yaml\n" + "".join(f"{k}: {json.dumps(v)}\n" for k, v in edits.items())
    path = ROOT / "params" / f"zz_test_{tmp_path.name[-12:].replace('-', '_')}.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_a_job_runs_through_a_non_local_executor_with_nothing_but_its_script(tmp_path):
    """The cluster-generic executor with a submit script that runs each job detached in a clean environment:
    the rules carry everything a remote job needs."""
    reports = tmp_path / "reports"
    done = subprocess.run([str(SNAKEMAKE), "--profile", "profiles/local-cluster", "--config", "runs=params/smoke.yaml",
                           f"reports={reports}", "threads=1", "--", str(reports / ".receipts" / "smoke" / "02_evaluate.done")],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200, env=ACTIVATED)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    evaluation = json.loads((reports / "smoke" / "metrics" / "02_evaluate.json").read_text())
    assert 0.1 < evaluation["probe_accuracy"] <= 1 and (reports / "smoke" / "checkpoints" / "model_4.pt").is_file()


def _plan(*args, root=ROOT, receipts=None) -> subprocess.CompletedProcess:
    receipts = receipts or tempfile.mkdtemp()
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "workflow", "plan", *args, "--receipts",
                           str(receipts)], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": CODE})  # this checkout's code, in any project


@pytest.mark.slow
def test_a_failing_notebook_keeps_its_error_and_the_previous_results_and_only_it_runs_again(tmp_path):
    params = _smoke_variant(tmp_path, data={"train_subset": 2000, "test_subset": 100})
    reports, name = tmp_path / "reports", params.stem
    receipts = reports / ".receipts"
    try:
        command = [str(SNAKEMAKE), "--cores", "2", "--rerun-triggers", "mtime", "--drop-metadata", "--config",
                   f"runs=params/{params.name}", f"reports={reports}", "threads=1", "--"]
        trained = subprocess.run(command + [str(receipts / name / "02_evaluate.done")], cwd=ROOT, capture_output=True,
                                 text=True, timeout=1200, env=ACTIVATED)
        assert trained.returncode == 0, trained.stderr[-2000:]
        metrics = reports / name / "metrics" / "02_evaluate.json"
        before = metrics.read_bytes()
        planned = _plan("--runs", f"params/{params.name}", "--reports-root", str(reports), "--force", "02",
                        receipts=receipts)
        lines = planned.stdout.splitlines()
        assert f"02_evaluate [{name}]: forced (--force)" in lines, planned.stdout + planned.stderr
        assert not any(line.startswith(f"01_train [{name}]:") for line in lines), lines
        assert not (receipts / name / "02_evaluate.done").exists()
        # 02 fails for a reason of its own: the checkpoint it loads is no longer one (the engine runs what has no
        # receipt: 02 alone; a plan now would re-train, as the next one below says)
        for checkpoint in (reports / name).rglob("*.pt"):
            checkpoint.write_bytes(b"not a checkpoint")
        failed = subprocess.run(command + [str(receipts / name / "02_evaluate.done")], cwd=ROOT, capture_output=True,
                                text=True, timeout=1200, env=ACTIVATED)
        assert failed.returncode != 0
        executed = nbformat.read(reports / name / "02_evaluate.ipynb", as_version=4)
        assert any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
        assert metrics.read_bytes() == before and (reports / name / "metrics" / "01_train.json").is_file()
        again = _plan("--runs", f"params/{params.name}", "--reports-root", str(reports)).stdout
        assert f"01_train [{name}]: its model is not what it wrote (edited, damaged or missing)" in again, again
        assert f"02_evaluate [{name}]: {name}/01_train re-runs first" in again  # and it failed: the model is damaged
    finally:
        params.unlink()


def _clone(tmp_path: Path) -> Path:
    """A fresh clone of the project as committed, with this checkout's run_all.sh, Snakefile and lib/ (committed or not;
    lib/ through CODE)."""
    clone = tmp_path / "a clone"  # a path with a space: the rules quote what they pass
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=600)
    for changed in ("run_all.sh", "workflow/Snakefile"):
        shutil.copy(ROOT / changed, clone / changed)
    (clone / ".venv").symlink_to(ROOT / ".venv")  # a symlinked .venv: no rule names the interpreter's path
    (clone / "data").symlink_to(ROOT / "data")
    return clone


def _status(clone: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--", ".", ":!run_all.sh", ":!workflow/Snakefile"], cwd=clone,
                          capture_output=True, text=True).stdout


NOTHING = "Nothing to be done (all requested files are present and up to date)."


def _said(done) -> list[str]:
    """What a call of ./run_all.sh said, notes aside."""
    return [line for line in (done.stdout + done.stderr).splitlines() if line and not line.startswith("note:")]


@pytest.mark.slow
def test_whatever_is_called_first_a_fresh_clone_is_up_to_date_and_an_edit_replans_what_it_affects(tmp_path):
    clone = _clone(tmp_path)
    env = {"PYTHONPATH": CODE}
    for args in (["--dry-run"], ["--dry-run", "--all"], ["--dry-run", "params/latent16.yaml"], [], ["--dry-run", "--all"]):
        done = _run_all(*args, cwd=clone, env=env)
        assert done.returncode == 0 and _said(done) == [NOTHING], (args, done.stdout + done.stderr)
    assert _status(clone) == "" and list(clone.glob("reports/.receipts/*/*.page"))  # the real run's receipts, ignored
    latent = clone / "params" / "latent16.yaml"
    latent.write_text(latent.read_text() + "methods:\n  realizable_n: 300\n")
    (clone / "params" / "extra.yaml").write_text("base: default.yaml\nseed: 5\n")  # a run added
    replanned = _run_all("--dry-run", "--all", cwd=clone, env=env).stdout
    assert "05_inverse_methods [latent16]: changed: methods" in replanned, replanned
    assert "04_failure_analysis [latent16]" not in replanned and "01_train [extra]: not run yet" in replanned
    assert "99_summary [summary]:" in replanned and "01_train [default] page" not in replanned  # no quadratic pages
    default = clone / "params" / "default.yaml"
    default.write_text(default.read_text().replace("plot_epochs: 10", "plot_epochs: 15", 1))
    figures = _run_all("--dry-run", cwd=clone, env=env).stdout  # a key only 01's figures read: 01 alone, not its model
    assert "01_train [default]: changed: train.plot_epochs" in figures and re.search(r"^notebook\s+1$", figures, re.M)
    assert "02_evaluate [default]" not in figures, figures
    subprocess.run(["git", "checkout", "params"], cwd=clone, check=True)
    (clone / "params" / "extra.yaml").unlink()
    done = _run_all("--dry-run", "--all", cwd=clone, env=env)
    assert _said(done) == [NOTHING], done.stdout + done.stderr  # nothing was recorded by the earlier calls
    header = (clone / "workflow" / "Snakefile").read_text().split("By hand:\n")[1].split("\nimport")[0]
    commands = [line[1:].strip().split("  ")[0] for line in header.splitlines() if line.startswith("#   ")]
    assert commands[0] == "source .venv/bin/activate", commands
    by_hand = subprocess.run(["bash", "-c", " && ".join(commands)], cwd=clone, capture_output=True, text=True,
                             timeout=600, env={**os.environ, **env})
    assert by_hand.returncode == 0 and "Nothing to be done" in by_hand.stdout + by_hand.stderr, by_hand.stderr[-2000:]
    shutil.rmtree(clone)


@pytest.mark.slow
def test_a_hand_edited_or_damaged_result_is_planned_again_with_why_and_what_reads_it(tmp_path):
    clone = _clone(tmp_path)
    reports = clone / "reports"
    metrics = reports / "default" / "metrics" / "03_invert.json"
    text = metrics.read_text()
    metrics.write_text(re.sub(r'(": )0\.\d+', r"\g<1>0.999", text, count=1))  # one number, as by hand
    assert metrics.read_text() != text
    executed = nbformat.read(reports / "latent16" / "03_invert.ipynb", as_version=4)
    next(c for c in executed.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
         ).outputs.append(nbformat.v4.new_output("error", ename="E", evalue="e", traceback=[]))
    nbformat.write(executed, reports / "latent16" / "03_invert.ipynb")
    (reports / "leaky" / "02_evaluate.ipynb").write_bytes(b'{"cells": [{"cell_type": "code", "sou')
    (reports / "invertible" / "05_inverse_methods.ipynb").unlink()
    said = _plan("--all", root=clone)
    assert said.returncode == 0, said.stderr
    lines = said.stdout.splitlines()
    assert "03_invert [default]: its metrics file is not what it wrote (edited, damaged or missing)" in lines, lines
    assert "03_invert [latent16]: it failed" in lines
    assert "02_evaluate [leaky]: its executed notebook is not readable (JSONDecodeError)" in lines
    assert "05_inverse_methods [invertible]: not run yet" in lines
    assert "99_summary [summary]: default/03_invert re-runs first" in lines and "index.html: a page it links re-renders" in lines
    assert not any(line.startswith(("01_train", "04_failure_analysis")) for line in lines), lines
    shutil.rmtree(clone)


def test_help_says_a_dry_run_writes_nothing():
    assert "run nothing (writes nothing of the study's" in " ".join(_run_all("--help").stdout.split())


@pytest.mark.slow
def test_a_killed_run_leaves_every_result_and_a_second_run_all_is_refused_before_it_moves_anything(tmp_path):
    clone = _clone(tmp_path)
    env = {**os.environ, "PYTHONPATH": CODE}
    first = subprocess.Popen(["./run_all.sh", "--force", "02"], cwd=clone, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        said = [first.stdout.readline() for _ in range(6)]
        assert any("02_evaluate [default]: forced (--force)" in line for line in said), said
        log = clone / "reports" / ".logs" / "default" / "02_evaluate.log"
        for _ in range(120):  # until the engine has started 02 (deleting its receipt) and papermill runs it
            if log.is_file():
                break
            time.sleep(1)
        time.sleep(8)
        second = _run_all("--fresh", cwd=clone, env=env)
        assert second.returncode == 2 and "another ./run_all.sh is running" in second.stderr, second.stderr
        assert (clone / "reports" / "default" / "checkpoints" / "model_90.pt").is_file()  # --fresh moved nothing
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=60)
        time.sleep(5)
        with contextlib.suppress(ProcessLookupError):  # Snakemake may outlive a TERM: nothing of this run is left
            os.killpg(first.pid, signal.SIGKILL)
    time.sleep(2)
    assert _status(clone) == "", _status(clone)  # killed mid-notebook: every committed result in place
    again = _run_all("--dry-run", cwd=clone, env=env)
    assert _said(again) == [NOTHING], again.stdout + again.stderr
    shutil.rmtree(clone)


@pytest.mark.slow  # Snakemake reads the family's params files
def test_the_workflow_refuses_a_family_that_check_params_would_refuse_in_one_line(tmp_path):
    """--all runs the whole params/ folder, which ./run_all.sh has not checked: the Snakefile says what is wrong in one
    line, as check-params would (here two runs whose rules would be one: ag-r and ag_r)."""
    (tmp_path / "pyproject.toml").write_text("")
    for folder in ("params", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copytree(ROOT / "workflow", tmp_path / "workflow")
    for name in ("ag-r", "ag_r"):
        (tmp_path / "params" / f"{name}.yaml").write_text("base: smoke.yaml\n")
    done = subprocess.run([str(SNAKEMAKE), "--cores", "2", "--dry-run", "all", "--quiet", "rules"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=ACTIVATED)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: ") and "same workflow rules" in lines[0]


def test_the_rules_run_python_from_path_and_another_environments_is_refused_in_one_line(tmp_path):
    done = subprocess.run([str(SNAKEMAKE), "--cores", "1", "--dry-run", "--config", f"receipts={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PATH": "/usr/bin:/bin"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: the rules run `python` from PATH"), lines
    assert "activate the environment first" in lines[0]
    assert "/.venv/" not in (ROOT / "workflow" / "Snakefile").read_text().split("PYTHON = ")[1].splitlines()[0]


def test_a_broken_resources_table_is_refused_in_one_line(tmp_path):
    """workflow/resources.yaml is what a cluster user edits: a missing runtime is one line, before any job."""
    for entry in ROOT.iterdir():
        if entry.name not in ("workflow", "params", ".snakemake", "reports"):
            (tmp_path / entry.name).symlink_to(entry)
    for folder in ("workflow", "params"):  # copied: a params file must lie inside the project it names
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    table = tmp_path / "workflow" / "resources.yaml"
    table.write_text(table.read_text().replace("05_inverse_methods: {mem_mb: 4500, runtime: 40}",
                                               "05_inverse_methods: {mem_mb: 4500}"))
    done = subprocess.run([str(SNAKEMAKE), "-n", "--config", "runs=params/smoke.yaml", f"reports={tmp_path / 'r'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=ACTIVATED)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "error: workflow/resources.yaml: needs positive whole numbers for 05_inverse_methods" in done.stderr
