"""Loading and saving weights safely.

    >>> import dpiat
    >>> model = dpiat.create_model("resnet18", num_classes=10)
    >>> dpiat.save_weights(model, "/tmp/r18.safetensors")
    >>> dpiat.load_weights(model, "/tmp/r18.safetensors")["n_tensors"]
    102

Only safetensors and ``torch.load(..., weights_only=True)`` are used: a file that would need arbitrary
unpickling is refused. Accepted layouts: a plain state dict, or one wrapped under ``state_dict``,
``model``, ``state_dict_ema`` (timm training checkpoints) and Lightning's ``model.`` key prefix.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from dpiat.atomic import atomic_open
from dpiat.errors import WeightsError, WeightsMismatchError

WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_state_dict")
STRIP_PREFIXES = ("model.", "module.", "_orig_mod.")  # Lightning, DDP/DataParallel, torch.compile

def read_state_dict(path: str | os.PathLike, *, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``path`` (safetensors or a torch file), unwrapping common containers."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {str(path)!r} is empty")
    obj = _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)
    return _unwrap(obj, path, key)

def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:  # safetensors: 8-byte little-endian header length, then '{'
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)

def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt headers/data
        raise WeightsError(f"{str(path)!r} is not a readable safetensors file (corrupt or truncated?): {e}") from None

def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", msg) or re.search(r"(\S+) was not an allowed global", msg)
        if unsafe:
            raise WeightsError(
                f"{str(path)!r} contains a pickled Python object ({unsafe.group(1)}) beyond tensors and plain "
                "containers, and dpiat refuses to unpickle arbitrary objects from a file (it could run code). "
                "Save a plain state dict instead: torch.save(model.state_dict(), f) or safetensors.") from None
        raise WeightsError(f"{str(path)!r} is not a readable torch file (corrupt or truncated?): "
                           f"{msg.split('WeightsUnpickler error:')[-1].strip().splitlines()[0][:200]}") from None
    except Exception as e:  # truncated/corrupt files fail anywhere inside the unpickler (EOF, IndexError, ...)
        raise WeightsError(f"{str(path)!r} is not a readable weights file (corrupt or truncated?): "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())

def _unwrap(obj: object, path: Path, key: str | None) -> dict[str, torch.Tensor]:
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise WeightsError(f"{str(path)!r} has no entry {key!r}"
                               + (f"; top-level keys: {sorted(map(str, obj))[:20]}" if isinstance(obj, dict) else ""))
        obj = obj[key]
    elif isinstance(obj, dict) and not _is_tensor_dict(obj):
        for k in WRAPPER_KEYS:
            if k in obj and _is_tensor_dict(obj[k]):
                obj = obj[k]
                break
    if not _is_tensor_dict(obj):
        kind = type(obj).__name__
        keys = f"; top-level keys: {sorted(map(str, obj))[:20]}" if isinstance(obj, dict) else ""
        raise WeightsError(f"{str(path)!r} holds no state dict of tensors (found a {kind}{keys}). Expected a "
                           f"state dict, possibly under one of {list(WRAPPER_KEYS)}.")
    return {str(k): v for k, v in obj.items()}

def _fit_prefix(sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Strip a wrapper prefix (``model.``, ``module.``) when that is what makes the keys fit."""
    if set(sd) & expected:
        return sd
    for prefix in STRIP_PREFIXES:
        stripped = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if stripped and set(stripped) & expected:
            return stripped
    return sd

def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")

def load_weights(model: nn.Module, path: str | os.PathLike, *, strict: bool = True, key: str | None = None) -> dict:
    """Load ``path`` into ``model``; raises :class:`WeightsError` naming the keys that do not fit
    (:class:`~dpiat.errors.WeightsMismatchError` when the file is readable but its tensors do not fit).

    Returns a small report: ``{"path", "n_tensors", "missing", "unexpected"}``."""
    sd, own, missing, unexpected = _fitting(model, path, strict, key)
    with torch.no_grad():
        model.load_state_dict({k: v.contiguous() for k, v in sd.items() if k in own}, strict=strict)
    return {"path": str(path), "n_tensors": len(sd), "missing": missing, "unexpected": unexpected}


def check_weights(model: nn.Module, path: str | os.PathLike, *, strict: bool = True, key: str | None = None) -> int:
    """Raise what :func:`load_weights` would raise, without loading anything: ``model`` may be on the meta
    device (a check before a long job starts). Returns the number of tensors in the file."""
    return len(_fitting(model, path, strict, key)[0])


def _fitting(model: nn.Module, path: str | os.PathLike, strict: bool, key: str | None):
    """The file's state dict (prefix fitted), the model's, and the missing and unexpected keys; raises
    WeightsMismatchError when they do not fit."""
    sd = read_state_dict(path, key=key)
    own = model.state_dict()
    sd = _fit_prefix(sd, set(own))
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} (file {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
             for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if wrong or (strict and (missing or unexpected)):
        parts = [f"{str(path)!r} does not fit {type(model).__name__}:"]
        if wrong:
            parts.append(f"{len(wrong)} wrongly shaped: {_listing(wrong)}")
        if strict and missing:
            parts.append(f"{len(missing)} missing: {_listing(missing)}")
        if strict and unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
        hint = ("Check that the architecture and its options (num_classes, in_chans, ...) are the ones the "
                "file was saved from.")
        raise WeightsMismatchError("\n  ".join(parts) + "\n  " + hint)
    return sd, own, missing, unexpected

def save_weights(model: nn.Module | dict, path: str | os.PathLike) -> None:
    """Save a model's state dict as safetensors, atomically (temp file + rename)."""
    from safetensors.torch import save

    sd = model.state_dict() if isinstance(model, nn.Module) else model
    # safetensors refuses shared or non-contiguous storage: give every tensor its own contiguous copy.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    with atomic_open(path, "wb") as f:
        f.write(save(flat))
