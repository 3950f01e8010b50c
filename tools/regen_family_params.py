"""Regenerate the family's params files from params/default.yaml, keeping each file's header.

    .venv/bin/python tools/regen_family_params.py

Each run is the default config with the one change its header describes (tests/test_family_params.py
pins those differences); run this after changing default.yaml, then review the diff.
"""
import re
from pathlib import Path
P = Path(__file__).resolve().parents[1] / "params"
default = (P / "default.yaml").read_text()
lines = default.splitlines(keepends=True)
assert lines[0].startswith("# The original study's config.yaml") and lines[1].startswith("# project's run folders")
body = "".join(lines[2:])

def header(name):
    text = (P / f"{name}.yaml").read_text().splitlines(keepends=True)
    return "".join(l for l in text[:next(i for i, l in enumerate(text) if not l.startswith("#"))])

def sub(text, old, new, count):
    assert text.count(old) == count, (old, text.count(old))
    return text.replace(old, new)

out = {}
for s in (1, 2):
    out[f"default_seed{s}"] = sub(body, "\nseed: 0\n", f"\nseed: {s}\n", 1)
out["latent16"] = sub(sub(body, "args: [256, 32]", "args: [256, 16]", 2), "args: [32, 256]", "args: [16, 256]", 1)
dec = body.index("    decoder:\n")
out["leaky"] = body[:dec] + sub(body[dec:dec + 400], "- Tanh:", "- LeakyReLU:", 2) + body[dec + 400:]
out["squeezed"] = sub(body, "  plot_epochs: 10\n", "  plot_epochs: 10\n  target_range: [0.1, 0.9]\n", 1)
# The squeezed run is the default's variant: only default.yaml compares it (04's squeezed row).
COMPANION = [l for l in body.splitlines(keepends=True) if l.startswith("  squeezed_params:")]
assert len(COMPANION) == 1, COMPANION
out = {name: sub(text, COMPANION[0], "  squeezed_params: null  # the squeezed-targets model is the default's variant\n", 1)
       for name, text in out.items()}
for name, text in out.items():
    (P / f"{name}.yaml").write_text(header(name) + text)
det = (P / "deterministic.yaml").read_text()
study = default[default.index("# Added by this study"):]
study = sub(study, COMPANION[0], "  squeezed_params: null  # the squeezed-targets model is the default's variant\n", 1)
(P / "deterministic.yaml").write_text(det[:det.index("# Added by this study")] + study)
print("ok")
