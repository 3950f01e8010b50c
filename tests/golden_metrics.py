"""Compare a smoke run's metrics with the golden ones: exactly on the pinned arithmetic path, else within tolerances.

The goldens are made on the pinned path (lib/inverse_vae/arithmetic.py: AVX2 kernels, MKL's AVX2 branch, two
threads), which any x86-64 CPU with AVX2 takes: there every number but a timing must be equal, bit for bit
(`differences(..., exact=True)`; the metrics' `arithmetic` record says which path made them). Off that path
(.ci/run's portable pass, a CPU without AVX2) the tolerances below hold.

The goldens (tests/goldens/metrics/*.json) are the metrics of the smoke notebooks as
`python -m inverse_vae make-goldens` wrote them on the machine that refreshed them. Another CPU
(another BLAS kernel, vector width, thread count) rounds differently: losses move in their
fourth digit, and a rate measured on n samples moves by a few 1/n when a sample sits next to a
threshold. What must not move is the shape of the result: a changed formula, a wrong sign or a
broken method moves numbers far past these tolerances (tests/notebooks/test_golden_metrics.py shows it).

Each leaf of the JSON is judged by its key (the last name on its path):
* IGNORED (and every key ending in _seconds): timings and the machine's description;
* RATES (shares of samples in [0, 1]): absolute difference at most RATE_TOL;
* COUNTS (integers): at most COUNT_TOL samples apart, or COUNT_REL of the count (a count of
  samples past a threshold moves like a rate);
* `failures` (the attribution's records {layer, type, cause, count}): compared as counts per
  (layer, cause), a cause missing on one side counting 0, so a cause with a sample or two may
  appear on one path and not on the other;
* ERRORS (relative errors, residuals and other quantities that sit at rounding level when a
  method succeeds; differences of two close numbers, `*_gap`; and where a projection's z lies,
  `log_joint` and `z_norm_median`, which for a projection without a prior running towards infinity
  its iteration budget decides): equal within a factor of ERROR_FACTOR, or both below ERROR_FLOOR;
* every other number: relative difference at most REL_TOL (or both below ABS_FLOOR);
* strings, booleans and None: equal. Keys must match on both sides.
"""
from __future__ import annotations

import math
import re

from inverse_vae.arithmetic import TIMINGS, made_pinned

IGNORED = TIMINGS | {"iterations", "torch", "cpu_threads", "machine", "device", "cuda_graph", "checkpoint"}
RATES = re.compile(r"^(success_.*|realizable_success_.*|.*probe_accuracy|share.*|units|samples_with_any|zero|one"
                   r"|realizable_.*_success_.*|within_.*)$")
COUNTS = re.compile(r"^(n|n_.*|nonfinite.*|.*_nonfinite|count|epochs|latent_dim)$")
ERRORS = re.compile(r"^(rel_err_.*|realizable_rel_err_median|realizable_.*_rel_err_median|rel_dist_.*|dist_median|"
                    r"gap_to_best|.*_gap|.*residual.*|smallest_sv_.*|condition_.*|median|p99|max|log_joint|"
                    r"z_norm_median)$")

# Where a projection without a prior ends when it runs towards infinity (tanh saturating): how far its iteration
# budget took it on that path, not a number any other path reproduces. Past DIVERGED both say "far outside the prior".
DIVERGED = {"log_joint": 1e4, "z_norm_median": 1e2}

RATE_TOL = 0.08
COUNT_TOL, COUNT_REL = 3, 0.25
ERROR_FACTOR, ERROR_FLOOR = 10.0, 1e-5
REL_TOL, ABS_FLOOR = 0.02, 1e-9


