"""From node states to parameter tensors: decode, fit to the target shape, normalise, write.

    >>> import timm
    >>> from dpiat.ghn.model import GHN2
    >>> from dpiat.ghn.predict import predict
    >>> net = timm.create_model("resnet18", num_classes=10)
    >>> report = predict(GHN2(max_shape=(64, 64, 11, 11), num_classes=10), net, input_size=(3, 32, 32))
    >>> report.n_predicted == report.n_params, report.not_predicted
    (True, {})

The rules (``docs/ghn.md`` §3 decoding, §4 fitting, §5 normalisation, §6 what is left alone):

- a conv / linear weight is the top-left ``kh x kw`` crop of the decoded 64x64xSxS tensor, its channel
  axes tiled to the target shape and cropped; the classifier weight ("last weight") goes through
  ``class_layer_predictor`` (num_classes x 64) and is tiled along its input axis;
- 1-D parameters come from ``decoder_1d`` (2 x 64): row 0 is a norm layer's weight, row 1 its bias or a
  conv/linear bias; the classifier bias goes through ``bias_class`` (row 1);
- with ``weight_norm`` (GHN-2): weights are scaled by sqrt(beta / fan_in) (beta = 1 for depthwise and
  k_h < k_w kernels, else 2), norm weights map to 2*sigmoid(p/2), biases to tanh(p/5);
- BatchNorm running statistics are never predicted nor touched; a classifier whose class count differs
  from the GHN's keeps its random init (ppuda's ``predict_class_layers=False``); every parameter that
  is not predicted is listed with the reason in the report, and keeps its value (ppuda deletes it).

Which parameters are predicted, and from which node, is the graph's business (``graph_rules``: the rules
the GHN was trained with, ppuda's for an official checkpoint). With ppuda's rules the predictions equal
ppuda's to float rounding (``results/ghn/evidence.md`` §5). One difference is outside the graph:
for an input-channel count that does not divide 64 after ppuda's rounding (10, 19, 20, ... as in the SE
layers of EfficientNet, MixNet, ReXNet, TinyNet) ppuda's decoder computes a channel subset with a
reshape that fails (``RuntimeError: shape '[-1, 10]' is invalid``); here every channel is decoded and
cropped, which is what ppuda's subset computes wherever it runs.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from dpiat.errors import DpiatError
from dpiat.clip import one_thread
from dpiat.ghn.graph import Graph, build_graph, check_rules, merge_graphs
from dpiat.ghn.model import GHN2

_WEIGHT_OPS = ("conv", "sep_conv", "dil_conv")


@dataclass
class PredictionReport:
    """What a prediction did to a network (JSON-serialisable through :meth:`as_dict`)."""

    n_params: int                                   # parameter elements in the network
    n_predicted: int                                # ... of which predicted by the GHN
    predicted: list[str] = field(default_factory=list)
    not_predicted: dict[str, str] = field(default_factory=dict)   # name -> why it kept its value
    graph_nodes: int = 0
    seconds_graph: float = 0.0
    seconds_predict: float = 0.0
    graph_rules: str = "structural"                 # the rules the graph was built with

    @property
    def fraction_predicted(self) -> float:
        return self.n_predicted / max(self.n_params, 1)

    def as_dict(self) -> dict:
        return {**asdict(self), "fraction_predicted": round(self.fraction_predicted, 6)}


# --------------------------------------------------------------------------------------------------
# shape fitting and normalisation (pure functions, unit-tested)


def tile_to(w: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Crop every axis to ``shape``; where the target is larger, repeat the tensor along that axis.

    >>> tile_to(torch.arange(4.).view(2, 2), (3, 1)).tolist()
    [[0.0], [2.0], [0.0]]
    """
    if w.dim() != len(shape):
        raise ValueError(f"cannot tile a {w.dim()}-D tensor to shape {shape}")
    w = w[tuple(slice(0, t) for t in shape)]
    reps = [math.ceil(t / s) for t, s in zip(shape, w.shape)]
    if any(r > 1 for r in reps):
        w = w.repeat(*reps)[tuple(slice(0, t) for t in shape)]
    return w


