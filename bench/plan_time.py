"""How long deciding what is up to date takes: a fresh clone, and a clone after a pull, in seconds.

    .venv/bin/python bench/plan_time.py [--repeats 3]

Each case is a `git clone` of this project's HEAD into a temporary folder (the `.venv` and `data` linked, as a
reader's own would be), then, timed:
- `inverse-vae plan --all`: reading every executed notebook's record of what it was made from, and comparing it with
  what it would be made from now (params, code, models' weights, metrics files); it writes the receipts;
- `./run_all.sh --dry-run --all`: the same plan, then what it says (one line when nothing is to be done), the way a
  reader asks;
- the same after a pull: the clone is made at HEAD~1 and pulls HEAD (what a reader of an earlier commit does), so
  the plan sees files git has just rewritten.
Run it alone: another job on the same cores slows both.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _clone(folder: Path, pull: bool) -> Path:
    """A clone of HEAD; with `pull`, one made at HEAD~1 that then pulls HEAD."""
    clone = folder / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    if pull:
        subprocess.run(["git", "reset", "--quiet", "--hard", "HEAD~1"], cwd=clone, check=True)
        subprocess.run(["git", "pull", "--quiet", "--ff-only"], cwd=clone, check=True, capture_output=True)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    (clone / "data").symlink_to(ROOT / "data")
    return clone


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(cwd / "lib")})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed in {cwd}: {done.stderr.strip()[-500:]}")
    said = [line for line in done.stdout.splitlines() if line and not line.startswith("note:")]
    return seconds, f"{len(said)} line(s): {said[0][:60] if said else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for case, pull in (("fresh clone", False), ("after a pull", True)):
        for what, command in (("inverse-vae plan --all", [".venv/bin/python", "-m", "workflow", "plan", "--all"]),
                              ("./run_all.sh --dry-run --all", ["./run_all.sh", "--dry-run", "--all"])):
            seconds, said = [], ""
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as folder:
                    spent, said = _timed(command, _clone(Path(folder), pull))
                    seconds.append(spent)
            rows.append((case, what, statistics.median(seconds), min(seconds), said))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").is_file() else platform.machine()
    print(f"CPU: {cpu}, {os.cpu_count()} cores; median (min) of {args.repeats}")
    print(f"{'case':<14} {'command':<30} {'seconds':>16}  says")
    for case, what, median, least, said in rows:
        print(f"{case:<14} {what:<30} {median:>8.1f} ({least:>5.1f})  {said}")


if __name__ == "__main__":
    main()
