"""Predicting parameters: the GNN sweep semantics, decoding, tiling, normalisation, writing, the init method."""

import math

import pytest
import timm
import torch
from torch import nn

import dpiat
from dpiat.errors import DpiatError, WeightsError
from dpiat.ghn import build_graph, ghn_init, predict, predict_params, save_ghn, use_batch_stats
from dpiat.ghn.model import GHN2, _sweeps
from dpiat.ghn.predict import normalize_bias, normalize_norm_weight, normalize_weight, tile_to


@pytest.fixture(scope="module")
def ghn():
    torch.manual_seed(0)
    return GHN2(max_shape=(64, 64, 11, 11), num_classes=10).eval()


def reference_sweeps(gnn, h, graph):
    """ghn.md 1.4 item 2 literally: node by node in topological order, then in reverse order."""
    h = [row for row in h]
    edges = [tuple(map(int, e)) for e in graph.edges]
    n = len(h)
    for order, incoming in ((range(n), lambda v: [(s, d) for s, t, d in edges if t == v]),
                            (reversed(range(n)), lambda v: [(t, d) for s, t, d in edges if s == v])):
        for v in order:
            m = torch.zeros_like(h[v])
            for u, d in incoming(v):
                if d == 1:
                    m = m + gnn.mlp(h[u])
                m = m + gnn.mlp_ve(h[u]) / d
            h[v] = gnn.gru(m[None], h[v][None])[0]
    return torch.stack(h)


def test_level_batched_sweeps_equal_the_sequential_definition(ghn):
    graph = build_graph(timm.create_model("mobilenetv3_small_050", num_classes=10), input_size=(3, 32, 32))
    h0 = torch.randn(len(graph), 32)
    with torch.no_grad():
        fast = ghn.gnn(h0, _sweeps(graph, "cpu"))
        slow = reference_sweeps(ghn.gnn, h0, graph)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)


def test_decoding_only_the_needed_positions_equals_decoding_all_and_cropping(ghn):
    h = torch.randn(3, 32)
    with torch.no_grad():
        full = ghn.decoder(h, 11, 11)            # the whole 64 x 64 x 11 x 11 tensor
        crop = ghn.decoder(h, 3, 5)
    assert full.shape == (3, 64, 64, 11, 11)
    torch.testing.assert_close(crop, full[..., :3, :5], atol=1e-5, rtol=1e-5)


def test_tile_and_normalise():
    w = torch.arange(6.0).view(2, 3)
    assert tile_to(w, (5, 2)).tolist() == [[0, 1], [3, 4], [0, 1], [3, 4], [0, 1]]
    assert tile_to(torch.arange(3.0), (7,)).tolist() == [0, 1, 2, 0, 1, 2, 0]
    big = torch.randn(64, 64, 3, 3)
    t = tile_to(big, (1000, 2048, 3, 3))
    assert t.shape == (1000, 2048, 3, 3) and torch.equal(t[64:128, 64:128], big) and torch.equal(t[:3, :5], big[:3, :5])
    with pytest.raises(ValueError):
        tile_to(w, (2, 3, 1))
    ones = torch.ones(8, 4, 3, 3)
    assert torch.allclose(normalize_weight(ones), ones * math.sqrt(2 / 36))        # regular conv: beta 2
    assert torch.allclose(normalize_weight(torch.ones(8, 1, 3, 3)), torch.full((8, 1, 3, 3), math.sqrt(1 / 9)))
    assert torch.allclose(normalize_weight(torch.ones(8, 4, 1, 3)), torch.full((8, 4, 1, 3), math.sqrt(1 / 12)))
    assert torch.allclose(normalize_weight(torch.ones(10, 5)), torch.full((10, 5), math.sqrt(2 / 5)))
    p = torch.linspace(-50, 50, 11)
    nw, nb = normalize_norm_weight(p), normalize_bias(p)
    assert nw.min() >= 0 and nw.max() <= 2 and nw[5] == 1 and nb.abs().max() <= 1 and nb[5] == 0


