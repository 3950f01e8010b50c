"""Params validation: the original schema is accepted, every bad input is one line naming the key,
and the config is a frozen, typed leaf that derives changed copies by validating them again."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from inverse_vae.core.checkpoints import load_checkpoint, params_fingerprint
from inverse_vae.core.config import LayerSpec, _read_params, _validate_config, family, load_config, run_name
from inverse_vae.errors import ParamsError
from inverse_vae.runs.run import _check_config, load_checked_config

ROOT = Path(__file__).resolve().parents[2]

ORIGINAL_CONFIG = """
device: cuda
train:
  batch_size: 1024
  train_epochs: 90
  loss:
    - bceloss
    - regularizationloss
  optim:
    name: adam
    learning_rate: 0.001
    others:
  lr_scheduler:
    name: steplr
    others:
      step_size: 50
      gamma: 0.1
  alpha: 0.1
  model_path: ./pretrained
  progress_path: ./train_progress
  plot_epochs: 10
model:
  architecture:
    encoder:
        conv:
            - Linear:
                args: [784, 512]
                bias: False
            - Tanh:
            - Linear:
                args: [512, 256]
                bias: False
            - Tanh:
            - Flatten:
        mean:
            - Linear:
                args: [256, 32]
                bias: False
        log_var:
            - Linear:
                args: [256, 32]
                bias: False
    decoder:
        - Linear:
            args: [32, 256]
            bias: False
        - Tanh:
        - Linear:
            args: [256, 512]
            bias: False
        - Tanh:
        - Linear:
            args: [512, 784]
            bias: False
        - Sigmoid:
test:
  batch_size: 256
  n_components: 2
  model_path: ./pretrained/model_90.pt
  results_path: ./results
