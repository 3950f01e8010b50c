"""Every number two sets of metrics files disagree on, bit for bit, timings and the arithmetic record aside.

    .venv/bin/python tools/metrics_diff.py reports/default/metrics /tmp/again/default/metrics

Prints one line per differing leaf (file, JSON path, both values) and exits 1 when any differs, 0 when every
file and every non-timing number is the same. What a change that should move no number is checked with.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from inverse_vae.arithmetic import TIMINGS  # noqa: E402


def leaves(value, path: str = ""):
    """(path, value) of every leaf, timings left out."""
    key = path.rsplit("/", 1)[-1]
    if key in TIMINGS or key.endswith("_seconds"):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def differences(a: Path, b: Path) -> list[str]:
    """Lines naming what differs between the *.json files of folders a and b (a file on one side only too)."""
    lines = []
    for name in sorted({p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")}):
        if not (a / name).is_file() or not (b / name).is_file():
            lines.append(f"{name}: only in {a if (a / name).is_file() else b}")
            continue
        left = dict(leaves(json.loads((a / name).read_text())))
        right = dict(leaves(json.loads((b / name).read_text())))
        for path in sorted(set(left) | set(right)):
            x, y = left.get(path, "<missing>"), right.get(path, "<missing>")
            if json.dumps(x) != json.dumps(y):  # NaN equals NaN; 1 and 1.0 differ
                lines.append(f"{name}{path}: {x!r} != {y!r}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    lines = differences(Path(argv[0]), Path(argv[1]))
    print("\n".join(lines) if lines else f"identical, timings aside: {argv[0]} and {argv[1]}")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
