"""The summary across runs (study/summary.py, notebook 99): read from synthetic metrics folders, a
missing run or number is shown as missing, the seeds row aggregates only the seeds present (with how
many), and the words follow the numbers."""
import json
import math
import statistics

import nbformat
import pytest
import torch

from inverse_vae.__main__ import main
from inverse_vae.runs import plan
from inverse_vae.runs.notebooks import study_notebooks
from inverse_vae.study import summary

FAMILY = ("default", "default_seed1", "default_seed2", "latent16", "leaky", "squeezed", "deterministic", "smoke")


def metrics(cf64=0.33, cf32=0.0003, best=1.0, real_psnr=5.2, real_probe=0.097, recon_psnr=18.5, probe=0.916,
            val=0.1686, saturated=0.084):
    """Metrics files of one run, shaped as notebooks 01, 02, 03 and 05 write them."""
    return {
        "01_train": {"final_val_loss": val},
        "02_evaluate": {"reconstruction": {"bce": 0.114, "psnr": recon_psnr}, "probe_accuracy": probe},
        "03_invert": {
            "real": {"original_clamp": {"bce": 2.7, "psnr": real_psnr, "probe_accuracy": real_probe}},
            "realizable": {"prior": {"float32": {"success_1e-4": cf32}, "float64": {"success_1e-6": cf64}}},
            "saturated_share_prior": {"1:Tanh": {"float32": {"units": 0.0}, "float64": {"units": 0.0}},
                                      "3:Tanh": {"float32": {"units": saturated}, "float64": {"units": 1e-4}},
                                      "5:Sigmoid": {"float32": {"units": 0.0086}, "float64": {"units": 0.0}}}},
        "05_inverse_methods": {"best_realizable": {"float32": {"method": "hybrid_layerwise_lm_retry", "success_1e-4": best},
                                                   "float64": {"method": "hybrid_layerwise_lm_retry", "success_1e-6": best}}},
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
        (folder / f"{name}.yaml").write_text("")  # the family is read from the names only
    return folder


def test_the_family_is_every_params_file_but_smoke_in_reading_order(params_dir):
    (params_dir / "aaa_extra.yaml").write_text("")
    assert summary.family(params_dir) == ["default", "default_seed1", "default_seed2", "latent16", "leaky",
                                          "squeezed", "deterministic", "aaa_extra"]


def test_missing_runs_and_numbers_are_shown_as_missing_never_invented(tmp_path, params_dir):
    reports = tmp_path / "reports"
    write_run(reports, "default", metrics())
    write_run(reports, "default_seed1", metrics(cf64=0.40))
    partial = metrics()
    del partial["02_evaluate"]["probe_accuracy"]  # a key missing from a file that exists
    partial["03_invert"]["real"]["original_clamp"]["psnr"] = "nan"  # measured non-finite
    write_run(reports, "latent16", {k: partial[k] for k in ("01_train", "02_evaluate", "03_invert")})
    write_run(reports, "leaky", {"01_train": '{"final_val_loss": 0.1'})  # truncated
    table = summary.family_table(reports, params_dir)
    assert table.present == ["default", "default_seed1", "latent16"]
    assert table.not_run == ["default_seed2", "leaky", "squeezed", "deterministic"]
    cells = table.cells()
    assert list(cells)[:4] == ["default", "default_seed1", "default_seed2", summary.SEEDS_ROW]
    label = {c.key: c.label for c in summary.COLUMNS}
    assert set(cells["default_seed2"].values()) == {"not run"}
    assert cells["leaky"][label["val_loss"]] == "unreadable"
    latent16 = cells["latent16"]
    assert latent16[label["probe"]] == "missing" and latent16[label["cf_real_psnr"]] == "nan"
    assert latent16[label["best_f64"]] == "not run" and latent16[label["val_loss"]] == "0.1686"
    assert latent16[label["saturated"]] == "8.4%" and latent16[label["saturated_layer"]] == "3:Tanh"
    numbers = table.numbers()
    assert math.isnan(numbers.loc["latent16", "probe"]) and math.isnan(numbers.loc["default_seed2", "val_loss"])
    saved = summary.to_json(table)
    assert saved["runs"]["latent16"]["values"]["probe"] is None
    assert saved["runs"]["latent16"]["missing"]["probe"] == "missing"
    assert saved["runs"]["latent16"]["executed"] == ["01_train", "02_evaluate", "03_invert"]
    assert saved["not_run"] == table.not_run
    page = summary.table_html(table)
    assert page.count("<td class=missing>not run</td>") >= len(summary.COLUMNS) * 4


def test_the_seeds_row_is_mean_and_sd_of_the_seeds_present_saying_how_many(tmp_path, params_dir):
    reports = tmp_path / "reports"
    write_run(reports, "default", metrics(cf64=0.33))
    write_run(reports, "default_seed1", metrics(cf64=0.41))
    table = summary.family_table(reports, params_dir)
    agg = table.seeds["cf_f64"]
    assert agg.n == 2 and agg.mean == pytest.approx(0.37) and agg.sd == pytest.approx(statistics.stdev([0.33, 0.41]))
    assert table.cells()[summary.SEEDS_ROW][summary.COLUMN["cf_f64"].label] == "37.0% ± 5.7% (2 of 3 seeds)"
    assert table.cells()[summary.SEEDS_ROW][summary.COLUMN["best_method"].label] == "hybrid_layerwise_lm_retry"
    write_run(reports, "default_seed2", metrics(cf64=0.35))
    full = summary.family_table(reports, params_dir).cells()[summary.SEEDS_ROW]
    assert full[summary.COLUMN["cf_f64"].label] == "36.3% ± 4.2%"
    write_run(tmp_path / "only_default", "default", metrics())
    one = summary.family_table(tmp_path / "only_default", params_dir)
    assert one.cells()[summary.SEEDS_ROW][summary.COLUMN["cf_f64"].label] == "1 of 3 seeds"
    assert one.cells()[summary.SEEDS_ROW][summary.COLUMN["best_method"].label] == "1 of 3 seeds"


def test_the_words_follow_the_numbers_and_say_what_awaits(tmp_path, params_dir):
    reports = tmp_path / "reports"
    write_run(reports, "default", metrics())
    only = summary.family_table(reports, params_dir)
    text = summary.conclusions(only)
    assert "33.0% to 1e-6 in float64" in text and "not by the closed form" in text
    assert "On real test images the original chain fails" in text and "9.7%" in text
    assert "awaits the runs `latent16`" in text and "across seeds awaits the runs default_seed1, default_seed2" in text
    write_run(reports, "default_seed1", metrics(cf64=0.31))
    write_run(reports, "default_seed2", metrics(cf64=0.36))
    write_run(reports, "leaky", metrics(cf64=0.995, real_psnr=17.0, real_probe=0.85))
    text = summary.conclusions(summary.family_table(reports, params_dir))
    assert "hold on all three seeds" in text
    assert "the pseudo-inverse chain works for `leaky`" in text and "fails for `default`" in text
    assert "Not run yet: `latent16`" in text
    write_run(reports, "default_seed2", metrics(cf64=0.999))
    assert "do not hold on default_seed2" in summary.conclusions(summary.family_table(reports, params_dir))


def test_without_the_default_run_the_answer_says_so(tmp_path, params_dir):
    table = summary.family_table(tmp_path / "reports", params_dir)
    assert table.present == [] and "has not been executed yet" in summary.answer(table)
    assert "No run has been executed yet" in summary.conclusions(table)


def test_the_examples_figure_and_its_numbers(tmp_path):
    x = torch.rand(3, 784)
    shown = {"D(encoder)": ("encoder", torch.rand(3, 784), {"bce": 0.1, "psnr": 18.0}),
             "D(closed form)": ("closed_form", torch.rand(3, 784), {"bce": 2.7, "psnr": 5.0})}
    path = tmp_path / "figures" / "recovery_by_run.png"
    assert summary.examples_figure({"x": x, "default": shown}, path) is not None and path.stat().st_size > 1000
    assert summary.examples_metrics({"x": x, "default": shown})["default"]["D(closed form)"]["bce"] == 2.7
    assert summary.examples_figure({}, None) is None
    autoencoder = {"D(encoder)": ("encoder", torch.rand(3, 784), {"mse": 0.01, "psnr": 20.0})}  # no Sigmoid: no BCE
    assert summary.examples_metrics({"x": x, "deterministic": autoencoder}) == {
        "deterministic": {"D(encoder)": {"method": "encoder", "mse": 0.01, "psnr": 20.0}}}


def test_the_summary_notebook_is_committed_clean_and_kept_out_of_the_per_run_notebooks(root):
    path = root / "notebooks" / f"{plan.SUMMARY.name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0] is code[0]
    assert 'params_file = "params/default.yaml"' in params[0].source and "reports_root = None" in params[0].source
    assert nb.metadata.kernelspec.name == "inverse-vae"
    assert path not in study_notebooks(root) and plan.SUMMARY.name not in plan.PLAN


def test_the_summary_subcommand_is_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["summary", "--help"])
    assert done.value.code == 0 and "--reports-root" in capsys.readouterr().out


