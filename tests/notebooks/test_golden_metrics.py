"""The smoke run's numbers against the golden ones: stable across CPUs, and still catching a real change.

nbval re-executes tests/goldens/*.ipynb in this session (it only checks that every cell runs);
those runs write tests/.nbval_reports/smoke/metrics/, which are compared here with
tests/goldens/metrics/ by golden_metrics.differences. When nbval did not run (a selection of
tests), the fixture executes the smoke notebooks itself.
"""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import execute_notebooks
from golden_metrics import differences, pinned

from inverse_vae.constants import NOTEBOOKS as NAMES
from inverse_vae.core import table
from inverse_vae.inversion import solvers
from inverse_vae.runs.run import open_run

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "goldens" / "metrics"
REPORTS = "tests/.nbval_reports"  # where the goldens' injected parameters send their run
pytestmark = pytest.mark.slow


def _load(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def smoke_run():
    """The smoke run nbval made in this session (tests/goldens run before this file), else one made here."""
    run = open_run("params/smoke.yaml", REPORTS, root=ROOT, say=lambda line: None)
    if not all((run.metrics / f"{name}.json").is_file() for name in NAMES):
        execute_notebooks("params/smoke.yaml", REPORTS)
    return run


@pytest.mark.parametrize("name", NAMES)
def test_the_smoke_metrics_stay_within_tolerance_of_the_goldens(smoke_run, name):
    assert (GOLDEN / f"{name}.json").is_file(), f"no golden metrics for {name}: run `.venv/bin/python tools/make_goldens.py`"
    golden, fresh = _load(GOLDEN, name), _load(smoke_run.metrics, name)
    assert pinned(golden), f"the golden {name}.json was not made on the pinned arithmetic path: remake the goldens"
    exact = pinned(fresh)  # the pinned path reproduces every number; another path moves them within tolerances
    lines = differences(golden, fresh, exact=exact)
    assert not lines, (f"{len(lines)} numbers of {name} " + ("differ from the golden (pinned path: exact)" if exact
                       else "left their tolerance") + ":\n" + "\n".join(lines[:40]))


def test_the_tolerances_absorb_rounding_but_not_a_changed_result():
    golden = {"bce": 0.2547, "success_1e-6": 0.136, "nonfinite": 0, "rel_err_median": 3e-7, "seconds": 1.0,
              "method": "hybrid_layerwise_lm", "curve": [{"eps": 0.1, "real_bce": 1.9}]}
    noisy = {"bce": 0.2549, "success_1e-6": 0.130, "nonfinite": 1, "rel_err_median": 9e-7, "seconds": 80.0,
             "method": "hybrid_layerwise_lm", "curve": [{"eps": 0.1, "real_bce": 1.901}]}
    assert differences(golden, noisy) == []
    for key, wrong in (("bce", 0.27), ("success_1e-6", 0.5), ("nonfinite", 40), ("rel_err_median", 0.3),
                       ("method", "encoder"), ("curve", [{"eps": 0.1, "real_bce": 2.5}]), ("curve", [])):
        changed = differences(golden, {**noisy, key: wrong})
        assert len(changed) == 1 and changed[0].startswith(f"/{key}"), (key, changed)
    assert differences(golden, {k: v for k, v in noisy.items() if k != "bce"})  # a key went missing


def test_on_the_pinned_path_every_number_but_a_timing_must_be_equal():
    golden = {"bce": 0.2547, "n": 40, "seconds": 1.0, "arithmetic": {"pinned": True, "cpu": "A"},
              "curve": [{"eps": 0.1, "real_bce": 1.9}], "nan": float("nan")}
    same = {**golden, "seconds": 80.0, "arithmetic": {"pinned": True, "cpu": "B"}}
    assert pinned(golden) and not pinned({"bce": 1.0}) and differences(golden, same, exact=True) == []
    for key, moved in (("bce", 0.2547 + 1e-16), ("n", 40.0), ("curve", [{"eps": 0.1, "real_bce": 1.9 + 2e-16}])):
        assert differences(golden, {**same, key: moved}, exact=True), key  # within every tolerance, still a change
        assert differences(golden, {**same, key: moved}) == [], key


def test_a_diverging_projection_is_judged_by_what_it_means():
    far, farther = {"log_joint": 1.907e5, "z_norm_median": 310.0}, {"log_joint": 1.397e7, "z_norm_median": 2.2e3}
    assert differences(far, farther) == []  # both far outside the prior: the conclusion
    assert differences({"log_joint": 495.0}, {"log_joint": 1.4e7})  # a fit that ran away is a change


def _realizable_prior(run) -> dict:
    """03's realizable section for the prior sample, recomputed in this process as the notebook does."""
    from inverse_vae import load_model
    from inverse_vae.study import invert, shared

    model = load_model(run.config, run.model_file)
    summaries, _ = invert.realizable_grid(model.decoder, {"prior": shared.prior_latents(run, model.latent_dim)})
    return summaries["prior"]


def _lm_realizable(run) -> dict:
    """05's LM-refined layer-wise method on the realizable sample, recomputed as the notebook does."""
    from inverse_vae import load_model
    from inverse_vae.study import compare, shared

    model = load_model(run.config, run.model_file)
    cfg = run.config.methods
    z = shared.prior_latents(run, model.latent_dim, cfg.realizable_n).double()
    table_, _ = compare.realizable_comparison(["hybrid_layerwise_lm"], model, z, cfg.overrides or {})
    return table_["hybrid_layerwise_lm"]


def test_a_changed_inverse_formula_fails_the_goldens(smoke_run, monkeypatch):
    golden = _load(GOLDEN, "03_invert")["realizable"]["prior"]
    assert differences(golden, _realizable_prior(smoke_run)) == []  # the recomputation is the notebook's
    tanh = table.KINDS[torch.nn.Tanh]
    off = dataclasses.replace(tanh, inverse=lambda p, y: torch.atanh(y) * 1.001)  # a 0.1% slip in atanh
    monkeypatch.setitem(table.KINDS, torch.nn.Tanh, off)
    assert differences(golden, _realizable_prior(smoke_run))


def test_a_broken_method_fails_the_goldens(smoke_run, monkeypatch):
    golden = _load(GOLDEN, "05_inverse_methods")["methods"]["hybrid_layerwise_lm"]["realizable"]
    assert differences(golden, _lm_realizable(smoke_run)) == []
    step = solvers._lm_step
    monkeypatch.setattr(solvers, "_lm_step", lambda *args, **kwargs: -step(*args, **kwargs))  # uphill steps
    assert differences(golden, _lm_realizable(smoke_run))
