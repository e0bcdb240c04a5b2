"""The computational graph a GHN reads: any ``nn.Module`` -> a DAG of parameters and ops.

GHN-2 (Knyazev et al. 2021) does not see a network's code; it sees a directed acyclic graph whose nodes
are the network's *parameters* (one node per conv/linear weight, per bias, per norm layer) and the few
*operations* that shape the data flow (pooling, residual sums, concatenations, squeeze-excitation
products). This module builds that graph from one traced forward pass (``docs/ghn.md`` §2 specifies it)::

    >>> import timm
    >>> from dpiat.ghn.graph import build_graph
    >>> g = build_graph(timm.create_model("resnet18", num_classes=10), input_size=(3, 32, 32))
    >>> len(g), g.nodes[0].name, g.nodes[1].name, g.nodes[-1].name
    (53, 'input', 'conv1.weight', 'fc.bias')

How the graph is made under the structural rules (``docs/ghn.md`` §2.1 and §2.3):

1. Trace: one forward pass on a random ``(1, C, H, W)`` input (eval mode, so BatchNorm statistics are
   not touched), then a walk over the autograd graph from the output backwards.
2. Nodes: an autograd function that directly consumes parameters becomes one node per parameter (named
   by the parameter, e.g. ``layer1.0.conv1.weight``); other functions become a node named by their op
   (``Add``, ``Mean``, ``MaxPool2DWithIndices``, ...). Norm-layer biases get no node: the norm weight node
   predicts both.
3. Edges run in data-flow direction. A function with a weight and a bias becomes the chain
   ``input -> weight -> bias -> next``; a weight that would be a root (``nn.Linear``: ``input -> bias <-
   weight``) is moved in front of its consumer (``input -> weight -> bias``).
4. An ``input`` node feeds every root; nodes are sorted topologically (in forward-execution order).
5. Nodes that are not one of the 15 GHN primitives are removed and their predecessors wired to their
   successors (this drops activations, views, padding, dropout, ...).
6. Virtual edges join every pair of nodes with a directed shortest path of length 2 to ``ve_cutoff``
   (50), valued by that length; real edges have value 1.

Two sets of graph rules, ``build_graph(..., rules=...)`` (:data:`GRAPH_RULES`):

- ``"structural"``, the rules above: what this project's GHNs are meta-trained with (their checkpoints
  record it, :mod:`dpiat.ghn.io`);
- ``"ppuda"``, :mod:`dpiat.ghn.ppuda_graph`: the reference implementation's (ppuda's) graph node for
  node, quirks included, for the released GHN-2 checkpoints; a checkpoint without a recorded rule set
  (an official file) uses it. Compared side by side with ppuda's code it gives identical graphs, and
  predictions equal to float rounding (``results/ghn/evidence.md`` §5).

How the structural rules differ from ppuda's (read from ppuda's code and checked against it):

- Module types are matched with ``isinstance``; ppuda requires the exact type (``Conv2d``, ``Linear``,
  ``BatchNorm2d``, ``LayerNorm``, torchvision's ``LayerNorm2d``), so timm's subclasses
  (``BatchNormAct2d``, ``Conv2dSame``, ...) are in this graph and get predicted, and not in ppuda's.
- Squeeze-excitation products: here a ``Mul`` is kept as ``cse`` when one of its direct inputs is a
  sigmoid gate (``Sigmoid`` or ``Hardsigmoid``) that is not computed from the product's other input
  (that would be an activation such as swish). ppuda's rule is positional: it keeps a ``Mul`` only when
  the node two places before it, in its own topological order, is named ``Hard...``. That fits ppuda's
  DeepNets-1M SE op (a ``Hardswish`` gate reshaped by ``view`` before the product) but drops the SE
  product of torchvision's MobileNetV3 (all 9 in ``mobilenet_v3_small``: there the ``Hardsigmoid`` is
  one place before the ``Mul``) and of sigmoid-gated blocks (EfficientNet), which this module keeps.
  Conversely, a gate reshaped between the sigmoid and the product (``x * s.view(n, c, 1, 1)``) is not
  a direct input of the ``Mul``, so the structural rule drops that product.
- ``Softmax`` is kept as ``msa``; ppuda removes it and keeps a ``Clone`` 11 places after a ``Softmax``.
  A ``Mean`` without ``keepdim`` is always removed; ppuda keeps a full ``mean()`` unless it is last.
  ``Add``/``Cat`` with one input after filtering are removed; ppuda counts inputs during its filter
  pass, before the nodes removed in that pass are gone, and may keep such a node.
- Every root gets an edge from ``input``, and a weight with no incoming edge is moved in front of its
  consumer for any layer type; ppuda requires exactly one root (and fails otherwise, e.g. on a
  parameter used twice) and moves every ``nn.Linear`` weight in front of its bias.
- Nodes are in forward-execution order and named by op (``Add``, ``Mean``); ppuda orders them by
  networkx's generation-by-generation topological sort and names them by autograd class
  (``AddBackward0``). The classifier is the (weight, bias) at the sink; ppuda takes the last two nodes.
- A grouped conv is ``dil_conv`` when its largest dilation is > 1 (ppuda: smallest). ppuda also cuts a
  parameter name at ``"stem"`` before matching it to the model, so timm's ``conv_stem`` is not predicted.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from dpiat.clip import one_thread
# The graph type and the rule-independent steps (graph_core); ppuda's rules (ppuda_graph) build on it too.
from dpiat.ghn.graph_core import (Graph, GraphError, Node, _check_connected, _trace, _with_virtual_edges,
                                  merge_graphs)
from dpiat.ghn.ppuda_graph import build_ppuda_graph

# Tracing a net at batch 1 and running a GHN are many small ops, so both run inside ``one_thread()``: with
# two threads on a busy 2-core machine each op can wait for the second thread to be scheduled (measured
# here: a tanh of 1,280 values took 16 ms with 2 threads and 0.17 ms with 1; tracing tf_efficientnet_b0 at
# 224 px 0.5-3 s with 2 threads, 0.12 s with 1).

# Row index of the GHN's op embedding; fixed by the released checkpoints (docs/ghn.md §2.2).
PRIMITIVES = (
    "max_pool", "avg_pool", "sep_conv", "dil_conv", "conv", "msa", "cse", "sum", "concat",
    "input", "bias", "bn", "ln", "pos_enc", "glob_avg",
)
OP_ID = {name: i for i, name in enumerate(PRIMITIVES)}

# How a graph is built: "structural" (this module) or "ppuda" (dpiat.ghn.ppuda_graph, the reference rules).
GRAPH_RULES = ("structural", "ppuda")

# Autograd op (class name without the "Backward<k>" suffix) -> primitive, for nodes without parameters.
_OP_MAP = {
    "MaxPool2DWithIndices": "max_pool", "AvgPool2D": "avg_pool", "AdaptiveAvgPool2D": "glob_avg",
    "Mean": "glob_avg", "Add": "sum", "Cat": "concat", "Mul": "cse", "Softmax": "msa",
}
_GATES = ("Sigmoid", "Hardsigmoid")  # a Mul with one of these as an input is a squeeze-excitation gate
_SUFFIX = re.compile(r"Backward\d*$")


# --------------------------------------------------------------------------------------------------
# parameter kinds: which module parameters become which node


def _param_kinds(model: nn.Module) -> tuple[dict[int, str], dict[str, str], dict[str, str], dict]:
    """Classify every parameter by its owning module (``isinstance``, see module docstring).

    Returns ``(names, kinds, unsupported, norm_bias)``: ``names`` maps ``id(param)`` to its name;
    ``kinds`` maps a name to a primitive (``conv``, ``bias``, ``bn``, ...) or ``"norm_bias"``;
    ``unsupported`` maps a name to the reason it has no node; ``norm_bias`` maps a norm layer's weight
    name to its bias name.
    """
    names, kinds, unsupported, norm_bias = {}, {}, {}, {}
    for mod_name, module in model.named_modules():
        for local, p in module.named_parameters(recurse=False):
            name = f"{mod_name}.{local}" if mod_name else local
            if id(p) in names:  # shared parameter: the first owner names it
                continue
            names[id(p)] = name
            if isinstance(module, nn.Conv2d) and local in ("weight", "bias"):
                if local == "bias":
                    kinds[name] = "bias"
                elif module.groups > 1:
                    kinds[name] = "dil_conv" if max(module.dilation) > 1 else "sep_conv"
                else:
                    kinds[name] = "conv"
            elif isinstance(module, nn.Linear) and local in ("weight", "bias"):
                kinds[name] = "conv" if local == "weight" else "bias"
            elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and local in (
                    "weight", "bias"):
                is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
                if local == "weight":
                    kinds[name] = "bn" if is_bn else "ln"
                    if getattr(module, "bias", None) is not None:
                        norm_bias[name] = f"{mod_name}.bias" if mod_name else "bias"
                else:
                    kinds[name] = "norm_bias"
            else:
                unsupported[name] = (f"module type {type(module).__name__} is not one the GHN "
                                     f"predicts (Conv2d, Linear, BatchNorm, LayerNorm)")
    return names, kinds, unsupported, norm_bias


# --------------------------------------------------------------------------------------------------
# tracing


def _default_input_size(model: nn.Module) -> tuple[int, int, int]:
    channels = 3
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            channels = m.in_channels
            break
    side = int(getattr(model, "expected_input_sz", 224))
    return channels, side, side


# --------------------------------------------------------------------------------------------------
# the raw graph: autograd functions -> nodes and edges


@dataclass
class _Raw:
    name: str
    op: str | None          # primitive, or None for an op that will be filtered out
    shape: tuple[int, ...] | None
    param: str | None
    order: tuple[int, int]  # (autograd sequence number, index within the function): forward order
    attrs: dict = field(default_factory=dict)


def _raw_graph(y: torch.Tensor, names, kinds, unsupported):
    nodes: list[_Raw] = []
    edges: set[tuple[int, int]] = set()
    span: dict = {}  # autograd function -> (head node, tail node)
    skipped: dict[str, str] = {}
    seen_params: set[str] = set()

    def make(fn) -> tuple[int, int]:
        seq = fn._sequence_nr()
        params = []
        for child, _ in fn.next_functions:
            var = getattr(child, "variable", None) if child is not None else None
            if var is None or id(var) not in names:
                continue
            pname = names[id(var)]
            kind = kinds.get(pname)
            if kind is None:
                skipped.setdefault(pname, unsupported.get(pname, "not a parameter the GHN predicts"))
            elif kind != "norm_bias":
                params.append((pname, kind))
        params.sort(key=lambda pk: pk[1] == "bias")  # weight before bias: input -> weight -> bias
        ids = []
        for j, (pname, kind) in enumerate(params):
            if pname in seen_params:  # a shared parameter used twice: one node is enough
                continue
            seen_params.add(pname)
            nodes.append(_Raw(pname, kind, tuple(var_shape[pname]), pname, (seq, j)))
            ids.append(len(nodes) - 1)
        if not ids:
            op = _SUFFIX.sub("", type(fn).__name__)
            attrs = {}
            if op in ("MaxPool2DWithIndices", "AvgPool2D"):
                k = getattr(fn, "_saved_kernel_size", (3, 3))
                k = tuple(k) if len(k) == 2 else (k[0], k[0])
                attrs["kernel"] = k
            elif op == "Mean":
                attrs["keepdim"] = bool(getattr(fn, "_saved_keepdim", False))
            nodes.append(_Raw(op, _OP_MAP.get(op), None, None, (seq, 0), attrs))
            ids.append(len(nodes) - 1)
        for a, b in zip(ids, ids[1:]):
            edges.add((a, b))
        return ids[0], ids[-1]

    order = _walk(y.grad_fn)
    var_shape = {}
    for fn in order:  # first pass: the shapes of the parameter leaves
        for child, _ in fn.next_functions:
            var = getattr(child, "variable", None) if child is not None else None
            if var is not None and id(var) in names:
                var_shape[names[id(var)]] = tuple(var.shape)
    for fn in order:
        span[fn] = make(fn)
    for fn in order:
        head = span[fn][0]
        for child, _ in fn.next_functions:
            if child is not None and child in span:
                edges.add((span[child][1], head))
    return nodes, edges, skipped


def _walk(root):
    """All autograd functions reachable from ``root`` except parameter leaves (iterative DFS)."""
    seen, stack, out = {root}, [root], []
    while stack:
        fn = stack.pop()
        out.append(fn)
        for child, _ in fn.next_functions:
            if child is None or child in seen or hasattr(child, "variable"):
                continue
            seen.add(child)
            stack.append(child)
    return out


# --------------------------------------------------------------------------------------------------
# graph surgery on adjacency sets


class _Dag:
    def __init__(self, n: int, edges):
        self.alive = [True] * n
        self.succ = [set() for _ in range(n)]
        self.pred = [set() for _ in range(n)]
        for a, b in edges:
            self.add(a, b)

    def add(self, a: int, b: int) -> None:
        if a != b:
            self.succ[a].add(b)
            self.pred[b].add(a)

    def remove(self, v: int) -> None:
        """Remove ``v``, wiring each predecessor to each successor."""
        for p in self.pred[v]:
            self.succ[p].discard(v)
        for s in self.succ[v]:
            self.pred[s].discard(v)
        for p in self.pred[v]:
            for s in self.succ[v]:
                self.add(p, s)
        self.pred[v], self.succ[v], self.alive[v] = set(), set(), False


def _fix_root_weights(raw: list[_Raw], dag: _Dag) -> None:
    """A weight with no input of its own (``nn.Linear``: ``x -> bias <- weight``) goes in front of
    its consumer: ``x -> weight -> bias``. A real root (the first conv) has a consumer without other
    inputs and stays as it is."""
    for v, node in enumerate(raw):
        if node.param is None or node.op in ("bias", "bn", "ln") or dag.pred[v] or len(dag.succ[v]) != 1:
            continue
        (s,) = dag.succ[v]
        others = dag.pred[s] - {v}
        for p in others:
            dag.succ[p].discard(s)
            dag.pred[s].discard(p)
            dag.add(p, v)


def _toposort(raw: list[_Raw], dag: _Dag) -> list[int]:
    """Kahn's algorithm, ties broken by forward-execution order (autograd sequence numbers)."""
    indeg = {v: len(dag.pred[v]) for v in range(len(raw)) if dag.alive[v]}
    heap = [(raw[v].order, v) for v, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        _, v = heapq.heappop(heap)
        out.append(v)
        for s in dag.succ[v]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, (raw[s].order, s))
    if len(out) != len(indeg):
        raise GraphError("the traced graph has a cycle; this should not happen for autograd graphs")
    return out


