"""``dpiat_struct`` carries the source's persistent buffers wherever it carries a module's parameters (issue 37):
BatchNorm running statistics and batch counter by the rule of the weights (as ``dpiat_bn`` does for the faithful
method), any other persistent buffer of a matched module by the rule of a parameter of its shape; buffers derived
from the config (non-persistent) are never touched. What it leaves is named in ``report.buffers_left``."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import dpiat


def _scrambled(model: nn.Module, seed: int) -> nn.Module:
    """Every float parameter and persistent buffer seeded noise (variances positive), batch counters a seeded
    count; non-persistent buffers as the model built them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for module in model.modules():
            for name, b in module._buffers.items():
                if b is None or name in module._non_persistent_buffers_set:
                    continue
                if b.is_floating_point():
                    noise = torch.randn(b.shape, generator=g) * 0.5
                    b.copy_(noise.abs() + 0.5 if name == "running_var" else noise)
                elif name == "num_batches_tracked":
                    b.fill_(int(torch.randint(1, 10_000, (), generator=g)))
    return model.eval()


def _pair(arch: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return _scrambled(timm.create_model(arch, **kwargs), 0), _scrambled(timm.create_model(arch, **kwargs), 1)


def _persistent(model: nn.Module) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {k: v for k, v in model.state_dict().items() if k not in params}


def _same_network(src: nn.Module, dst: nn.Module, x: torch.Tensor) -> None:
    a, b = _persistent(src), _persistent(dst)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert [k for k, p in dst.named_parameters() if not torch.equal(p, dict(src.named_parameters())[k])] == []
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))  # bit for bit, in eval mode


# -- BatchNorm in a CNN ---------------------------------------------------------------------------------------


def test_a_cnn_into_a_copy_of_itself_is_the_same_network_running_statistics_included():
    src, dst = _pair("tinynet_e", num_classes=10)
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    _same_network(src, dst, torch.randn(1, 3, 64, 64))
    assert report.tensors_left == [] and report.buffers_left == []
    assert report.details["buffers_carried"] == len(_persistent(dst)) > 0


@pytest.mark.parametrize("pair", [("tinynet_d", "tinynet_e"), ("resnet10t", "tinynet_e"), ("tinynet_e", "regnetx_002")])
def test_on_cnns_dpiat_struct_is_dpiat_bn_bit_for_bit_buffers_included(pair):
    """The same channel selection as the weights: the centre rule of dpiat_bn, on every BatchNorm it matched."""
    a, b = pair
    src = _scrambled(timm.create_model(a, num_classes=10), 0)
    d1 = _scrambled(timm.create_model(b, num_classes=10), 1)
    d2 = _scrambled(timm.create_model(b, num_classes=10), 1)
    r1, r2 = dpiat.transfer(src, d1, method="dpiat_bn"), dpiat.transfer(src, d2, method="dpiat_struct")
    for (name, x), (_, y) in zip(d1.state_dict().items(), d2.state_dict().items()):
        assert torch.equal(x, y), name
    assert r1.pairs == r2.pairs and r2.details["buffers_carried"] > 0
    assert r1.buffers_left == r2.buffers_left  # the BatchNorms of unmatched layers, if any


def test_faithful_dpiat_still_leaves_running_statistics_and_the_report_says_so():
    src, dst = _pair("tinynet_e", num_classes=10)
    before = {k: v.clone() for k, v in _persistent(dst).items()}
    report = dpiat.transfer(src, dst)
    assert all(torch.equal(v, before[k]) for k, v in _persistent(dst).items())  # faithful dpiat never changes
    assert report.buffers_left == list(before) and "blocks.0.0.bn1.running_mean" in report.buffers_left
    assert f"{len(before)} persistent buffers left (bn1.running_mean" in report.summary()
    assert report.as_dict()["buffers_left"] == list(before)


# -- a hybrid's BatchNorm stem ----------------------------------------------------------------------------------


