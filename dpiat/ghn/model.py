"""The GHN-2 hypernetwork module, with the exact module and state-dict names of the released files.

A GHN maps a :class:`~dpiat.ghn.graph.Graph` to one state vector per node (op embedding + shape
embedding, refined by a gated graph network) and decodes each parameter node's state into a tensor::

    >>> import torch, timm
    >>> from dpiat.ghn.model import GHN2
    >>> from dpiat.ghn.graph import build_graph
    >>> ghn = GHN2(max_shape=(64, 64, 11, 11), num_classes=10)         # the ghn2_cifar10.pt layout
    >>> sum(p.numel() for p in ghn.parameters())
    1620764
    >>> h = ghn(build_graph(timm.create_model("resnet18", num_classes=10), input_size=(3, 32, 32)))
    >>> tuple(h.shape)
    (53, 32)

State-dict keys (31 for GHN-2; shapes for ``ghn2_imagenet.pt``, ``docs/ghn.md`` §1)::

    ln.{weight,bias} (32)              embed.weight (15, 32)
    shape_enc.embed_spatial.weight (11, 8)    shape_enc.embed_channel.weight (392, 8)
    gnn.mlp.fc.{0,2}.*  32->16->32     gnn.mlp_ve.fc.{0,2}.*  32->16->32     gnn.gru.* GRUCell(32, 32)
    decoder.fc.0.* 32->128*16*16       decoder.conv.{0,2}.* 1x1 convs 128->256->64*64
    decoder.class_layer_predictor.1.* 1x1 conv 64->1000
    decoder_1d.fc.{0,2}.* 32->64->128  bias_class.1.* Linear 64->1000

Variants: ``hypernet="gatedgnn", ve=False, layernorm=False, weight_norm=False`` is GHN-1;
``hypernet="mlp"`` is ppuda's no-GNN ablation (``gnn.fc.{0,2}``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dpiat.errors import DpiatError
from dpiat.ghn.graph import OP_ID, PRIMITIVES, Graph

CONFIG_KEYS = ("max_shape", "num_classes", "hypernet", "decoder", "weight_norm", "ve", "layernorm", "hid")


# --------------------------------------------------------------------------------------------------
# shape vocabularies (docs/ghn.md §3)


def channel_vocab(num_classes: int) -> np.ndarray:
    """{1, 3, num_classes} + {8..56 step 8} + {64..4080 step 16} + {4096..8192 step 32}, sorted."""
    values = {1, 3, num_classes, *range(8, 64, 8), *range(64, 4096, 16), *range(4096, 8193, 32)}
    return np.array(sorted(values), np.int64)


def spatial_vocab(max_side: int) -> np.ndarray:
    """Odd sizes 1..max(12, s)-1 plus 14 and 16: [1,3,...,15,14,16] for 16, [1,...,11,14,16] for 11."""
    return np.array(sorted({*range(1, max(12, max_side), 2), 14, 16}), np.int64)


def _nearest(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest vocabulary value; ties go to the smaller value; beyond the ends clip."""
    i = np.clip(np.searchsorted(vocab, values), 1, len(vocab) - 1)
    lo, hi = vocab[i - 1], vocab[i]
    return np.where(values - lo <= hi - values, i - 1, i)


def channel_index(vocab: np.ndarray, c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.int64)
    c = np.where((c >= 4) & (c < 8), 8, c)  # 4..7 -> 8, not the nearer 3
    return _nearest(vocab, np.minimum(c, vocab[-1]))


