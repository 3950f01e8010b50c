"""Shared fixtures: the project root, params files to mutate, a tiny run folder."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from inverse_vae.runs.paths import open_run

ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session):
    # The nbval goldens write their run here; start each session from nothing.
    shutil.rmtree(ROOT / "tests" / ".nbval_reports", ignore_errors=True)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def default_raw() -> dict:
    return yaml.safe_load((ROOT / "params" / "default.yaml").read_text())


@pytest.fixture
def write_params(tmp_path):
    """Write a params mapping to tmp_path/<name>.yaml and return the path."""
    def write(data: dict, name: str = "custom") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path
    return write


@pytest.fixture
def tiny_run(tmp_path):
    """A run of the smoke params in a temporary folder, shrunk further for unit tests."""
    run = open_run(ROOT / "params" / "smoke.yaml", root=ROOT)
    config = run.config.replace(train={"train_epochs": 4, "batch_size": 32, "plot_epochs": 2})
    return dataclasses.replace(run, config=config, dir=tmp_path / "run")
