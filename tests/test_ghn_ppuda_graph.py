"""ppuda's graph rules (dpiat.ghn.ppuda_graph) and which rules a checkpoint predicts with.

The node lists below were derived by hand from ppuda's rules (pre-order discovery, Linear rewiring,
networkx generation order, positional filter passes; see the module docstring) and checked against
ppuda's own ``Graph`` once, outside the test suite (which needs neither ppuda nor the network).
"""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpiat.errors import DpiatError, WeightsError
from dpiat.ghn import build_graph, ghn_init, load_ghn, mark_graph_rules, predict, read_checkpoint, save_ghn
from dpiat.ghn.graph import GraphError
from dpiat.ghn.model import GHN2
from dpiat.ghn.ppuda_graph import _Adj, _generations


def nodes(g):
    return [(n.name, n.op) for n in g.nodes]


def edges(g):
    return {(g.nodes[a].name, g.nodes[b].name) for a, b in g.real_edges}


class LinearSE(nn.Module):
    """ppuda's own SE layout: Linear fcs, the gate reshaped with view right before the product."""

    def __init__(self, gate: nn.Module):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.fc1, self.fc2, self.gate, self.head = nn.Linear(8, 4), nn.Linear(4, 8), gate, nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        s = self.gate(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        x = x * s.view(s.shape[0], -1, 1, 1)
        return self.head(x.mean((2, 3)))


class ConvSE(nn.Module):
    """torchvision MobileNetV3's SE layout: 1x1 convs, a Hardsigmoid gate used directly."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.fc1, self.fc2, self.head = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1), nn.Linear(8, 5)

    def forward(self, x):
        x = F.hardswish(self.bn(self.conv(x)))
        s = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))  # output 1: traced as a keepdim Mean
        x = x * F.hardsigmoid(s)
        return self.head(x.mean((2, 3)))


class Res(nn.Module):
    """Stem, max-pool, a residual block with a 1x1 projection shortcut."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.short, self.fc = nn.Conv2d(8, 8, 1, bias=False), nn.Linear(8, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)) + self.short(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


SIZE = (3, 16, 16)
LINEAR_SE_HEAD = [("input", "input"), ("conv.weight", "conv"), ("bn.weight", "bn"), ("fc1.weight", "conv"),
                  ("fc1.bias", "bias"), ("fc2.weight", "conv"), ("fc2.bias", "bias")]


def test_se_product_is_kept_when_a_hard_gate_is_two_places_before_it():
    # before filtering (generation order): ... fc2.bias, HardsigmoidBackward0, ViewBackward0, MulBackward0
    g = build_graph(LinearSE(nn.Hardsigmoid()), input_size=SIZE, rules="ppuda")
    assert nodes(g) == LINEAR_SE_HEAD + [("MulBackward0", "cse"), ("head.weight", "conv"), ("head.bias", "bias")]
    assert edges(g) == {("input", "conv.weight"), ("conv.weight", "bn.weight"), ("bn.weight", "fc1.weight"),
                        ("bn.weight", "MulBackward0"), ("fc1.weight", "fc1.bias"), ("fc1.bias", "fc2.weight"),
                        ("fc2.weight", "fc2.bias"), ("fc2.bias", "MulBackward0"), ("MulBackward0", "head.weight"),
                        ("head.weight", "head.bias")}
    assert g.rules == "ppuda" and g.classifier == ("head.weight", "head.bias") and g.skipped == {}
    assert g.nodes[2].extra == "bn.bias" and g.nodes[1].shape == (8, 3, 3, 3)
    # the structural rules need the gate as a direct input of the product; the view hides it
    assert "Mul" not in build_graph(LinearSE(nn.Hardsigmoid()), input_size=SIZE).names()


def test_se_product_with_a_sigmoid_gate_is_dropped():
    # same positions, but two places before the Mul is "SigmoidBackward0", which does not start with "Hard"
    g = build_graph(LinearSE(nn.Sigmoid()), input_size=SIZE, rules="ppuda")
    assert nodes(g) == LINEAR_SE_HEAD + [("head.weight", "conv"), ("head.bias", "bias")]
    assert ("bn.weight", "head.weight") in edges(g) and ("fc2.bias", "head.weight") in edges(g)


def test_mobilenetv3_style_se_product_is_dropped_by_ppuda_and_kept_by_the_structural_rules():
    # before filtering: ..., fc2.weight, fc2.bias, HardsigmoidBackward0, MulBackward0: the Hard gate is
    # one place before the product, so ppuda's "two places" rule drops it
    g = build_graph(ConvSE(), input_size=SIZE, rules="ppuda")
    assert nodes(g) == [("input", "input"), ("conv.weight", "conv"), ("bn.weight", "bn"),
                        ("MeanBackward1", "glob_avg"), ("fc1.weight", "conv"), ("fc1.bias", "bias"),
                        ("fc2.weight", "conv"), ("fc2.bias", "bias"), ("head.weight", "conv"), ("head.bias", "bias")]
    assert edges(g) == {("input", "conv.weight"), ("conv.weight", "bn.weight"), ("bn.weight", "MeanBackward1"),
                        ("bn.weight", "head.weight"), ("MeanBackward1", "fc1.weight"), ("fc1.weight", "fc1.bias"),
                        ("fc1.bias", "fc2.weight"), ("fc2.weight", "fc2.bias"), ("fc2.bias", "head.weight"),
                        ("head.weight", "head.bias")}
    s = build_graph(ConvSE(), input_size=SIZE)
    assert nodes(s) == [("input", "input"), ("conv.weight", "conv"), ("bn.weight", "bn"), ("Mean", "glob_avg"),
                        ("fc1.weight", "conv"), ("fc1.bias", "bias"), ("fc2.weight", "conv"), ("fc2.bias", "bias"),
                        ("Mul", "cse"), ("head.weight", "conv"), ("head.bias", "bias")]


def test_residual_net_in_networkx_generation_order():
    net = Res()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = build_graph(net, input_size=SIZE, rules="ppuda")
    # the shortcut conv is one step from the max-pool, like conv2, so it comes before bn2 (generation order);
    # forward-execution order (structural) puts it after bn2
    assert nodes(g) == [("input", "input"), ("conv1.weight", "conv"), ("bn1.weight", "bn"),
                        ("MaxPool2DWithIndicesBackward0", "max_pool"), ("conv2.weight", "conv"),
                        ("short.weight", "conv"), ("bn2.weight", "bn"), ("AddBackward0", "sum"),
                        ("MeanBackward1", "glob_avg"), ("fc.weight", "conv"), ("fc.bias", "bias")]
    assert edges(g) == {("input", "conv1.weight"), ("conv1.weight", "bn1.weight"),
                        ("bn1.weight", "MaxPool2DWithIndicesBackward0"),
                        ("MaxPool2DWithIndicesBackward0", "conv2.weight"),
                        ("MaxPool2DWithIndicesBackward0", "short.weight"), ("conv2.weight", "bn2.weight"),
                        ("bn2.weight", "AddBackward0"), ("short.weight", "AddBackward0"),
                        ("AddBackward0", "MeanBackward1"), ("MeanBackward1", "fc.weight"), ("fc.weight", "fc.bias")}
    assert g.nodes[3].shape == (1, 1, 2, 2)
    assert build_graph(net, input_size=SIZE).names()[4:7] == ["conv2.weight", "bn2.weight", "short.weight"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics untouched


def test_subclasses_and_stem_names_are_not_predicted_by_ppuda():
    class SubBN(nn.BatchNorm2d):  # like timm's BatchNormAct2d
        pass

    class Stem(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_stem, self.bn, self.fc = nn.Conv2d(3, 4, 3, bias=False), SubBN(4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(F.relu(self.bn(self.conv_stem(x))).mean((2, 3)))

    g = build_graph(Stem(), input_size=SIZE, rules="ppuda")
    assert nodes(g) == [("input", "input"), ("conv_stem.weight", "conv"), ("fc.weight", "conv"), ("fc.bias", "bias")]
    assert g.nodes[1].param is None and g.nodes[1].shape == (4, 3, 3, 3)  # looked up as "stem.weight"
    assert set(g.skipped) == {"conv_stem.weight", "bn.weight", "bn.bias"}
    assert "'stem.weight'" in g.skipped["conv_stem.weight"] and "SubBN" in g.skipped["bn.weight"]
    torch.manual_seed(0)
    report = predict(GHN2(num_classes=2).eval(), Stem(), input_size=SIZE, graph_rules="ppuda")
    assert report.predicted == ["fc.bias", "fc.weight"] and report.graph_rules == "ppuda"
    assert not build_graph(Stem(), input_size=SIZE).skipped  # structural: isinstance, whole names


def test_torchvision_mobilenet_v3_small_loses_its_9_se_products():
    tv = pytest.importorskip("torchvision")
    net = tv.models.mobilenet_v3_small()
    g = build_graph(net, input_size=(3, 64, 64), rules="ppuda")
    s = build_graph(net, input_size=(3, 64, 64))
    assert (len(g), len(s)) == (125, 134)
    assert sum(n.op == "cse" for n in g.nodes) == 0 and sum(n.op == "cse" for n in s.nodes) == 9
    se = [(1, 1)] + [(k, 2) for k in range(4, 12)]  # (feature, block index) of the 9 SE layers
    for k, j in se:
        bias, proj = f"features.{k}.block.{j}.fc2.bias", f"features.{k}.block.{j + 1}.0.weight"
        assert (bias, proj) in edges(g)  # ppuda: the product is gone, the gate feeds the projection
        assert (bias, "Mul") in edges(s) and ("Mul", proj) in edges(s)
    assert not g.skipped and g.classifier == ("classifier.3.weight", "classifier.3.bias")


def test_torchvision_resnet50_has_the_documented_127_nodes_under_both_rules():
    tv = pytest.importorskip("torchvision")
    net = tv.models.resnet50()
    for rules in ("ppuda", "structural"):
        g = build_graph(net, input_size=(3, 64, 64), rules=rules)
        assert len(g) == 127 and sum(n.op == "sum" for n in g.nodes) == 16
        covered = {n.param for n in g.nodes if n.param} | {n.extra for n in g.nodes if n.extra}
        assert len(covered) == 161 and not g.skipped


def test_generation_order_equals_networkx_topological_sort():
    nx = pytest.importorskip("networkx")  # a torch dependency; dpiat does not import it
    np = pytest.importorskip("numpy")
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 25)
        label = list(range(n))
        rng.shuffle(label)
        a, adj = np.zeros((n, n)), _Adj()
        for v in range(n):
            adj.node(v)
        for i in range(n):
            for j in range(i + 1, n):
                if rng.random() < 0.2:
                    a[label[i], label[j]] = 1
                    adj.add(label[i], label[j])
        assert _generations(n, adj) == list(nx.topological_sort(nx.DiGraph(a)))


def test_ppuda_rules_fail_clearly_where_ppuda_fails():
    class Twice(nn.Module):  # one conv applied twice: ppuda finds two nodes without inputs
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(F.relu(self.conv(x))).mean((2, 3), keepdim=True)

    with pytest.raises(GraphError, match="exactly one first node.*graph_rules=structural"):
        build_graph(Twice(), input_size=SIZE, rules="ppuda")
    assert len(build_graph(Twice(), input_size=SIZE)) > 1
    with pytest.raises(DpiatError, match="graph_rules must be one of structural, ppuda, got 'official'"):
        build_graph(Res(), input_size=SIZE, rules="official")


def _official_file(path, ghn):
    """What ppuda's training writes: no graph_rules key."""
    torch.save({"state_dict": ghn.state_dict(), "config": dict(ghn.config), "epoch": 3}, path)


def test_official_checkpoints_predict_with_ppuda_rules(tmp_path):
    torch.manual_seed(0)
    ghn = GHN2(num_classes=5).eval()
    path = tmp_path / "ghn2_official.pt"
    _official_file(path, ghn)
    loaded = load_ghn(path)
    assert loaded.graph_rules == "ppuda" and "official" in loaded.graph_rules_source
    assert read_checkpoint(path)["graph_rules"] is None

    net = ConvSE()
    report = ghn_init(net, checkpoint=str(path), input_size=list(SIZE))
    assert report["graph_rules"] == "ppuda" and report["graph_nodes"] == 10  # ppuda: no SE product node
    assert report["checkpoint_graph_rules"] == "ppuda" and report["fraction_overwritten"] == 1.0
    expected, other = ConvSE(), ConvSE()  # fresh random inits: every parameter gets overwritten
    predict(ghn, expected, graph=build_graph(ConvSE(), input_size=SIZE, rules="ppuda"))
    predict(ghn, other, input_size=SIZE, graph_rules="structural")
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), expected.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(net.parameters(), other.parameters()))
    structural = ghn_init(ConvSE(), checkpoint=str(path), input_size=list(SIZE), graph_rules="structural")
    assert structural["graph_nodes"] == 11 and structural["graph_rules_source"] == "init option"


def test_own_checkpoints_keep_the_rules_they_were_trained_with(tmp_path):
    torch.manual_seed(0)
    ghn = GHN2(num_classes=5).eval()
    assert ghn.graph_rules == "structural"  # what meta-training uses
    path = tmp_path / "ghn.pt"
    save_ghn(path, ghn, epoch=2)
    raw = torch.load(path, weights_only=True)
    assert raw["graph_rules"] == "structural" and {"state_dict", "config", "epoch"} <= set(raw)
    report = ghn_init(ConvSE(), checkpoint=str(path), input_size=list(SIZE))
    assert (report["graph_rules"], report["graph_rules_source"], report["graph_nodes"]) == ("structural",
                                                                                           "checkpoint", 11)
    assert ghn_init(ConvSE(), checkpoint=str(path), input_size=list(SIZE), graph_rules="ppuda")["graph_nodes"] == 10
    with pytest.raises(DpiatError, match="graph_rules must be one of auto, structural, ppuda, got 'offical'"):
        ghn_init(ConvSE(), checkpoint=str(path), graph_rules="offical")

    ghn.graph_rules = "ppuda"  # a GHN meta-trained on ppuda's graphs records that
    save_ghn(path, ghn, epoch=3)
    assert load_ghn(path).graph_rules == "ppuda"

    old = tmp_path / "before_the_key.pt"  # written by this project before graph_rules was recorded
    _official_file(old, ghn)
    assert load_ghn(old).graph_rules == "ppuda"
    mark_graph_rules(old, "structural")
    assert load_ghn(old).graph_rules == "structural" and torch.load(old, weights_only=True)["epoch"] == 3

    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": ghn.state_dict(), "config": dict(ghn.config), "epoch": 1, "graph_rules": "x"}, bad)
    with pytest.raises(WeightsError, match="'graph_rules' must be one of structural, ppuda, got 'x'"):
        load_ghn(bad)
