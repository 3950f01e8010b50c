"""The family of runs side by side (notebook 99 and reports/index.html): one table across runs, the
default's seeds as one row, a figure of a few test digits inverted by every trained run, and the
conclusions in words built from the numbers.

The family is every params file in params/ but smoke.yaml (the tests' run). A run is read from its
metrics files only (reports/<run>/metrics/NN_name.json); a run, a notebook or a key that is not
there is shown as missing, never filled in:

* a run without any metrics file: every cell "not run";
* a notebook whose metrics file is missing (or unreadable): its cells "not run" (resp. "unreadable");
* a key missing from a metrics file that exists: "missing", or "n/a" where the notebook left it out
  because its section does not apply to the run's model (BCE of a decoder without a Sigmoid, the
  saturation of a decoder without Tanh or Sigmoid);
* the realizable set is the prior sample of a VAE, the encoded test images of the autoencoder; the
  real-image chain is the original one (clamp 1e-3), or the chain without a clamp where there is
  nothing to clamp;
* a number the notebook measured as nan (a non-finite result): "nan" -- a measurement, not a gap.

The seeds row, "default (3 seeds)", is the mean ± sample standard deviation (ddof 1) of default,
default_seed1 and default_seed2 per column, over the seeds where that column's value exists and is
finite: with all three it reads "m ± s"; with two it reads "m ± s (2 of 3 seeds)"; with fewer it is
missing ("1 of 3 seeds"). A text column (the best method's name) shows the common value, or every
value when they differ.
"""
from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

QUESTION = "Can a VAE decoder's input be recovered from its output?"
DEFAULT = "default"
SEEDS = ("default", "default_seed1", "default_seed2")
SEEDS_ROW = "default (3 seeds)"
EXCLUDED = ("smoke",)  # params files that are not part of the family
SUMMARY_DIR = "summary"  # reports/summary/: the summary notebook, its figures and metrics
# The family in reading order; any other params file follows, sorted.
ORDER = ("default", "default_seed1", "default_seed2", "latent16", "leaky", "squeezed", "deterministic", "invertible")
# What each run changes against the original config (its params file's header says the same).
DESIGNS = {"default": "the original config", "default_seed1": "seed 1", "default_seed2": "seed 2",
           "latent16": "a 16-d latent", "leaky": "LeakyReLU in the decoder",
           "squeezed": "targets squeezed into [0.1, 0.9]",
           "deterministic": "a deterministic autoencoder, no Sigmoid output",
           "invertible": "ours: trained to keep pre-activations where float32 inverts"}

# What a reader must know to read a run's row, said once under the table.
CAVEATS = {"squeezed": "`squeezed`'s notebooks 02, 03 and 05 compare D(z) with the image x itself, not with its "
                       "squeezed target 0.1 + 0.8x, so its reconstruction BCE includes the squeeze; notebook 04 of "
                       "the default maps its outputs back ((D - 0.1) / 0.8) for the fair comparison"}

# When the chain "works": realizable, at least this share recovered to 1e-6 from float64 outputs;
# real images, D(z_hat) within this many dB (PSNR) of the encoder's reconstruction and the probe
# reading the digit from z_hat at least this fraction as well as from the encoder means.
WORKS_REALIZABLE = 0.99
WORKS_REAL_PSNR_GAP_DB = 3.0
WORKS_REAL_PROBE_RATIO = 0.9


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    notebook: str  # metrics file, without .json
    path: tuple[str, ...] | Callable[[dict], object]  # key path into it, or a function of it
    fmt: str


NOT_APPLICABLE = "n/a"  # the run's notebook said the section does not apply to its model and wrote no key


def _first(mapping, *keys):
    """The value of the first of `keys` that `mapping` has (the family's runs name some sections by their
    model: a realizable set of prior samples, or the autoencoder's encoded test images), else None."""
    if not isinstance(mapping, dict):
        return None
    return next((mapping[k] for k in keys if k in mapping), None)


