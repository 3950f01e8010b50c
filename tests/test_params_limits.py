"""Params values that YAML accepts but the study must not: non-finite numbers, schedules that crash or
decay silently, duplicate keys, truthy strings as flags, huge layers, anchors, deep nesting, long values.

Each is refused with one line starting with the file's path, before anything is built or allocated.
"""
import copy
import subprocess
import sys
import time

import pytest

from inverse_vae.core.config import MAX_QUOTED, load_config
from inverse_vae.errors import ParamsError
from inverse_vae.runs.checks import load_checked_config


def _refused(path, loader=load_checked_config) -> str:
    with pytest.raises(ParamsError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def edit(raw):
        node = raw
        for key in keys:
            node = node[key]
        node[last] = value
    return edit


DECODER = ("model", "architecture", "decoder")


@pytest.mark.parametrize("edit, expected", [
    (_set("train", "alpha", float("nan")), "train.alpha: must be a finite number, got nan"),
    (_set("train", "alpha", float("inf")), "train.alpha: must be a finite number, got inf"),
    (_set("train", "optim", "learning_rate", float("inf")), "train.optim.learning_rate: must be a finite number"),
    (_set("train", "lr_scheduler", "others", "gamma", float("nan")),
     "train.lr_scheduler.others.gamma: must be a finite number, got nan"),
    (_set("data", {"val_fraction": float("nan")}), "data.val_fraction: must be a finite number, got nan"),
    (_set("train", "optim", "others", {"eps": float("inf")}), "train.optim.others.eps: must be a finite number"),
    (_set("train", "optim", "others", {"betas": [0.9, float("nan")]}),
     "train.optim.others.betas[1]: must be a finite number, got nan"),
    (_set("methods", {"noise_levels": [1e-3, float("inf")]}), "methods.noise_levels[1]: must be a finite number"),
    (_set("failure", {"delta": float("-inf")}), "failure.delta: must be a finite number, got -inf"),
])
def test_non_finite_numbers_are_refused(default_raw, write_params, edit, expected):
    raw = copy.deepcopy(default_raw)
    edit(raw)
    assert expected in _refused(write_params(raw))


@pytest.mark.parametrize("scheduler, expected", [
    ({"name": "steplr", "others": {"step_size": 0, "gamma": 0.1}}, "train.lr_scheduler.others.step_size: must be >= 1, got 0"),
    ({"name": "StepLR", "others": {"step_size": -5, "gamma": 0.1}}, "train.lr_scheduler.others.step_size: must be >= 1, got -5"),
    ({"name": "steplr", "others": {"step_size": 2.5}}, "train.lr_scheduler.others.step_size: must be an integer"),
    ({"name": "steplr", "others": {"step_size": 50, "gamma": -0.1}}, "train.lr_scheduler.others.gamma: must be > 0"),
    ({"name": "multisteplr", "others": {"milestones": [30, 0]}}, "train.lr_scheduler.others.milestones: [1] must be >= 1, got 0"),
    ({"name": "cosineannealinglr", "others": {"T_max": 0}}, "train.lr_scheduler.others.T_max: must be >= 1, got 0"),
    ({"name": "exponentiallr", "others": {"gamma": 0}}, "train.lr_scheduler.others.gamma: must be > 0, got 0"),
])
def test_scheduler_settings_that_crash_or_decay_silently_are_refused(default_raw, write_params, scheduler, expected):
    raw = copy.deepcopy(default_raw)
    raw["train"]["lr_scheduler"] = scheduler
    assert expected in _refused(write_params(raw))


def test_valid_scheduler_settings_still_pass(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["train"]["lr_scheduler"] = {"name": "multisteplr", "others": {"milestones": [30, 60], "gamma": 0.5}}
    raw["train"]["optim"]["others"] = {"betas": [0.9, 0.99], "amsgrad": True, "foreach": None}
    config = load_checked_config(write_params(raw))
    assert config.train.lr_scheduler.others["milestones"] == (30, 60)


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["model"]["architecture"]["decoder"][0]["Linear"].__setitem__("bias", "no"),
     "model.architecture.decoder[0].Linear.bias: must be true or false, got str 'no'"),
    (lambda r: r["model"]["architecture"]["encoder"]["conv"][0]["Linear"].__setitem__("bias", 0),
     "model.architecture.encoder.conv[0].Linear.bias: must be true or false, got int 0"),
    (lambda r: r["model"]["architecture"]["decoder"][0]["Linear"].__setitem__("args", [32, 256, "no"]),
     "model.architecture.decoder[0].Linear.args: must be [in, out] or [in, out, bias] with bias true or false"),
    (_set("train", "optim", "others", {"amsgrad": "yes"}), "train.optim.others.amsgrad: must be true or false"),
    (_set("test", "allow_intermediate", "yes"), "test.allow_intermediate: must be true or false, got str 'yes'"),
])
def test_flags_must_be_real_booleans(default_raw, write_params, edit, expected):
    raw = copy.deepcopy(default_raw)
    edit(raw)
    assert expected in _refused(write_params(raw))


@pytest.mark.parametrize("args, expected", [
    ([512, 100_000_000_000], "decoder[4].Linear.args[1] (out_features): must be an integer from 1 to 65,536, "
                             "got 100000000000"),
    ([512, 0], "decoder[4].Linear.args[1] (out_features): must be an integer from 1 to 65,536, got 0"),
    ([512.0, 784], "decoder[4].Linear.args[0] (in_features): must be an integer from 1 to 65,536, got 512.0"),
    ([512, "1e11"], "decoder[4].Linear.args[1] (out_features): must be an integer from 1 to 65,536, got '1e11'"),
    ([65_536, 65_536], "decoder[4].Linear: 65536 x 65536 weights; a layer may have at most 67,108,864"),
])
def test_layer_sizes_are_bounded_before_anything_is_built(default_raw, write_params, args, expected):
    raw = copy.deepcopy(default_raw)
    raw["model"]["architecture"]["decoder"][4]["Linear"]["args"] = args
    path = write_params(raw)
    # load_config is the schema alone (no torch, no model code): the refusal comes before any layer exists.
    assert expected in _refused(path, load_config)
    assert expected in _refused(path)


def test_size_keywords_are_bounded_too(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["model"]["architecture"]["decoder"][4] = {"Linear": {"in_features": 512, "out_features": 10**9}}
    assert "decoder[4].Linear.out_features: must be an integer from 1 to 65,536" in _refused(write_params(raw))


def test_a_long_bad_value_is_quoted_short(default_raw, write_params):
    raw = copy.deepcopy(default_raw)
    raw["train"]["batch_size"] = "x" * 100_000
    path = write_params(raw)
    message = _refused(path, load_config)
    assert "train.batch_size: must be an integer, got str 'xxxx" in message and message.endswith("...")
    assert len(message) - len(str(path)) < MAX_QUOTED + 60
    raw["train"]["y" * 10_000] = 1  # an unknown key's name is cut too
    message = _refused(write_params(raw), load_config)
    assert "yyy..." in message and len(message) - len(str(path)) < MAX_QUOTED + 60


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
    assert f"invalid YAML at line {line}, column 3: duplicate key 'alpha'" in message


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
    assert "nested deeper than 32 levels" in _refused(path, load_config)


def test_check_params_cli_refuses_a_duplicate_key_in_one_line(root, tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(_default_text(root) + "seed: 1\nseed: 2\n")
    done = subprocess.run([sys.executable, "-m", "inverse_vae", "check-params", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "duplicate key 'seed'" in lines[0]
