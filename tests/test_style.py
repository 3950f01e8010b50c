"""The code follows the project's ruff configuration (pyproject.toml, [tool.ruff]), keeps its functions short,
and imports its own modules at the top of a module and one way only: constants/errors -> core -> inversion ->
study -> runs, and the study (lib/) -> the workflow that runs and publishes it (workflow/), never back."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "inverse_vae"
# The library's layers, lowest first: a module may import its own layer's modules and lower layers' only.
# arithmetic.py (the pinned CPU arithmetic) is a base module; the top-level metrics.py and progress.py may
# import constants and errors alone;
# the package's __init__ and __main__ (the command line) sit above everything.
LAYERS = {"constants": 0, "errors": 0, "arithmetic": 0, "metrics": 1, "progress": 1, "core": 2, "inversion": 3,
          "study": 4, "runs": 5, "__init__": 6, "__main__": 6}


def _ruff() -> list[str]:
    beside = Path(sys.executable).with_name("ruff")  # installed into .venv from requirements.lock
    found = str(beside) if beside.is_file() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: run tools/ensure_env.sh (it installs requirements.lock)")
    return [found]


def test_ruff_finds_nothing_in_lib_workflow_tests_and_bench():
    result = subprocess.run(_ruff() + ["check", "--no-cache", "lib", "workflow", "tests", "bench"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_would_catch_an_unused_import(tmp_path):
    # The check above can only fail if ruff reads the configuration and sees errors: show it does.
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    result = subprocess.run(_ruff() + ["check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "F401" in result.stdout


def test_no_function_in_lib_is_over_60_lines():
    # Long functions hide several ideas; split them (the redesign's bar). Decorators and docstrings count.
    long = []
    for path in sorted((ROOT / "lib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def _project_imports(path: Path, package: Path = PACKAGE):
    """(line, imported module as inverse_vae.x.y, whether inside a function) for each import of the study's own
    code in a module: relative imports (from . / from ..) and absolute ones of inverse_vae."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    here = parts[:-1]  # the package a relative import starts from (a package's __init__ is inside it)
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - node.level + 1]
            targets = [".".join(base + node.module.split("."))] if node.module else \
                [".".join(base + [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module] if (node.module or "").split(".")[0] == package.name else []
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names if alias.name.split(".")[0] == package.name]
        else:
            continue
        outer, inside = node, False
        while outer in parents and not inside:
            outer = parents[outer]
            inside = isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for target in targets:
            yield node.lineno, target, inside


def _layer(module: str) -> str:
    """inverse_vae.core.config -> core; inverse_vae.errors -> errors; inverse_vae -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_problems(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        importer = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        mine = LAYERS[_layer(importer)]
        for line, target, _ in _project_imports(path, package):
            theirs = LAYERS.get(_layer(target))
            same_package = _layer(target) == _layer(importer) and mine >= LAYERS["core"]
            if theirs is None or not (theirs < mine or same_package or mine == theirs == 0):
                problems.append(f"{path.relative_to(package.parent)}:{line} ({_layer(importer)}) imports {target}")
    return problems


def _function_imports(package: Path = PACKAGE) -> list[str]:
    return [f"{path.relative_to(package.parent)}:{line} imports {target} inside a function"
            for path in sorted(package.rglob("*.py")) for line, target, inside in _project_imports(path, package) if inside]


def test_the_library_imports_one_way_constants_errors_core_inversion_study_runs():
    assert {_layer(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")} \
        <= set(LAYERS), "a module outside the known layers: add its layer to LAYERS"
    problems = _layer_problems()
    assert not problems, "\n".join(problems)


def test_no_module_imports_the_study_inside_a_function():
    problems = _function_imports()
    assert not problems, "\n".join(problems)


def test_the_import_checks_catch_a_wrong_way_and_a_late_import(tmp_path):
    # The two checks above can only fail if they see such imports: show they do, on a package made for it.
    package = tmp_path / "inverse_vae"
    for folder in ("core", "study", "runs"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from .core import model\n")
    (package / "errors.py").write_text("from .constants import X\n")
    (package / "metrics.py").write_text("from .progress import progress\n")  # a base module importing another
    (package / "core" / "model.py").write_text("from ..study import shared\nfrom . import files\n")
    (package / "study" / "shared.py").write_text("from inverse_vae.runs.run import open_run\nfrom ..core.model import M\n"
                                                 "def late():\n    from ..core import files\n")
    (package / "runs" / "run.py").write_text("import inverse_vae.study.shared\nfrom .. import errors\n")
    assert _layer_problems(package) == ["inverse_vae/core/model.py:1 (core) imports inverse_vae.study",
                                        "inverse_vae/metrics.py:1 (metrics) imports inverse_vae.progress",
                                        "inverse_vae/study/shared.py:1 (study) imports inverse_vae.runs.run"]
    assert _function_imports(package) == ["inverse_vae/study/shared.py:4 imports inverse_vae.core inside a function"]


# A layer kind is named in the table alone (core/table.py): elsewhere the code asks a kind's properties.
KIND_WORD = re.compile(r"(?<![a-z])(tanh|sigmoid|leaky_?relu)", re.IGNORECASE)  # atanh is maths, not a kind
NAMED_ELSEWHERE = {
    ("study/applies.py", "sigmoid"), ("study/applies.py", "tanh"),  # notebook 04's section names: applies("tanh")
    ("core/model.py", "tanh"),  # torch.tanh soft-clipping log singular values (decoder_constraint), not a layer
}


def _docstrings(tree) -> set[int]:
    bodies = [n.body for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return {id(b[0].value) for b in bodies if b and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant)}


def _words(node) -> list[str]:
    """The names and string constants of one node, as code spells them."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, (ast.keyword, ast.alias)):
        return [name for name in (getattr(node, "arg", None), getattr(node, "asname", None) or getattr(node, "name", None))
                if name]
    return [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []


def _kind_names(package: Path = PACKAGE) -> list[str]:
    """'path:line name' for each layer kind named in code (comments and docstrings aside) outside the table."""
    found = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        if where == "core/table.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            for word in _words(node):
                for match in KIND_WORD.finditer(word):
                    if (where, match.group().lower()) not in NAMED_ELSEWHERE:
                        found.append(f"{where}:{node.lineno} {match.group()}")
    return found


def test_no_module_outside_the_table_names_a_layer_kind():
    found = _kind_names()
    assert not found, "ask the kind (core/table.py) instead:\n" + "\n".join(found)


def test_the_kind_name_check_catches_a_class_a_string_and_a_name(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "bad.py").write_text(
        '"""Docstrings may say Tanh."""\nfrom torch import nn\n\n\ndef f(layer, eps_sigmoid):\n'
        '    """Nor is this one counted: Sigmoid."""\n    # a comment on LeakyReLU\n'
        '    return isinstance(layer, nn.Tanh) or layer.kind.name == "leaky_relu" or torch.atanh\n')
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "table.py").write_text("from torch import nn\nKINDS = {nn.Sigmoid: 1}\n")
    assert _kind_names(tmp_path) == ["study/bad.py:5 sigmoid", "study/bad.py:8 Tanh", "study/bad.py:8 leaky_relu"]


WORKFLOW = "workflow"  # the package beside the Snakefile that runs and publishes the study: it imports lib/, never back


def _workflow_imports(lib: Path) -> list[str]:
    """Each import of the workflow package in lib/ (absolute: lib's own are relative or of inverse_vae), or a
    module named to import_module by a string."""
    found = []
    for path in sorted(lib.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else \
                [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []
            if any(n == WORKFLOW or n.startswith(WORKFLOW + ".") for n in names):
                found.append(f"{path.relative_to(lib)}:{node.lineno} imports {names[0]}")
    return found


def test_the_study_never_imports_the_workflow_that_runs_it(tmp_path):
    assert (ROOT / WORKFLOW / "__init__.py").is_file() and not _workflow_imports(ROOT / "lib")
    for n, line in enumerate(("import workflow.plan", "from workflow import pages", "import_module('workflow.execute')")):
        (tmp_path / f"m{n}.py").write_text(f"{line}\n")  # the check sees each way in
    assert len(_workflow_imports(tmp_path)) == 3
