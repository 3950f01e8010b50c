"""Params values that YAML accepts but the study must not: non-finite numbers, schedules that crash or
decay silently, duplicate keys, truthy strings as flags, huge layers, anchors, deep nesting, long values.

Each is refused with one line starting with the file's path, before anything is built or allocated.
"""
import copy
import subprocess
import sys
import time

import pytest

from inverse_vae.core.config import _MAX_QUOTED, load_config
from inverse_vae.errors import ParamsError
from inverse_vae.runs.run import load_checked_config


def _refused(path, loader=load_checked_config) -> str:
    with pytest.raises(ParamsError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def _names(message: str, path, key: str, *names: str) -> None:
    """The refusal names the key first (`<path>: <key>: ...`), then the bad value or what is wrong."""
    assert message.startswith(f"{path}: {key}: "), message
    said = message[len(f"{path}: {key}: "):]
    assert all(name in said for name in names), message


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def edit(raw):
        node = raw
        for key in keys:
            node = node[key]
        node[last] = value
    return edit


DECODER = ("model", "architecture", "decoder")


@pytest.mark.parametrize("edit, key, value", [
    (_set("train", "alpha", float("nan")), "train.alpha", "got nan"),
    (_set("train", "alpha", float("inf")), "train.alpha", "got inf"),
    (_set("train", "optim", "learning_rate", float("inf")), "train.optim.learning_rate", "got inf"),
    (_set("train", "lr_scheduler", "others", "gamma", float("nan")), "train.lr_scheduler.others.gamma", "got nan"),
    (_set("data", {"val_fraction": float("nan")}), "data.val_fraction", "got nan"),
    # torch's own check of the optimizer keywords, which run._check_config builds before any work
    (_set("train", "optim", "others", {"betas": [0.9, float("nan")]}), "train.optim.others.betas[1]", "nan"),
    (_set("methods", {"noise_levels": [1e-3, float("inf")]}), "methods.noise_levels[1]", "got inf"),
    (_set("failure", {"delta": float("-inf")}), "failure.delta", "got -inf"),
])
def test_non_finite_numbers_are_refused(default_raw, write_params, edit, key, value):
    raw = copy.deepcopy(default_raw)
    edit(raw)
    path = write_params(raw)
    _names(_refused(path), path, key, value)


def test_a_non_finite_optimizer_keyword_is_refused(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["train"]["optim"]["others"] = {"eps": float("inf")}
    path = write_params(raw)
    _names(_refused(path), path, "train.optim.others.eps", "inf")


@pytest.mark.parametrize("scheduler, key, value", [
    ({"name": "steplr", "others": {"step_size": 0, "gamma": 0.1}}, "train.lr_scheduler.others.step_size", "got 0"),
    ({"name": "StepLR", "others": {"step_size": -5, "gamma": 0.1}}, "train.lr_scheduler.others.step_size", "got -5"),
    ({"name": "steplr", "others": {"step_size": 2.5}}, "train.lr_scheduler.others.step_size", "got 2.5"),
    ({"name": "steplr", "others": {"step_size": 50, "gamma": -0.1}}, "train.lr_scheduler.others.gamma", "got -0.1"),
    ({"name": "multisteplr", "others": {"milestones": [30, 0]}}, "train.lr_scheduler.others.milestones", "got 0"),
    ({"name": "cosineannealinglr", "others": {"T_max": 0}}, "train.lr_scheduler.others.T_max", "got 0"),
    ({"name": "exponentiallr", "others": {"gamma": 0}}, "train.lr_scheduler.others.gamma", "got 0"),
    ({"name": "cycliclr", "others": {"base_lr": 1e-4, "max_lr": 1e-3, "step_size_down": 0}},
     "train.lr_scheduler.others.step_size_down", "got 0"),
])
def test_scheduler_settings_that_crash_or_decay_silently_are_refused(default_raw, write_params, scheduler, key, value):
    raw = copy.deepcopy(default_raw)
    raw["train"]["lr_scheduler"] = scheduler
    path = write_params(raw)
    # the schema alone refuses them: no torch scheduler is built for it
    _names(_refused(path, load_config), path, key, value)


def test_valid_scheduler_settings_still_pass(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["train"]["lr_scheduler"] = {"name": "multisteplr", "others": {"milestones": [30, 60], "gamma": 0.5}}
    raw["train"]["optim"]["others"] = {"betas": [0.9, 0.99], "amsgrad": True, "foreach": None}
    config = load_checked_config(write_params(raw))
    assert config.train.lr_scheduler.others["milestones"] == (30, 60)


@pytest.mark.parametrize("edit, key, value", [
    (lambda r: r["model"]["architecture"]["decoder"][0]["Linear"].__setitem__("bias", "no"),
     "model.architecture.decoder[0].Linear.bias", "no"),
    (lambda r: r["model"]["architecture"]["encoder"]["conv"][0]["Linear"].__setitem__("bias", 0),
     "model.architecture.encoder.conv[0].Linear.bias", "0"),
    (lambda r: r["model"]["architecture"]["decoder"][0]["Linear"].__setitem__("args", [32, 256, "no"]),
     "model.architecture.decoder[0].Linear.args", "[32, 256, 'no']"),
    (_set("train", "optim", "others", {"amsgrad": "yes"}), "train.optim.others.amsgrad", "yes"),
    (_set("test", "allow_intermediate", "yes"), "test.allow_intermediate", "'yes'"),
])
def test_flags_must_be_real_booleans(default_raw, write_params, edit, key, value):
    raw = copy.deepcopy(default_raw)
    edit(raw)
    path = write_params(raw)
    message = _refused(path, load_config)
    _names(message, path, key)
    assert message.endswith(value), message  # the bad value, last


@pytest.mark.parametrize("args, key, value", [
    ([512, 100_000_000_000], "model.architecture.decoder[4].Linear.out_features", "got 100000000000"),
    ([512, 0], "model.architecture.decoder[4].Linear.out_features", "got 0"),
    ([512.0, 784], "model.architecture.decoder[4].Linear.in_features", "got 512.0"),
    ([512, "1e11"], "model.architecture.decoder[4].Linear.out_features", "1e11"),
    pytest.param([65_536, 65_536], "model.architecture.decoder[4].Linear", "65536 x 65536 weights"),
])
def test_layer_sizes_are_bounded_before_anything_is_built(default_raw, write_params, args, key, value):
    raw = copy.deepcopy(default_raw)
    raw["model"]["architecture"]["decoder"][4]["Linear"]["args"] = args
    path = write_params(raw)
    # load_config is the schema alone (no torch, no model code): the refusal comes before any layer exists.
    _names(_refused(path, load_config), path, key, value)
    _names(_refused(path), path, key, value)


def test_a_layer_of_too_many_weights_is_refused_before_it_is_built(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["model"]["architecture"]["decoder"][4]["Linear"]["args"] = [65_536, 65_536]
    message = _refused(write_params(raw), load_config)
    assert "decoder[4].Linear" in message and "65536 x 65536 weights; a layer may have at most 67,108,864" in message


def test_size_keywords_are_bounded_too(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["model"]["architecture"]["decoder"][4] = {"Linear": {"in_features": 512, "out_features": 10**9}}
    path = write_params(raw)
    _names(_refused(path, load_config), path, "model.architecture.decoder[4].Linear.out_features", "got 1000000000")


def test_a_long_bad_value_is_quoted_short(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["train"]["batch_size"] = "x" * 100_000
    path = write_params(raw)
    message = _refused(path, load_config)
    _names(message, path, "train.batch_size", "got 'xxxx")
    assert message.endswith("...") and len(message) - len(str(path)) < _MAX_QUOTED + 80


def test_a_long_unknown_key_is_quoted_short(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["train"]["y" * 10_000] = 1
    path = write_params(raw)
    message = _refused(path, load_config)
    assert "yyy..." in message and "unknown key" in message and len(message) - len(str(path)) < _MAX_QUOTED + 80


# --- the YAML itself ----------------------------------------------------------------------------

def _default_text(root) -> str:
    return (root / "params" / "default.yaml").read_text()


def test_a_duplicate_key_is_refused_naming_it_and_its_line(root, tmp_path):
    text = _default_text(root)
    assert "  alpha: 0.1\n" in text
    line = text[:text.index("  alpha: 0.1\n")].count("\n") + 2  # the duplicate is on the line after
    path = tmp_path / "dup.yaml"
    path.write_text(text.replace("  alpha: 0.1\n", "  alpha: 0.1\n  alpha: 0.5\n"))
    message = _refused(path, load_config)
    assert f"invalid YAML at line {line}, column 3: " in message and message.endswith("duplicate key alpha"), message


def test_anchors_and_an_alias_bomb_are_refused_at_once(root, tmp_path):
    levels = ["  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 leaves
    text = _default_text(root).replace("train:\n", "train:\n" + "\n".join(levels) + "\n", 1)
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.perf_counter()
    assert "anchors and aliases (&name, *name) are not allowed" in _refused(path, load_config)
    assert time.perf_counter() - started < 5


def test_deep_nesting_is_one_line_not_a_recursion_error(root, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(_default_text(root).replace("  loss:\n", "  loss: " + "[" * 100_000 + "]" * 100_000 + "\n", 1))
    assert "invalid YAML: nested too deeply" in _refused(path, load_config)


def test_check_params_cli_refuses_a_duplicate_key_in_one_line(root, tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(_default_text(root) + "seed: 1\nseed: 2\n")
    done = subprocess.run([sys.executable, "-m", "inverse_vae", "check-params", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and lines[0].endswith("duplicate key seed")
