"""The benchmark scripts run end to end on small inputs and print the figures they promise."""
import re
import subprocess
import sys

import pytest


def _run(root, *args):
    done = subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_train_speed_prints_both_loops_and_the_ratio_last(root):
    out = _run(root, "bench/train_speed.py", "--epochs", "2", "--repeats", "1", "--params", "params/smoke.yaml",
               "--workers", "0")
    assert re.search(r"^original-style +[\d.]+ s/epoch", out, re.M)
    assert re.search(r"^project +[\d.]+ s/epoch .*whole 2-epoch run [\d.]+ s", out, re.M)
    ratio = re.fullmatch(r"ratio project/original-style: ([\d.]+)", out.strip().splitlines()[-1])
    assert ratio and float(ratio.group(1)) > 0


@pytest.mark.slow
def test_invert_speed_prints_rate_memory_and_the_products_floor(root):
    # the default run's committed checkpoint, on 200 test images
    out = _run(root, "bench/invert_speed.py", "--methods", "closed_form,encoder", "--n", "200", "--repeats", "2")
    rows = {m.group(1): m for m in re.finditer(r"^(closed_form|encoder) +([\d.]+) +([\d.]+) +([\d.]+) +([\d,]+) +(\d+)",
                                               out, re.M)}
    assert set(rows) == {"closed_form", "encoder"}
    assert all(int(r.group(6)) > 0 for r in rows.values())  # peak MB
    assert re.search(r"^closed_form: its matrix products alone \([\d.]+ GFLOP\) take [\d.]+ s", out, re.M)
