"""Print the README's numbers from the metrics files, so that the prose quoting them can be regenerated after
the reports are re-executed (every number in the README's answer and table is one of these).

    .venv/bin/python tools/readme_numbers.py
"""
import json
from pathlib import Path

import pandas as pd

from inverse_vae.study import summary

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"


def metrics(run: str, notebook: str) -> dict:
    path = REPORTS / run / "metrics" / f"{notebook}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def seconds(run: str) -> str:
    """papermill's record of 01 and of 02-05 together, from the executed notebooks."""
    def duration(name):
        path = REPORTS / run / f"{name}.ipynb"
        return json.loads(path.read_text())["metadata"].get("papermill", {}).get("duration") if path.is_file() else None
    first = duration("01_train")
    rest = [duration(n) for n in ("02_evaluate", "03_invert", "04_failure_analysis", "05_inverse_methods")]
    return f"{first or 0:.0f} s + {sum(r or 0 for r in rest):.0f} s"


def main() -> None:
    frame = summary.family_frame(REPORTS, ROOT / "params")
    pd.set_option("display.width", 250)
    print(frame.drop(columns=["design"]).round(4).to_string())
    print()
    for run in frame.index:
        m02, m03, m05 = metrics(run, "02_evaluate"), metrics(run, "03_invert"), metrics(run, "05_inverse_methods")
        post = m05.get("posterior", {})
        methods = m05.get("methods", {})
        real = {k: (v.get("real") or {}) for k, v in methods.items()}
        print(run, "| times", seconds(run), "| iwae", m02.get("iwae", {}).get("nats"), m02.get("iwae", {}).get("stderr"),
              "| nelbo", m02.get("nelbo_nats"), "| posterior", json.dumps(post)[:300])
        for name in ("encoder", "map_encoder_newton", "hybrid_encoder_newton_tr", "hybrid_encoder_newton_tr_prior",
                     "svi_encoder", "closed_form"):
            r = real.get(name)
            if r:
                print(f"    {name:32s} bce {r.get('bce', float('nan')):.4f} probe {r['probe_accuracy']:.3f} "
                      f"||z|| {r.get('z_norm_median', float('nan')):.3g} log_joint {r.get('log_joint', float('nan')):.2f} "
                      f"n {r['n']} s {r['seconds']:.1f}")
    print()
    print(summary.seeds(frame).round(4).to_string())


if __name__ == "__main__":
    main()
