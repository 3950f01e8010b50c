"""The README quotes the metrics: its answer and family table are what tools/readme_numbers.py renders from the
committed reports (regenerate them with --write after re-executing), and no placeholder is left."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "tools" / "readme_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("section", ["answer", "family"])
def test_the_readme_section_is_what_the_metrics_say(section):
    tool = _tool()
    shown = tool.marked(tool.README.read_text(encoding="utf-8"), section).group(1)
    assert shown == tool.SECTIONS[section](), f"README.md's {section} is stale: .venv/bin/python tools/readme_numbers.py --write"


def test_no_placeholder_is_left_and_the_readme_stays_a_landing_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "{{" not in text and "N minutes" not in (ROOT / "docs" / "tests.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 170
