"""The family of runs side by side (notebook 99 and the landing page), read from metrics files only: one row
per run of params/, NaN where its notebook has not run or the section does not apply; the default's seeds also
as mean ± sd. Each run's design is its params file's first comment line, not repeated here.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..constants import NOTEBOOKS
from ..core.checkpoints import load_model
from ..core.config import family, load_config
from ..core.files import metric_number
from ..core.model import resolve_device
from ..errors import StudyError
from ..inversion.methods import run_method
from ..progress import progress
from .sentences import pct, say

_SEEDS = ("default", "default_seed1", "default_seed2")
# When the chain "works": realizable, this share recovered to 1e-6 from float64 outputs; real images,
# D(z_hat) within this many dB of the encoder's reconstruction, the probe at this fraction of its accuracy.
WORKS_REALIZABLE, WORKS_REAL_PSNR_GAP_DB, WORKS_REAL_PROBE_RATIO = 0.99, 3.0, 0.9
DESIGN_CHARS = 120  # a run's design as the tables show it


def _get(metrics: dict, *path):
    for key in path:
        metrics = metrics.get(key) if isinstance(metrics, dict) else None
    return metrics


def _first(section, *keys):
    """The first of `keys` a section has: runs name some sections by their model (the realizable set is a
    VAE's prior sample, the autoencoder's encoded test images; the real-image chain clamps where it can)."""
    return next((section[k] for k in keys if isinstance(section, dict) and k in section), None)


def _realizable(m, arithmetic, key):
    return _get(_first(_get(m, "03_invert", "realizable"), "prior", "encoder_mean"), arithmetic, key)


def _chain(m, key):
    return _get(_first(_get(m, "03_invert", "real"), "original_clamp", "no_clamp"), key)


def _saturated(m):
    shares = _first(m.get("03_invert"), "saturated_share_prior", "saturated_share_encoder_mean") or {}
    values = [_get(v, "float32", "units") for v in shares.values()]
    return max((v for v in values if isinstance(v, (int, float))), default=None)


COLUMNS = {  # key: (label, where in the run's metrics {notebook: dict}: a "notebook/key/..." path, or a function)
    "val_loss": ("validation loss (its own convention)", "01_train/final_val_loss"),
    "nelbo": ("test negative ELBO (nats)", "02_evaluate/nelbo_nats"),
    "iwae": ("test -log p(x), IWAE (nats)", "02_evaluate/iwae/nats"),
    "recon_bce": ("test reconstruction BCE/pixel", "02_evaluate/reconstruction/bce"),
    "recon_psnr": ("test reconstruction PSNR (dB)", "02_evaluate/reconstruction/psnr"),
    "probe": ("probe accuracy (encoder means)", "02_evaluate/probe_accuracy"),
    "cf_real_bce": ("closed form, real: BCE of D(ẑ)", lambda m: _chain(m, "bce")),
    "cf_real_psnr": ("closed form, real: PSNR (dB)", lambda m: _chain(m, "psnr")),
    "cf_real_probe": ("closed form, real: probe accuracy", lambda m: _chain(m, "probe_accuracy")),
    "cf_f32": ("closed form, realizable: float32 to 1e-4", lambda m: _realizable(m, "float32", "success_1e-4")),
    "cf_f64": ("closed form, realizable: float64 to 1e-6", lambda m: _realizable(m, "float64", "success_1e-6")),
    "best_f32": ("best method, realizable: float32 to 1e-4", "05_inverse_methods/best_realizable/float32/success_1e-4"),
    "best_f64": ("best method, realizable: float64 to 1e-6", "05_inverse_methods/best_realizable/float64/success_1e-6"),
    "best_method": ("best method (float64)", "05_inverse_methods/best_realizable/float64/method"),
    "map_real_bce": ("posterior mode, real: BCE of D(ẑ)", "05_inverse_methods/methods/map_encoder_newton/real/bce"),
    "saturated": ("pre-activations past float32 saturation (largest layer)", _saturated),
}
NUMERIC = [k for k in COLUMNS if k != "best_method"]


def _number(value):
    """A metrics value: numbers as floats ('nan'/'inf' strings included), names as they are, else None."""
    number = metric_number(value)
    return number if number is not None else value if isinstance(value, str) else None


def _numbers(node):
    """Metrics as read, every "nan", "inf" and "-inf" the float it stands for (metric_number): no reader compares a
    string with a number."""
    if isinstance(node, dict):
        return {key: _numbers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_numbers(value) for value in node]
    number = metric_number(node) if isinstance(node, str) else None
    return node if number is None else number


def _finite(value) -> bool:
    number = metric_number(value)
    return number is not None and math.isfinite(number)


def read_metrics(run_dir: Path, warn=print) -> dict:
    """{notebook: its metrics} of a run folder, non-finite numbers as floats; an unreadable file is left out, said
    in one line."""
    out = {}
    for notebook in NOTEBOOKS:
        path = run_dir / "metrics" / f"{notebook}.json"
        try:
            values = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError) as exc:
            warn(f"warning: {run_dir.name}: metrics/{path.name} left out, not readable JSON ({type(exc).__name__})")
            continue
        if isinstance(values, dict):
            out[notebook] = _numbers(values)
    return out


def design(params_file: Path) -> str:
    """What the run changes: the first sentence of its params file's header comment; a long one is cut before the
    parenthesis or word DESIGN_CHARS would break, marked with an ellipsis."""
    lines = Path(params_file).read_text(encoding="utf-8").splitlines()
    text = " ".join(line.lstrip("# ").strip() for line in itertools.takewhile(lambda line: line.startswith("#"), lines))
    text = text.split(". ")[0].split("; ")[0]
    if len(text) <= DESIGN_CHARS:
        return text or Path(params_file).stem
    cut = text[:DESIGN_CHARS]
    at = cut.rfind(" (") if cut.count("(") > cut.count(")") else -1
    at = at if at > 0 else cut.rfind(" ")
    return (cut[:at] if at > 0 else cut).rstrip(" ,:") + " …"


def family_frame(reports: Path, params_dir: Path, warn=print) -> pd.DataFrame:
    """Rows: the family's runs (default and its seeds first); columns: COLUMNS' keys, `design` and `notebooks`
    (how many of 01-05 have metrics). A value a run lacks is NaN (None for a name)."""
    files = sorted(family(params_dir), key=lambda p: (_SEEDS + (p.stem,)).index(p.stem))  # seeds first, then by name
    rows = {}
    for params_file in files:
        metrics = read_metrics(Path(reports) / params_file.stem, warn)
        values = {key: read(metrics) if callable(read) else _get(metrics, *read.split("/")) for key, (_, read) in COLUMNS.items()}
        rows[params_file.stem] = {**{key: _number(v) for key, v in values.items()},
                                  "design": design(params_file), "notebooks": len(metrics)}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame[NUMERIC] = frame[NUMERIC].apply(pd.to_numeric, errors="coerce")
    return frame


def seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd and count over the default's seeds, per numeric column (NaN with fewer than two)."""
    stats = frame.loc[[s for s in _SEEDS if s in frame.index], NUMERIC].agg(["mean", "std", "count"]).T
    stats.loc[stats["count"] < 2, ["mean", "std"]] = np.nan
    return stats


def verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: does the closed form work on realizable images, and on real ones (NaN: not measured)?"""
    realizable = frame["cf_f64"] >= WORKS_REALIZABLE
    real = (frame["cf_real_psnr"] >= frame["recon_psnr"] - WORKS_REAL_PSNR_GAP_DB) & \
           (frame["cf_real_probe"] >= WORKS_REAL_PROBE_RATIO * frame["probe"])
    return pd.DataFrame({"realizable": realizable.where(frame["cf_f64"].notna()),
                         "real": real.where(frame[["cf_real_psnr", "recon_psnr", "cf_real_probe", "probe"]].notna().all(1))})


# How table(formatted=True) prints a column: a fraction as a percentage, as the answer's text does (pct)
_FORMATS = {"val_loss": "{:.4f}", "nelbo": "{:.2f}", "iwae": "{:.2f}", "recon_bce": "{:.4f}", "recon_psnr": "{:.1f}",
           "cf_real_bce": "{:.3f}", "cf_real_psnr": "{:.1f}", "map_real_bce": "{:.4f}"}


def _shown(key: str, value: float) -> str:
    return _FORMATS[key].format(value) if key in _FORMATS else pct(value)


def table(frame: pd.DataFrame, formatted: bool = False) -> pd.DataFrame:
    """The frame as a reader sees it: labels for columns, the seeds' mean ± sd as a row after default_seed2;
    `formatted`: every number as text, to the precision the answer's text quotes it (_FORMATS)."""
    shown = frame[list(COLUMNS)].copy()
    for key in NUMERIC if formatted else ():
        shown[key] = shown[key].map(lambda value, key=key: _shown(key, value), na_action="ignore")
    shown = shown.rename(columns={k: label for k, (label, _) in COLUMNS.items()})
    stats = seeds(frame)
    if stats["count"].max() >= 2:
        row = {COLUMNS[k][0]: None if math.isnan(s["mean"]) else (f"{_shown(k, s['mean'])} ± {_shown(k, s['std'])}"
               if formatted else f"{s['mean']:.4g} ± {s['std']:.2g}") for k, s in stats.iterrows()}
        shown = pd.concat([shown, pd.DataFrame([row], index=["default (3 seeds)"])]).astype(object)
    return shown.astype(object).where(shown.notna(), "—")


