"""GHN graphs built with the reference implementation's rules, for the released GHN-2 checkpoints.

The official ``ghn2_*.pt`` files were trained on graphs made by ppuda
(``ppuda/deepnets1m/graph.py``, facebookresearch/ppuda). To predict what ppuda predicts with them, a
network's graph must have the same nodes, in the same order, with the same edges and features. This
module rebuilds that graph, quirks included (it is a reimplementation from reading ppuda's code, and
was compared side by side with it: ``results/ghn/evidence.md`` §5; ``docs/ghn.md`` §2.3 sums the rules
up). Select it with ``build_graph(model, rules="ppuda")``; official checkpoints select it by default
(:mod:`dpiat.ghn.io`).

What ppuda does, step by step, and where it differs from :mod:`dpiat.ghn.graph`'s structural rules:

1. **Parameters.** Only parameters of modules whose type is *exactly* ``nn.Conv2d``, ``nn.Linear``,
   ``nn.BatchNorm2d``, ``nn.LayerNorm`` or torchvision's ``LayerNorm2d`` become nodes (no subclasses:
   timm's ``BatchNormAct2d``, ``Conv2dSame``, ``MixedConv2d`` parts that are subclasses, ... are left
   out and their parameters are not predicted). Norm-layer biases have no node. Nodes are named by
   ``f"{module_name}.{param}"`` (a parameter of the root module is named ``".weight"``).
2. **Nodes in discovery order.** A depth-first walk from the output's ``grad_fn`` visits each autograd
   function once, children in ``next_functions`` order, and creates its nodes on first visit (pre-order):
   one node per supported parameter it consumes directly, else one node named by the function's class
   (``AddBackward0``, ``MeanBackward1``, ...).
3. **Edges.** The walk links each function's first node to each child's last node: child -> parent,
   except when the child's name contains ``"bias"``, then parent -> child (so a conv with a bias is the
   chain ``x -> weight -> bias``). ``nn.Linear`` weights are then moved in front of their bias (every
   input of the bias becomes an input of the weight).
4. **Input and order.** There must be exactly one node without inputs; an ``input`` node is added before
   it. Nodes are sorted topologically the way ``networkx.topological_sort`` (networkx >= 2.6; older
   versions give another order) sorts a ``DiGraph`` made from the adjacency matrix: generation by
   generation (Kahn), each generation in the order its nodes were freed, successors visited in index
   order, the first generation in index order.
5. **Filtering, positional.** Passes remove nodes by name substring, in this order: ``Mul``, ``Clone``,
   each unsupported op name (everything but the 15 primitives' ops), ``Mean``, ``Add``, ``Cat``. A
   removed node's predecessors are linked to its successors. Kept are: a ``Mul*`` node iff the node two
   places before it (in the list at the start of the pass) has a name starting with ``Hard`` -- in
   practice a squeeze-excitation product only where the graph happens to put a hard-sigmoid/hard-swish
   there, so sigmoid-gated SE blocks (EfficientNet) lose their ``Mul`` and torchvision's
   ``mobilenet_v3_small`` loses all 9; a ``Clone*`` node iff the node 11 places before starts with
   ``Softmax`` (attention); a ``Mean*`` node iff it was traced with ``keepdim=True`` (a full ``mean()``
   is kept unless it is the last node); ``Add*`` / ``Cat*`` nodes iff they have more than one
   predecessor *within the pass* (nodes removed earlier in the same pass still count).
   Unsupported-op passes run in sorted order here (ppuda iterates a ``set``; the order only matters for
   unsupported ops whose name starts with ``Add``, which ppuda cannot featurise either).
6. **Features.** Op ids as in :data:`~dpiat.ghn.graph.PRIMITIVES`; a grouped conv is ``dil_conv`` iff
   its *smallest* dilation is > 1 (structural rules: largest). Shapes: parameter shapes, ``(1, 1, kh,
   kw)`` for pooling, nothing for other ops. Virtual edges are shortest paths up to ``ve_cutoff``.
7. **Which parameter a node predicts.** ppuda matches node names to ``f"{module}.weight"`` /
   ``".bias"`` after cutting a name to start at ``"stem"`` (or ``"pos_enc"``): a node named
   ``conv_stem.weight`` looks for ``stem.weight`` and normally finds nothing, so timm EfficientNets'
   ``conv_stem`` keeps its value (ppuda would delete it). The classifier is positional: the node
   before last is the "last weight" (decoded through ``class_layer_predictor``) and the last node the
   "last bias" (through ``bias_class``).

Deliberate differences from ppuda, none of which changes a prediction ppuda makes: the forward pass
runs in eval mode (BatchNorm statistics untouched) on a ``(1, C, H, W)`` input whose channels default to
the first conv's; ppuda runs the model in its current mode (train, for a new model) on 3 channels. On
every network compared the graphs are the same in both modes (timm's ``rexnet_100`` cannot be traced in
train mode at batch 1 at all). A parameter ppuda cannot predict keeps its value (ppuda sets it to
``None``). ppuda's DeepNets-1M specifics (multi-cell ``Network``, ``PosEnc``) are not supported. Where
ppuda fails, this builder raises a one-line :class:`~dpiat.ghn.graph.GraphError` that suggests the
structural rules (several nodes without inputs, e.g. a parameter used twice or a skipped ``Linear``
weight; an unsupported op that survives the filter), or goes on: a classifier weight that is not 2-D
is predicted as an ordinary weight, a positional look-up before the first node counts as no match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from dpiat.clip import one_thread
from dpiat.ghn.graph_core import Graph, GraphError, Node, _check_connected, _trace, _with_virtual_edges

# ops that ppuda maps to a primitive (by the autograd class name before "Backward")
_OPS = {"input": "input", "Mean": "glob_avg", "AdaptiveAvgPool2D": "glob_avg",
        "MaxPool2DWithIndices": "max_pool", "AvgPool2D": "avg_pool", "Clone": "msa", "Mul": "cse",
        "Add": "sum", "Cat": "concat"}


def _module_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(types whose parameters become nodes, the norm types among them), matched with ``type(m) in``."""
    types: list[type] = [nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm]
    norms: list[type] = [nn.BatchNorm2d, nn.LayerNorm]
    try:
        from torchvision.models.convnext import LayerNorm2d
    except ImportError:  # torchvision is optional; ppuda adds LayerNorm2d when it can
        pass
    else:
        types.append(LayerNorm2d)
        norms.append(LayerNorm2d)
    return tuple(types), tuple(norms)


