"""tools/lib_size.py, the measure of DESIGN.md's line target: every line counted once, the kinds adding up to wc -l;
and lib/'s public names, held to a ratchet on the way to issue #36's 150."""
import ast
import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = '''"""A module docstring

over three lines."""
import os  # a trailing comment is code


# a comment
def f():
    """One line."""
    return os.sep
'''


def _tool():
    spec = importlib.util.spec_from_file_location("lib_size", ROOT / "tools" / "lib_size.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_line_is_counted_once_by_its_kind():
    assert _tool().line_kinds(SAMPLE) == {"docstring": 4, "code": 3, "comment": 1, "blank": 2}
    assert _tool().line_kinds(SAMPLE + "x = 1") == _tool().line_kinds(SAMPLE) | {"code": 3}  # no newline: wc -l skips it


def test_the_total_is_wc_l_over_the_library(tmp_path):
    files = sorted((ROOT / "lib" / "inverse_vae").rglob("*.py"))
    wc = subprocess.run(["wc", "-l", *map(str, files)], capture_output=True, text=True, check=True).stdout
    frame = _tool().sizes()
    assert int(frame.loc["total", "lines"]) == int(wc.splitlines()[-1].split()[0])
    assert frame.loc["total", "lines"] == frame.drop(index="total")["lines"].sum()
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text(SAMPLE)
    (tmp_path / "b.py").write_text("x = 1\n\n")
    small = _tool().sizes(tmp_path)
    assert small.loc["core", "lines"] == 10 and small.loc["(top)"].to_dict() == {
        "code": 1, "docstring": 0, "comment": 0, "blank": 1, "lines": 2}


# Issue #36: at most 150 public names in lib/. A ratchet: a public name added needs one taken away.
PUBLIC_NAMES_AT_MOST = 250


def public_names(package: Path = ROOT / "lib" / "inverse_vae") -> list[str]:
    """'path:name' for each top-level function, class and assigned constant without a leading underscore."""
    found = []
    for path in sorted(package.rglob("*.py")):
        names = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(target.id for target in node.targets if isinstance(target, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
        found += [f"{path.relative_to(package).as_posix()}:{name}" for name in sorted(names) if not name.startswith("_")]
    return found


def test_lib_has_no_more_public_names_than_the_ratchet_allows():
    found = public_names()
    assert len(found) <= PUBLIC_NAMES_AT_MOST, (
        f"lib/ has {len(found)} public names, more than the {PUBLIC_NAMES_AT_MOST} allowed (issue #36 aims at 150): "
        "give a name used only inside its module a leading underscore")


def test_the_public_name_count_sees_each_kind_of_top_level_name_once(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text(
        "import os\nfrom x import y\nA = B = 1\nC: int = 2\n_D = 3\nx.e = 4\n\n\ndef f():\n    g = 1\n\n\n"
        "async def h():\n    pass\n\n\nclass K:\n    m = 1\n\n\ndef _private():\n    pass\n\n\nA = 5\n")
    assert public_names(tmp_path) == ["core/a.py:A", "core/a.py:B", "core/a.py:C", "core/a.py:K", "core/a.py:f",
                                      "core/a.py:h"]
