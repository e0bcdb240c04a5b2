"""BatchNorm-recalibrated evaluation: what an initialisation (or an epoch) is worth, beside what the protocol
measures.

In ``eval()`` mode a network normalises with the running statistics that training left in its BatchNorm
layers. They lag the weights: their default 0/1 after a transfer or a GHN prediction (nothing sets them),
and, early in training, a moving average over the last ~10 steps of weights that change fast (at the CPU
proxy's scale an epoch is 39 steps). A network that is good with batch statistics can then score at chance.
The recalibrated evaluation recomputes the statistics first: on a copy of the network, every BatchNorm's
running mean and variance are reset and re-estimated as the plain average over a fixed set of training
batches (the semantics of ``torch.optim.swa_utils.update_bn``: momentum ``None``), then the copy is
evaluated as usual. Unlike ``update_bn``, only the BatchNorm layers run in training mode, so dropout and
drop-path stay off and no random number is drawn; the network being trained is never touched, so training
is bit-identical with this evaluation on or off (tests/test_harness.py).

    >>> import torch, timm
    >>> net = timm.create_model("test_efficientnet", num_classes=3).eval()
    >>> copy = recalibrated(net, [torch.randn(8, 3, 32, 32) for _ in range(2)])
    >>> copy is not net and not copy.training
    True
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def recalibrated(model: nn.Module, batches: Iterable[torch.Tensor], *,
                 prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x, context=nullcontext) -> nn.Module:
    """A copy of ``model`` in eval mode whose BatchNorm running statistics are the average over ``batches``.

    ``prepare`` moves a batch to the model's device and memory format; ``context`` is entered around the
    forward passes (e.g. the autocast of mixed precision), as in validation.
    """
    net = copy.deepcopy(model).eval()
    norms = [m for m in net.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
        m.train()
    with context():
        for x in batches:
            net(prepare(x))
    return net.eval()
