"""Meta-training a GHN: predict a meta-batch of networks, run them on images, back-propagate the loss.

The loss of one step is the mean cross-entropy of several architectures, each run with the parameters
the GHN *predicts* for it (``torch.func.functional_call``), so the gradient reaches the GHN through the
predicted tensors; the networks' own parameters are never trained. This is ppuda's GHN-2 recipe (Adam,
lr 1e-3, weight decay 1e-5, gradient norm clipped at 5, meta-batch of architectures sharing an image
batch, BatchNorm in batch-statistics mode). The Hydra command around it is ``bench/train_ghn.py``::

    >>> import torch
    >>> from dpiat.ghn.family import ArchFamily
    >>> from dpiat.ghn.model import GHN2
    >>> from dpiat.ghn.train import MetaTrainer
    >>> fam = ArchFamily(seed=0, size=4, in_chans=1, num_classes=10, max_params=200_000)
    >>> trainer = MetaTrainer(GHN2(num_classes=10), fam, input_size=(1, 16, 16))
    >>> x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    >>> loss = trainer.step(x, y, [0, 1])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dpiat.ghn.family import ArchFamily
from dpiat.ghn.graph import Graph, build_graph
from dpiat.ghn.model import GHN2
from dpiat.ghn.predict import graph_rules_for, predict, predict_params, use_batch_stats


class MetaTrainer:
    """Holds the GHN, its optimiser and the cached graphs of an architecture family.

    ``family`` is an :class:`ArchFamily`, or any object whose ``model(i)`` returns the i-th network.
    """

    def __init__(self, ghn: GHN2, family: ArchFamily, *, input_size: tuple[int, int, int], lr: float = 1e-3,
                 weight_decay: float = 1e-5, grad_clip: float = 5.0):
        self.ghn, self.family, self.input_size, self.grad_clip = ghn, family, tuple(input_size), grad_clip
        self.optimizer = torch.optim.Adam(ghn.parameters(), lr=lr, weight_decay=weight_decay)
        self.base_lr = lr
        self._graphs: dict[int, Graph] = {}

    def graph(self, i: int) -> Graph:
        if i not in self._graphs:
            net = use_batch_stats(self.family.model(i))  # predicted nets always use batch statistics
            self._graphs[i] = build_graph(net, input_size=self.input_size, rules=graph_rules_for(self.ghn))
        return self._graphs[i]

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, x: torch.Tensor, y: torch.Tensor, arch_ids: Sequence[int]) -> float:
        """One update on the mean loss of the architectures ``arch_ids`` on the batch ``(x, y)``."""
        self.ghn.train()
        graphs = [self.graph(i) for i in arch_ids]
        preds = predict_params(self.ghn, graphs, predict_class_layers=True)
        loss = 0.0
        for i, (params, _) in zip(arch_ids, preds):
            net = self.family.model(i).train()
            loss = loss + F.cross_entropy(functional_call(net, params, (x,)), y)
        loss = loss / len(arch_ids)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.ghn.parameters(), self.grad_clip)
        self.optimizer.step()
        return float(loss.detach())


def cosine_lr(base: float, step: int, total: int, floor: float = 0.0) -> float:
    """Cosine decay from ``base`` to ``floor * base`` over ``total`` steps."""
    t = min(max(step, 0), total) / max(total, 1)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def evaluate_predicted(ghn: GHN2, model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                       input_size=None) -> dict:
    """Top-1 accuracy and loss of ``model`` with GHN-predicted parameters and no training.

    Works on a copy with BatchNorm in batch-statistics mode (predicted parameters have no running
    statistics; ppuda evaluates them the same way). ``model`` itself is not changed.
    """
    net = use_batch_stats(copy.deepcopy(model))
    report = predict(ghn.eval(), net, input_size=input_size)
    net.eval()
    correct = n = 0
    loss = 0.0
    for x, y in batches:
        out = net(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    return {"top1": correct / max(n, 1), "loss": loss / max(n, 1), "images": n,
            "fraction_predicted": round(report.fraction_predicted, 6)}