def _realizable(m03: dict):
    """03's realizable recovery by arithmetic: of prior samples (a VAE), else of encoded test images."""
    return _first(m03.get("realizable"), "prior", "encoder_mean")


def _real_chain(m03: dict):
    """03's original chain on real images: with the original clamp where the decoder has one, else no clamp."""
    return _first(m03.get("real"), "original_clamp", "no_clamp")


def _image_measure(section, key: str):
    """An image measure of a section; NOT_APPLICABLE where the section holds image measures but not this
    one (BCE of a decoder without a Sigmoid, which the notebooks leave out)."""
    if not isinstance(section, dict):
        return None
    if key not in section and "psnr" in section:
        return NOT_APPLICABLE
    return _number(section.get(key))


def _success(arithmetic: str, threshold: str):
    def read(m03):
        by_arithmetic = _realizable(m03)
        found = by_arithmetic.get(arithmetic) if isinstance(by_arithmetic, dict) else None
        return _number(found.get(threshold)) if isinstance(found, dict) and threshold in found else None
    return read


def _largest_saturated(m03: dict):
    """(share, layer) of the layer whose realizable pre-activations most often lie past float32's saturation
    point (03 saturated_share_<source>[layer].float32.units); NOT_APPLICABLE when 03 ran without such an
    entry (a decoder with no Tanh or Sigmoid: nothing saturates)."""
    shares = _first(m03, "saturated_share_prior", "saturated_share_encoder_mean")
    if not isinstance(shares, dict):
        return None if "realizable" not in m03 else (NOT_APPLICABLE, NOT_APPLICABLE)
    found = [(_number(v.get("float32", {}).get("units")), layer) for layer, v in shares.items()
             if isinstance(v, dict) and isinstance(v.get("float32"), dict) and "units" in v["float32"]]
    if not found:
        return None
    return max(found, key=lambda t: -math.inf if math.isnan(t[0]) else t[0])


COLUMNS = [
    Column("val_loss", "validation loss (its own convention)", "01_train", ("final_val_loss",), "{:.4f}"),
    Column("recon_bce", "test reconstruction BCE/pixel", "02_evaluate",
           lambda m: _image_measure(m.get("reconstruction"), "bce"), "{:.3f}"),
    Column("recon_psnr", "test reconstruction PSNR (dB)", "02_evaluate", ("reconstruction", "psnr"), "{:.1f}"),
    Column("probe", "probe accuracy (encoder means)", "02_evaluate", ("probe_accuracy",), "{:.3f}"),
    Column("cf_real_bce", "closed form, real images: BCE of D(z_hat)", "03_invert",
           lambda m: _image_measure(_real_chain(m), "bce"), "{:.3f}"),
    Column("cf_real_psnr", "closed form, real images: PSNR (dB)", "03_invert",
           lambda m: _image_measure(_real_chain(m), "psnr"), "{:.1f}"),
    Column("cf_real_probe", "closed form, real images: probe accuracy", "03_invert",
           lambda m: _image_measure(_real_chain(m), "probe_accuracy"), "{:.3f}"),
    Column("cf_f32", "closed form, realizable: float32 to 1e-4", "03_invert", _success("float32", "success_1e-4"),
           "{:.2%}"),
    Column("cf_f64", "closed form, realizable: float64 to 1e-6", "03_invert", _success("float64", "success_1e-6"),
           "{:.1%}"),
    Column("best_f32", "best method, realizable: float32 to 1e-4", "05_inverse_methods",
           ("best_realizable", "float32", "success_1e-4"), "{:.1%}"),
    Column("best_f64", "best method, realizable: float64 to 1e-6", "05_inverse_methods",
           ("best_realizable", "float64", "success_1e-6"), "{:.1%}"),
    Column("best_method", "best method (float64)", "05_inverse_methods", ("best_realizable", "float64", "method"), "{}"),
    Column("saturated", "pre-activations past float32 saturation (largest layer)", "03_invert",
           lambda m: None if (s := _largest_saturated(m)) is None else s[0], "{:.1%}"),
    Column("saturated_layer", "that layer", "03_invert",
           lambda m: None if (s := _largest_saturated(m)) is None else s[1], "{}"),
]
COLUMN = {c.key: c for c in COLUMNS}
NOTEBOOKS = tuple(dict.fromkeys(c.notebook for c in COLUMNS))