def normalize_weight(w: torch.Tensor) -> torch.Tensor:
    """Scale a >=2-D weight by sqrt(beta / fan_in): beta = 1 for depthwise or k_h < k_w kernels."""
    fan_in = w[0].numel()
    beta = 1.0 if w.dim() >= 3 and (w.shape[1] == 1 or (w.dim() == 4 and w.shape[2] < w.shape[3])) else 2.0
    return w * math.sqrt(beta / fan_in)


def normalize_norm_weight(p: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.sigmoid(0.5 * p)  # in (0, 2), 1 at p = 0


def normalize_bias(p: torch.Tensor) -> torch.Tensor:
    return torch.tanh(0.2 * p)  # in (-1, 1)


# --------------------------------------------------------------------------------------------------
# prediction


def _class_layers(ghn: GHN2, graph: Graph, mode) -> tuple[bool, str]:
    """Whether to predict the classifier, and the reason when not."""
    weight, _ = graph.classifier
    if weight is None:
        return False, ""
    n_out = graph.param_shapes[weight][0]
    if mode == "auto":
        mode = n_out == ghn.num_classes
    if not mode:
        return False, (f"classifier kept at its random init: the network has {n_out} classes and the "
                       f"GHN predicts {ghn.num_classes} (ppuda's predict_class_layers=False)")
    return True, ""


def predict_params(ghn: GHN2, graphs: Graph | list[Graph], *, predict_class_layers="auto"
                   ) -> list[tuple[dict[str, torch.Tensor], dict[str, str]]]:
    """Predicted tensors for each graph: ``[(params, not_predicted), ...]``, differentiable w.r.t. the GHN.

    ``params`` maps a parameter name to a tensor of that parameter's shape; ``not_predicted`` maps the
    names the GHN leaves alone to the reason. ``predict_class_layers`` is ``"auto"`` (predict the
    classifier iff its class count equals the GHN's), True (crop/tile to any count) or False.
    """
    with one_thread():
        return _predict_params(ghn, [graphs] if isinstance(graphs, Graph) else list(graphs),
                               predict_class_layers)


def _predict_params(ghn: GHN2, graphs: list[Graph], predict_class_layers):
    merged, offsets = merge_graphs(graphs)
    h = ghn(merged)
    side, out_ch = ghn.max_shape[2], ghn.max_shape[0]

    results = []
    jobs = defaultdict(list)  # (kh, kw) -> [(graph index, node index, param name)], decoded together
    ones = []  # 1-D nodes: (graph index, node index)
    for gi, g in enumerate(graphs):
        params, skipped = {}, dict(g.skipped)
        predict_cls, why = _class_layers(ghn, g, predict_class_layers)
        if why:
            skipped.update({n: why for n in g.classifier if n is not None})
        for v, node in enumerate(g.nodes):
            name = node.param
            if name is None or name in skipped:
                continue
            shape = g.param_shapes[name]
            if node.op in _WEIGHT_OPS and len(shape) in (2, 4):
                kh, kw = (shape[2], shape[3]) if len(shape) == 4 else (1, 1)
                if name == g.classifier[0]:
                    kh = kw = 1
                jobs[min(kh, side), min(kw, side)].append((gi, v, name))
            elif node.op in ("bias", "bn", "ln") and len(shape) == 1:
                ones.append((gi, v))
            else:
                skipped[name] = f"a {node.op} parameter of shape {tuple(shape)} is not one the GHN decodes"
        results.append((params, skipped, predict_cls))

    for (kh, kw), items in jobs.items():
        idx = torch.tensor([offsets[gi] + v for gi, v, _ in items], device=h.device)
        decoded = ghn.decoder(h[idx], kh, kw)  # (n, out_ch, in_ch, kh, kw)
        for (gi, v, name), w in zip(items, decoded):
            g, (params, _, _) = graphs[gi], results[gi]
            shape = g.param_shapes[name]
            if name == g.classifier[0]:
                w = ghn.decoder.classifier(w[:, :, 0, 0])
            elif len(shape) == 2:
                w = w[:, :, 0, 0]
            w = tile_to(w, shape)
            params[name] = normalize_weight(w) if ghn.weight_norm else w

    if ones:
        idx = torch.tensor([offsets[gi] + v for gi, v in ones], device=h.device)
        rows = ghn.decoder_1d(h[idx]).view(len(ones), 2, out_ch)
        for (gi, v), r in zip(ones, rows):
            g, (params, _, _) = graphs[gi], results[gi]
            node = g.nodes[v]
            if node.op == "bias":
                b = ghn.bias_class(r)[1] if node.param == g.classifier[1] else r[1]
                b = tile_to(b, g.param_shapes[node.param])
                params[node.param] = normalize_bias(b) if ghn.weight_norm else b
            else:
                w = tile_to(r[0], g.param_shapes[node.param])
                params[node.param] = normalize_norm_weight(w) if ghn.weight_norm else w
                if node.extra:
                    b = tile_to(r[1], g.param_shapes[node.extra])
                    params[node.extra] = normalize_bias(b) if ghn.weight_norm else b
    return [(params, skipped) for params, skipped, _ in results]


def graph_rules_for(ghn: GHN2, graph_rules: str | None = "auto") -> str:
    """The graph rules to use with ``ghn``: ``graph_rules`` itself, or for ``"auto"``/None the rules the
    GHN was trained with (``ghn.graph_rules``: ppuda's for an official checkpoint, see :mod:`dpiat.ghn.io`)."""
    if graph_rules is None or graph_rules == "auto":
        return check_rules(getattr(ghn, "graph_rules", "structural"))
    return check_rules(graph_rules)


def predict(ghn: GHN2, model: nn.Module, *, graph: Graph | None = None, input_size=None,
            predict_class_layers="auto", write: bool = True, graph_rules: str | None = "auto"
            ) -> PredictionReport:
    """Predict every parameter of ``model`` it can and copy them in (``write=False``: dry run).

    The graph is built with ``graph_rules`` (``"auto"``: the rules ``ghn`` was trained with,
    :func:`graph_rules_for`) unless ``graph`` is given.
    """
    t0 = time.perf_counter()
    if graph is None:
        graph = build_graph(model, input_size=input_size, rules=graph_rules_for(ghn, graph_rules))
    t1 = time.perf_counter()
    with torch.no_grad(), one_thread():  # the copies too: 2 threads contend on a busy 2-core machine
        ((params, skipped),) = predict_params(ghn, graph, predict_class_layers=predict_class_layers)
        named = dict(model.named_parameters())
        for name, value in params.items():
            p = named.get(name)
            if p is None or tuple(p.shape) != tuple(value.shape):
                raise DpiatError(f"the graph does not belong to this model: parameter {name!r} "
                                 f"{'is missing' if p is None else f'has shape {tuple(p.shape)}'}")
            if write:
                p.copy_(value.to(device=p.device, dtype=p.dtype))
    t2 = time.perf_counter()
    n_params = sum(p.numel() for p in model.parameters())
    n_pred = sum(v.numel() for v in params.values())
    return PredictionReport(n_params, n_pred, sorted(params), dict(sorted(skipped.items())),
                            len(graph), round(t1 - t0, 4), round(t2 - t1, 4), graph.rules)


def use_batch_stats(model: nn.Module) -> nn.Module:
    """Make every BatchNorm normalise with the statistics of the current batch, also in eval mode.

    This is how predicted parameters are evaluated (they come without running statistics): ppuda sets
    ``track_running_stats=False`` on each BatchNorm. Returns the model; the running buffers are dropped.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return model
