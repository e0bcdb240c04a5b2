"""Reading and writing GHN checkpoints in the official ppuda format.

A checkpoint is a ``torch.save``d dict ``{"state_dict": ..., "config": ..., "epoch": ...}`` (ppuda's
training script may add its optimizer state under the misspelled key ``"optimzer"``; it is ignored).
``config`` holds the :class:`~dpiat.ghn.model.GHN2` constructor arguments; when it is missing (a bare
state dict, or a dict without ``config``) it is inferred from the key names and shapes::

    >>> import tempfile, os
    >>> from dpiat.ghn.io import load_ghn, save_ghn
    >>> from dpiat.ghn.model import GHN2
    >>> path = os.path.join(tempfile.mkdtemp(), "ghn.pt")
    >>> save_ghn(path, GHN2(num_classes=10), epoch=3)
    >>> load_ghn(path).config["max_shape"]
    (64, 64, 11, 11)

Files are read with ``torch.load(weights_only=True)`` (no arbitrary code runs) and written atomically
(temporary file in the same folder, fsync, rename), so a killed writer never leaves a half-written file.
Every problem raises :class:`~dpiat.errors.WeightsError` naming the file and what is wrong with it.

**Graph rules.** A GHN only predicts well on graphs built the way it was trained on. :func:`save_ghn`
therefore records the rules of the GHN it writes (``ghn.graph_rules``, :data:`~dpiat.ghn.graph.GRAPH_RULES`)
under a top-level ``"graph_rules"`` key, a plain string next to ``state_dict``/``config``/``epoch`` (still
``weights_only``-safe; ppuda's own loader ignores it). :func:`load_ghn` sets ``ghn.graph_rules`` from that
key, and a file without it is an official ppuda checkpoint: ``"ppuda"``. Checkpoints this project wrote
before the key existed were trained with ``"structural"`` rules but read as official; mark them once with
:func:`mark_graph_rules` (or pass ``graph_rules="structural"`` when predicting)::

    >>> load_ghn(path).graph_rules
    'structural'
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from dpiat.atomic import atomic_open
from dpiat.errors import WeightsError
from dpiat.ghn.graph import GRAPH_RULES
from dpiat.ghn.model import CONFIG_KEYS, GHN2

IGNORED_KEYS = ("optimzer", "optimizer")  # training state; not needed to predict

def _short(items, n: int = 6) -> str:
    items = list(items)
    return ", ".join(map(str, items[:n])) + (f" (+{len(items) - n} more)" if len(items) > n else "")

def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict with ``state_dict`` (tensors), ``config`` (dict), ``epoch`` (int or None) and
    ``graph_rules`` (the recorded rules, or None for an official file without the key)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"GHN checkpoint {str(path)!r} does not exist (pass init.checkpoint=PATH to a "
                           f"ghn2_*.pt file, or train one with bench/train_ghn.py)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if not found:  # garbage bytes: "invalid load key", "Unsupported operand"
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
            raise WeightsError(f"{path}: not a readable torch checkpoint (truncated, corrupted or another "
                               f"format; {(detail.group(1) if detail else str(e).splitlines()[0])[:160]})"
                               ) from None
        what = f" (it pickles {found.group(1)})"
        raise WeightsError(f"{path}: refusing to load: the file contains Python objects other than tensors "
                           f"and plain containers{what}; only weights_only-safe checkpoints are read. If you "
                           f"trust the file, re-save its 'state_dict' and 'config' as plain tensors and "
                           f"builtins.") from None
    except (RuntimeError, EOFError, KeyError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{path}: not a readable torch checkpoint (truncated, corrupted or another "
                           f"format; {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'empty'})"
                           ) from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict with 'state_dict' and 'config', got {type(obj).__name__}")
    rules = None
    if "state_dict" in obj:
        state, config, epoch, rules = obj["state_dict"], obj.get("config"), obj.get("epoch"), obj.get("graph_rules")
    elif obj and all(torch.is_tensor(v) for v in obj.values()):
        state, config, epoch = obj, None, None  # a bare state dict (as GHN-3's hub files are)
    else:
        raise WeightsError(f"{path}: not a GHN checkpoint: no 'state_dict' key (top-level keys: "
                           f"{_short(obj)})")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: 'state_dict' must map names to tensors")
    if state and all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    if config is not None and not isinstance(config, dict):
        raise WeightsError(f"{path}: 'config' must be a dict, got {type(config).__name__}")
    if rules is not None and rules not in GRAPH_RULES:
        raise WeightsError(f"{path}: 'graph_rules' must be one of {', '.join(GRAPH_RULES)}, got {rules!r}; "
                           f"fix it with dpiat.ghn.io.mark_graph_rules(path, RULES)")
    return {"state_dict": state, "config": config, "epoch": epoch, "graph_rules": rules}

def infer_config(state: dict[str, torch.Tensor]) -> dict:
    """GHN constructor arguments from the key names and shapes of a state dict (docs/ghn.md §1)."""
    need = ("embed.weight", "decoder.fc.0.weight", "decoder.conv.2.weight", "bias_class.1.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise WeightsError(f"not a GHN-2 state dict: missing {_short(missing)}")
    hid = state["embed.weight"].shape[1]
    out_in = state["decoder.conv.2.weight"].shape[0]
    side_ch = math.isqrt(out_in)
    side = math.isqrt(state["decoder.fc.0.weight"].shape[0] // (4 * hid))
    if side_ch * side_ch != out_in or 4 * hid * side * side != state["decoder.fc.0.weight"].shape[0]:
        raise WeightsError("not a GHN-2 state dict: decoder shapes do not fit (64*64 channels x s*s positions)")
    return dict(max_shape=(side_ch, side_ch, side, side), num_classes=state["bias_class.1.weight"].shape[0],
                hypernet="gatedgnn" if any(k.startswith("gnn.gru.") for k in state) else "mlp",
                decoder="conv", weight_norm=True, ve=any(k.startswith("gnn.mlp_ve.") for k in state),
                layernorm="ln.weight" in state, hid=hid)

def ghn_from_state(state: dict[str, torch.Tensor], config: dict | None = None, *, where: str = "checkpoint"
                   ) -> GHN2:
    """A GHN2 module with ``state`` loaded strictly; mismatches raise a WeightsError listing the keys."""
    if config is None:
        config = infer_config(state)
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise WeightsError(f"{where}: config keys {unknown} are not GHN-2 options ({', '.join(CONFIG_KEYS)}); "
                           f"GHN-3 checkpoints are not supported")
    try:
        ghn = GHN2(**config)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{where}: bad GHN config {config}: {e}") from None
    expected = {k: tuple(v.shape) for k, v in ghn.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shaped = [f"{k} {got[k]} (expected {expected[k]})" for k in expected if k in got and got[k] != expected[k]]
    if missing or unexpected or shaped:
        parts = [f"missing keys: {_short(missing)}" if missing else "",
                 f"unexpected keys: {_short(unexpected)}" if unexpected else "",
                 f"wrong shapes: {_short(shaped, 4)}" if shaped else ""]
        raise WeightsError(f"{where}: the state dict does not fit a GHN-2 with config {config}: "
                           + "; ".join(p for p in parts if p))
    ghn.load_state_dict(state, strict=True)
    for k, v in state.items():
        if not torch.isfinite(v).all():
            raise WeightsError(f"{where}: tensor {k!r} has non-finite values")
    return ghn.eval()

def load_ghn(path: str | os.PathLike) -> GHN2:
    """The GHN stored at ``path`` (official ``ghn2_*.pt`` or one written by :func:`save_ghn`), in eval mode.

    ``ghn.graph_rules`` is the file's ``"graph_rules"``, or ``"ppuda"`` when the key is missing (an
    official checkpoint); ``ghn.graph_rules_source`` says which.
    """
    ckpt = read_checkpoint(path)
    ghn = ghn_from_state(ckpt["state_dict"], ckpt["config"], where=str(path))
    ghn.epoch = ckpt["epoch"]
    if ckpt["graph_rules"] is None:
        ghn.graph_rules, ghn.graph_rules_source = "ppuda", "official checkpoint (no graph_rules key)"
    else:
        ghn.graph_rules, ghn.graph_rules_source = ckpt["graph_rules"], "checkpoint"
    return ghn

def save_ghn(path: str | os.PathLike, ghn: GHN2, *, epoch: int, optimizer_state: dict | None = None,
             extra: dict | None = None) -> None:
    """Write ``ghn`` in the official format, atomically, with its ``graph_rules``. ``optimizer_state`` goes
    under ppuda's ``"optimzer"`` key (for resuming); ``extra`` adds top-level keys of plain data."""
    rules = getattr(ghn, "graph_rules", "structural")
    if rules not in GRAPH_RULES:
        raise WeightsError(f"cannot save a GHN with graph_rules={rules!r}; use one of {', '.join(GRAPH_RULES)}")
    obj = {"state_dict": {k: v.detach().cpu() for k, v in ghn.state_dict().items()},
           "config": dict(ghn.config), "epoch": int(epoch), "graph_rules": rules}
    if optimizer_state is not None:
        obj["optimzer"] = optimizer_state
    obj.update(extra or {})
    atomic_torch_save(obj, path)

def mark_graph_rules(path: str | os.PathLike, rules: str) -> None:
    """Record ``rules`` as the graph rules of the checkpoint at ``path`` (rewritten atomically; every other
    key is kept). For files written before :func:`save_ghn` recorded them: ``mark_graph_rules(p, "structural")``."""
    if rules not in GRAPH_RULES:
        raise WeightsError(f"graph_rules must be one of {', '.join(GRAPH_RULES)}, got {rules!r}")
    read_checkpoint(path)  # the usual checks and messages
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in obj:
        obj = {"state_dict": obj, "config": infer_config(obj), "epoch": None}
    obj["graph_rules"] = rules
    atomic_torch_save(obj, path)

def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (see :mod:`dpiat.atomic`)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