@dataclass(frozen=True)
class Missing:
    """A cell with no value: why ("not run", "unreadable", "missing", "1 of 3 seeds")."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def _number(value):
    """A metrics value as a float where it is one ("nan"/"inf" strings included), else as is."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _lookup(metrics: dict, path):
    if callable(path):
        return path(metrics)
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return _number(metrics)


def _read(path: Path):
    """The metrics file's object, Missing("not run") when absent, Missing("unreadable") when broken."""
    if not path.is_file():
        return Missing("not run")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Missing("unreadable")
    return values if isinstance(values, dict) else Missing("unreadable")


@dataclass
class RunRow:
    name: str
    values: dict = field(default_factory=dict)  # column key -> float, str or Missing

    @property
    def executed(self) -> list[str]:
        """The notebooks whose metrics this run has (of those the table reads)."""
        return [nb for nb in NOTEBOOKS if not any(isinstance(self.values[c.key], Missing) and
                                                  self.values[c.key].reason not in ("missing", NOT_APPLICABLE)
                                                  for c in COLUMNS if c.notebook == nb)]

    @property
    def ran(self) -> bool:
        return bool(self.executed)

    def number(self, key: str) -> float:
        """The column's value as a float; nan when missing or not a number."""
        v = self.values.get(key)
        return v if isinstance(v, float) else math.nan


def run_row(name: str, run_dir: Path) -> RunRow:
    """One run's cells, read from run_dir/metrics/."""
    files = {nb: _read(run_dir / "metrics" / f"{nb}.json") for nb in NOTEBOOKS}
    row = RunRow(name)
    for c in COLUMNS:
        m = files[c.notebook]
        value = m if isinstance(m, Missing) else _lookup(m, c.path)
        row.values[c.key] = (Missing("missing") if value is None else
                             Missing(NOT_APPLICABLE) if isinstance(value, str) and value == NOT_APPLICABLE else value)
    return row


def family(params_dir: str | Path) -> list[str]:
    """The names of the family's runs: every params/*.yaml but smoke, in ORDER, then the others sorted."""
    names = {p.stem for p in Path(params_dir).glob("*.yaml")} - set(EXCLUDED)
    return [n for n in ORDER if n in names] + sorted(names - set(ORDER))


@dataclass(frozen=True)
class Aggregate:
    """A column over the seeds: mean and sample sd of n values, or the common text."""

    mean: float | str | Missing
    sd: float
    n: int

    def text(self, fmt: str) -> str:
        if isinstance(self.mean, (Missing, str)):
            return str(self.mean)
        tail = "" if self.n == len(SEEDS) else f" ({self.n} of {len(SEEDS)} seeds)"
        return f"{_fmt(self.mean, fmt)} ± {_fmt(self.sd, fmt)}{tail}"


def _aggregate(rows: list[RunRow], key: str) -> Aggregate:
    values = [r.values[key] for r in rows if not isinstance(r.values[key], Missing)]
    texts = [v for v in values if isinstance(v, str)]
    if texts and len(texts) == len(values):
        if len(texts) < 2:
            return Aggregate(Missing(f"{len(texts)} of {len(SEEDS)} seeds"), math.nan, len(texts))
        return Aggregate(texts[0] if len(set(texts)) == 1 else " / ".join(texts), math.nan, len(texts))
    numbers = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if len(numbers) < 2:
        return Aggregate(Missing(f"{len(numbers)} of {len(SEEDS)} seeds"), math.nan, len(numbers))
    return Aggregate(statistics.fmean(numbers), statistics.stdev(numbers), len(numbers))