def test_a_hybrid_with_a_batchnorm_stem_and_attention_is_the_same_network():
    src, dst = _pair("mobilevit_xxs", num_classes=10)
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    assert "stem.bn.running_mean" in _persistent(dst)
    _same_network(src, dst, torch.randn(1, 3, 64, 64))
    assert report.tensors_left == [] and report.buffers_left == []


# -- persistent buffers that are not a norm's -------------------------------------------------------------------


class Scaled(nn.Module):
    """A layer with a persistent buffer of its own beside its parameters, and a non-persistent one derived from
    its config (never carried: the target's stays)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.alpha = nn.Parameter(torch.ones(dim))
        self.register_buffer("shift", torch.zeros(dim))  # persistent
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # persistent, a count
        self.register_buffer("index", torch.arange(dim), persistent=False)  # from the config

    def forward(self, x):
        return self.fc(x) * self.alpha + self.shift + self.index.float() * 0


class Basis(nn.Module):
    """A parameter-free module holding a persistent matrix (as csatv2's DCT)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("basis", torch.eye(dim))

    def forward(self, x):
        return x @ self.basis


class Net(nn.Module):
    def __init__(self, dim: int = 8, depth: int = 2):
        super().__init__()
        self.basis = Basis(dim)
        self.blocks = nn.Sequential(*[Scaled(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        return self.head(self.blocks(self.basis(x)))


def test_persistent_buffers_of_any_module_are_carried_and_config_buffers_never():
    torch.manual_seed(0)
    src, dst = _scrambled(Net(), 0), _scrambled(Net(), 1)
    with torch.no_grad():
        dst.blocks[0].index.fill_(7)  # a buffer derived from the config: the target's own stays
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    assert torch.equal(dst.blocks[0].index, torch.full((8,), 7))
    with torch.no_grad():
        dst.blocks[0].index.copy_(torch.arange(8))
    _same_network(src, dst, torch.randn(2, 8))
    assert report.tensors_left == [] and report.buffers_left == []


def test_a_wider_source_gives_its_persistent_buffers_by_the_rule_of_a_parameter_of_that_shape():
    src, dst = _scrambled(Net(dim=12), 0), _scrambled(Net(dim=8), 1)
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    assert torch.equal(dst.blocks[0].steps, src.blocks[0].steps)
    assert torch.equal(dst.blocks[1].shift, src.blocks[1].shift[2:10])  # centre, as blocks[1].alpha
    assert torch.equal(dst.blocks[1].alpha, src.blocks[1].alpha[2:10])
    assert torch.equal(dst.basis.basis, src.basis.basis[2:10, 2:10])
    assert torch.equal(dst.blocks[0].steps, src.blocks[0].steps)
    assert report.buffers_left == []


def test_a_buffer_left_is_named_and_counted():
    """An integer table of another size is not a tensor to crop: it is left, named and counted."""
    class Indexed(Net):
        def __init__(self, dim):
            super().__init__(dim)
            self.blocks[0].register_buffer("table", torch.arange(dim * 2))

    src, dst = _scrambled(Indexed(12), 0), _scrambled(Indexed(8), 1)
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    assert report.buffers_left == ["blocks.0.table"]
    assert torch.equal(dst.blocks[0].table, torch.arange(16))
    assert "1 persistent buffer left (blocks.0.table; report.buffers_left)" in report.summary()


def test_the_zoo_check_sees_buffers_left_and_a_different_forward():
    """bench/measure/zoo_identity.py compares persistent buffers and the eval forward, not parameters only:
    faithful dpiat writes every parameter of tinynet_e and leaves its running statistics, which it now sees."""
    from bench.measure.zoo_identity import check

    struct, faithful = check("tinynet_e", ["dpiat_struct", "dpiat"])
    assert (struct["identical"], struct["buffers_equal"], struct["forward_equal"], struct["forward_finite"]) == (1, 1, 1, 1)
    assert (faithful["params_equal"], faithful["buffers_equal"], faithful["forward_equal"]) == (1, 0, 0)
    assert faithful["identical"] == 0 and "bn1.running_mean" in faithful["buffers_left"].split()