def _posterior(m02: dict, m05: dict) -> str | None:
    """Real images: the best pixel fit against the posterior mode, the amortization gap, the likelihood."""
    real = {name: r for name, r in ((n, _get(v, "real")) for n, v in m05.get("methods", {}).items())
            if _finite(_get(r, "bce"))}  # a method without a finite BCE fits nothing
    if "map_encoder_newton" not in real or "encoder" not in real:
        return None
    fit = min(real, key=lambda name: real[name]["bce"])
    return say("choosing_a_z", fit=fit, f=real[fit], m=real["map_encoder_newton"], e=real["encoder"],
               gap=_get(m05, "posterior", "amortization_gap"), iwae=m02.get("iwae"))


def _built_to_invert(frame: pd.DataFrame, m05: dict, name: str = "constrained") -> str | None:
    """The decoder invertible by construction: its closed form on prior samples and real images, its price."""
    if name not in frame.index or frame.loc[name, ["cf_f32", "nelbo", "cf_real_bce"]].isna().any():
        return None
    return say("built_to_invert", name=name, c=frame.loc[name], d=frame.loc["default"],
               encoder=_get(m05, "methods", "encoder", "real", "bce"))


def findings(frame: pd.DataFrame, reports: Path) -> list[str]:
    """What the family shows, in sentences whose every number is read from the metrics (notebook 99 shows them;
    the first is the landing page's answer, all of them the README's)."""
    runs, verdict = frame.index[frame["notebooks"] > 0], verdicts(frame)

    def works(col: str) -> list[str]:
        return list(runs[verdict.loc[runs, col] == True])  # noqa: E712

    lines = [say("answer", d=frame.loc["default"]),
             say("closed_form_works", realizable=works("realizable"), real=works("real"), share=WORKS_REALIZABLE,
                 psnr_gap=WORKS_REAL_PSNR_GAP_DB, probe_ratio=WORKS_REAL_PROBE_RATIO)]
    default = read_metrics(Path(reports) / "default")
    lines.append(_posterior(default.get("02_evaluate", {}), default.get("05_inverse_methods", {})))
    built = read_metrics(Path(reports) / "constrained")
    lines.append(_built_to_invert(frame, built.get("05_inverse_methods", {})))
    stats = seeds(frame)
    if stats.loc["cf_f64", "count"] >= 2:
        lines.append(say("across_seeds", n=int(stats.loc["cf_f64", "count"]), cf=stats.loc["cf_f64"],
                         best=stats.loc["best_f64"], bce=stats.loc["cf_real_bce"]))
    return [line for line in lines if line]


def examples(reports: Path, params_dir: Path, frame: pd.DataFrame, x: torch.Tensor, warn=print) -> dict:
    """For each run with a model: {row label: D(ẑ) (N, 784)} of the encoder mean, the closed form and the
    run's best realizable method on the images x (CPU). A method that fails there is left out, said."""
    trained = {}  # run -> (its config, its model file), the runs with a model
    for name in frame.index[frame["notebooks"] > 0]:
        config = load_config(Path(params_dir) / f"{name}.yaml")
        if (model_file := Path(reports) / name / config.test.model_path).is_file():
            trained[name] = config, model_file
    shown = {name: [m for m in dict.fromkeys(["encoder", "closed_form", frame.at[name, "best_method"]])
                    if isinstance(m, str)] for name in trained}
    out = {}
    with progress(None, total=sum(map(len, shown.values())), desc="examples, runs × methods") as bar:
        for name, (config, model_file) in trained.items():
            model, out[name] = load_model(config, model_file, resolve_device("cpu")), {}
            for method in shown[name]:
                try:
                    z = run_method(method, None, x, model).z
                except (StudyError, RuntimeError, ValueError) as exc:
                    warn(f"{name}: {method} left out of the figure ({type(exc).__name__}: {exc})")
                else:
                    with torch.no_grad():
                        out[name][f"D({method})"] = model.decoder(z.float()).reshape(len(x), -1)
                bar.update()
    return out


def price_sweep(reports: Path) -> pd.DataFrame:
    """The price of invertibility beyond the committed runs: reports/summary/price_sweep.json, shorter
    trainings of the invertible designs at several strengths (each record with its settings), as a frame;
    empty when there is none."""
    path = Path(reports) / "summary" / "price_sweep.json"
    if not path.is_file():
        return pd.DataFrame()
    records = json.loads(path.read_text(encoding="utf-8"))
    keys = ("design", "f32_success_1e-4", "f64_success_1e-6", "test_nelbo_nats", "test_recon_bce_per_pixel")
    return pd.DataFrame({r["name"]: {**{k: r.get(k) for k in keys}, "epochs": r.get("settings", {}).get("epochs")}
                         for r in records}).T