def seeds_row(rows: dict[str, RunRow]) -> dict[str, Aggregate]:
    """Per column, the aggregate over the seed runs present (see the module docstring)."""
    present = [rows[s] for s in SEEDS if s in rows]
    return {c.key: _aggregate(present, c.key) for c in COLUMNS}


def _fmt(value, fmt: str) -> str:
    if isinstance(value, Missing):
        return str(value)
    try:
        return fmt.format(value) if not (isinstance(value, float) and math.isnan(value)) else "nan"
    except (ValueError, TypeError):
        return str(value)


@dataclass
class Summary:
    reports: Path
    rows: dict[str, RunRow]  # in the family's order; runs not executed included
    seeds: dict[str, Aggregate]

    @property
    def present(self) -> list[str]:
        return [n for n, r in self.rows.items() if r.ran]

    @property
    def not_run(self) -> list[str]:
        return [n for n, r in self.rows.items() if not r.ran]

    def cells(self) -> dict[str, dict[str, str]]:
        """Row label -> column label -> the cell as shown (the seeds row after default_seed2)."""
        out = {}
        for name, row in self.rows.items():
            out[name] = {c.label: _fmt(row.values[c.key], c.fmt) for c in COLUMNS}
            if name == SEEDS[-1] or (name == DEFAULT and SEEDS[-1] not in self.rows):
                out[SEEDS_ROW] = {c.label: self.seeds[c.key].text(c.fmt) for c in COLUMNS}
        return out

    def frame(self):
        """The table as a pandas DataFrame of shown cells (rows: runs, columns: labels)."""
        import pandas as pd

        return pd.DataFrame(self.cells()).T

    def numbers(self):
        """The numeric columns as a DataFrame of floats (nan where missing), runs only."""
        import pandas as pd

        keys = [c.key for c in COLUMNS if c.fmt != "{}"]
        return pd.DataFrame({n: {k: r.number(k) for k in keys} for n, r in self.rows.items()}).T


def cross_run_table(reports: str | Path, runs: list[str]) -> Summary:
    """The table of `runs` (names of reports/<name>/ folders; a folder that is not there is a run not run)."""
    reports = Path(reports)
    rows = {name: run_row(name, reports / name) for name in runs}
    return Summary(reports, rows, seeds_row(rows))


def family_table(reports: str | Path, params_dir: str | Path) -> Summary:
    """cross_run_table over the family of params_dir."""
    return cross_run_table(reports, family(params_dir))


def table_html(summary: Summary) -> str:
    """The table as an HTML <table> (cells escaped; missing cells in class "missing")."""
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in COLUMNS)
    body = []
    for label, cells in summary.cells().items():
        tds = "".join(f"<td{' class=missing' if _is_gap(v) else ''}>{html.escape(v)}</td>" for v in cells.values())
        body.append(f"<tr><th>{html.escape(label)}</th>{tds}</tr>")
    return f"<table class=summary><tr><th>run</th>{head}</tr>{''.join(body)}</table>"


def _is_gap(text: str) -> bool:
    gaps = ("not run", "missing", "unreadable", NOT_APPLICABLE)
    return text in gaps or ("±" not in text and text.endswith(f"of {len(SEEDS)} seeds"))


def to_json(summary: Summary) -> dict:
    """What 99_summary.json holds: per run its cells (null where missing, with why in `missing`),
    the seeds' aggregates, and which runs are present or not run."""
    runs = {}
    for name, row in summary.rows.items():
        runs[name] = {"values": {k: None if isinstance(v, Missing) else v for k, v in row.values.items()},
                      "missing": {k: v.reason for k, v in row.values.items() if isinstance(v, Missing)},
                      "executed": row.executed}
    seeds = {k: {"mean": None if isinstance(a.mean, Missing) else a.mean, "sd": a.sd, "n": a.n}
             for k, a in summary.seeds.items()}
    return {"runs": runs, "seeds": seeds, "seed_runs": list(SEEDS), "present": summary.present,
            "not_run": summary.not_run, "columns": {c.key: c.label for c in COLUMNS},
            "thresholds": {"works_realizable": WORKS_REALIZABLE, "works_real_psnr_gap_db": WORKS_REAL_PSNR_GAP_DB,
                           "works_real_probe_ratio": WORKS_REAL_PROBE_RATIO}}


