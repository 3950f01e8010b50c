"""Save checkpoints atomically; load them (ours or the original train.py's) without running code.

Layouts (`checkpoint_layout` tells them apart; `load_checkpoint` reads them all):

* full: the original layout, a dict with `epoch`, `model_state_dict`, `optimizer_state_dict`,
  `history`, `lr_scheduler_state_dict`, as the original train.py wrote it (its VAE with keys
  `encoder_conv.*`, `encoder_mean.*`, `encoder_log_var.*`, `decoder.*`; its last commit's
  deterministic autoencoder with `encoder.*`, `decoder.*`, weights rounded to 4 decimals). This
  study's training writes it too, with keys beside them which the original's files lack and need
  not have: `train_seconds`, `params_fingerprint` (the params that shaped the weights, see
  `params_fingerprint`), `tensor_digest` (SHA-256 of every tensor, see `tensor_digest`) and
  `content_digest` (SHA-256 of everything else too: epoch, history, fingerprint, optimizer and
  scheduler values; see `content_digest`). Files written before the content digest carry the tensor
  digest only, and are checked by it; a file that carries the content digest is checked in full.
* compact: a committed run's final checkpoint, weights and history: `epoch`, `model_state_dict`,
  `history` and, where known, `params_fingerprint` and `train_seconds` (plus the digests); no
  optimizer or scheduler state, so training cannot continue past it. `write_compact_checkpoint`.
* weights: a bare state dict (name -> tensor), or a dict with `model_state_dict` and neither of the above.

Loading first bounds what the file declares (MAX_CHECKPOINT_BYTES, from its zip directory, before any
data is read), then uses `weights_only=True`: tensors and plain containers only, nothing executed; then
the digests (when present) are checked, the epoch must agree with the file's name (model_<epoch>.pt)
and with its history (one entry per epoch), and every weight must be a finite floating-point number.
"""
from __future__ import annotations

import codecs
import errno
import hashlib
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .config import Config
from .files import WriteError, atomic_write
from .model import build_model, plain_decoder

CHECKPOINT_NAME = re.compile(r"^model_(\d+)\.pt$")

# The params that shape the weights of epoch k: config.to_dict() less what only says where files go
# or how often they are written (model_path, progress_path, plot_epochs), how the same steps run
# (cuda_graph), and train_epochs, which only says where training stops: every epoch is seeded by
# (seed, epoch) and no scheduler reads it, so model_90.pt of a 90-epoch run is epoch 90 of a 120-epoch
# one. data.root and device are left out too (the data is MD5-checked; a device changes rounding only).
FINGERPRINT_SECTIONS = ("train", "model", "seed", "data.train_subset", "data.val_fraction")
FINGERPRINT_EXCLUDED = ("train.model_path", "train.progress_path", "train.plot_epochs", "train.cuda_graph",
                        "train.train_epochs")
# Keys added after runs were committed: in the fingerprint only when set, so a checkpoint written before
# they existed (reports/default's) still matches params that leave them out.
FINGERPRINT_WHEN_SET = ("train.preactivation_penalty", "model.decoder_constraint")
DIGESTED = ("model_state_dict", "optimizer_state_dict", "lr_scheduler_state_dict")  # where the tensors are
DIGEST_KEYS = ("tensor_digest", "content_digest")  # written by save_checkpoint, never by its callers
CONTENT_DIGEST_FORM = b"inverse_vae checkpoint content digest 1\n"  # hashed first: names this encoding

# The most a checkpoint may declare (its zip entries, uncompressed, together; or a non-zip file's size),
# checked before torch.load reads anything. The study's checkpoints are a few MB (a full one, with
# Adam's moments, about three times a compact one).
MAX_CHECKPOINT_BYTES = 1 << 30

FULL_KEYS = ("epoch", "model_state_dict", "optimizer_state_dict", "history", "lr_scheduler_state_dict")
COMPACT_KEYS = ("epoch", "model_state_dict", "history")  # what a compact checkpoint must have
COMPACT_EXTRAS = ("params_fingerprint", "train_seconds")  # what it keeps where the source has them


def params_fingerprint(config: Config) -> dict[str, Any]:
    """{dotted params key: value} for every key of FINGERPRINT_SECTIONS (mappings flattened, lists whole)."""
    return {key: value for key, value in sorted(_flatten(config.to_dict(), "").items())
            if _under(key, FINGERPRINT_SECTIONS) and not _under(key, FINGERPRINT_EXCLUDED)
            and not (value is None and key in FINGERPRINT_WHEN_SET)}


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def _flatten(node: dict, prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, f"{name}.") if isinstance(value, dict) and value else {name: value})
    return out


