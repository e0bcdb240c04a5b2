"""The GHN graph of a network: hand-built nets with known nodes and edges, and timm/torchvision ResNets."""

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from dpiat.errors import DpiatError
from dpiat.ghn.graph import PRIMITIVES, GraphError, build_graph


def edges(g):
    """Real edges by node name."""
    return {(g.nodes[a].name, g.nodes[b].name) for a, b in g.real_edges}


class ConvBnFc(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))  # keepdim=False: a flatten, not a glob_avg node


def test_chain_with_bias_reversal_linear_fixup_and_filtering():
    g = build_graph(ConvBnFc(), input_size=(3, 8, 8))
    assert g.names() == ["input", "conv.weight", "conv.bias", "bn.weight", "fc.weight", "fc.bias"]
    assert [n.op for n in g.nodes] == ["input", "conv", "bias", "bn", "conv", "bias"]
    # input -> weight -> bias -> bn; the Linear's "x -> bias <- weight" rewired to x -> weight -> bias
    assert edges(g) == {("input", "conv.weight"), ("conv.weight", "conv.bias"), ("conv.bias", "bn.weight"),
                        ("bn.weight", "fc.weight"), ("fc.weight", "fc.bias")}
    assert g.nodes[3].extra == "bn.bias"  # the BN weight node also predicts the BN bias
    assert g.classifier == ("fc.weight", "fc.bias")
    assert g.skipped == {}
    assert [n.shape for n in g.nodes] == [None, (4, 3, 3, 3), (4,), (4,), (5, 4), (5,)]


def test_virtual_edges_are_shortest_path_lengths_up_to_the_cutoff():
    g = build_graph(ConvBnFc(), input_size=(3, 8, 8))  # a chain of 6 nodes
    dist = {(int(a), int(b)): int(d) for a, b, d in g.edges}
    assert dist == {(a, b): b - a for a in range(6) for b in range(a + 1, 6)}
    g3 = build_graph(ConvBnFc(), input_size=(3, 8, 8), ve_cutoff=3)
    assert {(int(a), int(b)): int(d) for a, b, d in g3.edges} == {
        (a, b): b - a for a in range(6) for b in range(a + 1, 6) if b - a <= 3}
    g1 = build_graph(ConvBnFc(), input_size=(3, 8, 8), ve_cutoff=1)
    assert set(g1.edges[:, 2].tolist()) == {1}