_TYPES, _NORMS = _module_types()
_TYPE_NAMES = "Conv2d, Linear, BatchNorm2d, LayerNorm, LayerNorm2d"


@dataclass
class _PNode:
    name: str                          # ppuda's name: "module.param", an autograd class name, "input"
    param: str | None = None           # the model's parameter this node stands for
    module: nn.Module | None = None
    shape: tuple[int, ...] | None = None
    keepdim: str | None = None         # Mean: str(keepdim) as ppuda compares it
    kernel: tuple[int, int] | None = None  # pooling

    def op_base(self) -> str:
        cut = self.name.find("Backward")
        return self.name if cut < 0 else self.name[:cut]


@dataclass
class _Adj:
    """Directed adjacency on integer node ids (sets; no self loops)."""
    succ: dict[int, set[int]] = field(default_factory=dict)
    pred: dict[int, set[int]] = field(default_factory=dict)

    def node(self, v: int) -> None:
        self.succ.setdefault(v, set())
        self.pred.setdefault(v, set())

    def add(self, a: int, b: int) -> None:
        if a != b:
            self.succ[a].add(b)
            self.pred[b].add(a)

    def drop(self, v: int) -> None:
        for s in self.succ.pop(v):
            self.pred[s].discard(v)
        for p in self.pred.pop(v):
            self.succ[p].discard(v)


# --------------------------------------------------------------------------------------------------
# steps 1-3: parameters, discovery-order nodes, edges