def fingerprint_changes(state: dict, config: Config) -> list[str] | None:
    """The params keys whose values differ between the checkpoint and `config`; None when it has no fingerprint."""
    saved = state.get("params_fingerprint")
    if not isinstance(saved, dict):
        return None  # the original train.py's files and this study's older ones: unknown
    current = params_fingerprint(config)
    return sorted(k for k in saved.keys() | current.keys() if saved.get(k, _ABSENT) != current.get(k, _ABSENT))


_ABSENT = object()


def tensor_digest(state: dict) -> str:
    """SHA-256 over the name, dtype, shape and bytes of every tensor under DIGESTED, in a fixed order.

    torch.load does not check the zip's CRCs, so a flipped byte inside tensor data loads silently
    as another weight; this digest, written beside the tensors, catches it.
    """
    h = hashlib.sha256()
    for name, tensor in _tensors({k: state[k] for k in DIGESTED if k in state}, ""):
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


def content_digest(state: dict) -> str:
    """SHA-256 over everything in `state` but the `content_digest` itself: every tensor (name, dtype,
    shape, bytes, wherever it is) and every other value (epoch, history, params fingerprint,
    train_seconds, the optimizer's and scheduler's numbers...), in a canonical encoding that tells
    types apart (4 from 4.0 and '4', a list from a tuple) and writes floats exactly; mappings in sorted
    key order. torch.load returns what torch.save was given, so the digest of a loaded state is the
    digest of the saved one unless the file changed.
    """
    h = hashlib.sha256(CONTENT_DIGEST_FORM)
    _encode({k: v for k, v in state.items() if k != "content_digest"}, h.update)
    return h.hexdigest()


def _encode(node: Any, emit: Callable[[bytes], Any]) -> None:
    """Feed `node`'s canonical encoding to `emit`: a type tag, then a self-delimiting body."""
    if isinstance(node, torch.Tensor):
        data = node.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        emit(f"T{node.dtype}|{tuple(node.shape)}|{data.nbytes};".encode())
        emit(data)
    elif node is None:
        emit(b"N")
    elif isinstance(node, bool):
        emit(b"B1" if node else b"B0")
    elif isinstance(node, int):
        emit(f"I{node};".encode())
    elif isinstance(node, float):
        emit(f"F{node.hex()};".encode())  # exact, -0.0 apart from 0.0
    elif isinstance(node, str):
        _emit_bytes(b"S", node.encode("utf-8", "surrogatepass"), emit)
    elif isinstance(node, bytes):
        _emit_bytes(b"Y", node, emit)
    elif isinstance(node, Mapping):
        items = []
        for key, value in node.items():
            chunks = []
            _encode(key, chunks.append)
            items.append((b"".join(bytes(c) for c in chunks), value))
        items.sort(key=lambda item: item[0])
        emit(f"D{len(items)};".encode())
        for key, value in items:
            emit(key)
            _encode(value, emit)
    elif isinstance(node, (list, tuple)):
        emit(f"{'L' if isinstance(node, list) else 'U'}{len(node)};".encode())
        for value in node:
            _encode(value, emit)
    else:  # what else weights_only lets through (a torch.dtype, a torch.device...): its type and repr
        _emit_bytes(f"O{type(node).__module__}.{type(node).__qualname__}".encode(), repr(node).encode(), emit)


def _emit_bytes(tag: bytes, body: bytes, emit: Callable[[bytes], Any]) -> None:
    emit(tag + struct.pack(">Q", len(body)))
    emit(body)


class CheckpointWriteError(CheckpointError, WriteError):
    """A checkpoint the disk could not take: a CheckpointError, and a WriteError (an OSError) like any failed write."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state`, with its `tensor_digest` and `content_digest` (any it carries are recomputed), to
    `path` atomically: a crash, a kill or a full disk during the write leaves any previous file intact."""
    path = Path(path)
    state = {k: v for k, v in state.items() if k not in DIGEST_KEYS}
    state["tensor_digest"] = tensor_digest(state)
    state["content_digest"] = content_digest(state)
    try:
        return atomic_write(path, lambda f: torch.save(state, f))
    except OSError as exc:  # atomic_write's WriteError (its cause holds the errno), or a raw one
        if getattr(exc.__cause__, "errno", None) not in NO_SPACE and exc.errno not in NO_SPACE:
            raise
        raise CheckpointWriteError(_no_space(path)) from None
    except RuntimeError as exc:
        # torch's zip writer reports a short write, which a full disk causes, as "[enforce fail at
        # inline_container.cc:...] unexpected pos ..." (or "file write failed"), without the errno.
        if "unexpected pos" not in str(exc) and "write failed" not in str(exc):
            raise
        raise CheckpointWriteError(_no_space(path)) from None


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _no_space(path: Path) -> str:
    return (f"{path}: the disk is full (no space left on device), the checkpoint was not written; earlier "
            f"checkpoints are intact: free some space and rerun (training resumes from the last one)")


