"""tools/lib_size.py, the measure of DESIGN.md's line target: every line counted once, the kinds adding up to wc -l."""
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