# --------------------------------------------------------------------------
# Words built from the numbers


def works_realizable(row: RunRow) -> bool | None:
    """Does the closed-form chain recover realizable inputs (>= WORKS_REALIZABLE to 1e-6, float64)? None: unknown."""
    v = row.values.get("cf_f64")
    if not isinstance(v, float):
        return None
    return bool(v >= WORKS_REALIZABLE)


def works_real(row: RunRow) -> bool | None:
    """Does the closed-form chain invert real images about as well as the encoder (PSNR within
    WORKS_REAL_PSNR_GAP_DB, probe >= WORKS_REAL_PROBE_RATIO of the encoder's)? None: unknown.
    A non-finite closed-form PSNR counts as failing (the chain returned nothing usable)."""
    psnr, probe = row.values.get("cf_real_psnr"), row.values.get("cf_real_probe")
    ref_psnr, ref_probe = row.number("recon_psnr"), row.number("probe")
    if not isinstance(psnr, float) or not isinstance(probe, float) or math.isnan(ref_psnr) or math.isnan(ref_probe):
        return None
    if not math.isfinite(psnr):
        return False
    return bool(psnr >= ref_psnr - WORKS_REAL_PSNR_GAP_DB and probe >= WORKS_REAL_PROBE_RATIO * ref_probe)


def _pct(v) -> str:
    return "nan" if not isinstance(v, float) or math.isnan(v) else f"{v:.1%}" if v >= 0.001 or v == 0 else f"{v:.2%}"


def _realizable_sentence(row: RunRow) -> str:
    v = row.values
    if any(isinstance(v[k], Missing) for k in ("best_f32", "best_f64", "best_method")):
        best = "the better methods are not measured yet (notebook 05 has not run)"
    else:
        best = (f"the best method compared ({v['best_method']}) recovers {_pct(v['best_f32'])} and "
                f"{_pct(v['best_f64'])} of its samples")
    chain = (f"the original's layer-by-layer pseudo-inverse recovers the latent of {_pct(v['cf_f32'])} of prior "
             f"samples to 1e-4 from float32 outputs and {_pct(v['cf_f64'])} to 1e-6 in float64")
    verdict = "the closed form works here" if works_realizable(row) else (
        "the input can be recovered, but not by the closed form" if isinstance(v["best_f64"], float)
        and v["best_f64"] >= WORKS_REALIZABLE else "the closed form does not recover it")
    return f"On images the decoder can produce, {chain}, while {best}: {verdict}."


def _real_sentence(row: RunRow) -> str:
    v = row.values
    numbers = (f"D(z_hat) has a BCE of {_fmt(v['cf_real_bce'], '{:.2f}')} per pixel against "
               f"{_fmt(v['recon_bce'], '{:.3f}')} for the encoder, and a linear probe reads the digit from z_hat at "
               f"{_pct(v['cf_real_probe'])} (encoder: {_pct(v['probe'])})")
    works = works_real(row)
    if works is None:
        return f"On real test images the original chain cannot be judged yet: {numbers}."
    return f"On real test images the original chain {'works' if works else 'fails'}: {numbers}."


def answer(summary: Summary) -> str:
    """The question's answer in two sentences, from the default run's numbers (or what is missing)."""
    row = summary.rows.get(DEFAULT)
    if row is None or not row.ran:
        return "The default run has not been executed yet (`./run_all.sh`), so there is no answer from numbers yet."
    needed = ("cf_f32", "cf_f64", "cf_real_bce", "cf_real_probe", "recon_bce", "probe")
    gaps = [k for k in needed if isinstance(row.values[k], Missing)]
    if gaps:
        return (f"The default run lacks numbers the answer needs ({', '.join(gaps)}): run its notebooks 02 and 03 "
                f"(and 05 for the better methods).")
    return f"{_realizable_sentence(row)} {_real_sentence(row)}"


