"""Save checkpoints atomically; load them (ours or the original train.py's) without running code.

Layouts (`checkpoint_layout`): full, the original train.py's dict (FULL_KEYS; its VAE's keys `encoder_conv.*`,
`encoder_mean.*`, `encoder_log_var.*`, `decoder.*`, its last commit's autoencoder's `encoder.*`, `decoder.*`), to
which ours add `train_seconds`, `params_fingerprint`, `tensor_digest` and `values_digest`; compact, a committed
run's final checkpoint without optimizer or scheduler state (training cannot go past it); weights, a bare state dict.
Loading checks the zip's CRC-32s (torch.load does not), reads tensors and plain containers only (weights_only), then
the digests the state carries (older files: the tensor digest alone, or beside a `content_digest` of a dropped
encoding, which the CRCs stand in for), the epoch against the file's name and its history, and the weights' values.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .config import Config
from .files import WriteError, atomic_write
from .model import build_model, plain_decoder

_CHECKPOINT_NAME = re.compile(r"^model_(\d+)\.pt$")

# The params that shape the weights of epoch k. Left out: where files go and how often (model_path, progress_path,
# plot_epochs); train_epochs, as every epoch is seeded by (seed, epoch) and no scheduler reads it (model_90.pt of a
# 90-epoch run is epoch 90 of a 120-epoch one); data.root and device (the data is MD5-checked; a device changes
# rounding only).
_FINGERPRINTED = ("train", "model", "seed", "data.train_subset", "data.val_fraction")
_FINGERPRINT_EXCLUDED = ("train.model_path", "train.progress_path", "train.plot_epochs", "train.train_epochs")
# Keys added after runs were committed: fingerprinted only when set, so older checkpoints still match.
_FINGERPRINT_WHEN_SET = ("train.preactivation_penalty", "model.decoder_constraint")
FULL_KEYS = ("epoch", "model_state_dict", "optimizer_state_dict", "history", "lr_scheduler_state_dict")
_COMPACT_KEYS = ("epoch", "model_state_dict", "history")  # what a compact checkpoint must have
_COMPACT_EXTRAS = ("params_fingerprint", "train_seconds")  # what it keeps where the source has them
_DIGESTS = ("tensor_digest", "values_digest", "content_digest")  # written afresh on each save (content_: older files')
_VALUES = "its values other than tensors (epoch, history, params fingerprint, optimizer or scheduler settings...)"
_ABSENT = object()


def params_fingerprint(config: Config) -> dict[str, Any]:
    """{dotted params key: value} for every key of _FINGERPRINTED (mappings flattened, lists whole)."""
    return {key: value for key, value in sorted(_flatten(config.to_dict(), "").items())
            if _under(key, _FINGERPRINTED) and not _under(key, _FINGERPRINT_EXCLUDED)
            and not (value is None and key in _FINGERPRINT_WHEN_SET)}


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def _flatten(node: dict, prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, f"{name}.") if isinstance(value, dict) and value else {name: value})
    return out


def fingerprint_changes(state: dict, config: Config) -> list[str] | None:
    """The params keys whose values differ between the checkpoint and `config`; None when it has no fingerprint
    (the original train.py's files and this study's older ones)."""
    saved = state.get("params_fingerprint")
    if not isinstance(saved, dict):
        return None
    current = params_fingerprint(config)
    return sorted(k for k in saved.keys() | current.keys() if saved.get(k, _ABSENT) != current.get(k, _ABSENT))


def tensor_digest(state: dict) -> str:
    """SHA-256 over the name, dtype, shape and bytes of every tensor in `state`, in a fixed order: what tells a file
    rewritten after an edit of its tensors (torch.save writes valid CRCs), and names a model's weights (the workflow)."""
    h = hashlib.sha256()
    for name, tensor in _tensors(state, ""):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _tensors(node: Any, name: str):
    if isinstance(node, torch.Tensor):
        yield name, node
    elif isinstance(node, dict):
        for key in sorted(node, key=str):
            yield from _tensors(node[key], f"{name}/{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _tensors(value, f"{name}/{i}")


def _values_digest(state: dict) -> str:
    """SHA-256 of `state` but this digest as JSON, tensors left to tensor_digest (whose value it covers): floats exact,
    4 apart from 4.0 and '4', keys in their order. torch.load returns what torch.save was given, so the digest of a
    loaded state is the saved one's unless the file was rewritten with other values."""
    rest = {k: v for k, v in state.items() if k != "values_digest"}
    text = json.dumps(rest, default=lambda value: None if isinstance(value, torch.Tensor) else repr(value))
    return hashlib.sha256(text.encode()).hexdigest()


class _CheckpointWriteError(CheckpointError, WriteError):
    """A checkpoint the disk could not take: a CheckpointError, and a WriteError (an OSError) like any failed write."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state` with its `tensor_digest` and `values_digest` (recomputed) to `path` atomically: a crash, a kill
    or a full disk during the write leaves any previous file intact."""
    path = Path(path)
    state = {k: v for k, v in state.items() if k not in _DIGESTS}
    state["tensor_digest"] = tensor_digest(state)
    state["values_digest"] = _values_digest(state)
    buffer = io.BytesIO()  # serialized in memory: the only disk write is atomic_write's, whose errors keep their errno
    torch.save(state, buffer)
    try:
        return atomic_write(path, buffer.getvalue())
    except WriteError as exc:
        if getattr(exc.__cause__, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise _CheckpointWriteError(f"{path}: the disk is full (no space left on device), the checkpoint was not "
                                   f"written; earlier checkpoints are intact: free some space and rerun (training "
                                   f"resumes from the last one)") from None


def checkpoint_path(model_dir: str | Path, epoch: int) -> Path:
    return Path(model_dir) / f"model_{epoch}.pt"


def checkpoints_newest_first(model_dir: str | Path, max_epoch: int | None = None) -> list[Path]:
    """The model_<epoch>.pt files in `model_dir` (epochs at most `max_epoch`), the highest epoch first."""
    found = sorted(((int(m.group(1)), p) for p in Path(model_dir).glob("model_*.pt")
                    if (m := _CHECKPOINT_NAME.match(p.name))), reverse=True)
    return [p for epoch, p in found if max_epoch is None or epoch <= max_epoch]


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint of this study or of the original train.py, in any layout, checked (module docstring);
    never executes code from the file. Has at least `model_state_dict` (a bare state dict comes wrapped in one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; run notebooks/01_train.ipynb (or ./run_all.sh) first")
    state = _as_checkpoint(_read(path), path)
    _check_digests(state, path)  # before the rest: an edited value is damage, whatever value it made
    _check_epoch(state, path)
    _check_weights(state["model_state_dict"], path)
    return state


def _unreadable(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable torch checkpoint (truncated or foreign file): {why}")


def _damaged(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: damaged, {what} no longer match the digest written with them (altered or "
                           f"corrupted on disk); retrain or copy it again")


def _read(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(512)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch writes a zip, before torch 1.6 a pickle
        kind = "an empty file" if not head else "a text file" if head.isascii() else "neither a zip nor a pickle"
        raise _unreadable(path, f"it is {kind}")
    if head.startswith(b"PK"):
        _check_crcs(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # what weights_only refuses: a global other than tensors' and containers'
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain containers "
                              f"(nothing from it was executed): {first}") from None
    except Exception as exc:  # a truncated or damaged file: RuntimeError, EOFError, KeyError, IndexError...
        raise _unreadable(path, type(exc).__name__) from None


def _check_crcs(path: Path) -> None:
    """Every zip entry against its CRC-32, which torch.load skips: a flipped byte would load as another value. Reading
    each entry whole also refuses one declaring more bytes than the file holds (so does torch's reader, allocating
    nothing for them)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as exc:  # not a whole zip: BadZipFile, EOFError...
        raise _unreadable(path, type(exc).__name__) from None
    if bad is not None:
        raise _damaged(path, "its tensors" if "/data/" in bad else _VALUES)


def _as_checkpoint(obj: Any, path: Path) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model_state_dict": obj}
    raise CheckpointError(f"{path}: not a model checkpoint (no 'model_state_dict' and not a state dict)")


def _check_digests(state: dict, path: Path) -> None:
    """Each digest the file carries (the original train.py's carry none): a file rewritten after an edit has valid CRCs.
    Both digests were computed when this study wrote it, so they can be again."""
    for key, digest, what in (("tensor_digest", tensor_digest, "its tensors"), ("values_digest", _values_digest, _VALUES)):
        if key in state and state[key] != digest(state):
            raise _damaged(path, what)


def _check_epoch(state: dict, path: Path) -> None:
    """`epoch` a whole number, the k of the file's name model_<k>.pt, and the length of every history list."""
    if "epoch" not in state:
        return  # a bare state dict, or weights only: nothing to agree with
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"{path}: epoch is {type(epoch).__name__} {epoch!r}, not a whole number of epochs >= 0")
    named = _CHECKPOINT_NAME.match(path.name)
    if named and int(named.group(1)) != epoch:
        raise CheckpointError(f"{path}: holds epoch {epoch} but is named {path.name} (renamed, or its epoch altered "
                              f"on disk): rename it model_{epoch}.pt if epoch {epoch} is right, or retrain")
    history = state.get("history", {})
    if not isinstance(history, dict):
        raise CheckpointError(f"{path}: history is a {type(history).__name__}, not a mapping of per-epoch lists")
    for key, values in history.items():
        if not isinstance(values, (list, tuple)):
            raise CheckpointError(f"{path}: history[{key!r}] is a {type(values).__name__}, not a per-epoch list")
        if len(values) != epoch:
            raise CheckpointError(f"{path}: history[{key!r}] has {len(values)} entries but the checkpoint holds "
                                  f"epoch {epoch} (one per epoch): truncated or altered; retrain or copy it again")


def _check_weights(weights: dict, path: Path) -> None:
    """Every weight a finite real float: load_state_dict would silently cast integers into the model."""
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
        if key.endswith("num_batches_tracked"):  # BatchNorm's step counter, an integer by design
            continue
        if not value.is_floating_point():
            raise CheckpointError(f"{path}: {key} holds {value.dtype} values; a model's weights are real "
                                  f"floating-point numbers")
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise CheckpointError(f"{path}: {key} holds {bad} non-finite values (inf or nan): training diverged "
                                  f"before it was written, or the file was altered")


def checkpoint_layout(state: dict) -> str:
    """'full' (training can resume from it), 'compact' (weights and history only) or 'weights' (see the module)."""
    if all(k in state for k in FULL_KEYS):
        return "full"
    if all(k in state for k in _COMPACT_KEYS) and not any(k in state for k in FULL_KEYS if k not in _COMPACT_KEYS):
        return "compact"
    return "weights"


def write_compact_checkpoint(source: str | Path, dest: str | Path | None = None, config: Config | None = None) -> Path:
    """Rewrite the checkpoint `source` (loaded and checked) in the compact layout at `dest` (default: `source`),
    its weights bit for bit, atomically: a third of a full checkpoint's size (no Adam moments), for committed runs.
    A compact `source` is left as it is (its bytes too) when `dest` is itself. `config` refuses a checkpoint whose
    fingerprint names other params; one without a fingerprint (the original train.py's) stays without: nothing shows
    which params trained it, so none are stamped in."""
    source = Path(source)
    state = load_checkpoint(source)
    missing = [k for k in _COMPACT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{source}: cannot be written as a compact checkpoint, it lacks {', '.join(missing)}")
    if config is not None:
        changed = fingerprint_changes(state, config)
        if changed:
            raise CheckpointError(f"{source}: trained with other params than the config given (changed: "
                                  f"{', '.join(changed[:6])}); not rewritten")
    if checkpoint_layout(state) == "compact" and (dest is None or Path(dest) == source):
        return source
    state = {k: state[k] for k in (*_COMPACT_KEYS, *_COMPACT_EXTRAS) if k in state}
    return save_checkpoint(state, source if dest is None else dest)


def load_state_into(model: torch.nn.Module, state_dict: dict, source: str | Path) -> None:
    """Load weights into `model`, naming every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    problems = [text for text, found in ((f"missing keys {missing}", missing),
                                         (f"unexpected keys {unexpected}", unexpected),
                                         (f"shape mismatch: {'; '.join(shapes)}", shapes)) if found]
    if problems:
        raise CheckpointError(f"{source}: does not fit this architecture: {', '.join(problems)}")
    model.load_state_dict(state_dict)


def load_model(config: Config, path: str | Path, device: str | torch.device = "cpu"):
    """The config's model with the checkpoint's weights, in eval mode; a constrained decoder comes back with plain
    weights (its values): what the study evaluates and inverts."""
    model = build_model(config)
    load_state_into(model, load_checkpoint(path)["model_state_dict"], path)
    if config.model.decoder_constraint is not None:
        model.decoder = plain_decoder(model.decoder)
    return model.to(device).eval()