class Block(nn.Module):
    """Stem, max-pool, a depthwise conv with squeeze-excitation, a residual sum, a concat, a swish."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 8, 1, bias=False)
        self.se_reduce = nn.Conv2d(8, 2, 1)
        self.se_expand = nn.Conv2d(2, 8, 1)
        self.side = nn.Conv2d(8, 4, 1, bias=False)
        self.head = nn.Linear(12 * 4, 3, bias=False)

    def forward(self, x):
        x = F.max_pool2d(self.bn(self.stem(x)), 2)
        y = self.dw(x)
        y = y * torch.sigmoid(y)                                   # swish: its Mul is not an SE gate
        s = self.se_expand(F.relu(self.se_reduce(y.mean((2, 3), keepdim=True))))
        y = y * torch.sigmoid(s)                                   # SE: kept as cse
        y = self.pw(y) + x                                         # residual: sum
        y = torch.cat([y, self.side(y)], 1) + 1.0                  # concat; "+ 1" has one input: dropped
        return self.head(F.adaptive_avg_pool2d(y, 2).flatten(1))  # (output 1 would trace as a Mean)


def test_sum_concat_se_pool_and_dilated_depthwise():
    g = build_graph(Block(), input_size=(3, 16, 16))
    ops = {n.name: n.op for n in g.nodes}
    assert ops == {"input": "input", "stem.weight": "conv", "bn.weight": "bn",
                   "MaxPool2DWithIndices": "max_pool", "dw.weight": "dil_conv", "Mean": "glob_avg",
                   "se_reduce.weight": "conv", "se_reduce.bias": "bias", "se_expand.weight": "conv",
                   "se_expand.bias": "bias", "Mul": "cse", "pw.weight": "conv", "Add": "sum",
                   "side.weight": "conv", "Cat": "concat", "AdaptiveAvgPool2D": "glob_avg",
                   "head.weight": "conv"}
    assert len(g) == len(ops)  # exactly one Mul, Add, Mean survive
    assert edges(g) == {
        ("input", "stem.weight"), ("stem.weight", "bn.weight"), ("bn.weight", "MaxPool2DWithIndices"),
        ("MaxPool2DWithIndices", "dw.weight"), ("dw.weight", "Mean"), ("dw.weight", "Mul"),
        ("Mean", "se_reduce.weight"), ("se_reduce.weight", "se_reduce.bias"),
        ("se_reduce.bias", "se_expand.weight"), ("se_expand.weight", "se_expand.bias"),
        ("se_expand.bias", "Mul"), ("Mul", "pw.weight"), ("pw.weight", "Add"),
        ("MaxPool2DWithIndices", "Add"), ("Add", "side.weight"), ("Add", "Cat"), ("side.weight", "Cat"),
        ("Cat", "AdaptiveAvgPool2D"), ("AdaptiveAvgPool2D", "head.weight")}
    pool = g.nodes[g.names().index("MaxPool2DWithIndices")]
    assert pool.shape == (1, 1, 2, 2)  # the pooling kernel is the node's shape
    assert g.classifier == ("head.weight", None)
    # topological order: every edge goes forward
    assert all(a < b for a, b, _ in g.edges)


def test_unsupported_layers_are_reported_not_predicted():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 6, 6))  # materialise the lazy layer
    g = build_graph(net, input_size=(3, 6, 6))
    assert g.names() == ["input", "0.weight", "0.bias", "3.weight", "3.bias"]
    assert set(g.skipped) == {"1.weight", "1.bias"}
    assert "GroupNorm" in g.skipped["1.weight"]


def test_unused_parameters_are_reported():
    class WithAux(ConvBnFc):
        def __init__(self):
            super().__init__()
            self.aux = nn.Linear(4, 2)  # never called in forward

    g = build_graph(WithAux(), input_size=(3, 8, 8))
    assert set(g.skipped) == {"aux.weight", "aux.bias"}
    assert "not used" in g.skipped["aux.weight"]


def test_model_is_left_unchanged():
    net = ConvBnFc().train()
    net.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    build_graph(net, input_size=(3, 8, 8))
    assert net.training and not net.fc.weight.requires_grad and net.conv.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN stats included


def test_timm_resnet18_graph():
    g = build_graph(timm.create_model("resnet18", num_classes=10), input_size=(3, 32, 32))
    counts = {op: sum(n.op == op for n in g.nodes) for op in PRIMITIVES}
    # input + 20 convs + fc + 20 BNs + max-pool + 8 residual sums + global pool + fc bias
    assert counts == {**dict.fromkeys(PRIMITIVES, 0), "input": 1, "conv": 21, "bn": 20, "max_pool": 1,
                      "sum": 8, "glob_avg": 1, "bias": 1}
    assert len(g) == 53 and g.classifier == ("fc.weight", "fc.bias")
    assert g.names()[:4] == ["input", "conv1.weight", "bn1.weight", "MaxPool2DWithIndices"]


def test_torchvision_resnet50_graph_has_the_documented_127_nodes():
    tv = pytest.importorskip("torchvision")
    net = tv.models.resnet50()
    g = build_graph(net, input_size=(3, 64, 64))
    # ghn.md 1.3: input + 53 conv weights + 53 BN weights + maxpool + 16 sums + glob_avg + fc.weight + fc.bias
    assert len(g) == 127
    assert sum(n.op == "conv" for n in g.nodes) == 54 and sum(n.op == "sum" for n in g.nodes) == 16
    n_tensors = len(list(net.parameters()))
    covered = {n.param for n in g.nodes if n.param} | {n.extra for n in g.nodes if n.extra}
    assert len(covered) == n_tensors == 161 and not g.skipped


def test_mobilenetv3_hard_sigmoid_se_is_kept():
    g = build_graph(timm.create_model("mobilenetv3_small_050", num_classes=10), input_size=(3, 32, 32))
    assert sum(n.op == "cse" for n in g.nodes) == 9  # one per SE block
    assert not g.skipped


def test_bad_inputs_raise_graph_errors():
    with pytest.raises(GraphError, match="expected a torch.nn.Module"):
        build_graph("resnet18")
    with pytest.raises(GraphError, match=r"forward pass .* failed .*input_size"):
        build_graph(ConvBnFc(), input_size=(5, 8, 8))  # wrong channel count
    assert issubclass(GraphError, DpiatError)

    class NoParams(nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.raises(GraphError, match="does not depend on any parameter"):
        build_graph(NoParams(), input_size=(3, 4, 4))