def _names(names: list[str]) -> str:
    return ", ".join(f"`{n}` ({DESIGNS.get(n, n)})" for n in names) if names else "none"


def design_lines(summary: Summary) -> list[str]:
    """Which designs make the chain work on realizable and on real images, among the runs executed."""
    designs = [n for n in summary.present if n not in SEEDS[1:]]
    if designs == [DEFAULT] or not designs:
        waiting = [n for n in summary.not_run if n not in SEEDS[1:]]
        done = "Only the default run has been executed" if designs else "No run has been executed yet"
        return [f"{done}, so which of the original's designs makes the pseudo-inverse chain work awaits the runs "
                f"{_names(waiting)} (`./run_all.sh --all`)."]
    lines = []
    for what, test, criterion in (
            ("realizable images", works_realizable, f"at least {WORKS_REALIZABLE:.0%} of prior samples (the autoencoder: "
                                                    f"of its encoded test images) to 1e-6 in float64"),
            ("real images", works_real, f"PSNR within {WORKS_REAL_PSNR_GAP_DB:g} dB of the encoder and a probe at "
                                        f"{WORKS_REAL_PROBE_RATIO:.0%} of its accuracy or better")):
        verdicts = {n: test(summary.rows[n]) for n in designs}
        yes = [n for n, ok in verdicts.items() if ok]
        no = [n for n, ok in verdicts.items() if ok is False]
        unknown = [n for n, ok in verdicts.items() if ok is None]
        line = (f"On {what} ({criterion}) the pseudo-inverse chain works for {_names(yes)}; it fails for "
                f"{_names(no)}")
        lines.append(line + (f"; not measured for {_names(unknown)}." if unknown else "."))
    missing = [n for n in summary.not_run if n not in SEEDS[1:]]
    if missing:
        lines.append(f"Not run yet: {_names(missing)} (`./run_all.sh --all`).")
    return lines


def seed_lines(summary: Summary) -> list[str]:
    """Whether the default's conclusions (the chain fails on realizable and real images; the best method
    recovers realizable inputs) hold on every seed run executed."""
    present = [s for s in SEEDS if s in summary.rows and summary.rows[s].ran]
    if len(present) < len(SEEDS):
        waiting = [s for s in SEEDS if s not in present]
        return [f"Whether the default's conclusions hold across seeds awaits the runs {', '.join(waiting)} "
                f"(`./run_all.sh --all`)."]

    def verdict(name):
        r = summary.rows[name]
        best = r.values["best_f64"]
        return (works_realizable(r), works_real(r), None if not isinstance(best, float) else bool(best >= WORKS_REALIZABLE))

    verdicts = {s: verdict(s) for s in SEEDS}
    a = summary.seeds
    spread = (f"closed form float64 to 1e-6: {a['cf_f64'].text('{:.1%}')}; best method: {a['best_f64'].text('{:.1%}')}; "
              f"real-image BCE of the chain: {a['cf_real_bce'].text('{:.2f}')}")
    if any(None in v for v in verdicts.values()):
        unknown = [s for s, v in verdicts.items() if None in v]
        return [f"The seeds cannot all be judged yet ({', '.join(unknown)} lack numbers); so far: {spread}."]
    differ = [s for s in SEEDS[1:] if verdicts[s] != verdicts[DEFAULT]]
    if not differ:
        return [f"The default's conclusions hold on all three seeds ({spread})."]
    return [f"The default's conclusions do not hold on {', '.join(differ)} ({spread}): see their rows."]


def _change(value: float, reference: float) -> str:
    return f"{value / reference - 1:+.0%}" if reference else "n/a"