@pytest.mark.parametrize("name,chans", [("resnet18", 3), ("tinynet_e", 1), ("mixnet_s", 1),
                                        ("mobilenetv3_small_050", 3)])
def test_prediction_fills_every_parameter(ghn, name, chans):
    net = timm.create_model(name, num_classes=10, in_chans=chans)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = predict(ghn, net, input_size=(chans, 32, 32))
    assert report.not_predicted == {} and report.n_predicted == report.n_params
    assert report.predicted == sorted(k for k, _ in net.named_parameters())
    for k, p in net.named_parameters():
        assert torch.isfinite(p).all(), k
        assert not torch.equal(p, before[k]), f"{k} was not written"
    for k, b in net.named_buffers():  # BatchNorm running statistics are not touched
        assert torch.equal(b, before[k]), k
    norms = [m.weight.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(0 < float(w.min()) and float(w.max()) < 2 for w in norms)
    net.eval()(torch.randn(2, chans, 32, 32))  # still a working network


def test_classifier_of_another_class_count_keeps_its_init(ghn):
    net = timm.create_model("resnet18", num_classes=100)
    fc = net.fc.weight.clone()
    report = predict(ghn, net, input_size=(3, 32, 32))
    assert set(report.not_predicted) == {"fc.weight", "fc.bias"}
    assert "100 classes and the GHN predicts 10" in report.not_predicted["fc.weight"]
    assert torch.equal(net.fc.weight, fc)
    report = predict(ghn, net, input_size=(3, 32, 32), predict_class_layers=True)  # forced: tiled to 100
    assert report.not_predicted == {} and not torch.equal(net.fc.weight, fc)


def test_predictions_are_differentiable_and_batched(ghn):
    nets = [timm.create_model("resnet18", num_classes=10), timm.create_model("tinynet_e", num_classes=10)]
    graphs = [build_graph(n, input_size=(3, 32, 32)) for n in nets]
    together = predict_params(ghn, graphs)
    alone = predict_params(ghn, graphs[1])[0][0]
    assert all(torch.allclose(together[1][0][k], v, atol=1e-5) for k, v in alone.items())
    loss = sum(v.sum() for v in together[0][0].values())
    loss.backward()
    assert ghn.decoder.fc[0].weight.grad is not None and ghn.embed.weight.grad.abs().sum() > 0
    ghn.zero_grad()


def test_use_batch_stats():
    net = use_batch_stats(timm.create_model("resnet18", num_classes=10)).eval()
    x = torch.randn(4, 3, 32, 32) * 5 + 3
    stem = net.bn1(net.conv1(x))
    assert abs(float(stem.mean().detach())) < 0.2  # normalised by the batch, not by running stats 0/1


def test_ghn_init_through_the_registry(ghn, tmp_path):
    path = tmp_path / "ghn.pt"
    save_ghn(path, ghn, epoch=1)
    net = timm.create_model("tinynet_e", num_classes=10, in_chans=1)
    report = dpiat.initialize("ghn", net, checkpoint=str(path), input_size=[1, 32, 32])
    assert report["method"] == "ghn" and report["fraction_overwritten"] == 1.0 and report["not_predicted"] == {}
    assert report["ghn_config"]["max_shape"] == [64, 64, 11, 11] and report["ghn_epoch"] == 1
    assert report["seconds_graph"] >= 0 and report["graph_nodes"] == 129
    import json
    json.dumps(report)  # goes into run.json
    with pytest.raises(DpiatError, match="unknown options"):
        ghn_init(net, checkpoint=str(path), bn_train=True)
    with pytest.raises(DpiatError, match="needs checkpoint=PATH"):
        ghn_init(net)
    with pytest.raises(DpiatError, match="predict_class_layers"):
        ghn_init(net, checkpoint=str(path), predict_class_layers="yes")
    with pytest.raises(WeightsError, match="does not exist"):
        ghn_init(net, checkpoint=str(tmp_path / "nope.pt"))
