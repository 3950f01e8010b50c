"""The summary across runs (study/summary.py, notebook 99): a frame read from synthetic metrics folders, where
a run not executed, a number not measured and a value of the wrong type are NaN (never invented, never an
exception), an unreadable file is left out with one warning line, the seeds are aggregated as mean and sd of
those present, and the verdicts follow their thresholds."""
import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest
import torch

from inverse_vae.constants import NOTEBOOKS, SUMMARY
from inverse_vae.core.checkpoints import save_checkpoint
from inverse_vae.core.config import family, load_config
from inverse_vae.core.model import build_model
from inverse_vae.study import summary

FAMILY = ("default", "default_seed1", "default_seed2", "latent16", "leaky", "squeezed", "deterministic", "smoke")
NUMERIC = [k for k in summary.COLUMNS if k != "best_method"]


def metrics(cf64=0.33, cf32=0.0003, best=1.0, real_psnr=5.2, real_probe=0.097, recon_psnr=18.5, probe=0.916,
            val=0.1686, saturated=0.084):
    """Metrics files of one run, shaped as notebooks 01, 02, 03 and 05 write them."""
    return {
        "01_train": {"final_val_loss": val},
        "02_evaluate": {"reconstruction": {"bce": 0.114, "psnr": recon_psnr}, "probe_accuracy": probe,
                        "nelbo_nats": 110.5, "iwae": {"nats": 104.2}},
        "03_invert": {
            "real": {"original_clamp": {"bce": 2.7, "psnr": real_psnr, "probe_accuracy": real_probe}},
            "realizable": {"prior": {"float32": {"success_1e-4": cf32}, "float64": {"success_1e-6": cf64}}},
            "saturated_share_prior": {"1:Tanh": {"float32": {"units": 0.0}, "float64": {"units": 0.0}},
                                      "3:Tanh": {"float32": {"units": saturated}, "float64": {"units": 1e-4}},
                                      "5:Sigmoid": {"float32": {"units": 0.0086}, "float64": {"units": 0.0}}}},
        "05_inverse_methods": {"best_realizable": {"float32": {"method": "hybrid_layerwise_lm_retry", "success_1e-4": best},
                                                   "float64": {"method": "hybrid_layerwise_lm_retry", "success_1e-6": best}},
                               "methods": {"map_encoder_newton": {"real": {"bce": 0.21}}}},
    }


def autoencoder_metrics():
    """What notebooks 01-05 write for the deterministic autoencoder: no BCE (no Sigmoid), the realizable
    set of encoded test images, the chain without a clamp, no saturation entry (no Tanh or Sigmoid)."""
    return {
        "01_train": {"final_val_loss": 0.011},
        "02_evaluate": {"reconstruction": {"mse": 0.011, "psnr": 19.6}, "probe_accuracy": 0.9},
        "03_invert": {"real": {"no_clamp": {"mse": 9.5, "psnr": -9.8, "probe_accuracy": 0.2}},
                      "realizable": {"encoder_mean": {"float32": {"success_1e-4": 1.0}, "float64": {"success_1e-6": 1.0}}}},
        "05_inverse_methods": {"best_realizable": {"float32": {"method": "closed_form", "success_1e-4": 1.0},
                                                   "float64": {"method": "closed_form", "success_1e-6": 1.0}}},
    }


def write_run(reports, name, files):
    folder = reports / name / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    for notebook, values in files.items():
        (folder / f"{notebook}.json").write_text(values if isinstance(values, str) else json.dumps(values))
    return reports / name


@pytest.fixture
def params_dir(tmp_path):
    folder = tmp_path / "params"
    folder.mkdir()
    for name in FAMILY:
        (folder / f"{name}.yaml").write_text(f"# {name}: what this run changes. More words.\nseed: 0\n")
    return folder


@pytest.fixture
def reports(tmp_path):
    return tmp_path / "reports"


def _frame(reports, params_dir):
    warned = []
    return summary.family_frame(reports, params_dir, warn=warned.append), warned


def test_the_family_is_every_params_file_but_smoke_with_the_seeds_first(reports, params_dir):
    (params_dir / "aaa_extra.yaml").write_text("seed: 0\n")
    assert [p.stem for p in family(params_dir)] == ["aaa_extra", "default", "default_seed1", "default_seed2",
                                                    "deterministic", "latent16", "leaky", "squeezed"]
    frame, warned = _frame(reports, params_dir)
    assert list(frame.index) == ["default", "default_seed1", "default_seed2", "aaa_extra", "deterministic", "latent16",
                                 "leaky", "squeezed"]
    assert list(frame.columns) == [*summary.COLUMNS, "design", "notebooks"] and warned == []


