"""The pinned arithmetic's proof and price: a run re-made from nothing on the pinned path and on this CPU's native
one, each against the committed numbers, side by side (docs/arithmetic.md).

    .venv/bin/python bench/arithmetic.py                                  # the default run against reports/default
    .venv/bin/python bench/arithmetic.py --params params/smoke.yaml --against tests/goldens/metrics
    .venv/bin/python bench/arithmetic.py --paths pinned --notebooks 01,03 # the proof alone, some notebooks

For each path it executes the notebooks into reports/scratch/arithmetic/<path>/ (01 trains from nothing; without
01 the committed model is evaluated), then prints whether the trained weights equal the committed checkpoint's
bit for bit (when there is one), how many non-timing metrics differ from the committed ones (tools/metrics_diff.py),
and each notebook's seconds (papermill's record). "native" is what this CPU takes unpinned: its widest torch
kernels, MKL's own branch choice, oneDNN's widest ISA, the same two threads. Run it alone: another job on the same
cores slows the two paths unevenly.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lib"), str(ROOT / "tools")]

from metrics_diff import differences  # noqa: E402

from inverse_vae.arithmetic import PINS, THREADS, cpu_model  # noqa: E402
from inverse_vae.constants import NOTEBOOKS  # noqa: E402
from inverse_vae.core.checkpoints import load_checkpoint  # noqa: E402
from inverse_vae.runs.run import open_run  # noqa: E402


def native_env() -> dict:
    """The environment of the native path: each dispatcher's own widest choice (values each library documents)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return {"ATEN_CPU_CAPABILITY": "avx512" if " avx512f" in flags else "avx2", "MKL_CBWR": "AUTO",
            "ONEDNN_MAX_CPU_ISA": "ALL"}


def execute(path: str, params: str, notebooks: list[str], committed_model: Path) -> Path:
    """The run's notebooks on `path` into reports/scratch/arithmetic/<path>/<run>/, from nothing."""
    root = Path("reports/scratch/arithmetic") / path
    shutil.rmtree(ROOT / root, ignore_errors=True)
    env = {**os.environ, **(native_env() if path == "native" else PINS), "OMP_NUM_THREADS": str(THREADS),
           "INVERSE_VAE_QUIET_ARITHMETIC": "1"}
    run = open_run(params, root, ROOT, say=lambda *_: None)
    if "01_train" not in notebooks:  # evaluate the committed model
        run.model_file.parent.mkdir(parents=True)
        shutil.copy2(committed_model, run.model_file)
    for notebook in notebooks:
        subprocess.run([sys.executable, "-m", "workflow", "execute", f"notebooks/{notebook}.ipynb", params,
                        "--reports-root", str(root)], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return run.dir


def same_weights(a: Path, b: Path) -> bool:
    left, right = (load_checkpoint(p)["model_state_dict"] for p in (a, b))
    return left.keys() == right.keys() and all(left[k].dtype == right[k].dtype and torch.equal(left[k], right[k])
                                               for k in left)


def seconds(run: Path, notebook: str) -> float:
    return json.loads((run / f"{notebook}.ipynb").read_text())["metadata"]["papermill"]["duration"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--against", help="the committed metrics folder (default: reports/<run>/metrics)")
    parser.add_argument("--paths", default="pinned,native", help="comma-separated: pinned, native")
    parser.add_argument("--notebooks", default="01,02,03,04,05", help="comma-separated notebook numbers")
    args = parser.parse_args(argv)
    notebooks = [n for n in NOTEBOOKS if n[:2] in args.notebooks.split(",")]
    committed = open_run(args.params, "reports", ROOT, say=lambda *_: None)
    against = ROOT / (args.against or committed.metrics)
    paths = args.paths.split(",")
    runs = {path: execute(path, args.params, notebooks, committed.model_file) for path in paths}
    print(f"{committed.name}: {', '.join(notebooks)}; CPU {cpu_model()}; torch {torch.__version__}; {THREADS} threads; "
          f"pins {PINS}")
    row = "{:<40}" + "{:>14}" * len(paths)
    print(row.format("", *paths))
    if "01_train" in notebooks and committed.model_file.is_file():
        print(row.format("weights = committed, bit for bit", *(
            str(same_weights(runs[p] / committed.model_file.relative_to(committed.dir), committed.model_file))
            for p in paths)))
    picked = ROOT / "reports" / "scratch" / "arithmetic" / "committed"  # the committed metrics of these notebooks
    shutil.rmtree(picked, ignore_errors=True)
    picked.mkdir(parents=True)
    for notebook in notebooks:
        shutil.copy2(against / f"{notebook}.json", picked)
    differing = {p: differences(picked, runs[p] / "metrics") for p in paths}
    print(row.format(f"metrics differing from {against.relative_to(ROOT)}", *(len(differing[p]) for p in paths)))
    if len(paths) == 2:
        print(row.format("metrics differing pinned vs native", len(differences(*(runs[p] / "metrics" for p in paths))),
                         ""))
    for notebook in notebooks:
        print(row.format(f"{notebook} seconds", *(f"{seconds(runs[p], notebook):.1f}" for p in paths)))
    total = {p: sum(seconds(runs[p], n) for n in notebooks) for p in paths}
    print(row.format("total seconds", *(f"{total[p]:.1f}" for p in paths)))
    if len(paths) == 2:
        print(f"pinned / native time: {total['pinned'] / total['native']:.2f}x")
    for p in paths:
        for line in differing[p][:5]:
            print(f"  {p}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