def _param_owners(model: nn.Module) -> dict[int, tuple[str, str, nn.Module]]:
    """id(parameter) -> (ppuda's node name, the parameter's name in the model, owning module)."""
    owners: dict[int, tuple[str, str, nn.Module]] = {}
    for mod_name, module in model.named_modules():
        for local, p in module.named_parameters(recurse=False):
            if id(p) not in owners:  # a shared parameter: its first owner (ppuda asserts instead)
                owners[id(p)] = (f"{mod_name}.{local}", f"{mod_name}.{local}" if mod_name else local, module)
    return owners


def _discover(root, owners) -> tuple[list[_PNode], list[tuple[int, int]], dict[str, str]]:
    """Nodes in ppuda's pre-order and edges between node indices (step 2-3)."""
    nodes: list[_PNode] = []
    where: dict[object, int] = {}   # link object (AccumulateGrad or function) -> index of its last node
    links: list[tuple[object, object]] = []
    done: dict[object, tuple[object | None, str]] = {}  # visited object -> (its last link, its name)
    skipped: dict[str, str] = {}

    def open_fn(fn) -> object | None:
        """Create ``fn``'s nodes; return the link of its first node."""
        cls = type(fn).__name__
        first = last = None
        if "AccumulateGrad" not in cls:
            made = []
            for child, _ in fn.next_functions:
                if child is None or not hasattr(child, "variable"):
                    continue
                owner = owners.get(id(child.variable))
                if owner is None:  # a leaf that is not a parameter of the model
                    continue
                key, pname, module = owner
                if type(module) not in _TYPES:
                    skipped.setdefault(pname, f"module type {type(module).__name__} is not one ppuda's graph "
                                              f"rules predict (exactly {_TYPE_NAMES})")
                    continue
                if type(module) in _NORMS and ".bias" in key:
                    continue  # predicted from the norm weight's node
                made.append((child, _PNode(key, pname, module, tuple(child.variable.shape))))
            if not made:
                node = _PNode(cls)
                if hasattr(fn, "_saved_keepdim"):
                    node.keepdim = str(fn._saved_keepdim)
                k = getattr(fn, "_saved_kernel_size", None)
                if k is not None:
                    k = tuple(int(v) for v in k)
                    node.kernel = (k[0], k[-1])
                made.append((fn, node))
            for link, node in made:
                nodes.append(node)
                where[link] = len(nodes) - 1
                done[link] = (link, node.name)
                first = link if first is None else first
                last = link
        done[fn] = (last, cls)
        return first

    def link(parent_first, child) -> None:
        child_last, child_name = done[child]
        if child_last is not None and child_last is not parent_first:
            links.append((parent_first, child_last) if "bias" in child_name else (child_last, parent_first))

    stack = [(root, open_fn(root), iter(root.next_functions))]
    while stack:
        fn, first, children = stack[-1]
        for child, _ in children:
            if child is None:
                continue
            if child in done:
                link(first, child)
                continue
            stack.append((child, open_fn(child), iter(child.next_functions)))
            break
        else:
            stack.pop()
            if stack:
                link(stack[-1][1], fn)
    edges = [(where[a], where[b]) for a, b in links]
    return nodes, edges, skipped


# --------------------------------------------------------------------------------------------------
# steps 3-5: linear fix-up, input, order, filtering


def _move_linear_weights(nodes: list[_PNode], adj: _Adj) -> None:
    """An ``nn.Linear`` weight takes over all inputs of the nodes it feeds (its bias)."""
    for v, node in enumerate(nodes):
        if not (isinstance(node.module, nn.Linear) and ".weight" in node.name):
            continue
        for s in sorted(adj.succ[v]):
            for p in list(adj.pred[s]):
                adj.add(p, v)
                adj.succ[p].discard(s)
            adj.pred[s] = set()
            adj.add(v, s)


