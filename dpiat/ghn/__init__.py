"""GHN-2 parameter prediction (Knyazev et al., NeurIPS 2021), as specified in ``docs/ghn.md``.

A graph hypernetwork reads a network's computational graph and predicts all its parameters in one
forward pass; it is the *parameter prediction* baseline that DPIAT is compared against. This package
builds the graph of any ``nn.Module`` under either rule set (:mod:`~dpiat.ghn.graph` for the structural
rules our GHNs are meta-trained with, :mod:`~dpiat.ghn.ppuda_graph` for ppuda's rules, which the official
checkpoints need; ``docs/ghn.md`` §2.3), implements the GHN-2 module with the
state-dict layout of the released ``ghn2_imagenet.pt`` / ``ghn2_cifar10.pt`` (:mod:`~dpiat.ghn.model`),
predicts and writes parameters (:mod:`~dpiat.ghn.predict`) and reads/writes checkpoints
(:mod:`~dpiat.ghn.io`). Meta-training lives in ``bench/train_ghn.py``.

    >>> import timm, dpiat
    >>> net = timm.create_model("tf_efficientnet_b0", num_classes=10, in_chans=1)
    >>> report = dpiat.initialize("ghn", net, checkpoint="ghn2_fmnist.pt")   # doctest: +SKIP
    >>> report["fraction_overwritten"], report["not_predicted"]              # doctest: +SKIP
    (1.0, {})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from dpiat.errors import DpiatError
from dpiat.ghn.graph import GRAPH_RULES, PRIMITIVES, Graph, GraphError, build_graph, check_rules
from dpiat.ghn.io import load_ghn, mark_graph_rules, read_checkpoint, save_ghn
from dpiat.ghn.model import GHN2
from dpiat.ghn.predict import PredictionReport, graph_rules_for, predict, predict_params, use_batch_stats

__all__ = ["GHN2", "GRAPH_RULES", "PRIMITIVES", "Graph", "GraphError", "PredictionReport", "build_graph",
           "ghn_init", "graph_rules_for", "load_ghn", "mark_graph_rules", "predict", "predict_params",
           "read_checkpoint", "save_ghn", "use_batch_stats"]

_CACHE: dict[tuple, GHN2] = {}  # one loaded GHN per file version: a sweep predicts many targets


def cached_ghn(path: str | os.PathLike) -> GHN2:
    """:func:`load_ghn`, memoised on (absolute path, size, modification time)."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return load_ghn(p)  # raises the WeightsError that explains it
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_ghn(p)
    return _CACHE[key]


def ghn_init(target: nn.Module, source: nn.Module | None = None, *, checkpoint: str | os.PathLike | None = None,
             predict_class_layers: bool | str = "auto", input_size: Any = None, graph_rules: str = "auto",
             **options: Any) -> dict:
    """Init method ``ghn``: predict ``target``'s parameters with the GHN in ``checkpoint``, in place.

    ``predict_class_layers``: ``"auto"`` predicts the classifier only when its class count equals the
    GHN's (else it keeps its random init), ``True``/``False`` force it. ``input_size``: ``(C, H, W)`` of
    the tracing pass (default: the first conv's channels at 224 px). ``graph_rules``: how the target's
    graph is built, ``"auto"`` (the rules the checkpoint records; ppuda's for an official checkpoint,
    which records none), ``"ppuda"`` or ``"structural"``. ``source`` is ignored (GHN needs none).
    BatchNorm running statistics are left as they are. Returns a JSON-serialisable report.
    """
    if options:
        raise DpiatError(f"init method 'ghn' got unknown options {sorted(options)}; it takes checkpoint, "
                         f"predict_class_layers, input_size, graph_rules")
    check_rules(graph_rules, allow_auto=True)
    if not checkpoint:
        raise DpiatError("init method 'ghn' needs checkpoint=PATH (an official ghn2_*.pt file, or one "
                         "trained with bench/train_ghn.py)")
    if predict_class_layers not in ("auto", True, False):
        raise DpiatError(f"predict_class_layers must be 'auto', true or false, got {predict_class_layers!r}")
    if input_size is not None:
        input_size = tuple(input_size) if not isinstance(input_size, int) else input_size
    ghn = cached_ghn(checkpoint)
    rules = graph_rules_for(ghn, graph_rules)
    source_of_rules = "init option" if graph_rules != "auto" else getattr(ghn, "graph_rules_source", "checkpoint")
    report = predict(ghn, target, input_size=input_size, predict_class_layers=predict_class_layers,
                     graph_rules=rules)
    out = report.as_dict()
    return {"method": "ghn", "checkpoint": str(checkpoint), "ghn_config": {**ghn.config, "max_shape": list(
        ghn.config["max_shape"])}, "ghn_epoch": getattr(ghn, "epoch", None),
        "checkpoint_graph_rules": ghn.graph_rules, "graph_rules_source": source_of_rules,
        "fraction_overwritten": out["fraction_predicted"], **out}
