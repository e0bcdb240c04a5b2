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
``eval.archs=[tinynet_e,tf_efficientnet_b0]``); a different config for the same folder is an error. The
folder's identity and that decision are a run folder's like any other (``RunFolder.ghn``, the settings but
``out_dir``, ``eval``, ``threads`` and ``device``). Defaults and their meaning: ``conf/train_ghn.yaml``.

Its errors are ``dpiat.DpiatError``s, unlike the rest of bench's: the GHN-2 tests (tests/test_ghn_train.py,
kept with dpiat/ghn/) expect them from :func:`train`.
"""

from __future__ import annotations

import itertools
import platform
import random
import sys

import bench.startup  # noqa: F401  (first: Ctrl-C during the imports below ends in one line)
import time

import hydra
import timm
import torch
from omegaconf import DictConfig, OmegaConf

from bench.data.module import build_datamodule
from bench.errors import USER_ERRORS
from bench.running.folder import RunFolder
from bench.seeding import ARCHS, DROPOUT, epoch_seed, pass_epoch
from dpiat.errors import DpiatError
from dpiat.ghn.family import ArchFamily
from dpiat.ghn.io import read_checkpoint, save_ghn
from dpiat.ghn.model import GHN2
from dpiat.ghn.train import MetaTrainer, cosine_lr, evaluate_predicted


def infinite_batches(loader, epoch: int):
    """Batches of ``epoch``: passes over the training set with seeds (epoch, k), k = 0, 1, ...; a
    pass is cut off when the epoch's steps are done, so a resumed epoch sees the same batches."""
    for k in itertools.count():
        loader.sampler.set_epoch(pass_epoch(epoch, k))
        yield from loader


def train(cfg: DictConfig) -> dict:
    folder = RunFolder.ghn(cfg)
    ckpt_path = folder.path / folder.files.checkpoint
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = torch.device(cfg.device)
    missing = [a for a in cfg.eval.archs if a not in cfg.heldout]
    if missing:
        raise DpiatError(f"eval.archs {missing} must also be in heldout, or the evaluation is not on unseen nets")
    for key in ("epochs", "steps_per_epoch", "meta_batch", "batch_size"):
        if int(cfg[key]) < 1:
            raise DpiatError(f"{key} must be at least 1, got {cfg[key]}")

    decision = folder.decide()
    if decision.action in ("conflict", "diverged"):
        raise DpiatError(decision.reason)
    if decision.action == "finished":
        return _finished(cfg, folder, decision.record, device)
    num_classes, in_chans = int(cfg.data.num_classes), int(cfg.data.in_chans)
    torch.manual_seed(cfg.seed)  # the GHN's initial weights
    ghn = GHN2(**OmegaConf.to_container(cfg.ghn), num_classes=num_classes).to(device)
    log = {"status": "running", "settings": folder.config, "epochs": [], "final_eval": None, "wall_seconds": 0.0}
    optimizer_state, start = None, 0
    if decision.action == "resume":
        state = read_checkpoint(ckpt_path)
        ghn.load_state_dict(state["state_dict"])
        optimizer_state = torch.load(ckpt_path, map_location=device, weights_only=True).get("optimzer")
        start, log = int(state["epoch"]), decision.record
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
        torch.manual_seed(epoch_seed(cfg.seed, epoch, 0, DROPOUT))
        rng = random.Random(epoch_seed(cfg.seed, epoch, 0, ARCHS))
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
        folder.write(log)
        summary = ", ".join(f"{k} top-1 {100 * v['top1']:.1f}%" for k, v in ev.items())
        print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {log['epochs'][-1]['train_loss']:.3f}, held-out "
              f"(predicted, no training) {summary}, {seconds:.0f} s")

    log["final_eval"] = evaluate(cfg.eval.final_images or 10**9)
    log["status"] = "finished"
    log["versions"] = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
    log["hardware"] = {"device": str(device), "threads": torch.get_num_threads(), "cpu": platform.processor()
                       or platform.machine()}
    folder.write(log)
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


def _finished(cfg: DictConfig, folder: RunFolder, log: dict, device) -> dict:
    """A finished run: evaluate any eval.archs not evaluated yet (on final_images), then report."""
    ckpt_path = folder.path / folder.files.checkpoint
    todo = [a for a in cfg.eval.archs if a not in (log.get("final_eval") or {})]
    if todo:
        ghn = GHN2(**OmegaConf.to_container(cfg.ghn), num_classes=int(cfg.data.num_classes)).to(device)
        ghn.load_state_dict(read_checkpoint(ckpt_path)["state_dict"])
        dm = _data(cfg)
        for name in todo:
            log["final_eval"][name] = _evaluate(cfg, ghn, dm, name, cfg.eval.final_images or 10**9, device)
        folder.write(log)
    summary = ", ".join(f"{k} {100 * v['top1']:.2f}% on {v['images']} images" for k, v in log["final_eval"].items())
    print(f"{ckpt_path}: finished ({len(log['epochs'])} epochs); held-out top-1 with predicted "
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
    except USER_ERRORS as e:  # its own, and the data's (bench.errors.DataError)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # ghn.pt holds the last finished epoch; the record says which
        print(f"interrupted: {cfg.out_dir}/ghn.pt keeps the last finished epoch; rerun the same command to resume "
              "after it", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    bench.startup.imports_done()
    main()