def _generations(n: int, adj: _Adj) -> list[int]:
    """``networkx.topological_sort`` order of a DiGraph built from an n x n adjacency matrix."""
    indeg = {v: len(adj.pred[v]) for v in range(n)}
    ready = [v for v in range(n) if indeg[v] == 0]
    order: list[int] = []
    while ready:
        order.extend(ready)
        freed = []
        for v in ready:
            for s in sorted(adj.succ[v]):
                indeg[s] -= 1
                if indeg[s] == 0:
                    freed.append(s)
        ready = freed
    if len(order) != n:
        raise GraphError("the traced graph has a cycle after ppuda's Linear rewiring; use graph_rules=structural")
    return order


def _keep(nodes: list[_PNode], seq: list[int], i: int, adj: _Adj) -> bool:
    """ppuda's keep rule for the matched node at position ``i`` of ``seq``."""
    node = nodes[seq[i]]
    name = node.name
    if name.startswith("Mean"):
        if node.keepdim is not None:
            return node.keepdim == "True"
        return i < len(seq) - 1 and not nodes[seq[i + 1]].name.startswith("cells.")
    if name.startswith("Mul"):
        return _at(nodes, seq, i - 2).startswith("Hard")
    if name.startswith("Clone"):
        return _at(nodes, seq, i - 11).startswith("Softmax")
    if name.startswith(("Cat", "Add")):
        return len(adj.pred[seq[i]]) > 1
    return False


def _at(nodes: list[_PNode], seq: list[int], i: int) -> str:
    """The name at position ``i``, negative positions counting from the end as Python's do."""
    return nodes[seq[i]].name if -len(seq) <= i < len(seq) else ""


def _filter(nodes: list[_PNode], seq: list[int], adj: _Adj) -> list[int]:
    """ppuda's filter passes (step 5) over the ordered node ids ``seq``; returns the ids kept, in order."""
    unsupported = sorted({nodes[v].name for v in seq
                          if nodes[v].module is None and nodes[v].op_base() not in _OPS})
    for pattern in ["Mul", "Clone", *unsupported, "Mean", "Add", "Cat"]:
        removed = []
        for i, v in enumerate(seq):
            if pattern in nodes[v].name and not _keep(nodes, seq, i, adj):
                removed.append(v)
                for s in list(adj.succ[v]):      # the node's own edges stay until the pass ends
                    for p in list(adj.pred[v]):
                        adj.add(p, s)
        if removed:
            gone = set(removed)
            for v in removed:
                adj.drop(v)
            seq = [v for v in seq if v not in gone]
    return seq


# --------------------------------------------------------------------------------------------------
# steps 6-7: features, parameter matching, classifier


def _ppuda_key(name: str) -> str:
    """The name ppuda looks a node's parameter up by (cut at "stem"/"pos_enc", DeepNets ``_ops`` fix)."""
    for word in ("stem", "pos_enc"):
        at = name.find(word)
        if at >= 0:
            name = name[at:]
            break
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part == "_ops" and i + 2 < len(parts) and parts[i + 2] != "op" and parts[i + 2].lstrip("-").isdigit():
            parts.insert(i + 2, "op")
            name = ".".join(parts)
            break
    return name


def _op_of(node: _PNode, key: str) -> str:
    m = node.module
    if m is None:
        base = node.op_base()
        if base not in _OPS:
            raise GraphError(f"ppuda's graph rules keep an unsupported op {node.name!r} (it has more than one "
                             f"input); ppuda cannot predict this network either; use graph_rules=structural")
        return _OPS[base]
    if type(m) in _NORMS:
        return "bn" if type(m) is nn.BatchNorm2d else "ln"
    if "bias" in key:
        return "bias"
    if type(m) is nn.Conv2d and m.groups > 1:
        return "dil_conv" if min(m.dilation) > 1 else "sep_conv"
    return "conv"


