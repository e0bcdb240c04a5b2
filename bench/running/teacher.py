"""Knowledge distillation: the teacher (the pair's trained source) and the loss a distilled target trains on.

With ``distill.kind=logits`` a target run trains on

    (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton, Vinyals and Dean 2015; the T^2 keeps the gradient's scale comparable across temperatures). The teacher is
the very network a transfer copies from (:func:`bench.running.sources.get_source`: trained here and cached, a file,
timm's), kept in eval mode and without gradients, fed the same augmented batch as the student. It is no submodule
of the trained LightningModule, so checkpoints, the optimiser and DDP's gradient sync never see it, and a resumed
run rebuilds it from the same weights (run.json records their digest). Its forward passes run inside the training
step, so they count in every wall time the run records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, alpha: float,
                      temperature: float) -> torch.Tensor:
    """The distilled training loss of one batch (logits in float32; the KL averaged over the batch).

    >>> s, t, y = torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    >>> bool(torch.isclose(distillation_loss(s, t, y, alpha=0.9, temperature=4.0), 0.1 * F.cross_entropy(s, y)))
    True
    """
    ce = F.cross_entropy(student, labels)
    if alpha == 0.0:
        return ce
    kl = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * temperature ** 2 * kl


def state_digest(model: nn.Module) -> str:
    """sha256 over a network's state dict (names, dtypes, shapes and values, in order): which teacher it was.

    >>> a = nn.Linear(2, 2); b = nn.Linear(2, 2); b.load_state_dict(a.state_dict())
    <All keys matched successfully>
    >>> state_digest(a) == state_digest(b)
    True
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def frozen(model: nn.Module) -> nn.Module:
    """The teacher as it teaches: eval mode (BatchNorm uses its running statistics, no dropout), no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_teacher(cfg, get_source: Callable, log: Callable[[str], None]) -> tuple[nn.Module | None, dict | None]:
    """The teacher of a distilled run and what run.json records about it; (None, None) when ``distill.kind`` is none."""
    d = cfg.get("distill")
    if d is None or d.kind == "none":
        return None, None
    teacher, info = get_source(cfg, log=log)
    teacher = frozen(teacher)
    record = {"kind": str(d.kind), "alpha": float(d.alpha), "temperature": float(d.temperature),
              "teacher": cfg.pair.source, "teacher_sha256": state_digest(teacher),
              "teacher_params": sum(p.numel() for p in teacher.parameters()), "teacher_weights": info}
    log(f"distillation ({d.kind}, alpha {d.alpha:g}, T {d.temperature:g}) from {cfg.pair.source} "
        f"({record['teacher_params']:,} parameters, sha256 {record['teacher_sha256'][:12]})")
    return teacher, record
