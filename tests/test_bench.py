"""The benchmark scripts run end to end on small inputs and print the figures they promise."""
import json
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


@pytest.mark.slow
def test_price_sweep_trains_a_design_and_records_what_the_summary_plots(root, tmp_path):
    out = tmp_path / "sweep.json"
    _run(root, "bench/price_sweep.py", "tiny", "--epochs", "2", "--step", "1", "--train-subset", "2000", "--n-prior",
         "200", "--cond", "4", "--rotate", "--bias", "--weight", "3", "--out", str(out))
    [record] = json.loads(out.read_text())
    assert record["settings"]["cond_max"] == 4.0 and record["settings"]["decoder_bias"]
    assert all(c < 4.0 + 1e-6 for c in record["cond"].values())  # the constraint holds
    assert 0 <= record["f32_success_1e-4"] <= 1 and record["test_nelbo_nats"] > 0
    assert record["real_first_1000"]["ratio_to_encoder"] > 0


@pytest.mark.slow
def test_explore_time_prints_every_choice_the_95th_percentile_and_every_run_switch(root):
    out = _run(root, "bench/explore_time.py", "--n", "1")
    rows = re.findall(r"^(test image|prior sample) +(float32|float64) +(True|False) +[\d.]+s +[\d.]+s +[\d.]+s$", out, re.M)
    assert len(rows) == 8
    lines = out.strip().splitlines()
    assert re.fullmatch(r"updates: 8, 95th percentile [\d.]+ s \(target under 1 s\), slowest [\d.]+ s", lines[-3])
    assert "default " in lines[-2] and re.fullmatch(r"slowest run switch: [\d.]+ s \(target under 3 s\)", lines[-1])


@pytest.mark.slow
def test_plan_time_times_a_fresh_clone_and_a_pull_and_each_says_nothing_to_do(root):
    out = _run(root, "bench/plan_time.py", "--repeats", "1")
    command = r"(inverse-vae plan --all|\./run_all\.sh --dry-run --all)"
    rows = re.findall(rf"^(fresh clone|after a pull) +{command} +[\d.]+ \(", out, re.M)
    assert len(rows) == 4
    assert out.count("1 line(s): Nothing to be done") == 2 and out.count("0 line(s)") == 2


@pytest.mark.slow
def test_posterior_peer_prints_every_solver_on_the_map_objective(root):
    out = _run(root, "bench/posterior_peer.py", "--n", "3", "--max-iter", "50", "--newton-steps", "20")
    rows = re.findall(r"^(newton_tr float64|newton_tr float32|gauss_newton_tr \(diag\.\)|scipy L-BFGS-B) +([\d.]+) +(\d+)%",
                      out, re.M)
    assert [r[0] for r in rows] == ["newton_tr float64", "newton_tr float32", "gauss_newton_tr (diag.)", "scipy L-BFGS-B"]
    assert all(float(r[1]) > 0 for r in rows)


@pytest.mark.slow
def test_arithmetic_retrains_the_smoke_model_on_the_pinned_path_to_the_goldens_bit_for_bit(root):
    out = _run(root, "bench/arithmetic.py", "--params", "params/smoke.yaml", "--against", "tests/goldens/metrics",
               "--paths", "pinned", "--notebooks", "01")
    assert re.search(r"^metrics differing from tests/goldens/metrics +0$", out, re.M), out
    assert re.search(r"^01_train seconds +[\d.]+$", out, re.M) and "pins {'ATEN_CPU_CAPABILITY': 'avx2'" in out


def test_the_benches_solver_variants_swap_in_what_they_name(root, monkeypatch):
    # bench/extra_solvers.py: the variants lib/ dropped (issue #36), each the study's solver with one piece swapped
    import scipy.optimize
    import torch
    from decoders import seeded_decoder

    from inverse_vae.inversion.plain import forward_jacobian, plain_layers
    from inverse_vae.inversion.solvers import _newton_terms, optimize

    monkeypatch.syspath_prepend(str(root / "bench"))
    from extra_solvers import gauss_newton, run_with, scipy_trf

    decoder = seeded_decoder([4, 16, 30], scale=2.0, seed=6)
    layers, _, _ = plain_layers(decoder, torch.float64)
    gen = torch.Generator().manual_seed(4)
    z, x = torch.randn(3, 4, generator=gen, dtype=torch.float64), torch.rand(3, 30, generator=gen, dtype=torch.float64)
    _, jac_t = forward_jacobian(layers, z)
    matrix = jac_t @ jac_t.mT + 0.3 * torch.eye(4, dtype=torch.float64)  # J^T J + the prior's
    assert torch.allclose(run_with(gauss_newton, _newton_terms, layers, z, x, 0.3, 2)[1], matrix, atol=1e-12)
    assert not torch.allclose(_newton_terms(layers, z, x, 0.3, 2)[1], matrix, atol=1e-6)  # outside: exact again

    methods, least_squares = [], scipy.optimize.least_squares
    monkeypatch.setattr(scipy.optimize, "least_squares", lambda *a, **k: methods.append(k["method"]) or least_squares(*a, **k))
    run_with(scipy_trf, optimize, decoder, x[:2], method="scipy_lm", init=z[:2], steps=5)
    optimize(decoder, x[:1], method="scipy_lm", init=z[:1], steps=5)
    assert methods == ["trf", "trf", "lm"]
