"""How long the study takes: each notebook of each run, and the whole, in one table.

    .venv/bin/python bench/study_time.py                       # read reports/default's executed notebooks
    .venv/bin/python bench/study_time.py params/a.yaml ...     # those runs' executed notebooks
    .venv/bin/python bench/study_time.py --run --fresh         # execute the default study from nothing, then time it

The seconds are papermill's own record of each executed notebook (its metadata `duration`: the
kernel's start, every cell, and training in 01 when it trains), so the table for a committed run
is the time that produced it. The device is the one each notebook computed on, as its metrics
file records it. `--run` executes the notebooks first (./run_all.sh, the workflow engine;
`--fresh` first moves the run's earlier outputs aside, so 01 trains from nothing) and adds a
wall-clock line for the whole call. Run it alone: another job on the same cores slows both.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from inverse_vae.core.config import run_name  # noqa: E402


def notebook_seconds(path: Path) -> float | None:
    """papermill's recorded duration of an executed notebook (None when it has none)."""
    meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
    duration = meta.get("duration")
    return float(duration) if duration is not None else None


def notebook_device(run_dir: Path, stem: str) -> str:
    """The device a notebook computed on, from its metrics file ('?' when it does not say)."""
    metrics = run_dir / "metrics" / f"{stem}.json"
    if not metrics.is_file():
        return "?"
    return str(json.loads(metrics.read_text(encoding="utf-8")).get("device", "?"))


def table(run_dirs: list[Path]) -> list[dict]:
    rows = []
    for run_dir in run_dirs:
        for nb in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
            rows.append({"notebook": nb.stem, "run": run_dir.name, "device": notebook_device(run_dir, nb.stem),
                         "seconds": notebook_seconds(nb)})
    return rows


def render(rows: list[dict], wall: float | None = None) -> str:
    lines = [f"{'notebook':<22} {'run':<16} {'device':<8} {'seconds':>9}"]
    total = 0.0
    for r in rows:
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:9.1f}"
        total += r["seconds"] or 0.0
        lines.append(f"{r['notebook']:<22} {r['run']:<16} {r['device']:<8} {seconds:>9}")
    lines.append(f"{'whole study':<22} {'':<16} {'':<8} {total:9.1f}  ({total / 60:.1f} min)")
    if wall is not None:
        lines.append(f"{'wall clock of --run':<22} {'':<16} {'':<8} {wall:9.1f}  (set-up checks and kernel starts included)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="*", default=["params/default.yaml"])
    parser.add_argument("--reports-root", default="reports")
    parser.add_argument("--run", action="store_true", help="execute the notebooks first")
    parser.add_argument("--fresh", action="store_true", help="with --run: move earlier outputs aside first")
    parser.add_argument("--only", help="with --run: comma-separated notebook numbers to re-run (./run_all.sh --force)")
    args = parser.parse_args(argv)
    if args.fresh and not args.run:
        parser.error("--fresh needs --run")
    wall = None
    if args.run:
        command = ["./run_all.sh", *(["--fresh"] if args.fresh else []), *(["--force", args.only] if args.only else []),
                   *args.params]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True)
        wall = time.perf_counter() - started
    root = Path(args.reports_root) if Path(args.reports_root).is_absolute() else ROOT / args.reports_root
    run_dirs = [root / run_name(p) for p in args.params]
    missing = [str(d) for d in run_dirs if not d.is_dir()]
    if missing:
        print(f"no executed run in {', '.join(missing)}: run the study first (./run_all.sh, or --run)", file=sys.stderr)
        return 2
    print(render(table(run_dirs), wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