def test_a_run_without_metrics_is_a_row_of_nan(reports, params_dir):
    write_run(reports, "default", metrics())
    frame, warned = _frame(reports, params_dir)
    assert frame.loc["latent16", NUMERIC].isna().all() and frame.loc["latent16", "notebooks"] == 0
    assert not isinstance(frame.loc["latent16", "best_method"], str)  # no method invented either
    assert frame.loc["latent16", "design"] == "latent16: what this run changes"
    assert frame.loc["default", NUMERIC].notna().all() and frame.loc["default", "notebooks"] == 4
    assert warned == []


def test_the_values_are_read_from_where_the_notebooks_write_them(reports, params_dir):
    write_run(reports, "default", metrics())
    row = _frame(reports, params_dir)[0].loc["default"]
    assert (row.val_loss, row.nelbo, row.iwae, row.recon_bce, row.recon_psnr, row.probe) == (0.1686, 110.5, 104.2, 0.114,
                                                                                              18.5, 0.916)
    assert (row.cf_real_bce, row.cf_real_psnr, row.cf_real_probe, row.cf_f32, row.cf_f64) == (2.7, 5.2, 0.097, 0.0003, 0.33)
    assert (row.best_f32, row.best_f64, row.best_method) == (1.0, 1.0, "hybrid_layerwise_lm_retry")
    assert row.saturated == 0.084 and row.map_real_bce == 0.21  # saturated: the largest float32 share of any layer


def test_the_autoencoder_is_read_from_its_own_keys_and_sections_that_do_not_apply_are_nan(reports, params_dir):
    write_run(reports, "deterministic", autoencoder_metrics())
    row = _frame(reports, params_dir)[0].loc["deterministic"]
    assert math.isnan(row.recon_bce) and math.isnan(row.cf_real_bce) and math.isnan(row.saturated)
    assert (row.cf_f32, row.cf_f64, row.cf_real_psnr, row.recon_psnr) == (1.0, 1.0, -9.8, 19.6)
    assert math.isnan(row.map_real_bce)  # not written by its notebook 05: NaN
    assert row.notebooks == 4 and row.best_method == "closed_form"


def test_an_unreadable_metrics_file_is_left_out_with_one_warning_line(reports, params_dir):
    files = metrics()
    files["01_train"] = '{"final_val_loss": 0.1'  # truncated
    write_run(reports, "leaky", files)
    frame, warned = _frame(reports, params_dir)
    assert len(warned) == 1 and "\n" not in warned[0]
    assert "leaky" in warned[0] and "01_train.json" in warned[0] and "left out" in warned[0]
    assert math.isnan(frame.loc["leaky", "val_loss"]) and frame.loc["leaky", "notebooks"] == 3
    assert frame.loc["leaky", "probe"] == 0.916  # the run's other notebooks are still read


@pytest.mark.parametrize("value", [{"nats": 1.0}, [0.1, 0.2], True, None, "fast"])
def test_a_value_of_the_wrong_type_is_nan_not_an_exception(reports, params_dir, value):
    files = metrics()
    files["01_train"]["final_val_loss"] = value
    files["02_evaluate"]["probe_accuracy"] = value
    files["05_inverse_methods"]["best_realizable"]["float64"]["method"] = value if not isinstance(value, str) else {}
    write_run(reports, "default", files)
    frame, warned = _frame(reports, params_dir)
    row = frame.loc["default"]
    assert math.isnan(row.val_loss) and math.isnan(row.probe) and not isinstance(row.best_method, str)
    assert row.recon_psnr == 18.5 and warned == []
    assert pd.api.types.is_float_dtype(frame["val_loss"]) and pd.api.types.is_float_dtype(frame["probe"])


def test_non_finite_numbers_written_as_strings_are_read_as_numbers(reports, params_dir):
    files = metrics()
    files["03_invert"]["real"]["original_clamp"]["psnr"] = "inf"
    files["03_invert"]["realizable"]["prior"]["float64"]["success_1e-6"] = "nan"
    write_run(reports, "default", files)
    row = _frame(reports, params_dir)[0].loc["default"]
    assert row.cf_real_psnr == float("inf") and math.isnan(row.cf_f64)