def _is_gate(raw: list[_Raw], dag: _Dag, g: int, mul: int) -> bool:
    if raw[g].name not in _GATES:
        return False
    other_inputs = dag.pred[mul] - {g}
    return not (dag.pred[g] & other_inputs) and not (other_inputs & {g})


def _filter(raw: list[_Raw], dag: _Dag, order: list[int]) -> None:
    """Remove every node that is not a GHN primitive (structural rules, docs/ghn.md §2.3), in its pass order."""
    for v in order:  # 1. Mul: kept only as a squeeze-excitation product
        if raw[v].name == "Mul" and raw[v].param is None:
            if not any(_is_gate(raw, dag, g, v) for g in dag.pred[v]):
                dag.remove(v)
    for v in order:  # 2./3. everything that is not a primitive (Softmax -> msa is in the map)
        if dag.alive[v] and raw[v].op is None and raw[v].name != "input":
            dag.remove(v)
    for v in order:  # 4. reductions and merges that are not real ones
        if not dag.alive[v] or raw[v].param is not None:
            continue
        if raw[v].name == "Mean" and not raw[v].attrs.get("keepdim"):
            dag.remove(v)
        elif raw[v].name in ("Add", "Cat") and len(dag.pred[v]) < 2:
            dag.remove(v)


# --------------------------------------------------------------------------------------------------
# public entry point


