"""The one CPU arithmetic path every notebook runs on, so that any x86-64 CPU with AVX2 (Intel or AMD) makes the
committed numbers bit for bit (docs/arithmetic.md).

Three dispatchers pick a CPU's arithmetic at their first use, from the environment: PyTorch's vectorized kernels
(ATEN_CPU_CAPABILITY), MKL's code branch (MKL_CBWR, Conditional Numerical Reproducibility) and oneDNN's ISA
(ONEDNN_MAX_CPU_ISA); the thread count splits torch's reductions. `pin()` runs when inverse_vae is imported,
before any computation (the dispatchers read the environment lazily, so `import torch` before it is fine; a tensor
computed before it is not). A pin set otherwise in the environment is respected (.ci/run's portable pass does
that on purpose), said in one line, and recorded: every metrics file carries `record()`, and `inverse-vae stale`
lists what was made off the path.
"""
from __future__ import annotations

import os
import platform
import re
import sys

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
THREADS = 2  # torch's intra-op threads: the committed numbers' (a reduction's partial sums follow the threads)
# Not a pin (no bit depends on it): OpenMP threads that sleep at a barrier instead of spinning, so two threads on
# a CPU shared with other work do not collapse (a training step 3.6x faster under contention, bench/RESULTS.md).
WAITING = {"OMP_WAIT_POLICY": "PASSIVE"}
# Keys of a metrics file that say how long it took and where, not what it found: left out of every comparison.
TIMINGS = frozenset({"seconds", "seconds_per_epoch", "samples_per_second", "images_per_second", "wall_seconds",
                     "speedup_vs_adam10", "total_seconds", "arithmetic"})
_OFF_PATH_NOTE = "INVERSE_VAE_QUIET_ARITHMETIC"  # set: no line said when off the path (the portable pass)


def pin(threads: int = THREADS) -> None:
    """Set the pins where the environment does not already say otherwise, and torch's thread count."""
    for name, value in {**PINS, **WAITING}.items():  # WAITING takes effect where torch is not imported yet
        os.environ.setdefault(name, value)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if "torch" in sys.modules:  # imported first: its OpenMP has read the environment already
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    off = _departures()
    if off and not os.environ.get(_OFF_PATH_NOTE):
        print(f"note: off the pinned arithmetic path ({', '.join(off)}): numbers may differ from the committed ones "
              f"in their last digits (docs/arithmetic.md)", file=sys.stderr)


def _departures() -> list[str]:
    """How the environment leaves the pinned path, e.g. ['ATEN_CPU_CAPABILITY=default', 'threads=1']; [] on it."""
    off = [f"{name}={os.environ.get(name, '')}" for name, value in PINS.items()
           if os.environ.get(name, "").upper() != value.upper()]
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads != str(THREADS):
        off.append(f"threads={threads or 'unset'}")
    return off


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return platform.processor() or platform.machine()


def record() -> dict:
    """The arithmetic this process computes with, as a metrics file records it."""
    import torch

    mkl = re.search(r"Math Kernel Library Version (\S+)", torch.__config__.show())
    isa = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    off = [d for d in _departures() if not d.startswith("threads=")] + ([] if threads == THREADS else [f"threads={threads}"])
    if isa != PINS["ATEN_CPU_CAPABILITY"].upper():  # no AVX2 here, or a tensor computed before pin()
        off.append(f"isa={isa}")
    return {"pinned": not off, "off_path": off, "cpu": cpu_model(), "machine": platform.machine(), "isa": isa,
            "pins": {name: os.environ.get(name) for name in PINS}, "threads": threads, "torch": torch.__version__,
            "mkl": mkl.group(1) if mkl else None}


def made_pinned(metrics: dict) -> bool:
    """Whether a metrics file's content says it was made on the pinned path (its `arithmetic` record)."""
    made = metrics.get("arithmetic") if isinstance(metrics, dict) else None
    return isinstance(made, dict) and made.get("pinned") is True