def test_the_seeds_are_mean_and_sd_of_those_present_and_nan_with_fewer_than_two(reports, params_dir):
    write_run(reports, "default", metrics(cf64=0.33))
    write_run(reports, "latent16", metrics(cf64=0.99))  # not a seed: left out of the seeds
    one = summary.seeds(_frame(reports, params_dir)[0])
    assert one.loc["cf_f64", "count"] == 1 and math.isnan(one.loc["cf_f64", "mean"]) and math.isnan(one.loc["cf_f64", "std"])
    write_run(reports, "default_seed1", metrics(cf64=0.41))
    two = summary.seeds(_frame(reports, params_dir)[0])
    assert two.loc["cf_f64", "count"] == 2 and two.loc["cf_f64", "mean"] == pytest.approx(0.37)
    assert two.loc["cf_f64", "std"] == pytest.approx(statistics.stdev([0.33, 0.41]))  # the sample sd
    write_run(reports, "default_seed2", metrics(cf64=0.35))
    three = summary.seeds(_frame(reports, params_dir)[0])
    assert three.loc["cf_f64", "count"] == 3 and three.loc["cf_f64", "mean"] == pytest.approx(statistics.mean([0.33, 0.41, 0.35]))
    assert three.loc["cf_f64", "std"] == pytest.approx(statistics.stdev([0.33, 0.41, 0.35]))
    assert "best_method" not in three.index and set(three.index) == set(NUMERIC)


def test_the_table_shows_labels_the_seeds_row_and_dashes_for_what_is_missing(reports, params_dir):
    write_run(reports, "default", metrics(cf64=0.33))
    alone = summary.table(_frame(reports, params_dir)[0])
    assert "default (3 seeds)" not in alone.index  # one seed: no mean ± sd
    write_run(reports, "default_seed1", metrics(cf64=0.41))
    shown = summary.table(_frame(reports, params_dir)[0])
    assert list(shown.columns) == [label for label, _ in summary.COLUMNS.values()]
    assert shown.index[-1] == "default (3 seeds)"
    label = summary.COLUMNS["cf_f64"][0]
    assert shown.loc["default (3 seeds)", label] == f"0.37 ± {statistics.stdev([0.33, 0.41]):.2g}"
    assert shown.loc["latent16", label] == "—" and shown.loc["default", label] == 0.33
    assert shown.loc["default (3 seeds)", summary.COLUMNS["best_method"][0]] == "—"


def test_the_formatted_table_prints_numbers_as_the_answer_quotes_them(reports, params_dir):
    write_run(reports, "default", metrics(cf64=0.33))
    write_run(reports, "default_seed1", metrics(cf64=0.41))
    shown = summary.table(_frame(reports, params_dir)[0], formatted=True)
    label = summary.COLUMNS["cf_f64"][0]
    assert shown.loc["default", label] == "33.0%" and shown.loc["latent16", label] == "—"
    assert shown.loc["default (3 seeds)", label] == f"37.0% ± {statistics.stdev([0.33, 0.41]):.1%}"


@pytest.mark.parametrize("cf64, expected", [(0.99, True), (1.0, True), (0.9899, False), (0.0, False)])
def test_the_realizable_verdict_is_its_threshold(reports, params_dir, cf64, expected):
    write_run(reports, "default", metrics(cf64=cf64))
    verdicts = summary.verdicts(_frame(reports, params_dir)[0])
    assert verdicts.loc["default", "realizable"] == expected
    assert summary.WORKS_REALIZABLE == 0.99


@pytest.mark.parametrize("real_psnr, real_probe, expected", [
    (18.5 - 3.0, 0.9 * 0.916, True),  # exactly at both thresholds
    (18.5 - 3.01, 0.916, False),  # more than 3 dB below the encoder's reconstruction
    (18.5, 0.9 * 0.916 - 1e-3, False),  # under 90% of the probe's accuracy
    (5.2, 0.097, False),  # the default run's numbers
])
def test_the_real_image_verdict_needs_both_the_psnr_and_the_probe(reports, params_dir, real_psnr, real_probe, expected):
    write_run(reports, "default", metrics(real_psnr=real_psnr, real_probe=real_probe, recon_psnr=18.5, probe=0.916))
    assert summary.verdicts(_frame(reports, params_dir)[0]).loc["default", "real"] == expected


def test_a_verdict_on_what_was_not_measured_is_nan_not_false(reports, params_dir):
    partial = metrics()
    del partial["02_evaluate"]["probe_accuracy"]
    write_run(reports, "default", partial)
    verdicts = summary.verdicts(_frame(reports, params_dir)[0])
    assert verdicts.loc["default", "realizable"] == False  # noqa: E712 (measured: 33%)
    assert pd.isna(verdicts.loc["default", "real"]) and verdicts.loc["latent16"].isna().all()


