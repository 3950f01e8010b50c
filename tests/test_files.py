"""The one atomic writer: whole files or nothing, no temporary file left behind."""
import json

import pytest

from inverse_vae.core.files import atomic_write
from inverse_vae.runs.paths import write_json


def test_writes_bytes_text_and_through_a_writer(tmp_path):
    assert atomic_write(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "t.txt", "é\n").read_text(encoding="utf-8") == "é\n"
    assert atomic_write(tmp_path / "w.bin", lambda f: f.write(b"xyz")).read_bytes() == b"xyz"
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "t.txt", "w.bin"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path, error):
    path = atomic_write(tmp_path / "f.json", "old")

    def crash(f):
        f.write(b"partial")
        raise error

    with pytest.raises(error):
        atomic_write(path, crash)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_verify_can_refuse_the_bytes_before_they_land(tmp_path):
    def refuse(tmp):
        assert tmp.read_bytes() == b"wrong" and tmp.parent == tmp_path
        raise ValueError("bad checksum")

    with pytest.raises(ValueError, match="bad checksum"):
        atomic_write(tmp_path / "x", b"wrong", verify=refuse)
    assert list(tmp_path.iterdir()) == []


def test_write_json_is_atomic_and_json_safe(tmp_path):
    path = write_json(tmp_path / "m" / "metrics.json", {"a": float("inf"), "b": (1, 2)})
    assert json.loads(path.read_text()) == {"a": "inf", "b": [1, 2]}
    assert path.read_text().endswith("\n") and [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_write_json_takes_a_configs_read_only_values(tmp_path, root):
    from inverse_vae.core.config import load_config

    methods = load_config(root / "params" / "smoke.yaml").methods
    path = write_json(tmp_path / "m.json", {"overrides": methods.overrides, "levels": methods.noise_levels})
    assert json.loads(path.read_text())["overrides"]["optimize_lm"] == {"steps": 10}