"""


def test_shipped_params_are_valid(root):
    for name in ("default", "smoke"):
        config = load_checked_config(root / "params" / f"{name}.yaml")
        assert config.model.architecture.decoder[0] == LayerSpec("Linear", (32, 256), {"bias": False})
        assert config.source == str(root / "params" / f"{name}.yaml")


def test_original_config_is_accepted_unchanged_with_defaults_filled(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(ORIGINAL_CONFIG)
    config = load_checked_config(path)
    assert config.train.model_path == "./pretrained"
    assert config.seed == 0 and config.data.val_fraction == 0.1
    assert config.train.optim.others is None and config.train.lr_scheduler.others == {"step_size": 50, "gamma": 0.1}
    assert config.train.reconstruction_loss == "bceloss"
    assert run_name(path) == "config"


def _mutated(default_raw, edit):
    raw = copy.deepcopy(default_raw)
    edit(raw)
    return raw


def _decoder(r):
    return r["model"]["architecture"]["decoder"]


# (edit, the key the refusal names, what else it must name: the bad value, or the kind of problem)
@pytest.mark.parametrize("edit, key, names", [
    (lambda r: r.__setitem__("sede", 1), "sede", ["unknown key", "'seed'"]),
    (lambda r: _decoder(r).__setitem__(1, {"Tanhh": None}), "model.architecture.decoder[1]", ["unknown layer", "'Tanhh'"]),
    (lambda r: _decoder(r).__setitem__(1, {"Transformer": None}), "model.architecture.decoder[1]",
     ["unknown layer", "'Transformer'"]),
    (lambda r: _decoder(r)[0]["Linear"].__setitem__("args", [16, 256]), "model.architecture.decoder[0].Linear",
     ["cannot take its input", "(2, 32)"]),
    (lambda r: _decoder(r)[4]["Linear"].__setitem__("args", [512, 700]), "model.architecture.decoder", ["700", "784"]),
    (lambda r: r["model"]["architecture"]["encoder"]["log_var"][0]["Linear"].__setitem__("args", [256, 16]),
     "model.architecture.encoder.log_var", ["16", "32"]),
    (lambda r: r["model"]["architecture"]["encoder"]["conv"][2]["Linear"].__setitem__("args", [500, 256]),
     "model.architecture.encoder.conv[2].Linear", ["cannot take its input", "(2, 512)"]),
    (lambda r: r["train"].__setitem__("batch_size", "1024"), "train.batch_size", ["got '1024'"]),
    (lambda r: r["train"].__setitem__("train_epochs", -3), "train.train_epochs", ["got -3"]),
    (lambda r: r["train"]["optim"].__setitem__("learning_rate", 0), "train.optim.learning_rate", ["got 0"]),
    (lambda r: r["train"]["optim"].__setitem__("name", "adagrad"), "train.optim.name", ["got 'adagrad'"]),
    (lambda r: r["train"]["lr_scheduler"].__setitem__("name", "lambdalr"), "train.lr_scheduler.name", ["got 'lambdalr'"]),
    (lambda r: r["train"]["lr_scheduler"]["others"].__setitem__("stepsize", 5), "train.lr_scheduler.others", ["stepsize"]),
    (lambda r: r["train"].__setitem__("loss", ["hingeloss", "regularizationloss"]), "train.loss", ["'hingeloss'"]),
    (lambda r: r["train"].pop("alpha"), "train.alpha", ["missing key"]),
    (lambda r: r.pop("test"), "test", ["missing key"]),
    (lambda r: r.__setitem__("device", "tpu"), "device", ["got 'tpu'"]),
    (lambda r: r["train"].__setitem__("cuda_graph", "auto"), "train.cuda_graph", ["unknown key"]),  # removed
    (lambda r: _decoder(r).__setitem__(0, {"Linear": {"args": [32, 256], "bais": False}}),
     "model.architecture.decoder[0].Linear", ["bais"]),
    (lambda r: _decoder(r).__setitem__(0, {"Linear": {"args": [32, 256], "bias": False, "dtype": "float64"}}),
     "model.architecture.decoder[0].Linear.dtype", ["not a layer option"]),
    (lambda r: _decoder(r).__setitem__(5, {"Tanh": None}), "train.loss[0]", ["bceloss", "Tanh"]),
    (lambda r: r["train"].__setitem__("target_range", [0.9, 0.1]), "train.target_range", ["[0.9, 0.1]"]),
    (lambda r: r["train"].__setitem__("preactivation_penalty", 3), "train.preactivation_penalty", ["got 3"]),
    (lambda r: r["train"].__setitem__("preactivation_penalty", {"bound": 3}),
     "train.preactivation_penalty.weight", ["missing key"]),
    (lambda r: r["train"].__setitem__("preactivation_penalty", {"bound": 3, "weight": 1, "bund": 2}),
     "train.preactivation_penalty.bund", ["unknown key", "'bound'"]),
    (lambda r: r["train"].__setitem__("preactivation_penalty", {"bound": -3, "weight": 1}),
     "train.preactivation_penalty.bound", ["got -3"]),
    (lambda r: r["train"].__setitem__("preactivation_penalty", {"bound": 3, "weight": 0}),
     "train.preactivation_penalty.weight", ["got 0"]),
    (lambda r: r["train"].__setitem__("preactivation_penalty", {"bound": 3, "weight": "1"}),
     "train.preactivation_penalty.weight", ["got '1'"]),
    (lambda r: r.__setitem__("hypothesis", ["a", "list"]), "hypothesis", ["got ['a', 'list']"]),
    (lambda r: r.__setitem__("hypothesis", ""), "hypothesis", ["got ''"]),
    (lambda r: r.__setitem__("methods", {"names": ["optimise_adam"]}), "methods.names", ["'optimise_adam'"]),
    (lambda r: r.__setitem__("methods", {"noise_names": ["lm"]}), "methods.noise_names", ["'lm'"]),
    (lambda r: r.__setitem__("methods", {"overrides": {"adam": {"steps": 3}}}), "methods.overrides", ["'adam'"]),
    (lambda r: _decoder(r).__setitem__(2, ["Linear"]), "model.architecture.decoder[2]", ["one-key mapping", "['Linear']"]),
    (lambda r: _decoder(r)[0]["Linear"].__setitem__("args", 32), "model.architecture.decoder[0].Linear.args", ["got 32"]),
    (lambda r: _decoder(r).__setitem__(3, {"ReLU": None}), "model.architecture.decoder",
     ["cannot be inverted", "layer 3 (ReLU)"]),
    (lambda r: _decoder(r).__setitem__(5, {"Dropout": None}), "model.architecture.decoder",
     ["cannot be inverted", "layer 5 (Dropout)"]),
])
def test_bad_params_are_refused_with_one_line_naming_the_key(default_raw, write_params, edit, key, names):
    path = write_params(_mutated(default_raw, edit))
    with pytest.raises(ParamsError) as info:
        load_checked_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message
    said = message[len(f"{path}: {key}: "):]
    assert all(name in said for name in names), message


def test_a_misspelled_required_key_is_named_with_a_suggestion(default_raw, write_params):
    path = write_params(_mutated(default_raw, lambda r: r["train"].__setitem__("batchsize", r["train"].pop("batch_size"))))
    with pytest.raises(ParamsError) as info:
        load_checked_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: train.batchsize: unknown key"), message
    assert "'batch_size'" in message


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: [1\n")
    with pytest.raises(ParamsError, match="invalid YAML at line"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_config(bad)


def _check_params(*files):
    return subprocess.run([sys.executable, "-m", "inverse_vae", "check-params", *map(str, files)],
                          capture_output=True, text=True)


@pytest.mark.slow  # subprocesses that load torch and check the params in full
def test_check_params_cli_exit_codes(root, default_raw, write_params):
    ok = _check_params(root / "params" / "default.yaml")
    assert ok.returncode == 0, ok.stderr
    bad = write_params(_mutated(default_raw, lambda r: r["train"].__setitem__("optimm", {})))
    refused = _check_params(bad)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.optimm: unknown key" in lines[0]
    assert refused.stdout == ""


def test_importing_the_config_imports_no_torch_and_no_model_code():
    code = ("import sys, inverse_vae.core.config; "
            "print(','.join(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'inverse_vae'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.strip().split(","))
    assert loaded == {"inverse_vae", "inverse_vae.arithmetic", "inverse_vae.core", "inverse_vae.core.config",
                      "inverse_vae.errors", "inverse_vae.constants"}  # arithmetic: the pins, no torch


def test_config_is_frozen_and_read_only(root):
    config = load_config(root / "params" / "default.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        config.train.batch_size = 1
    with pytest.raises(ValidationError, match="frozen"):
        config.train.preactivation_penalty = {"bound": 2.0, "weight": 1.0}
    with pytest.raises(TypeError):
        config.train.lr_scheduler.others["gamma"] = 0.5
    assert isinstance(config.model.architecture.decoder, tuple) and isinstance(config.methods.noise_levels, tuple)


def test_to_dict_is_plain_and_validates_back_to_the_same_config(root):
    config = load_config(root / "params" / "smoke.yaml")
    plain = config.to_dict()
    assert json.loads(json.dumps(plain)) == plain and yaml.safe_load(yaml.safe_dump(plain)) == plain
    assert plain["model"]["architecture"]["decoder"][:2] == [{"Linear": {"args": [32, 256], "bias": False}},
                                                             {"Tanh": None}]
    assert "source" not in plain
    assert _validate_config(plain, source=config.source) == config


def test_replace_merges_sections_and_validates_again(root):
    config = load_config(root / "params" / "default.yaml")
    changed = config.replace(seed=3, train={"train_epochs": 4, "target_range": (0.1, 0.9),
                                            "lr_scheduler": {"name": "ExponentialLR", "others": {"gamma": 0.9}}})
    assert (changed.seed, changed.train.train_epochs, changed.train.target_range) == (3, 4, (0.1, 0.9))
    assert changed.train.batch_size == config.train.batch_size  # the rest of the section is kept
    assert changed.train.lr_scheduler.name == "exponentiallr"
    assert changed.train.lr_scheduler.others == {"gamma": 0.9}  # a value that is no section is replaced whole
    assert config.train.train_epochs == 90 and changed.source == config.source
    with pytest.raises(ParamsError, match=r"^train\.train_epochs: [^\n]*, got 0$"):
        config.replace(train={"train_epochs": 0})
    with pytest.raises(ParamsError, match=r"^trian: unknown key \(did you mean 'train'\?\)$"):
        config.replace(trian={})


def test_model_checks_refuse_a_derived_config_naming_the_layer(root):
    config = load_config(root / "params" / "default.yaml")
    bad = config.replace(model={"architecture": {"decoder": [{"Linear": {"args": [32, 784]}}, {"Tanhh": None}]}})
    with pytest.raises(ParamsError, match=r"^model\.architecture\.decoder\[1\]: unknown layer 'Tanhh'; allowed: "):
        _check_config(bad)
    from inverse_vae.core.model import build_model

    with pytest.raises(ParamsError, match=r"^model\.architecture\.decoder\[1\]: unknown layer 'Tanhh'"):
        build_model(bad)


def test_a_derived_config_validates_its_train_changes(tiny_run):
    with pytest.raises(ParamsError, match=r"^train\.target_range: must be \[lo, hi\]"):
        tiny_run.config.replace(train={"target_range": [0.9, 0.1]})
    # the schema takes any mapping of optimizer keywords; the full check builds the optimizer with them
    bad = tiny_run.config.replace(train={"optim": {"name": "adam", "learning_rate": 0.1, "others": {"betas": 3}}})
    with pytest.raises(ParamsError, match=r"^train\.optim\.others: "):
        _check_config(bad)
    squeezed = tiny_run.config.replace(train={"target_range": [0.1, 0.9]})
    assert squeezed.train.target_range == (0.1, 0.9) and tiny_run.config.train.target_range is None
    _check_config(squeezed)


def test_a_variant_file_is_merged_onto_its_base(root, tmp_path):
    (tmp_path / "default.yaml").write_text((root / "params" / "default.yaml").read_text())
    variant = tmp_path / "variant.yaml"
    variant.write_text("base: default.yaml\nseed: 5\ntrain:\n  alpha: 0.5\n")
    config, default = load_config(variant), load_config(tmp_path / "default.yaml")
    assert (config.seed, config.train.alpha) == (5, 0.5)
    assert config.train.batch_size == default.train.batch_size and config.model == default.model
    assert config.replace(seed=0, train={"alpha": 0.1}).to_dict() == default.to_dict()
    variant.write_text("base: ../default.yaml\nseed: 5\n")
    with pytest.raises(ParamsError, match=r"variant\.yaml: base: must name a params file beside it"):
        load_config(variant)
    variant.write_text("base: variant.yaml\nseed: 5\n")  # a loop
    with pytest.raises(ParamsError, match=r"base: more than \d+ bases in a chain"):
        load_config(variant)


def test_a_base_that_links_out_of_its_folder_is_not_read(tmp_path):
    (tmp_path / "params").mkdir()
    (tmp_path / "secret.txt").write_text("SECRET-KEY-1234: do not quote me\n")
    (tmp_path / "params" / "link.yaml").symlink_to(tmp_path / "secret.txt")
    variant = tmp_path / "params" / "variant.yaml"
    variant.write_text("base: link.yaml\nseed: 5\n")
    with pytest.raises(ParamsError, match=r"variant\.yaml: base: link\.yaml is a link to a file outside") as refused:
        load_config(variant)
    assert "SECRET" not in str(refused.value) and "\n" not in str(refused.value)
    (tmp_path / "params" / "default.yaml").write_text("seed: 1\n")
    (tmp_path / "params" / "link.yaml").unlink()
    (tmp_path / "params" / "link.yaml").symlink_to("default.yaml")  # a link beside it, to a file beside it: fine
    assert _read_params(variant) == {"seed": 5}


@pytest.mark.parametrize("path", family(ROOT / "params"), ids=lambda p: p.stem)
def test_each_runs_fingerprint_is_the_one_its_committed_checkpoint_stores(path):
    """to_dict, through the fingerprint, gives every value of the params that shape the model with the type it had when
    the committed model was trained (a tuple for a list or 2 for 2.0 would change its content digest)."""
    saved = load_checkpoint(ROOT / "reports" / path.stem / "checkpoints" / "model_90.pt")["params_fingerprint"]
    assert repr(params_fingerprint(load_config(path))) == repr(dict(sorted(saved.items())))
