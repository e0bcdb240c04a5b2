"""Meta-train a GHN-2 on a data set over random small timm CNNs; save it in the official format.

    python bench/train_ghn.py data=fashion_mnist                    # results/runs/ghn/fashion_mnist/ghn.pt
    python bench/train_ghn.py data=fashion_mnist out_dir=/tmp/ghn   # any folder; the folder is the run
    python bench/train_ghn.py data=digits epochs=1 steps_per_epoch=3 family.size=4 eval.images=100  # smoke

Then use it as an init method: ``python bench/run.py init=ghn init.checkpoint=<out_dir>/ghn.pt``.

Every step predicts the parameters of ``meta_batch`` architectures drawn from a seeded pool of random
timm CNNs (``dpiat/ghn/family.py``; the benchmark's networks in ``heldout`` are excluded), runs each on
the same image batch and back-propagates their mean cross-entropy into the GHN (``dpiat/ghn/train.py``).
After each epoch the held-out ``eval.archs`` are evaluated with predicted parameters and no training, and
``ghn.pt`` (``state_dict``, ``config``, ``epoch``, and the Adam state under ppuda's ``optimzer`` key) and
``train_log.json`` are written atomically. Running the same command again resumes after the last
finished epoch, or says the run is finished (evaluating any ``eval.archs`` it has not evaluated yet, e.g.
``eval.archs=[tinynet_e,tf_efficientnet_b0]``); a different config for the same folder is an error.
Defaults and their meaning: ``conf/train_ghn.yaml``.
"""

from __future__ import annotations

import itertools
import json
import platform
import random
import sys
import time
from pathlib import Path

import hydra
import timm
import torch
from omegaconf import DictConfig, OmegaConf

from bench.data import build_datamodule, epoch_seed
from bench.runfile import atomic_write_json
from dpiat.errors import DpiatError
from dpiat.ghn.family import ArchFamily
from dpiat.ghn.io import read_checkpoint, save_ghn
from dpiat.ghn.model import GHN2
from dpiat.ghn.train import MetaTrainer, cosine_lr, evaluate_predicted

CHECKPOINT, LOG = "ghn.pt", "train_log.json"
# Keys that do not change what is trained: they may differ between a run and its resumption.
NOT_IDENTITY = ("out_dir", "eval", "threads", "device")


def identity(cfg: DictConfig) -> dict:
    settings = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_IDENTITY:
        settings.pop(key, None)
    settings["data"].pop("eval_batch_size", None)
    return settings


def infinite_batches(loader, epoch: int):
    """Batches of ``epoch``: passes over the training set with seeds (epoch, k), k = 0, 1, ...; a
    pass is cut off when the epoch's steps are done, so a resumed epoch sees the same batches."""
    for k in itertools.count():
        loader.sampler.set_epoch(epoch * 10_000 + k)
        yield from loader


