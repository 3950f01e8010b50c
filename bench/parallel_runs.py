"""Independent runs side by side: the workflow engine with --cores 2 against one run after the other.

    .venv/bin/python bench/parallel_runs.py [params/smoke.yaml tests/params/smoke_leaky.yaml]

Executes the runs' notebooks 01-03 from nothing into temporary report folders twice: once with one core
(each notebook in turn), once with two (one torch thread per notebook, so two notebooks run at once),
and prints both wall-clock times and their ratio. Run it alone: another job on the cores slows both.
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(params: list[str], cores: int) -> float:
    with tempfile.TemporaryDirectory() as reports:
        targets = [f"{reports}/{Path(p).stem}/metrics/03_invert.json" for p in params]
        command = [str(ROOT / ".venv" / "bin" / "snakemake"), "--cores", str(cores), "--quiet", "all", "--config",
                   f"runs={','.join(params)}", f"reports={reports}", "threads=1", "--", *targets]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    params = sys.argv[1:] or ["params/smoke.yaml", "tests/params/smoke_leaky.yaml"]
    one = timed(params, 1)
    two = timed(params, 2)
    print(f"{len(params)} runs, notebooks 01-03, one torch thread per notebook")
    print(f"one after the other (--cores 1): {one:7.1f} s")
    print(f"side by side       (--cores 2): {two:7.1f} s")
    print(f"ratio side by side / one after the other: {two / one:.2f}")


if __name__ == "__main__":
    main()