def check_rules(rules, *, allow_auto: bool = False) -> str:
    """``rules`` if it names graph rules (``GRAPH_RULES``, plus ``"auto"`` where allowed), else a one-line
    error that lists the valid values."""
    valid = (("auto",) if allow_auto else ()) + GRAPH_RULES
    if rules not in valid:
        raise GraphError(f"graph_rules must be one of {', '.join(valid)}, got {rules!r}")
    return rules


def build_graph(model: nn.Module, *, input_size: tuple[int, ...] | int | None = None,
                ve_cutoff: int = 50, rules: str = "structural") -> Graph:
    """The GHN graph of ``model`` (see the module docstring). ``model`` is left unchanged.

    ``input_size`` is ``(C, H, W)`` (an int means ``(C_first_conv, s, s)``); by default the first conv's
    input channels at 224 px (ppuda's default; ``model.expected_input_sz`` overrides the side).
    ``ve_cutoff`` is the longest shortest-path that gets a virtual edge (1: none). ``rules`` is
    ``"structural"`` (this module's rules, what this project's GHNs are meta-trained with) or ``"ppuda"``
    (the reference implementation's rules, :mod:`dpiat.ghn.ppuda_graph`, for the official checkpoints).
    """
    check_rules(rules)
    if not isinstance(model, nn.Module):
        raise GraphError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if input_size is None:
        input_size = _default_input_size(model)
    elif isinstance(input_size, int):
        input_size = (_default_input_size(model)[0], input_size, input_size)
    input_size = tuple(int(s) for s in input_size)
    if rules == "ppuda":
        return build_ppuda_graph(model, input_size=input_size, ve_cutoff=ve_cutoff)
    names, kinds, unsupported, norm_bias = _param_kinds(model)
    with one_thread():
        y = _trace(model, input_size)
    raw, edges, skipped = _raw_graph(y, names, kinds, unsupported)

    dag = _Dag(len(raw) + 1, edges)
    raw.append(_Raw("input", "input", None, None, (-1, 0)))
    src = len(raw) - 1
    _fix_root_weights(raw, dag)
    for v in range(src):
        if not dag.pred[v]:
            dag.add(src, v)
    order = _toposort(raw, dag)
    _filter(raw, dag, order)
    order = [v for v in order if dag.alive[v]]

    index = {v: i for i, v in enumerate(order)}
    nodes = []
    for v in order:
        r = raw[v]
        shape = r.shape if r.param is not None else (
            (1, 1, *r.attrs["kernel"]) if "kernel" in r.attrs else None)
        nodes.append(Node(r.name, r.op, shape, r.param, norm_bias.get(r.param)))
    real = sorted((index[a], index[b]) for a in order for b in dag.succ[a])
    _check_connected(nodes, real)

    param_shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    in_graph = {n.param for n in nodes if n.param} | {n.extra for n in nodes if n.extra}
    for name in param_shapes:
        if name not in in_graph and name not in skipped:
            skipped[name] = unsupported.get(name, "not used in the forward pass to the first output")
    return Graph(nodes, _with_virtual_edges(len(nodes), real, ve_cutoff), param_shapes,
                 {k: skipped[k] for k in param_shapes if k in skipped}, _classifier(nodes, real),
                 ve_cutoff)


def _classifier(nodes: list[Node], real) -> tuple[str | None, str | None]:
    """The (weight, bias) at the sink: ppuda's "last weight" / "last bias" (last two nodes)."""
    last = nodes[-1]
    if last.op == "bias":
        prev = [a for a, b in real if b == len(nodes) - 1]
        w = nodes[prev[0]] if len(prev) == 1 and nodes[prev[0]].op == "conv" else None
        return (w.param if w else None), last.param
    if last.op == "conv" and last.param:
        return last.param, None
    return None, None