def train(cfg: DictConfig) -> dict:
    out = Path(cfg.out_dir)
    ckpt_path, log_path = out / CHECKPOINT, out / LOG
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = torch.device(cfg.device)
    missing = [a for a in cfg.eval.archs if a not in cfg.heldout]
    if missing:
        raise DpiatError(f"eval.archs {missing} must also be in heldout, or the evaluation is not on unseen nets")
    for key in ("epochs", "steps_per_epoch", "meta_batch", "batch_size"):
        if int(cfg[key]) < 1:
            raise DpiatError(f"{key} must be at least 1, got {cfg[key]}")

    settings = identity(cfg)
    num_classes, in_chans = int(cfg.data.num_classes), int(cfg.data.in_chans)
    torch.manual_seed(cfg.seed)  # the GHN's initial weights
    ghn = GHN2(**OmegaConf.to_container(cfg.ghn), num_classes=num_classes).to(device)
    log = {"status": "running", "settings": settings, "epochs": [], "final_eval": None, "wall_seconds": 0.0}
    optimizer_state, start = None, 0
    if ckpt_path.exists():
        prev = json.loads(log_path.read_text()) if log_path.exists() else None
        if prev is None or prev.get("settings") != settings:
            old = (prev or {}).get("settings") or {}
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise DpiatError(f"{out} holds a GHN trained with other settings (differing: "
                             f"{', '.join(diff) or LOG + ' missing'}); choose another out_dir, or delete that "
                             f"folder to retrain")
        state = read_checkpoint(ckpt_path)
        ghn.load_state_dict(state["state_dict"])
        optimizer_state = torch.load(ckpt_path, map_location=device, weights_only=True).get("optimzer")
        start, log = int(state["epoch"]), prev
        if start >= cfg.epochs:
            return _finished(cfg, ghn, log, log_path, device)
        print(f"{ckpt_path}: resuming after epoch {start}")

    t0 = time.perf_counter()
    family = ArchFamily(seed=cfg.family.seed, size=cfg.family.size, heldout=list(cfg.heldout), in_chans=in_chans,
                        num_classes=num_classes, kinds=list(cfg.family.kinds), max_params=int(cfg.family.max_params))
    for i in range(len(family)):
        family.model(i).to(device)
    dm = _data(cfg)
    res = dm.resolution
    trainer = MetaTrainer(ghn, family, input_size=(in_chans, res, res), lr=cfg.lr,
                          weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
    if optimizer_state is not None:
        trainer.optimizer.load_state_dict(optimizer_state)
    log["family"] = {"size": len(family), "rejected": family.n_rejected,
                     "kinds": {k: sum(s["kind"] == k for s in family.specs) for k in cfg.family.kinds}}
    log["setup_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"meta-training a GHN-2 ({sum(p.numel() for p in ghn.parameters()):,} parameters) on {cfg.data.name} "
          f"over {len(family)} architectures {log['family']['kinds']}; held out: {', '.join(cfg.heldout)}")

    def evaluate(n_images):
        return {name: _evaluate(cfg, ghn, dm, name, n_images, device) for name in cfg.eval.archs}

    total = cfg.epochs * cfg.steps_per_epoch
    for epoch in range(start, cfg.epochs):
        t_epoch = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.seed, epoch, stream=3))
        rng = random.Random(epoch_seed(cfg.seed, epoch, stream=4))
        batches = infinite_batches(dm.train_dataloader(), epoch)
        losses = []
        for s in range(cfg.steps_per_epoch):
            step = epoch * cfg.steps_per_epoch + s
            trainer.set_lr(cosine_lr(cfg.lr, step, total, cfg.lr_floor))
            x, y = next(batches)
            archs = rng.sample(range(len(family)), min(cfg.meta_batch, len(family)))
            loss = trainer.step(x.to(device), y.to(device), archs)
            if not torch.isfinite(torch.tensor(loss)):
                raise DpiatError(f"meta-training diverged at epoch {epoch + 1}, step {s + 1} (loss {loss}); "
                                 f"lower lr or grad_clip")
            losses.append(loss)
        ev = evaluate(cfg.eval.images)
        seconds = time.perf_counter() - t_epoch
        log["epochs"].append({"epoch": epoch + 1, "train_loss": sum(losses) / len(losses),
                              "train_loss_last10": sum(losses[-10:]) / len(losses[-10:]),
                              "lr": trainer.optimizer.param_groups[0]["lr"], "eval": ev,
                              "wall_seconds": round(seconds, 1)})
        log["wall_seconds"] = round(log["wall_seconds"] + seconds, 1)
        save_ghn(ckpt_path, ghn, epoch=epoch + 1, optimizer_state=trainer.optimizer.state_dict())
        atomic_write_json(log_path, log)
        summary = ", ".join(f"{k} top-1 {100 * v['top1']:.1f}%" for k, v in ev.items())
        print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {log['epochs'][-1]['train_loss']:.3f}, held-out "
              f"(predicted, no training) {summary}, {seconds:.0f} s")

    log["final_eval"] = evaluate(cfg.eval.final_images or 10**9)
    log["status"] = "finished"
    log["versions"] = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
    log["hardware"] = {"device": str(device), "threads": torch.get_num_threads(), "cpu": platform.processor()
                       or platform.machine()}
    atomic_write_json(log_path, log)
    summary = ", ".join(f"{k} {100 * v['top1']:.2f}% on {v['images']} images" for k, v in log["final_eval"].items())
    print(f"finished: {ckpt_path}; held-out top-1 with predicted parameters: {summary}; "
          f"{log['wall_seconds']:.0f} s of training")
    return log


def _data(cfg: DictConfig):
    dm = build_datamodule(OmegaConf.to_container(cfg.data, resolve=True), seed=cfg.seed)
    dm.setup()
    return dm


def _evaluate(cfg: DictConfig, ghn: GHN2, dm, name: str, n_images: int, device) -> dict:
    """Held-out network ``name`` with predicted parameters, no training, on the first validation images."""
    torch.manual_seed(cfg.seed)
    net = timm.create_model(name, num_classes=int(cfg.data.num_classes), in_chans=int(cfg.data.in_chans)).to(device)
    side = dm.resolution
    return evaluate_predicted(ghn, net, _val_batches(dm, device, n_images),
                              input_size=(int(cfg.data.in_chans), side, side))


def _finished(cfg: DictConfig, ghn: GHN2, log: dict, log_path: Path, device) -> dict:
    """A finished run: evaluate any eval.archs not evaluated yet (on final_images), then report."""
    todo = [a for a in cfg.eval.archs if a not in (log.get("final_eval") or {})]
    if todo:
        dm = _data(cfg)
        for name in todo:
            log["final_eval"][name] = _evaluate(cfg, ghn, dm, name, cfg.eval.final_images or 10**9, device)
        atomic_write_json(log_path, log)
    summary = ", ".join(f"{k} {100 * v['top1']:.2f}% on {v['images']} images" for k, v in log["final_eval"].items())
    print(f"{log_path.parent / CHECKPOINT}: finished ({len(log['epochs'])} epochs); held-out top-1 with predicted "
          f"parameters, no training: {summary}")
    return log


def _val_batches(dm, device, n_images: int):
    """The first ``n_images`` validation images, in order (the same images every time)."""
    seen = 0
    for x, y in dm.val_dataloader():
        if seen >= n_images:
            return
        x, y = x[: n_images - seen], y[: n_images - seen]
        seen += len(y)
        yield x.to(device), y.to(device)


@hydra.main(config_path="../conf", config_name="train_ghn", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except DpiatError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