def test_the_design_is_the_headers_first_sentence(tmp_path, root):
    params = tmp_path / "run.yaml"
    params.write_text("# Default with a 16-d latent. More detail; and more.\n# second line\nseed: 1\n")
    assert summary.design(params) == "Default with a 16-d latent"
    params.write_text("seed: 1\n# not a header\n")
    assert summary.design(params) == "run"  # no header: the run's name
    for path in family(root / "params"):  # every committed run says what it changes
        assert summary.design(path) != path.stem and len(summary.design(path)) > 20, path


def test_a_long_design_is_cut_before_a_broken_parenthesis_or_word(tmp_path):
    params = tmp_path / "run.yaml"
    words = "word " * 30  # 150 characters
    params.write_text(f"# Default with a 16-d latent {words}\nseed: 1\n")
    cut = summary.design(params)
    assert cut.endswith(" …") and len(cut) <= summary.DESIGN_CHARS + 2 and cut[:-2].endswith("word"), cut
    params.write_text(f"# Default trained longer (train.train_epochs: 120, {words}) and more\nseed: 1\n")
    assert summary.design(params) == "Default trained longer …"
    params.write_text(f"# Default (closed) then {words}\nseed: 1\n")
    assert summary.design(params).startswith("Default (closed) then word")
    params.write_text(f"# Default with f(x {words}\nseed: 1\n")  # an open parenthesis without a space before it
    assert summary.design(params).startswith("Default with f(x word") and summary.design(params).endswith("word …")
    params.write_text("# " + "x" * 150 + "\nseed: 1\n")  # one long word: cut at the limit
    assert summary.design(params) == "x" * summary.DESIGN_CHARS + " …"


def test_read_metrics_reads_only_the_runs_notebooks(tmp_path):
    write_run(tmp_path, "run", {**metrics(), "99_summary": {"x": 1}, "other": {"y": 2}})
    said = []
    assert list(summary.read_metrics(tmp_path / "run", said.append)) == ["01_train", "02_evaluate", "03_invert",
                                                                          "05_inverse_methods"]
    assert said == [] and summary.read_metrics(tmp_path / "nowhere", said.append) == {}


def test_the_summary_notebook_is_not_one_of_the_per_run_notebooks(root):
    assert SUMMARY not in NOTEBOOKS and (root / "notebooks" / f"{SUMMARY}.ipynb").is_file()


def test_examples_show_each_trained_runs_reconstructions_and_leave_out_a_failing_method(tmp_path, root, bars):
    params_dir, reports = tmp_path / "params", tmp_path / "reports"
    params_dir.mkdir()
    smoke = load_config(root / "params" / "smoke.yaml")
    (params_dir / "default.yaml").write_text(json.dumps(smoke.to_dict()))  # YAML reads JSON; a run named default
    (params_dir / "latent16.yaml").write_text(json.dumps(smoke.to_dict()))
    torch.manual_seed(0)
    model = build_model(smoke)
    save_checkpoint({"epoch": 4, "model_state_dict": model.state_dict()}, reports / "default" / smoke.test.model_path)
    write_run(reports, "default", metrics())
    write_run(reports, "latent16", metrics())  # metrics, but no model: no figure row
    frame, _ = _frame(reports, params_dir)
    frame.loc["default", "best_method"] = "no_such_method"
    x = torch.rand(3, 784, generator=torch.Generator().manual_seed(1))
    warned = []
    shown = summary.examples(reports, params_dir, frame, x, warn=warned.append)
    assert list(shown) == ["default"] and list(shown["default"]) == ["D(encoder)", "D(closed_form)"]
    assert all(v.shape == (3, 784) and bool(torch.isfinite(v).all()) for v in shown["default"].values())
    with torch.no_grad():
        expected = model.decoder(model.encode(x)[0]).reshape(3, -1)
    torch.testing.assert_close(shown["default"]["D(encoder)"], expected)
    assert len(warned) == 1 and "no_such_method left out" in warned[0] and "\n" not in warned[0]
    assert bars() == {"examples, runs × methods": (3, 3)}  # one bar: the failed method's step counts too
    frame.loc["default", "notebooks"] = 0  # a run never executed is not drawn
    assert summary.examples(reports, params_dir, frame, x, warn=warned.append) == {}
    assert np.isfinite(frame.loc["default", "cf_f64"])


