"""The README's numbers, from the metrics files: its answer is notebook 99's findings
(reports/summary/metrics/99_summary.json) and its family table is the summary's frame, so the prose that quotes
them is regenerated, never retyped, after the reports are re-executed. tests/test_readme.py fails when the
README and the metrics disagree.

    .venv/bin/python tools/readme_numbers.py           # print both sections
    .venv/bin/python tools/readme_numbers.py --write   # write them into README.md between their markers
"""
import json
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from inverse_vae.study import summary  # noqa: E402

README = ROOT / "README.md"
REPORTS = ROOT / "reports"
# README column label: the summary frame's key (and how its numbers are printed)
TABLE = {"test −ELBO (nats)": ("nelbo", "{:.2f}"), "IWAE −log p(x)": ("iwae", "{:.2f}"),
         "encoder BCE/px": ("recon_bce", "{:.4f}"), "closed form, prior samples: float32 to 1e-4": ("cf_f32", "{:.2%}"),
         "float64 to 1e-6": ("cf_f64", "{:.1%}"), "closed form, real: BCE/px": ("cf_real_bce", "{:.3f}"),
         "posterior mode, real: BCE/px": ("map_real_bce", "{:.4f}"), "best method, float64 to 1e-6": ("best_f64", "{:.1%}")}


def answer() -> str:
    path = REPORTS / "summary" / "metrics" / "99_summary.json"
    findings = json.loads(path.read_text(encoding="utf-8"))["findings"] if path.is_file() else []
    return "\n".join(f"- {line}" for line in findings) or "(notebook 99 has not been executed: ./run_all.sh --all)"


def family() -> str:
    frame = summary.family_frame(REPORTS, ROOT / "params", warn=lambda line: None)
    frame = frame[frame["notebooks"] > 0]
    cell = lambda v, fmt: "—" if pd.isna(v) else fmt.format(v)  # noqa: E731
    lines = ["| run | " + " | ".join(TABLE) + " |", "|---" * (len(TABLE) + 1) + "|"]
    for name, row in frame.iterrows():
        values = [cell(row[key], fmt) for key, fmt in TABLE.values()]
        lines.append(f"| [{name}](params/{name}.yaml) | " + " | ".join(values) + " |")
    return "\n".join(lines)


SECTIONS = {"answer": answer, "family": family}


def marked(text: str, name: str) -> re.Match:
    found = re.search(rf"<!-- {name}: tools/readme_numbers.py -->\n(.*?)\n<!-- /{name} -->", text, re.S)
    if found is None:
        raise SystemExit(f"README.md: no <!-- {name}: tools/readme_numbers.py --> ... <!-- /{name} --> markers")
    return found


def main() -> None:
    if "--write" not in sys.argv[1:]:
        for name, render in SECTIONS.items():
            print(f"## {name}\n\n{render()}\n")
        return
    text = README.read_text(encoding="utf-8")
    for name, render in SECTIONS.items():
        found = marked(text, name)
        text = text[:found.start(1)] + render() + text[found.end(1):]
    README.write_text(text, encoding="utf-8")
    print("README.md: answer and family table written from the metrics")


if __name__ == "__main__":
    main()