def _number(value):
    """JSON numbers, and the strings the study writes for non-finite floats."""
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _leaf_problem(key: str, golden, fresh) -> str | None:
    golden, fresh = _number(golden), _number(fresh)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (golden, fresh))
    if not numeric:
        return None if golden == fresh else f"{fresh!r} != golden {golden!r}"
    if math.isnan(golden) or math.isnan(fresh) or math.isinf(golden) or math.isinf(fresh):
        same = (math.isnan(golden) and math.isnan(fresh)) or golden == fresh
        return None if same else f"{fresh!r} != golden {golden!r}"
    diff = abs(fresh - golden)
    if RATES.match(key):
        return None if diff <= RATE_TOL else f"{fresh:.4g} vs golden {golden:.4g}: more than {RATE_TOL} apart"
    if COUNTS.match(key) and float(golden).is_integer():
        allowed = max(COUNT_TOL, COUNT_REL * abs(golden))
        return None if diff <= allowed else f"{fresh} vs golden {golden}: more than {allowed:g} apart"
    if key in DIVERGED and min(golden, fresh) > DIVERGED[key]:  # both far outside the prior: where is the budget's
        return None
    if ERRORS.match(key):
        small = abs(golden) <= ERROR_FLOOR and abs(fresh) <= ERROR_FLOOR
        ratio = max(abs(golden), abs(fresh)) / max(min(abs(golden), abs(fresh)), 1e-300)
        return None if small or ratio <= ERROR_FACTOR else f"{fresh:.4g} vs golden {golden:.4g}: over x{ERROR_FACTOR:g}"
    if diff <= ABS_FLOOR or diff <= REL_TOL * max(abs(golden), abs(fresh)):
        return None
    return f"{fresh:.6g} vs golden {golden:.6g}: relative difference {diff / max(abs(golden), abs(fresh)):.3g} > {REL_TOL}"


def _by_cause(records: list) -> dict:
    return {f"{r['layer']}:{r['type']}:{r['cause']}": r["count"] for r in records}


pinned = made_pinned  # whether a metrics file says it was made on the pinned arithmetic path


def _exact_problem(golden, fresh) -> str | None:
    same = golden == fresh or (isinstance(golden, float) and isinstance(fresh, float) and golden != golden and fresh != fresh)
    return None if same and type(golden) is type(fresh) else f"{fresh!r} != golden {golden!r} (exact: pinned path)"


def differences(golden, fresh, path: str = "", exact: bool = False) -> list[str]:
    """Every leaf where `fresh` differs from `golden` (exact) or leaves its tolerance, as 'path: why' lines."""
    key = path.rsplit("/", 1)[-1]
    if key in IGNORED or key.endswith("_seconds"):  # every timing
        return []
    if exact and not isinstance(golden, (dict, list)):
        problem = _exact_problem(golden, fresh)
        return [f"{path}: {problem}"] if problem else []
    if key == "failures" and isinstance(golden, list) and isinstance(fresh, list):
        golden, fresh = _by_cause(golden), _by_cause(fresh)
        causes = set(golden) | set(fresh)
        return [line for c in sorted(causes)
                for line in differences(golden.get(c, 0), fresh.get(c, 0), f"{path}/{c}/count", exact)]
    if isinstance(golden, dict) and isinstance(fresh, dict):
        if set(golden) != set(fresh):
            return [f"{path or '/'}: keys differ: only golden {sorted(set(golden) - set(fresh))}, "
                    f"only fresh {sorted(set(fresh) - set(golden))}"]
        return [line for k in golden for line in differences(golden[k], fresh[k], f"{path}/{k}", exact)]
    if isinstance(golden, list) and isinstance(fresh, list):
        if len(golden) != len(fresh):
            return [f"{path}: {len(fresh)} items, golden {len(golden)}"]
        # A list item takes its key from the list: the records of a sweep are judged by their fields.
        return [line for i, (g, f) in enumerate(zip(golden, fresh)) for line in differences(g, f, f"{path}[{i}]", exact)]
    key = re.sub(r"\[\d+\]$", "", key)
    problem = _leaf_problem(key, golden, fresh)
    return [f"{path}: {problem}"] if problem else []