def checkpoint_path(model_dir: str | Path, epoch: int) -> Path:
    return Path(model_dir) / f"model_{epoch}.pt"


def checkpoints_newest_first(model_dir: str | Path, max_epoch: int | None = None) -> list[Path]:
    """The model_<epoch>.pt files in `model_dir` (epochs at most `max_epoch`), the highest epoch first."""
    found = []
    for p in Path(model_dir).glob("model_*.pt"):
        m = CHECKPOINT_NAME.match(p.name)
        if m and (max_epoch is None or int(m.group(1)) <= max_epoch):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(model_dir: str | Path, max_epoch: int | None = None) -> Path | None:
    """The checkpoint with the highest epoch in `model_dir` (at most `max_epoch`), or None."""
    found = checkpoints_newest_first(model_dir, max_epoch)
    return found[0] if found else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by this study or by the original train.py, in any layout (module docstring).

    Returns a dict that has at least `model_state_dict` (a bare state dict comes back wrapped in one).
    Never executes code from the file: anything that is not a tensor or a plain container is refused,
    and so is a file that declares more than MAX_CHECKPOINT_BYTES, before anything is read. So is a
    file whose contents no longer match its `content_digest` or whose tensors no longer match its
    `tensor_digest` (where it has them), one whose epoch is not the k of its name model_<k>.pt or not
    the length of its history lists, and weights that are not finite floating-point numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; run notebooks/01_train.ipynb (or ./run_all.sh) first")
    _check_declared_size(path)
    state = _as_checkpoint(_read(path, map_location), path)
    _check_digest(state, path)  # before the rest: a flipped byte is damage, whatever value it made
    _check_epoch(state, path)
    _check_weights(state["model_state_dict"], path)
    return state


def _check_declared_size(path: Path) -> None:
    """Refuse a file that declares more than MAX_CHECKPOINT_BYTES, before torch.load reads it.

    torch.load of a zip checkpoint (torch.save's format) reads each entry whole, as large as the zip's
    directory says it is uncompressed (a small file can declare gigabytes); the old non-zip format
    stores its data in the file, bounded by the file's own size.
    """
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"  # what torch.load looks at to choose the zip reader
    entries = [(path.name, path.stat().st_size)]
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                entries = [(info.filename, info.file_size) for info in zf.infolist()]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or foreign file): "
                                  f"{type(exc).__name__}") from None
    total = sum(n for _, n in entries)
    if total > MAX_CHECKPOINT_BYTES:
        name, largest = max(entries, key=lambda entry: entry[1])
        raise CheckpointError(f"{path}: declares {total:,} bytes of data ({len(entries)} "
                              f"entr{'ies' if len(entries) > 1 else 'y'}, the largest {name} {largest:,} bytes), "
                              f"more than a checkpoint may hold ({_binary_size(MAX_CHECKPOINT_BYTES)}): "
                              f"refused before reading it")


def _binary_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


# What torch.load raises on a truncated or foreign file (a text file gives KeyError, random bytes IndexError...).
UNREADABLE = (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, TypeError,
              AttributeError, UnicodeDecodeError)


def _read(path: Path, map_location) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, *UNREADABLE) as exc:
        if _is_text(path):  # the weights-only unpickler reads text as opcodes: whatever it says is noise
            raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or foreign file): "
                                  f"it is a text file") from None
        if isinstance(exc, pickle.UnpicklingError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain containers "
                                  f"(nothing from it was executed): {first}") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or foreign file): "
                              f"{type(exc).__name__}") from None