def _matchable(model: nn.Module) -> dict[str, tuple[str, tuple[int, ...], str | None]]:
    """ppuda's lookup table: "module.weight"/"module.bias" -> (parameter name, shape, the module's bias
    when the entry is a 1-D weight, i.e. a norm layer's)."""
    table = {}
    for mod_name, m in model.named_modules():
        pre = f"{mod_name}." if mod_name else ""
        w, b = getattr(m, "weight", None), getattr(m, "bias", None)
        w = w if isinstance(w, nn.Parameter) else None
        b = b if isinstance(b, nn.Parameter) else None
        if w is not None:
            norm_bias = pre + "bias" if b is not None and w.dim() == 1 else None
            table[f"{mod_name}.weight"] = (pre + "weight", tuple(w.shape), norm_bias)
        if b is not None:
            table[f"{mod_name}.bias"] = (pre + "bias", tuple(b.shape), None)
    return table


def build_ppuda_graph(model: nn.Module, *, input_size: tuple[int, ...], ve_cutoff: int = 50) -> Graph:
    """ppuda's graph of ``model`` (see the module docstring); ``input_size`` is ``(C, H, W)``."""
    owners = _param_owners(model)
    with one_thread():
        y = _trace(model, input_size)
    nodes, edges, skipped = _discover(y.grad_fn, owners)

    n = len(nodes)
    adj = _Adj()
    for v in range(n + 1):
        adj.node(v)
    for a, b in edges:
        adj.add(a, b)
    _move_linear_weights(nodes, adj)
    roots = [v for v in range(n) if not adj.pred[v]]
    if len(roots) != 1:
        names = [nodes[v].name for v in roots][:4]
        raise GraphError(f"ppuda's graph rules need exactly one first node, this network gives {len(roots)} "
                         f"({', '.join(names)}; a parameter used twice does this); use graph_rules=structural")
    nodes.append(_PNode("input"))
    adj.add(n, roots[0])
    seq = _filter(nodes, _generations(n + 1, adj), adj)

    table = _matchable(model)
    out: list[Node] = []
    unmatched: dict[str, str] = {}
    for v in seq:
        node = nodes[v]
        key = _ppuda_key(node.name)
        op = _op_of(node, key)
        if node.module is None:
            shape = (1, 1, *node.kernel) if op in ("max_pool", "avg_pool") else None
            out.append(Node(node.name, op, shape))
            continue
        lookup = key if key.endswith((".weight", ".bias", "in_proj_weight", "in_proj_bias")) else key + ".weight"
        hit = table.pop(lookup, None)
        if hit is None:
            why = (f"ppuda's graph rules look its node {node.name!r} up as {lookup!r}, which names no "
                   f"remaining parameter, so ppuda does not predict it")
            unmatched[node.param] = why
            if type(node.module) in _NORMS and node.param.endswith("weight"):
                unmatched[node.param[:-len("weight")] + "bias"] = why  # the bias it would have predicted
            out.append(Node(node.name, op, node.shape))
        else:
            pname, shape, extra = hit
            out.append(Node(node.name, op, shape, pname, extra))

    index = {v: i for i, v in enumerate(seq)}
    real = sorted((index[a], index[b]) for a in seq for b in adj.succ[a])
    _check_connected(out, real)

    param_shapes = {k: tuple(p.shape) for k, p in model.named_parameters()}
    predicted = {x.param for x in out if x.param} | {x.extra for x in out if x.extra}
    reasons = {}
    for k in param_shapes:
        if k in predicted:
            continue
        reasons[k] = skipped.get(k) or unmatched.get(k) or "not used in the forward pass to the first output"
    return Graph(out, _with_virtual_edges(len(out), real, ve_cutoff), param_shapes, reasons,
                 _positional_classifier(out), ve_cutoff, rules="ppuda")


def _positional_classifier(nodes: list[Node]) -> tuple[str | None, str | None]:
    """ppuda's "last weight" (node before last) and "last bias" (last node), where ppuda can use them:
    a 2-D weight and a 1-D bias (a 4-D weight or a norm there makes ppuda fail; here it is an ordinary
    parameter)."""
    weight = bias = None
    if len(nodes) >= 2 and nodes[-2].param and nodes[-2].shape is not None and len(nodes[-2].shape) == 2:
        weight = nodes[-2].param
    if nodes and nodes[-1].param and nodes[-1].op == "bias":
        bias = nodes[-1].param
    return weight, bias