def test_the_summary_command_refuses_a_missing_reports_folder_in_one_line(tmp_path, capsys):
    assert main(["summary", "--reports-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: reports folder ") and not (tmp_path / "nowhere").exists()


def test_run_summary_executes_the_notebook_once_into_the_summary_folder(tmp_path, root):
    from inverse_vae.runs.notebooks import run_summary

    reports = tmp_path / "reports"
    write_run(reports, "default", metrics())  # metrics only: no model, so no figure row for it
    logged = []
    output = run_summary(str(reports), root, log=logged.append)
    assert output == reports / "summary" / "99_summary.ipynb" and logged[0].startswith("99_summary [all runs] ... ")
    nb = nbformat.read(output, as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    saved = json.loads((reports / "summary" / "metrics" / "99_summary.json").read_text())
    assert saved["present"] == ["default"] and "deterministic" in saved["not_run"] and saved["examples"] == {}
    assert saved["runs"]["default"]["values"]["cf_f64"] == 0.33
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "default: no trained model" in text


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


def test_sections_that_do_not_apply_read_n_a_and_the_autoencoder_is_read_from_its_own_keys(tmp_path, params_dir):
    reports = tmp_path / "reports"
    write_run(reports, "default", metrics())
    write_run(reports, "deterministic", autoencoder_metrics())
    table = summary.family_table(reports, params_dir)
    label = {c.key: c.label for c in summary.COLUMNS}
    row = table.cells()["deterministic"]
    assert row[label["recon_bce"]] == "n/a" and row[label["cf_real_bce"]] == "n/a"
    assert row[label["saturated"]] == "n/a" and row[label["saturated_layer"]] == "n/a"
    assert row[label["cf_f32"]] == "100.00%" and row[label["cf_real_psnr"]] == "-9.8"
    assert table.rows["deterministic"].executed == list(summary.NOTEBOOKS)  # n/a is not a notebook not run
    assert summary.works_realizable(table.rows["deterministic"]) is True
    assert summary.works_real(table.rows["deterministic"]) is False  # -9.8 dB against the encoder's 19.6
    assert "n/a" in summary.table_html(table)


def test_cost_lines_say_what_a_design_buys_and_costs_against_the_default(tmp_path, params_dir):
    reports = tmp_path / "reports"
    write_run(reports, "default", metrics())
    better = metrics(cf64=0.998, cf32=0.31)
    better["02_evaluate"]["reconstruction"]["bce"] = 0.125
    write_run(reports, "latent16", better)
    write_run(reports, "deterministic", autoencoder_metrics())
    lines = summary.cost_lines(summary.family_table(reports, params_dir))
    assert len(lines) == 2
    assert "31.0% to 1e-4 in float32 and 99.8% to 1e-6 in float64 (default: 0.03%, 33.0%)" in lines[0]
    assert "BCE 0.125 against 0.114 (+10%)" in lines[0]
    assert "PSNR of -9.8 dB against the encoder's 19.6 dB" in lines[1]