def cost_lines(summary: Summary) -> list[str]:
    """For each design run beside the default: what it buys the closed form (realizable float32 and
    float64 recovery, real-image BCE of the chain) and what it costs (test reconstruction BCE), in
    numbers against the default's; the runs without a BCE (no Sigmoid) by PSNR."""
    base = summary.rows.get(DEFAULT)
    if base is None or not base.ran:
        return []
    lines = []
    for name in [n for n in summary.present if n not in SEEDS]:
        r = summary.rows[name]
        if any(math.isnan(r.number(k)) for k in ("cf_f32", "cf_f64")):
            continue
        bought = (f"`{name}` ({DESIGNS.get(name, name)}): the closed form recovers {_pct(r.number('cf_f32'))} to 1e-4 "
                  f"in float32 and {_pct(r.number('cf_f64'))} to 1e-6 in float64 (default: {_pct(base.number('cf_f32'))}, "
                  f"{_pct(base.number('cf_f64'))})")
        if not math.isnan(r.number("recon_bce")):
            real = r.number("cf_real_bce") / r.number("recon_bce")
            default_real = base.number("cf_real_bce") / base.number("recon_bce")
            bought += (f"; on real images D(z_hat) has {real:.1f} times the encoder's BCE (default: {default_real:.1f} "
                       f"times); in reconstruction (its cost, or gain): test "
                       f"BCE {r.number('recon_bce'):.3f} against {base.number('recon_bce'):.3f} "
                       f"({_change(r.number('recon_bce'), base.number('recon_bce'))})")
        else:
            bought += (f"; on real images D(z_hat) has a PSNR of {r.number('cf_real_psnr'):.1f} dB against the encoder's "
                       f"{r.number('recon_psnr'):.1f} dB (no Sigmoid: no BCE)")
        lines.append(bought + ".")
    return lines


def conclusions(summary: Summary) -> str:
    """Markdown: the answer, the designs, what each design buys and costs, the seeds."""
    caveats = [CAVEATS[n] + "." for n in summary.present if n in CAVEATS]
    lines = [answer(summary), *design_lines(summary), *cost_lines(summary), *caveats, *seed_lines(summary)]
    return "\n".join(f"* {line}" for line in lines)


# --------------------------------------------------------------------------
# The figure: a few test digits inverted by each trained run


EXAMPLE_ROWS = ("x", "D(encoder)", "D(closed form)", "D(best method)")


def reports_folder(reports_root: str | Path | None, root: Path) -> Path:
    """Where the runs live: reports_root under the project root; None is the scratch root (as open_run)."""
    from ..runs.paths import SCRATCH_ROOT

    path = Path(SCRATCH_ROOT if reports_root is None else reports_root)
    return path if path.is_absolute() else root / path


def _inverted(model, x, best: str | None, log=print) -> dict:
    """D(z_hat) of the encoder, the closed form and `best` on x (CPU arrays), and their image metrics;
    a method that fails on this run is shown as an empty row (said by log())."""
    import torch

    from ..errors import StudyError
    from ..inversion.methods import run_method
    from .evaluate import reconstruction_metrics

    device = next(model.parameters()).device
    x = x.to(device)
    out = {}
    for label, name in zip(EXAMPLE_ROWS[1:], ("encoder", "closed_form", best)):
        if name is None:
            continue
        try:
            z = run_method(name, None, x, model).z
        except (StudyError, RuntimeError, ValueError) as exc:
            log(f"{name}: failed on this run ({type(exc).__name__}: {exc}); its row is left empty")
            continue
        with torch.no_grad():
            recon = model.decoder(z.to(device, next(model.parameters()).dtype)).reshape(len(x), -1).cpu()
        out[label] = (name, recon, reconstruction_metrics(model, recon, x.reshape(len(x), -1).cpu()))
    return out


