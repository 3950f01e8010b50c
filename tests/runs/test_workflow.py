"""The workflow engine (Snakemake) over the study: what re-runs when params change, the one command's
forms, the cluster profiles, a failing notebook, and a fresh clone that plans no work."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from inverse_vae.constants import NOTEBOOKS
from inverse_vae.core.config import load_config
from inverse_vae.runs import workflow

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"


def _depends(config) -> dict[str, str]:
    return {nb: workflow.depends_on(config, nb, ROOT) for nb in NOTEBOOKS}


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
    digest = workflow.code_digest(ROOT / "notebooks" / "03_invert.ipynb")
    next(c for c in notebook.cells if c.cell_type == "markdown").source += "\nOne more sentence."
    nbformat.write(notebook, tmp_path / "prose.ipynb")
    next(c for c in notebook.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])).source += "\n1"
    nbformat.write(notebook, tmp_path / "code.ipynb")
    assert workflow.code_digest(tmp_path / "prose.ipynb") == digest != workflow.code_digest(tmp_path / "code.ipynb")


def test_the_default_runs_04_waits_for_the_squeezed_model_and_no_rule_owns_a_checkpoint():
    config = load_config(ROOT / "params" / "default.yaml")
    needs = workflow.inputs(config, ROOT / "params" / "default.yaml", "04_failure_analysis", "reports", ROOT)
    assert "reports/squeezed/metrics/01_train.json" in needs and "reports/default/metrics/01_train.json" in needs
    assert workflow.inputs(config, ROOT / "params" / "default.yaml", "01_train", "reports", ROOT) == []
    # Snakemake deletes a rule's outputs before it runs again: a final checkpoint must not be one of them
    assert not any(p.endswith(".pt") for p in workflow.outputs(config, "default", "01_train", "reports").values())


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
    done = subprocess.run([str(SNAKEMAKE), "--profile", "profiles/slurm", "--dry-run", "all", "--quiet", "rules"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    jobs = done.stdout + done.stderr
    assert all(f"05_inverse_methods__{p.stem}" in jobs or "Nothing to be done" in jobs
               for p in (ROOT / "params").glob("*.yaml") if p.stem != "smoke")


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
                           f"reports={reports}", "threads=1", "--", str(reports / "smoke" / "metrics" / "02_evaluate.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    evaluation = json.loads((reports / "smoke" / "metrics" / "02_evaluate.json").read_text())
    assert 0.1 < evaluation["probe_accuracy"] <= 1 and (reports / "smoke" / "checkpoints" / "model_4.pt").is_file()


@pytest.mark.slow
def test_a_failing_notebook_keeps_its_error_and_nothing_counts_as_done(tmp_path):
    params = _smoke_variant(tmp_path, data={"train_subset": 2000, "test_subset": 100})
    reports, name = tmp_path / "reports", params.stem
    try:
        command = [str(SNAKEMAKE), "--cores", "2", "--keep-incomplete", "--rerun-triggers", "params", "input", "code",
                   "--config", f"runs=params/{params.name}", f"reports={reports}", "threads=1", "--"]
        trained = subprocess.run(command + [str(reports / name / "metrics" / "01_train.json")], cwd=ROOT,
                                 capture_output=True, text=True, timeout=1200)
        assert trained.returncode == 0, trained.stderr[-2000:]
        # 02 fails for a reason of its own: the checkpoint it loads is no longer one (no rule owns a checkpoint)
        for checkpoint in (reports / name).rglob("*.pt"):
            checkpoint.write_bytes(b"not a checkpoint")
        target = str(reports / name / "metrics" / "02_evaluate.json")
        failed = subprocess.run(command + [target], cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert failed.returncode != 0
        executed = nbformat.read(reports / name / "02_evaluate.ipynb", as_version=4)
        assert any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))
        assert not Path(target).exists() and (reports / name / "metrics" / "01_train.json").is_file()
        again = subprocess.run(command[:1] + ["--dry-run"] + command[1:] + [target], cwd=ROOT, capture_output=True,
                               text=True, timeout=600)
        assert "02_evaluate__" in again.stdout + again.stderr and "01_train__" not in again.stdout
    finally:
        params.unlink()


@pytest.mark.slow
def test_a_fresh_clone_plans_no_work_and_an_edited_params_file_replans_what_it_affects(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=600)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    (clone / "data").symlink_to(ROOT / "data")
    env = {"PYTHONPATH": str(clone / "lib")}
    planned = _run_all("--dry-run", "--all", cwd=clone, env=env, timeout=1200)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "Nothing to be done" in planned.stdout + planned.stderr
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout == ""
    latent = clone / "params" / "latent16.yaml"
    latent.write_text(latent.read_text() + "methods:\n  realizable_n: 300\n")
    (clone / "params" / "extra.yaml").write_text("base: default.yaml\nseed: 5\n")  # a run added
    replanned = _run_all("--dry-run", "--all", cwd=clone, env=env, timeout=1200).stdout
    assert "05_inverse_methods__latent16" in replanned and "04_failure_analysis__latent16" not in replanned
    # Every page's navigation lists the runs that have its notebook: the other runs' pages re-render too.
    per_run = len(list((clone / "reports").glob("*/0[1-5]_*.ipynb")))
    assert re.search(rf"^page\s+{per_run + 5 + 2}$", replanned, re.M), replanned  # + the new run's, 98's, 99's
    shutil.rmtree(clone)


NOTHING = "Nothing to be done (all requested files are present and up to date)."


def _said(done) -> list[str]:
    """What a call of ./run_all.sh said, notes aside."""
    return [line for line in (done.stdout + done.stderr).splitlines() if line and not line.startswith("note:")]


def test_help_says_that_the_first_call_a_dry_run_too_records_the_committed_reports():
    assert "the first call, a dry run too, records the committed reports as up to date in .snakemake/" in \
        " ".join(_run_all("--help").stdout.split())


@pytest.mark.slow
def test_a_fresh_clone_dry_runs_with_one_engine_call_and_a_run_with_nothing_to_do_says_one_line(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=600)
    shutil.copy(ROOT / "run_all.sh", clone / "run_all.sh")  # the script as it is here, committed or not
    (clone / ".venv").symlink_to(ROOT / ".venv")
    (clone / "data").symlink_to(ROOT / "data")
    env = {"PYTHONPATH": str(ROOT / "lib")}
    first = _run_all("--dry-run", cwd=clone, env=env)
    assert first.returncode == 0 and _said(first) == [
        "first run in this checkout: recording the committed reports as up to date in .snakemake/ (snakemake --touch)",
        NOTHING], first.stdout + first.stderr
    for args in (["--dry-run"], []):  # recorded: Snakemake plans, and says one line, not its banner
        again = _run_all(*args, cwd=clone, env=env)
        assert again.returncode == 0 and _said(again) == [NOTHING], again.stdout + again.stderr
    changed = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!run_all.sh"], cwd=clone,
                             capture_output=True, text=True).stdout
    assert changed == ""
    shutil.rmtree(clone)


def test_a_report_executed_from_other_code_or_holding_an_error_is_stale(tmp_path):
    (tmp_path / "notebooks").mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# 03"), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(notebook, tmp_path / "notebooks" / "03_invert.ipynb")
    for run, code, error in (("same", "x = 1", False), ("edited", "x = 2", False), ("failed", "x = 1", True)):
        executed = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell(code)
        if error:
            cell.outputs = [nbformat.v4.new_output("error", ename="E", evalue="e", traceback=[])]
        injected = nbformat.v4.new_code_cell('params_file = "x"', metadata={"tags": ["injected-parameters"]})
        executed.cells = [nbformat.v4.new_markdown_cell("# 03, reworded"), injected, cell]
        (tmp_path / "reports" / run).mkdir(parents=True)
        nbformat.write(executed, tmp_path / "reports" / run / "03_invert.ipynb")
    assert workflow.stale(tmp_path) == ["03_invert__edited", "03_invert__failed"]
    assert workflow.stale(tmp_path, runs="params/same.yaml,params/failed.yaml") == ["03_invert__failed"]


@pytest.mark.parametrize("content", [b'{"cells": [{"cell_type": "code", "sou', b"", b"\xff\xfe{not utf-8}", b"[]"])
def test_an_unreadable_executed_notebook_is_one_line_not_a_traceback(tmp_path, capsys, content):
    from inverse_vae.__main__ import main

    executed = tmp_path / "reports" / "default" / "03_invert.ipynb"  # notebooks/03_invert.ipynb is the project's
    executed.parent.mkdir(parents=True)
    executed.write_bytes(content)
    assert main(["stale", "--reports-root", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {executed}: not a readable executed notebook"), err
    assert "delete it (its rule then runs again)" in err and executed.read_bytes() == content


@pytest.mark.slow  # Snakemake reads the family's params files
def test_the_workflow_refuses_a_family_that_check_params_would_refuse_in_one_line(tmp_path):
    """--all runs the whole params/ folder, which ./run_all.sh has not checked: the Snakefile says what is wrong in one
    line, as check-params would (here two runs whose rules would be one: ag-r and ag_r)."""
    (tmp_path / "pyproject.toml").write_text("")
    for folder in ("params", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    for name in ("ag-r", "ag_r"):
        (tmp_path / "params" / f"{name}.yaml").write_text("base: smoke.yaml\n")
    done = subprocess.run([str(SNAKEMAKE), "--cores", "2", "--dry-run", "all", "--quiet", "rules"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: ") and "same workflow rules" in lines[0]
