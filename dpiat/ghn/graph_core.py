"""What both graph rule sets share: the graph a GHN reads, and the steps that do not depend on the rules.

:class:`Graph` (nodes, real and virtual edges, the parameters that have no node), :class:`Node`,
:class:`GraphError`, one traced forward pass (:func:`_trace`), the single-output check, the virtual edges
and :func:`merge_graphs`. The rule sets build on it, one way: :mod:`dpiat.ghn.ppuda_graph` (ppuda's rules)
and :mod:`dpiat.ghn.graph` (the structural rules, and ``build_graph``, which picks the rules) import this
module; it imports neither. Users import everything from :mod:`dpiat.ghn.graph` or :mod:`dpiat.ghn`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path
from torch import nn

from dpiat.errors import DpiatError


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
