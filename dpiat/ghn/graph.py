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
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import nn

from dpiat.clip import one_thread
from dpiat.errors import DpiatError

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


class GraphError(DpiatError):
    """A network whose computational graph cannot be built (failed forward pass, broken DAG, ...)."""


@dataclass
class Node:
    name: str                        # parameter name, or op name ("input", "Add", "Mean", ...)
    op: str                          # one of PRIMITIVES
    shape: tuple[int, ...] | None    # the parameter's shape (pooling: (1, 1, k, k)); None: no shape
    param: str | None = None         # the parameter this node predicts
    extra: str | None = None         # norm layers: the bias predicted from the same node

    def __repr__(self) -> str:
        shape = "" if self.shape is None else f" {tuple(self.shape)}"
        return f"Node({self.name!r}, {self.op}{shape})"


@dataclass
class Graph:
    """A network as the GHN sees it. ``edges`` rows are ``(src, dst, dist)``, ``src < dst``.

    ``dist`` is 1 for a real edge and 2..ve_cutoff for a virtual one. ``skipped`` maps each parameter
    that has no node to the reason; ``classifier`` is the (weight, bias) parameter pair at the sink.
    """

    nodes: list[Node]
    edges: np.ndarray                                    # int64 (E, 3)
    param_shapes: dict[str, tuple[int, ...]]             # every parameter of the network
    skipped: dict[str, str] = field(default_factory=dict)
    classifier: tuple[str | None, str | None] = (None, None)
    ve_cutoff: int = 50
    rules: str = "structural"                            # the rules that built it (GRAPH_RULES)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def real_edges(self) -> list[tuple[int, int]]:
        return [tuple(e) for e in self.edges[self.edges[:, 2] == 1, :2].tolist()]

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def levels(self) -> tuple[np.ndarray, np.ndarray]:
        """Longest-path depth of each node from the input, and to the sink (real edges).

        Nodes of equal depth never feed each other (a virtual edge is a path, so it also goes to a
        deeper node): the GHN updates a whole level at once, exactly as a node-by-node sweep would.
        """
        n = len(self.nodes)
        fwd, bwd = np.zeros(n, np.int64), np.zeros(n, np.int64)
        real = sorted(self.real_edges)
        for s, d in real:  # src < dst: one pass in index order is a pass in topological order
            fwd[d] = max(fwd[d], fwd[s] + 1)
        for s, d in sorted(real, key=lambda e: -e[1]):
            bwd[s] = max(bwd[s], bwd[d] + 1)
        return fwd, bwd

    def summary(self) -> str:
        """A readable listing: one line per node with its op, shape and real predecessors."""
        preds = defaultdict(list)
        for s, d in self.real_edges:
            preds[d].append(s)
        lines = [f"{i:4d} {n.op:9s} {n.name:40s} {str(n.shape or ''):18s} <- {preds[i]}"
                 for i, n in enumerate(self.nodes)]
        return "\n".join(lines)


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


def _first_tensor(out) -> torch.Tensor | None:
    if torch.is_tensor(out):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _trace(model: nn.Module, input_size: tuple[int, ...]) -> torch.Tensor:
    """One forward pass in eval mode with every parameter requiring grad; modes are restored."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        # batch 2 only when needed: a BatchNorm on batch statistics (predict.use_batch_stats) cannot
        # normalise a single 1x1 map; the graph does not depend on the batch size
        batch = 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats
                         for m in model.modules()) else 1
        x = torch.randn(batch, *input_size, device=device, dtype=dtype)
        model.eval()  # eval: BatchNorm running statistics stay untouched, dropout is not traced
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            out = model(x)
    except Exception as e:  # any failure inside user code: say what we did
        raise GraphError(f"forward pass of {type(model).__name__} on a random input of shape "
                         f"{(batch, *input_size)} failed ({type(e).__name__}: {e}); pass the right "
                         f"input_size (C, H, W)") from e
    finally:
        model.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)
    y = _first_tensor(out)
    if y is None or y.grad_fn is None:
        raise GraphError(f"{type(model).__name__}: the output does not depend on any parameter, "
                         f"so there is no computational graph to read")
    return y


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
        from dpiat.ghn.ppuda_graph import build_ppuda_graph

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


def _check_connected(nodes: list[Node], real: list[tuple[int, int]]) -> None:
    n = len(nodes)
    succ, pred = defaultdict(list), defaultdict(list)
    for a, b in real:
        succ[a].append(b)
        pred[b].append(a)
    sinks = [v for v in range(n) if not succ[v]]
    if len(sinks) != 1:
        raise GraphError(f"the graph has {len(sinks)} outputs ({[nodes[v].name for v in sinks][:5]}); "
                         f"the GHN needs a network with a single output")
    seen, stack = {sinks[0]}, [sinks[0]]
    while stack:
        for p in pred[stack.pop()]:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    if len(seen) != n:  # cannot happen for a graph traced from one output; guard the surgery above
        lost = [nodes[v].name for v in range(n) if v not in seen][:5]
        raise GraphError(f"nodes {lost} do not reach the output")


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


def _with_virtual_edges(n: int, real: list[tuple[int, int]], cutoff: int) -> np.ndarray:
    if not real:
        return np.zeros((0, 3), np.int64)
    a = np.array(real, np.int64)
    if cutoff <= 1:
        return np.concatenate([a, np.ones((len(a), 1), np.int64)], 1)
    adj = csr_matrix((np.ones(len(a)), (a[:, 0], a[:, 1])), shape=(n, n))
    dist = shortest_path(adj, method="D", directed=True, unweighted=True)
    src, dst = np.nonzero((dist >= 1) & (dist <= cutoff))
    return np.stack([src, dst, dist[src, dst].astype(np.int64)], 1).astype(np.int64)


def merge_graphs(graphs: list[Graph]) -> tuple[Graph, list[int]]:
    """Several graphs as one disconnected graph (a meta-batch), and each graph's first node index.

    The GHN processes the union in one pass: the sweeps run level by level, so a meta-batch costs
    about as many sequential steps as its deepest graph. Only ``nodes`` and ``edges`` are meaningful
    in the union; read per-network fields from the original graphs.
    """
    offsets, nodes, edges, n = [], [], [], 0
    for g in graphs:
        offsets.append(n)
        nodes += g.nodes
        edges.append(g.edges + np.array([n, n, 0], np.int64))
        n += len(g.nodes)
    cutoff = max((g.ve_cutoff for g in graphs), default=1)
    return Graph(nodes, np.concatenate(edges) if edges else np.zeros((0, 3), np.int64), {},
                 ve_cutoff=cutoff, rules=graphs[0].rules if graphs else "structural"), offsets