def _is_text(path: Path) -> bool:
    """Whether the file starts like text: UTF-8 without NUL bytes (torch's zip and pickle files never do)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)  # not final: a character cut at 4096 is fine
    except UnicodeDecodeError:
        return False
    return bool(head) and b"\0" not in head


def _as_checkpoint(obj: Any, path: Path) -> dict:
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model_state_dict": obj}
    raise CheckpointError(f"{path}: not a model checkpoint (no 'model_state_dict' and not a state dict)")


def _check_digest(state: dict, path: Path) -> None:
    """The tensor digest (files of every version of this study) and the content digest (files written
    since it exists: everything else too); a file that has neither (the original train.py's) is not checked."""
    try:
        tensors_ok = "tensor_digest" not in state or state["tensor_digest"] == tensor_digest(state)
        content_ok = "content_digest" not in state or state["content_digest"] == content_digest(state)
    except (RuntimeError, TypeError, ValueError) as exc:  # a tensor with no plain bytes (sparse, quantized...)
        raise CheckpointError(f"{path}: holds a tensor whose bytes cannot be read for its digest "
                              f"({type(exc).__name__}): not a checkpoint of this study's models") from None
    if not tensors_ok:
        raise CheckpointError(f"{path}: damaged, its tensors no longer match the digest written with them "
                              f"(altered or corrupted on disk); retrain or copy it again")
    if not content_ok:
        what = ("its values other than tensors (epoch, history, params fingerprint, optimizer or scheduler "
                "settings...)" if "tensor_digest" in state else "its contents")
        raise CheckpointError(f"{path}: damaged, {what} no longer match the digest written with them "
                              f"(altered or corrupted on disk); retrain or copy it again")


def _check_epoch(state: dict, path: Path) -> None:
    """`epoch` a whole number, the k of the file's name model_<k>.pt, and the length of every history list."""
    if "epoch" not in state:
        return  # a bare state dict, or weights only: nothing to agree with
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise CheckpointError(f"{path}: epoch is {type(epoch).__name__} {epoch!r}, not a whole number of epochs >= 0")
    named = CHECKPOINT_NAME.match(path.name)
    if named and int(named.group(1)) != epoch:
        raise CheckpointError(f"{path}: holds epoch {epoch} but is named {path.name} (renamed, or its epoch altered "
                              f"on disk): rename it model_{epoch}.pt if epoch {epoch} is right, or retrain")
    if "history" not in state:
        return
    history = state["history"]
    if not isinstance(history, Mapping):
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
    if all(k in state for k in COMPACT_KEYS) and not any(k in state for k in FULL_KEYS if k not in COMPACT_KEYS):
        return "compact"
    return "weights"


def compact_state(state: dict, source: str | Path = "checkpoint") -> dict:
    """The compact layout of a checkpoint's state: COMPACT_KEYS, and COMPACT_EXTRAS where present.

    The same tensor objects (nothing copied or converted); the optimizer and scheduler state are dropped.
    """
    missing = [k for k in COMPACT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{source}: cannot be written as a compact checkpoint, it lacks {', '.join(missing)}")
    return {k: state[k] for k in (*COMPACT_KEYS, *COMPACT_EXTRAS) if k in state}


def write_compact_checkpoint(source: str | Path, dest: str | Path | None = None, config: Config | None = None) -> Path:
    """Rewrite the checkpoint `source` in the compact layout (weights, history, params fingerprint; no
    optimizer state) at `dest`, by default `source` itself. Returns the path written.

    `source` is loaded as `load_checkpoint` does (digest and weights checked) and may be full or compact;
    the weights written are its own, bit for bit, under a fresh digest; the write is atomic, so a
    failure leaves `dest` as it was. `config`, the params that trained it, writes their fingerprint into
    a checkpoint that has none (one written before fingerprints existed) and refuses one whose recorded
    fingerprint differs. For committed runs: a third of the size of a full checkpoint (no Adam moments).
    """
    source = Path(source)
    state = compact_state(load_checkpoint(source), source)
    if config is not None:
        changed = fingerprint_changes(state, config)
        if changed:
            raise CheckpointError(f"{source}: trained with other params than the config given (changed: "
                                  f"{', '.join(changed[:6])}); not rewritten")
        state["params_fingerprint"] = params_fingerprint(config)
    return save_checkpoint(state, source if dest is None else dest)


def load_state_into(model: torch.nn.Module, state_dict: dict, source: str | Path) -> None:
    """Load weights into `model`, naming every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatch: {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(f"{source}: does not fit this architecture: {', '.join(problems)}")
    model.load_state_dict(state_dict)


def load_model(config: Config, path: str | Path, device: str | torch.device = "cpu"):
    """Build the config's model (see model.build_model), load the checkpoint's weights into it, in eval mode;
    any layout of the module docstring. A constrained decoder comes back with plain weights (its values):
    what the study evaluates and inverts."""
    model = build_model(config)
    load_state_into(model, load_checkpoint(path)["model_state_dict"], path)
    if config.model.decoder_constraint is not None:
        model.decoder = plain_decoder(model.decoder)
    return model.to(device).eval()