def test_the_committed_price_sweep_is_read_with_each_points_epochs(root):
    sweep = summary.price_sweep(root / "reports")
    assert len(sweep) >= 5 and set(sweep["epochs"]) <= {30, 90}
    assert sweep["f32_success_1e-4"].astype(float).between(0, 1).all() and (sweep["test_nelbo_nats"].astype(float) > 100).all()


def test_no_price_sweep_is_an_empty_frame(tmp_path):
    assert summary.price_sweep(tmp_path).empty


def _real(bce, probe, norm):
    return {"real": {"bce": bce, "probe_accuracy": probe, "z_norm_median": norm, "n": 300}}


def test_the_findings_quote_the_metrics_and_leave_out_what_was_not_measured(reports, params_dir):
    for name in ("default", "default_seed1"):
        write_run(reports, name, metrics())
    only_answer = summary.findings(_frame(reports, params_dir)[0], reports)
    assert "0.03% of prior samples" in only_answer[0] and "33.0% to 1e-6" in only_answer[0]
    assert not any("posterior mode" in line or "built to be inverted" in line for line in only_answer)
    default = metrics()
    default["02_evaluate"]["iwae"] = {"nats": 104.2, "stderr": 0.3, "k": 1000, "elbo_nats": 110.0}
    default["05_inverse_methods"]["methods"] = {"encoder": _real(0.11, 0.94, 2.9), "map_encoder_newton": _real(0.107, 0.75, 2.5),
                                                "hybrid_encoder_newton_tr": _real(0.091, 0.11, 1240.0),
                                                "closed_form": {"real": None}}
    default["05_inverse_methods"]["posterior"] = {"amortization_gap": {"gap": 4.81, "gap_stderr": 0.5, "n": 50}}
    write_run(reports, "default", default)
    (params_dir / "constrained.yaml").write_text("# constrained: built to invert\nseed: 0\n")
    built = metrics(cf32=0.998, cf64=1.0)
    built["03_invert"]["real"]["original_clamp"]["bce"] = 0.25  # 0.25 / 0.114: more than twice the encoder's
    write_run(reports, "constrained", built)
    lines = summary.findings(_frame(reports, params_dir)[0], reports)
    posterior = next(line for line in lines if "posterior mode" in line)
    assert "On 300 test images, the best pixel fit (hybrid_encoder_newton_tr, BCE 0.0910" in posterior
    assert "1.24e+03" in posterior and "BCE 0.1070" in posterior
    assert "4.8 ± 0.5 nats (50 images)" in posterior and "104.20 ± 0.30 nats (K = 1000), 5.80 below" in posterior
    inverted = next(line for line in lines if "built to be inverted" in line)
    assert "99.8% of prior samples" in inverted and "2.19× the encoder's 0.114: not within twice" in inverted


def test_a_nan_metric_written_as_a_string_breaks_no_finding(reports, params_dir):
    # write_json writes a non-finite number as "nan"/"inf"; every reader takes it through files.metric_number
    default = metrics()
    default["02_evaluate"]["iwae"] = {"nats": "nan", "stderr": "nan", "k": 1000, "elbo_nats": 110.0}
    default["05_inverse_methods"]["methods"] = {"encoder": _real(0.11, 0.94, 2.9), "map_encoder_newton": _real(0.107, 0.75, 2.5),
                                                "optimize_adam": _real("nan", "nan", "inf"),  # a method that diverged
                                                "hybrid_encoder_newton_tr": _real(0.091, 0.11, 1240.0)}
    default["05_inverse_methods"]["posterior"] = {"amortization_gap": {"gap": "nan", "gap_stderr": "nan", "n": 50}}
    write_run(reports, "default", default)
    (params_dir / "constrained.yaml").write_text("# constrained: built to invert\nseed: 0\n")
    built = metrics(cf32=0.998, cf64="nan")
    built["05_inverse_methods"]["methods"]["encoder"] = {"real": {"bce": "nan"}}
    write_run(reports, "constrained", built)
    lines = summary.findings(_frame(reports, params_dir)[0], reports)
    posterior = next(line for line in lines if "posterior mode" in line)
    assert "the best pixel fit (hybrid_encoder_newton_tr, BCE 0.0910" in posterior  # the diverged method fits nothing
    assert "nan ± nan nats (50 images)" in posterior and "at nan ± nan nats (K = 1000)" in posterior
    assert any("built to be inverted" in line for line in lines)
    assert summary.read_metrics(reports / "default")["02_evaluate"]["iwae"]["k"] == 1000  # counts stay integers
