"""What decides whether a result is up to date, and what the Snakefile needs to know of the study.

Each executed notebook carries a record of what it was made from (`execute` writes it into the notebook's metadata):
- depends_on: the params its results depend on (the model's fingerprint, the keys of READS) and its code cells;
- inputs: digests of what it read that another notebook made (a model's weights; the family's metrics);
- outputs: digests of what it wrote (its metrics file; 01's model weights).
A result is up to date when its executed notebook holds its notebook's code and no error and its record matches what
it would be made from now, and so do the results it reads. `plan` decides this from what is in the checkout alone
(not from file times, nor from the engine's state in .snakemake/): a fresh clone, a pull that brings code with its
re-executed reports, another checkout, all agree. A hand-edited number no longer matches its digest: its notebook runs
again. A change in lib/ re-runs nothing by itself (the tests guard it; force the notebooks it touches with --force).

Snakemake schedules from receipts (REPORTS/.receipts/, git-ignored): `plan` writes one for each result up to date and
removes the others', and a rule's only output is its receipt. So Snakemake runs exactly what has none, and the file it
deletes before a job is a receipt: a killed or failed job leaves the previous result in place.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from inverse_vae.arithmetic import made_pinned
from inverse_vae.constants import NOTEBOOKS, SUMMARY
from inverse_vae.core.checkpoints import load_checkpoint, params_fingerprint, tensor_digest
from inverse_vae.core.config import Config, family, load_config, run_name
from inverse_vae.errors import StudyError
from inverse_vae.runs.run import load_checked_config

# The params each notebook's results depend on, beside the model (dotted keys of the params file).
READS = {
    "01_train": ("train.train_epochs", "train.plot_epochs", "train.model_path", "train.progress_path"),
    "02_evaluate": ("test.batch_size", "test.n_components", "evaluate", "data.test_subset"),
    "03_invert": ("invert", "evaluate.tsne_samples", "evaluate.probe_max_iter", "test.n_components", "data.test_subset"),
    "04_failure_analysis": ("failure", "invert.n_prior", "evaluate.probe_max_iter", "data.test_subset"),
    "05_inverse_methods": ("methods", "invert.n_prior", "evaluate.probe_max_iter", "data.test_subset"),
}
MODEL = ("train.train_epochs", "test.model_path", "test.allow_intermediate")  # which checkpoint is evaluated
RECORD = "inverse_vae"  # the executed notebook's metadata key holding {"made_from": ...}
PAGE_RECORD = re.compile(r'<meta name="inverse-vae-made-from" content="([0-9a-f]+)">')
EXPLORE = "98_explore"
ACROSS_RUNS = {SUMMARY: "summary", EXPLORE: "explore"}  # notebooks across runs, and the folder each is executed into
# 02-05 wait for a run's model, not for its notebook 01: 01 re-run for its figures alone re-runs nothing that reads it.
MODEL_RESULT = "model"
FIGURES_ONLY = {"train.plot_epochs", "train.progress_path"}  # keys only 01's figures and progress log read


def _pick(plain: dict, key: str):
    for part in key.split("."):
        plain = plain.get(part) if isinstance(plain, dict) else None
    return plain


def _code(cells: list) -> str:
    code = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"
                     and "injected-parameters" not in c.get("metadata", {}).get("tags", []))
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def code_digest(notebook: Path) -> str:
    """The notebook's code cells (papermill's injected parameters aside): an edited explanation re-runs nothing."""
    return _code(json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"])


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def model_digest(config: Config, run_dir: Path) -> str | None:
    """The SHA-256 of the weights of the model the run's notebooks evaluate (compacting keeps it), None when missing
    or not a checkpoint."""
    path = run_dir / config.test.model_path
    return _weights(path, path.stat().st_mtime_ns if path.is_file() else None)


@functools.lru_cache(maxsize=64)
def _weights(path: Path, mtime_ns: int | None) -> str | None:  # a plan reads each model once, not once per notebook
    try:
        state = load_checkpoint(path)
    except StudyError:
        return None
    return tensor_digest({"model_state_dict": state["model_state_dict"]})[:16]


def depends_on(config: Config, notebook: str, root: Path) -> dict:
    """What `notebook`'s results depend on in its params and code: a change re-runs it."""
    plain = config.to_dict()
    values = {"model": _digest(params_fingerprint(config)), **{k: _pick(plain, k) for k in MODEL + READS[notebook]},
              "code": code_digest(root / "notebooks" / f"{notebook}.ipynb")}
    if notebook == "04_failure_analysis" and config.failure.squeezed_params:
        values["squeezed"] = _digest(params_fingerprint(load_config(root / config.failure.squeezed_params)))
    return json.loads(json.dumps(values, sort_keys=True, default=str))  # as it reads back from a notebook