def spatial_index(vocab: np.ndarray, k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    return _nearest(vocab, np.where(k == 2, 3, k))  # 2x2 kernels look like 3x3


def shape_4d(shape: Sequence[int] | None) -> tuple[int, int, int, int] | None:
    """The 4-D view the shape encoder sees: (n)->(n,1,1,1), (o,i)->(o,i,1,1), (1,T,d)->(1,d,√T,√T)."""
    if shape is None:
        return None
    s = tuple(int(v) for v in shape)
    if len(s) == 1:
        return (s[0], 1, 1, 1)
    if len(s) == 2:
        return (s[0], s[1], 1, 1)
    if len(s) == 3:
        if s[0] == 1 and s[1] > 1 and s[2] > 1:
            side = int(np.sqrt(s[1]))
            return (1, s[2], side, side)
        return (s[0], s[1], s[2], 1)
    if len(s) == 4:
        return s
    return None  # 5-D and up: no shape information, like an op node


# --------------------------------------------------------------------------------------------------
# modules


class MLP(nn.Module):
    """``fc = Sequential(Linear, ReLU, Linear[, ReLU])``: keys ``fc.0.*`` and ``fc.2.*``."""

    def __init__(self, in_features: int, hidden: int, out_features: int, last_relu: bool):
        super().__init__()
        layers = [nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features)]
        self.fc = nn.Sequential(*layers, *([nn.ReLU()] if last_relu else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ShapeEncoder(nn.Module):
    """Embeds (c_out, c_in, k_h, k_w) as four hid/4 vectors; the last row of each table = no shape."""

    def __init__(self, hid: int, num_classes: int, max_shape: Sequence[int]):
        super().__init__()
        self.channels = channel_vocab(num_classes)
        self.spatial = spatial_vocab(max_shape[2])
        self.embed_spatial = nn.Embedding(len(self.spatial) + 1, hid // 4)
        self.embed_channel = nn.Embedding(len(self.channels) + 1, hid // 4)

    def indices(self, shapes: Sequence[Sequence[int] | None]) -> torch.Tensor:
        """(N, 4) table rows: channel rows for columns 0-1, spatial rows for columns 2-3."""
        s4 = [shape_4d(s) for s in shapes]
        known = np.array([s is not None for s in s4])
        arr = np.array([s if s is not None else (1, 1, 1, 1) for s in s4], np.int64).reshape(-1, 4)
        idx = np.stack([channel_index(self.channels, arr[:, 0]), channel_index(self.channels, arr[:, 1]),
                        spatial_index(self.spatial, arr[:, 2]), spatial_index(self.spatial, arr[:, 3])], 1)
        idx[~known, :2] = len(self.channels)
        idx[~known, 2:] = len(self.spatial)
        return torch.from_numpy(idx)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(self.embed_channel.weight.device)
        return torch.cat([self.embed_channel(idx[:, 0]), self.embed_channel(idx[:, 1]),
                          self.embed_spatial(idx[:, 2]), self.embed_spatial(idx[:, 3])], 1)


def _sweeps(graph: Graph, device) -> tuple[list, list]:
    """Forward (predecessors) and backward (successors) sweeps, grouped by topological level.

    Each level is ``(nodes, sources, A, V)``: ``A[i, j]`` = 1 if source j is a 1-hop neighbour of node i,
    ``V[i, j]`` = 1/s for a neighbour at distance s (virtual or real). Dense per-level matrices: a matmul
    costs ~10 us here where ``index_add`` costs ~450 us.
    """
    fwd_lvl, bwd_lvl = graph.levels()
    e = graph.edges
    out = []
    for lvl, src_col, dst_col in ((fwd_lvl, 0, 1), (bwd_lvl, 1, 0)):
        src, dst, dist = e[:, src_col], e[:, dst_col], e[:, 2]
        order = np.argsort(lvl[dst], kind="stable")
        bounds = np.searchsorted(lvl[dst][order], np.arange(lvl.max() + 2))
        levels = []
        for k in range(lvl.max() + 1):
            nodes = np.nonzero(lvl == k)[0]
            sel = order[bounds[k]:bounds[k + 1]]
            sources, col = np.unique(src[sel], return_inverse=True)
            row = np.searchsorted(nodes, dst[sel])  # position of each receiver within the level
            a = np.zeros((len(nodes), len(sources)), np.float32)
            v = np.zeros_like(a)
            one = dist[sel] == 1
            a[row[one], col[one]] = 1.0
            v[row, col] = 1.0 / dist[sel]
            levels.append(tuple(torch.as_tensor(x, device=device) for x in (nodes, sources, a, v)))
        out.append(levels)
    return out[0], out[1]


class GatedGNN(nn.Module):
    """One forward then one backward sweep of GRU updates (T = 1), docs/ghn.md §3.

    Message to v: sum over 1-hop neighbours u of MLP(h_u) plus, with virtual edges, the sum over all
    neighbours u at distance s of MLP_ve(h_u) / s (1-hop ones included with s = 1). A node's update sees
    the already-updated states of its neighbours earlier in the sweep; nodes without neighbours get a
    zero message.
    """

    def __init__(self, hid: int, ve: bool):
        super().__init__()
        self.ve = ve
        self.mlp = MLP(hid, hid // 2 if ve else hid, hid, last_relu=True)
        if ve:
            self.mlp_ve = MLP(hid, hid // 2, hid, last_relu=True)
        self.gru = nn.GRUCell(hid, hid)

    def forward(self, h: torch.Tensor, sweeps: tuple[list, list]) -> torch.Tensor:
        for sweep in sweeps:
            for nodes, sources, a, v in sweep:
                if len(sources):
                    hs = h[sources]
                    m = a @ self.mlp(hs)
                    if self.ve:
                        m = m + v @ self.mlp_ve(hs)
                else:
                    m = h.new_zeros(len(nodes), h.shape[1])
                h = h.index_copy(0, nodes, self.gru(m, h[nodes]))  # out of place: keeps autograd
        return h


class ConvDecoder(nn.Module):
    """Node state -> (max_shape[0], max_shape[1], S, S) weight tensor, and the classifier head.

    ``fc`` makes a (4*hid, S, S) map, two 1x1 convs turn each spatial position into a 64x64 channel
    block. Only the top-left ``kh x kw`` positions a parameter needs are computed (1x1 convs act per
    position, so this equals decoding all S x S positions and cropping).
    """

    def __init__(self, hid: int, max_shape: Sequence[int], num_classes: int):
        super().__init__()
        self.out_ch, self.in_ch, self.side = max_shape[0], max_shape[1], max_shape[2]
        self.fc = nn.Sequential(nn.Linear(hid, 4 * hid * self.side * self.side), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(4 * hid, 8 * hid, 1), nn.ReLU(),
                                  nn.Conv2d(8 * hid, self.out_ch * self.in_ch, 1))
        self.class_layer_predictor = nn.Sequential(nn.ReLU(), nn.Conv2d(self.out_ch, num_classes, 1))

    def forward(self, h: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
        """(N, hid) -> (N, out_ch, in_ch, kh, kw), kh and kw at most S."""
        s, hid4 = self.side, self.fc[0].out_features // (self.side * self.side)
        w = self.fc[0].weight.view(hid4, s, s, -1)[:, :kh, :kw].reshape(-1, h.shape[1])
        b = self.fc[0].bias.view(hid4, s, s)[:, :kh, :kw].reshape(-1)
        x = torch.relu(nn.functional.linear(h, w, b)).view(len(h), hid4, kh, kw)
        x = self.conv(x)
        return x.view(len(h), self.out_ch, self.in_ch, kh, kw)

    def classifier(self, w: torch.Tensor) -> torch.Tensor:
        """(out_ch, in_ch) decoded 1x1 weight -> (num_classes, in_ch): a 1x1 conv over the out axis."""
        return self.class_layer_predictor(w[None, :, :, None])[0, :, :, 0]


class GHN2(nn.Module):
    """GHN-2 (and GHN-1 / MLP variants): constructor kwargs are the checkpoint's ``config``.

    ``graph_rules`` (an attribute, not part of ``config``, which ppuda's loader passes to its constructor)
    names the graph rules the GHN reads networks with: ``"structural"`` for a new GHN (what this
    project's meta-training uses), ``"ppuda"`` once an official checkpoint is loaded (:mod:`dpiat.ghn.io`).
    """

    graph_rules: str = "structural"

    def __init__(self, max_shape: Sequence[int] = (64, 64, 11, 11), num_classes: int = 10,
                 hypernet: str = "gatedgnn", decoder: str = "conv", weight_norm: bool = True,
                 ve: bool = True, layernorm: bool = True, hid: int = 32):
        super().__init__()
        max_shape = tuple(int(v) for v in max_shape)
        if len(max_shape) != 4 or max_shape[2] != max_shape[3]:
            raise DpiatError(f"GHN max_shape must be (out, in, s, s), got {max_shape}")
        if hypernet not in ("gatedgnn", "mlp"):
            raise DpiatError(f"GHN hypernet {hypernet!r} is not supported (gatedgnn, mlp)")
        if decoder != "conv":
            raise DpiatError(f"GHN decoder {decoder!r} is not supported (only 'conv', as in GHN-2)")
        if hid % 4:
            raise DpiatError(f"GHN hid must be a multiple of 4, got {hid}")
        self.config = dict(max_shape=max_shape, num_classes=int(num_classes), hypernet=hypernet,
                           decoder=decoder, weight_norm=bool(weight_norm), ve=bool(ve),
                           layernorm=bool(layernorm), hid=int(hid))
        self.hid, self.max_shape, self.num_classes = hid, max_shape, int(num_classes)
        self.weight_norm, self.ve = bool(weight_norm), bool(ve) and hypernet == "gatedgnn"
        # attribute order = state-dict order of the released files
        if layernorm:
            self.ln = nn.LayerNorm(hid)
        self.embed = nn.Embedding(len(PRIMITIVES), hid)
        self.shape_enc = ShapeEncoder(hid, num_classes, max_shape)
        if hypernet == "gatedgnn":
            self.gnn = GatedGNN(hid, ve=self.ve)
        else:
            self.gnn = MLP(hid, hid, hid, last_relu=True)
        self.decoder = ConvDecoder(hid, max_shape, num_classes)
        self.decoder_1d = MLP(hid, 2 * hid, 2 * max_shape[0], last_relu=False)
        self.bias_class = nn.Sequential(nn.ReLU(), nn.Linear(max_shape[0], num_classes))

    def forward(self, graph: Graph) -> torch.Tensor:
        """Node states (N, hid) of ``graph``, after the GNN and the LayerNorm."""
        device = self.embed.weight.device
        ops = torch.tensor([OP_ID[n.op] for n in graph.nodes], device=device)
        h = self.embed(ops) + self.shape_enc(self.shape_enc.indices([n.shape for n in graph.nodes]))
        if isinstance(self.gnn, GatedGNN):
            if graph.ve_cutoff > 1 and not self.ve:
                graph = _one_hop(graph)
            h = self.gnn(h, _sweeps(graph, device))
        else:
            h = self.gnn(h)
        if hasattr(self, "ln"):
            h = self.ln(h)
        return h


def _one_hop(graph: Graph) -> Graph:
    """A GHN-1 (no virtual edges) sees only the real edges."""
    from dataclasses import replace

    return replace(graph, edges=graph.edges[graph.edges[:, 2] == 1], ve_cutoff=1)