def run_examples(summary: Summary, params_dir: Path, root: Path, n_images: int = 6, log=print) -> dict:
    """For each run present with a trained model: its name -> {row label: (method, D(z_hat), metrics)},
    plus "x" -> the first n_images test images. A run that cannot be shown is left out, said by log()."""
    from ..core import splits
    from ..errors import StudyError
    from ..runs.paths import open_run
    from .shared import quiet_model

    examples, x = {}, None
    for name in summary.present:
        try:
            run = open_run(Path(params_dir) / f"{name}.yaml", summary.reports, root, log=lambda *_: None)
            if not run.model_file.is_file():
                shown = run.model_file.relative_to(root) if run.model_file.is_relative_to(root) else run.model_file
                log(f"{name}: no trained model ({shown}); left out of the figure")
                continue
            if x is None:
                x = splits.test_images(run, log=lambda *_: None)[0][:n_images]
            best = summary.rows[name].values["best_method"]
            examples[name] = _inverted(quiet_model(run), x, best if isinstance(best, str) else None,
                                       log=lambda line, run=name: log(f"{run}: {line}"))
        except (StudyError, OSError, ValueError, RuntimeError) as exc:
            log(f"{name}: left out of the figure ({type(exc).__name__}: {exc})")
    if x is not None:
        examples["x"] = x.reshape(len(x), -1)
    return examples


def examples_figure(examples: dict, path=None):
    """One grid: per run, x, D(encoder), D(closed form), D(best method), each row named."""
    from .figures import image_rows

    rows, titles = [], []
    for name, shown in examples.items():
        if name == "x":
            continue
        rows.append(examples["x"].numpy())
        titles.append(f"{name}: x")
        for label in EXAMPLE_ROWS[1:]:
            method = shown.get(label)
            rows.append(method[1].numpy() if method else examples["x"].numpy()[:0])
            titles.append(f"{label}: none" if method is None else f"D({method[0]})" if label == EXAMPLE_ROWS[3] else label)
    if not rows:
        return None
    return image_rows(rows, titles, path, title="Test digits x and D(z_hat) of the encoder, the closed form "
                                                "and the best method, per run")


def examples_metrics(examples: dict) -> dict:
    """run -> row label -> {method, bce, psnr} on the figure's images (for 99_summary.json); no bce for a
    decoder without a Sigmoid (the autoencoder: its mse instead)."""
    return {name: {label: {"method": m, **{k: metrics[k] for k in ("bce", "mse", "psnr") if k in metrics}}
                   for label, (m, _, metrics) in shown.items()}
            for name, shown in examples.items() if name != "x"}


# --------------------------------------------------------------------------
# What notebook 99 calls


@dataclass(frozen=True)
class SummaryRun:
    """Where the summary reads (reports/<run>/ of the family in params_dir) and writes (reports/summary/)."""

    root: Path
    reports: Path
    params_dir: Path

    @property
    def out(self) -> Path:
        return self.reports / SUMMARY_DIR

    def figure(self, name: str) -> Path:
        return self.out / "figures" / name

    def table(self) -> Summary:
        return family_table(self.reports, self.params_dir)


def open_summary(params_file: str | Path, reports_root: str | Path | None, root=None, log=print) -> SummaryRun:
    """The family is every params file beside params_file (but smoke.yaml); reports_root as open_run's
    (None: the scratch root reports/scratch/, whose runs are the interactive ones)."""
    from ..runs.paths import project_root

    root = project_root(root)
    params_file = Path(params_file)
    params_dir = (params_file if params_file.is_absolute() else root / params_file).parent
    where = SummaryRun(root, reports_folder(reports_root, root), params_dir)
    if reports_root is None:
        log(f"scratch summary: reading the runs under {where.reports.relative_to(root)}/ and writing "
            f"{where.out.relative_to(root)}/ (ignored by git); set reports_root = \"reports\" for the committed runs")
    return where


def write_summary(where: SummaryRun, summary: Summary, examples: dict) -> Path:
    """metrics/99_summary.json: to_json(summary) and the figure's per-run numbers."""
    from ..runs.paths import write_json

    return write_json(where.out / "metrics" / "99_summary.json",
                      {**to_json(summary), "examples": examples_metrics(examples),
                       "examples_n_images": len(examples["x"]) if "x" in examples else 0})