def _digest(value) -> str:
    """A short digest of a JSON-able value (the params that shape a model: the record stays readable)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Study:
    """The runs a plan covers (the family, and any run selected beside it), bound to a project and a reports root."""

    root: Path
    reports: Path  # absolute
    configs: dict  # run name -> (params file, Config)
    family: tuple  # run names of the family (every params/*.yaml but smoke)

    @classmethod
    def of(cls, root: Path, reports: str | Path = "reports", selected=(), checked: bool = True) -> Study:
        """`checked`: every check of check-params (the Snakefile's refusal in one line); else the schema alone, enough
        to plan (and seconds faster: no optimizer is built)."""
        files = family(root / "params") + [root / p for p in selected]
        load = (lambda p: load_checked_config(p, root)) if checked else load_config
        configs = {run_name(p): (Path(p), load(p)) for p in files}
        return cls(root, root / reports, configs, tuple(run_name(p) for p in family(root / "params")))

    def upstream(self, folder: str, stem: str) -> list[tuple[str, str]]:
        """The results this one reads (and waits for): the run's model (what 01 trains) for 02-05, the squeezed run's
        too for a 04 that compares with it, every family result for the summary, every family model for the explorer."""
        if stem == SUMMARY:
            return [(run, nb) for run in self.family for nb in NOTEBOOKS]
        if stem == EXPLORE:
            return [(run, MODEL_RESULT) for run in self.family]
        if stem == MODEL_RESULT:
            return [(folder, "01_train")]
        if stem == "01_train":
            return []
        needs = [(folder, MODEL_RESULT)]
        squeezed = self.configs[folder][1].failure.squeezed_params
        if stem == "04_failure_analysis" and squeezed:
            needs.append((run_name(squeezed), MODEL_RESULT))
        return needs

    def made_from(self, folder: str, stem: str) -> dict:
        """What this result would be made from now: its params and code, and the digests of what it reads."""
        if stem in ACROSS_RUNS:
            metrics = sorted(str(m.relative_to(self.reports)) for run in self.family
                             for m in (self.reports / run).glob("metrics/*.json"))
            reads = ({run: model_digest(self.configs[run][1], self.reports / run) for run in self.family}
                     if stem == EXPLORE else
                     {path: file_digest(self.reports / path) for path in metrics + ["summary/price_sweep.json"]})
            return {"depends_on": {"code": code_digest(self.root / "notebooks" / f"{stem}.ipynb"),
                                   "family": list(self.family)}, "inputs": reads}
        config = self.configs[folder][1]
        reads = {f"{run}/model": model_digest(self.configs[run][1], self.reports / run)
                 for run, _ in self.upstream(folder, stem)}  # the key names the run, as the records made so far do
        return {"depends_on": depends_on(config, stem, self.root), "inputs": reads}

    def written(self, folder: str, stem: str) -> dict:
        """Digests of what the result wrote: its metrics file, and 01's model."""
        config = self.configs[folder][1] if stem in NOTEBOOKS else None
        results = self.reports / folder / (config.test.results_path if config else ".")
        made = {"metrics": file_digest(results / "metrics" / f"{stem}.json")}
        if stem == "01_train":
            made["model"] = model_digest(config, self.reports / folder)
        return made

    def record(self, folder: str, stem: str, made_from: dict) -> dict:
        return {**made_from, "outputs": self.written(folder, stem)}

    def why_stale(self, folder: str, stem: str) -> str | None:
        """Why this result is not up to date by its own record (None: it is)."""
        executed = self.reports / folder / f"{stem}.ipynb"
        if not executed.is_file():
            return "not run yet"
        try:
            notebook = json.loads(executed.read_text(encoding="utf-8"))
            cells, made = notebook["cells"], notebook.get("metadata", {}).get(RECORD, {}).get("made_from")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"its executed notebook is not readable ({type(exc).__name__})"
        if failed(notebook):
            return "it failed"
        if _code(cells) != code_digest(self.root / "notebooks" / f"{stem}.ipynb"):
            return "its notebook's code changed"
        if not isinstance(made, dict):
            return "it holds no record of what it was made from"
        now = self.made_from(folder, stem)
        changed = sorted(k for k in set(now["depends_on"]) | set(made.get("depends_on", {}))
                         if now["depends_on"].get(k) != made.get("depends_on", {}).get(k))
        if changed:
            return f"changed: {', '.join(changed)}"
        moved = sorted(k for k in set(now["inputs"]) | set(made.get("inputs", {}))
                       if now["inputs"].get(k) != made.get("inputs", {}).get(k))
        if moved:
            return f"what it read changed: {', '.join(moved[:4])}{' ...' if len(moved) > 4 else ''}"
        wrote = self.written(folder, stem)
        edited = [k for k in ("metrics", "model") if k in wrote and wrote[k] != made.get("outputs", {}).get(k)]
        if edited:
            return f"its {' and '.join({'metrics': 'metrics file'}.get(k, k) for k in edited)} " \
                   f"{'is' if len(edited) == 1 else 'are'} not what it wrote (edited, damaged or missing)"
        return None


def _figures_only(why: str) -> bool:
    """Whether 01 re-runs for keys that shape only its figures and progress log: its model stays, and what reads it."""
    return why.startswith("changed: ") and set(why.removeprefix("changed: ").split(", ")) <= FIGURES_ONLY


def failed(notebook: dict) -> bool:
    """Whether an executed notebook holds an error (it raised, and was published with it)."""
    return any(o.get("output_type") == "error" for c in notebook["cells"] for o in c.get("outputs", []))


def page_digest(executed: Path) -> str:
    """What a page shows: its executed notebook. Not the runs its navigation links: a run added re-renders no other
    run's pages (their list of other runs catches up when they re-render; the index lists every run)."""
    return file_digest(executed)


def index_digest(reports: Path) -> str:
    """What the index shows: every run's metrics, and which notebooks are there and whether they failed."""
    h = hashlib.sha256()
    for path in sorted(reports.glob("*/metrics/*.json")) + sorted(reports.glob("*/[0-9][0-9]_*.ipynb")):
        if path.relative_to(reports).parts[0] != "scratch":
            h.update(f"{path.relative_to(reports).as_posix()}|{file_digest(path)}\n".encode())
    return h.hexdigest()[:16]


def recorded_page(html: Path) -> str | None:
    if not html.is_file():
        return None
    found = PAGE_RECORD.search(html.read_text(encoding="utf-8", errors="replace")[:20000])
    return found.group(1) if found else None


@dataclass
class Plan:
    """What runs: `stale` maps a receipt to why its result is not up to date; `targets` are the receipts asked for."""

    stale: dict
    fresh: list
    targets: list
    wanted: dict  # receipt -> the receipts it waits for
    results: list  # (folder, notebook) of every executed notebook, upstream first

    def to_run(self) -> list[str]:
        """The stale receipts the targets need, in the engine's order (upstream first)."""
        order, seen = [], set()

        def visit(receipt):
            if receipt in seen:
                return
            seen.add(receipt)
            for need in self.wanted.get(receipt, ()):
                visit(need)
            if receipt in self.stale:
                order.append(receipt)
        for target in self.targets:
            visit(target)
        return order


def receipt(folder: str, stem: str, kind: str = "done") -> str:
    """A result's receipt, relative to the receipts folder: `done` for an executed notebook, `page` for its page."""
    return f"{folder}/{stem}.{kind}"


INDEX = "index.done"


def graph(study: Study, runs, everything: bool = False) -> Plan:
    """The results of the study (every notebook of every run, the summary, the explorer, their pages, the index), what
    each waits for, and the targets: the pages of `runs` (with `everything`, of the family, the summary and the
    explorer) and the index. Nothing is read but the params: Snakemake builds its rules from this."""
    runs = list(study.family) if everything else list(runs)
    results = ([(run, nb) for nb in NOTEBOOKS for run in study.configs]  # every 01 first: a 04 reads two runs' models
               + [(f, s) for s, f in ACROSS_RUNS.items()])
    wanted = {receipt(f, s): [receipt(*u) for u in study.upstream(f, s)] for f, s in results}
    wanted.update({receipt(run, MODEL_RESULT): [receipt(run, "01_train")] for run in study.configs})
    wanted.update({receipt(f, s, "page"): [receipt(f, s)] for f, s in results})
    chosen = [receipt(f, s, "page") for f, s in results if f in runs or (everything and s in ACROSS_RUNS)]
    wanted[INDEX] = chosen
    return Plan({}, [], chosen + [INDEX], wanted, results)


def plan(study: Study, runs, everything: bool = False, force=(), fresh: bool = False) -> Plan:
    """`graph`, with which results are up to date by their records, and what each one's staleness carries downstream
    (a re-run model re-runs what reads it; a re-run notebook re-renders its page; a re-rendered page, the index)."""
    done, runs = graph(study, runs, everything), list(study.family) if everything else list(runs)
    for folder, stem in done.results:  # upstream first: 01 before 02-05, the runs before the summary
        key = receipt(folder, stem)
        upstream = [w for w in done.wanted[key] if w in done.stale]
        if fresh and folder in runs:
            done.stale[key] = "set aside by --fresh"
        elif stem[:2] in force and (folder in runs or stem in ACROSS_RUNS):
            done.stale[key] = "forced (--force)"
        elif upstream:
            done.stale[key] = f"{upstream[0].removesuffix('.done').replace('/' + MODEL_RESULT, '/01_train')} re-runs first"
        elif why := study.why_stale(folder, stem):
            done.stale[key] = why
        if stem == "01_train" and key in done.stale and not _figures_only(done.stale[key]):
            done.stale[receipt(folder, MODEL_RESULT)] = "01_train re-runs (its model may change)"
    for folder, stem in done.results:
        page, executed = receipt(folder, stem, "page"), study.reports / folder / f"{stem}.ipynb"
        if receipt(folder, stem) in done.stale:
            done.stale[page] = "its notebook runs"
        elif recorded_page(executed.with_suffix(".html")) != page_digest(executed):
            done.stale[page] = "its notebook changed since it was rendered"
    if any(w in done.stale for w in done.wanted[INDEX]):
        done.stale[INDEX] = "a page it links re-renders"
    elif recorded_page(study.reports / "index.html") != index_digest(study.reports):
        done.stale[INDEX] = "the metrics or notebooks it shows changed"
    done.fresh = [k for k in done.wanted if k not in done.stale]
    return done


def write_receipts(done: Plan, receipts: Path) -> None:
    """A receipt for each result up to date, none for the others: what Snakemake runs is what has none."""
    for key in done.stale:
        (receipts / key).unlink(missing_ok=True)
    for key in done.fresh:
        (receipts / key).parent.mkdir(parents=True, exist_ok=True)
        (receipts / key).touch()


def said(done: Plan) -> str:
    """One line per result that will run, and why."""
    lines = []
    for key in done.to_run():
        folder, _, name = key.rpartition("/")
        stem, _, kind = name.partition(".")
        what = "index.html" if key == INDEX else f"{stem} [{folder}]" + (" page" if kind == "page" else "")
        lines.append(f"{what}: {done.stale[key]}")
    return "\n".join(lines)


def arithmetic_of(metrics: Path) -> str | None:
    """How a metrics file was made: "pinned" (arithmetic.py's path), "off" (another path, or before the pins were
    recorded), "damaged" (truncated, not a JSON object: its notebook runs again), None (no file)."""
    if not metrics.is_file():
        return None
    try:
        made = json.loads(metrics.read_text(encoding="utf-8"))
    except ValueError:  # not JSON, not UTF-8
        return "damaged"
    return "damaged" if not isinstance(made, dict) else "pinned" if made_pinned(made) else "off"


def off_path(root: Path, reports: str = "reports", runs: str = "") -> str:
    """One line naming the runs whose metrics were made off the pinned arithmetic path (their numbers are not
    what a re-run makes, bit for bit), or "" when every one was made on it. Said, not re-run: re-making the
    family takes hours on two cores, and its conclusions do not depend on the path (docs/arithmetic.md)."""
    wanted = {Path(p).stem for p in runs.split(",")} if runs else None
    off = sorted({m.parents[1].name for m in (root / reports).glob("*/metrics/*.json")
                  if m.parents[1].name != "scratch" and (not wanted or m.parents[1].name in wanted)
                  and arithmetic_of(m) == "off"})
    return (f"made off the pinned arithmetic path (docs/arithmetic.md), so another CPU's re-run gives their numbers "
            f"only to about 4 digits: {', '.join(off)}; ./run_all.sh --fresh re-makes a run on it") if off else ""
