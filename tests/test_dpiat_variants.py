"""The named variants of DPIAT (dpiat/variants.py) on hand-built models with known answers, identity
transfers, and their registration as transfer methods and init methods. The faithful method's own tests
(test_dpiat_*.py) are untouched by the variants."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

import dpiat
from dpiat.variants import _select_indices, rescale_rows, select_copy

VARIANTS = ["dpiat_bn", "dpiat_scaled", "dpiat_scaled_gammafloor", "dpiat_wsel", "dpiat_names"]


def _net(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


def _randomise_bn_stats(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.num_batches_tracked.fill_(7)


# -- registration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_is_a_transfer_method_and_an_init_of_the_same_name(name):
    assert name in dpiat.METHODS and name in dpiat.available_inits()
    assert dpiat.get_init(name).needs_source
    src, dst = _net(nn.Linear(4, 3)), _net(nn.Linear(4, 3))
    report = dpiat.initialize(name, dst, source=src)
    assert report["method"] == name and report["n_matched"] == 1
    assert torch.equal(dst[0].weight, src[0].weight)  # identical shapes: every variant copies exactly


def test_a_variant_rejects_options_in_one_line():
    with pytest.raises(dpiat.DpiatError, match="takes no options"):
        dpiat.initialize("dpiat_bn", _net(nn.Linear(2, 2)), source=_net(nn.Linear(2, 2)), alpha=1)


def test_an_unknown_method_suggests_the_variants():
    with pytest.raises(dpiat.UnknownNameError, match="dpiat_bn"):
        dpiat.transfer(_net(nn.Linear(2, 2)), _net(nn.Linear(2, 2)), method="dpiat_bm")


# -- dpiat_bn -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["tinynet_e", "resnet10t"])
def test_dpiat_bn_identity_transfer_reproduces_eval_outputs_exactly(arch):
    torch.manual_seed(0)
    src = timm.create_model(arch, num_classes=10).eval()
    _randomise_bn_stats(src)  # a trained network's statistics, not the defaults
    torch.manual_seed(1)
    dst = timm.create_model(arch, num_classes=10).eval()
    x = torch.randn(2, 3, 48, 48)
    report = dpiat.transfer(src, dst, method="dpiat_bn")
    assert report.details["bn_statistics_copied"] == sum(isinstance(m, nn.BatchNorm2d) for m in dst.modules())
    assert torch.equal(src(x), dst(x))
    faithful = timm.create_model(arch, num_classes=10).eval()
    dpiat.transfer(src, faithful)  # without the statistics the same weights give other outputs
    assert not torch.allclose(src(x), faithful(x))


def test_dpiat_bn_clips_running_statistics_like_the_affine_parameters():
    src = nn.BatchNorm1d(4)
    src.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    src.running_var.copy_(torch.tensor([5.0, 6.0, 7.0, 8.0]))
    src.num_batches_tracked.fill_(3)
    small, large = nn.BatchNorm1d(2), nn.BatchNorm1d(6)
    dpiat.transfer(_net(src), _net(small), method="dpiat_bn")
    assert small.running_mean.tolist() == [2.0, 3.0] and small.running_var.tolist() == [6.0, 7.0]  # centre crop
    assert int(small.num_batches_tracked) == 3
    dpiat.transfer(_net(src), _net(large), method="dpiat_bn")
    assert large.running_mean.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]  # pasted at offset 1, rest default
    assert large.running_var.tolist() == [1.0, 5.0, 6.0, 7.0, 8.0, 1.0]


def test_faithful_dpiat_still_leaves_running_statistics_alone():
    src = nn.BatchNorm1d(2)
    src.running_mean.fill_(9.0)
    dst = nn.BatchNorm1d(2)
    dpiat.transfer(_net(src), _net(dst))
    assert dst.running_mean.tolist() == [0.0, 0.0]


# -- dpiat_scaled ---------------------------------------------------------------------------------------


def test_dpiat_scaled_keeps_each_rows_energy_when_cropping_fan_in():
    src, dst = nn.Linear(4, 1, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        src.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    report = dpiat.transfer(_net(src), _net(dst), method="dpiat_scaled")
    factor = math.sqrt(30 / 13)  # the centre window [2, 3] holds 13 of the row's 30
    assert dst.weight[0].tolist() == pytest.approx([2 * factor, 3 * factor])
    assert dst.weight.pow(2).sum().item() == pytest.approx(30.0)
    assert report.details["rows_rescaled"] == 1


def test_dpiat_scaled_shrinks_a_pasted_row_with_its_random_remainder():
    src, dst = nn.Linear(2, 1, bias=False), nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        src.weight.copy_(torch.tensor([[3.0, 4.0]]))
        dst.weight.fill_(1.0)  # the target's "random" values
    dpiat.transfer(_net(src), _net(dst), method="dpiat_scaled")
    factor = 5 / math.sqrt(27)  # row [1, 3, 4, 1]: energy 27 -> the source's 25
    assert dst.weight[0].tolist() == pytest.approx([factor, 3 * factor, 4 * factor, factor])


def test_dpiat_scaled_leaves_rows_with_unchanged_fan_in_and_batchnorm_exact():
    src = _net(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6))
    dst = _net(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4))  # output channels cropped, fan-in (2x3x3) unchanged
    report = dpiat.transfer(src, dst, method="dpiat_scaled")
    assert torch.equal(dst[0].weight, src[0].weight[1:5]) and torch.equal(dst[1].weight, src[1].weight[1:5])
    assert report.details["rows_rescaled"] == 0


def test_rescale_rows_of_a_depthwise_kernel_pasted_3x3_into_5x5():
    src, dst = nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 5, bias=False)
    with torch.no_grad():
        src.weight.fill_(2.0)  # energy 9 * 4 = 36
        dst.weight.fill_(1.0)
    dpiat.clip_copy(src.weight, dst.weight)
    (factor,) = rescale_rows(src, dst)
    assert factor == pytest.approx(math.sqrt(36 / (36 + 16)))  # 16 ring elements of value 1
    assert dst.weight.pow(2).sum().item() == pytest.approx(36.0)


# -- dpiat_scaled_gammafloor ----------------------------------------------------------------------------


def test_gammafloor_lifts_only_scales_far_below_the_targets_own():
    src = _net(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.BatchNorm1d(2))
    with torch.no_grad():
        src[1].weight.copy_(torch.tensor([0.01, 0.02]))  # a zero-initialised residual scale, barely trained
        src[2].weight.copy_(torch.tensor([0.3, 0.4]))  # an ordinary trained scale: RMS 0.354 > 0.25
    dst = _net(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.BatchNorm1d(2))  # fresh: scales 1, RMS 1
    report = dpiat.transfer(src, dst, method="dpiat_scaled_gammafloor")
    rms = math.sqrt((0.01 ** 2 + 0.02 ** 2) / 2)
    assert dst[1].weight.tolist() == pytest.approx([0.01 * 0.25 / rms, 0.02 * 0.25 / rms])  # direction kept
    assert dst[1].weight.pow(2).mean().sqrt().item() == pytest.approx(0.25)
    assert dst[2].weight.tolist() == pytest.approx([0.3, 0.4])  # left as copied
    assert torch.equal(dst[1].bias, src[1].bias) and report.details["gammas_floored"] == ["1"]


def test_gammafloor_keeps_an_identity_transfer_exact():
    torch.manual_seed(0)
    src, dst = timm.create_model("tinynet_e").eval(), timm.create_model("tinynet_e").eval()
    report = dpiat.transfer(src, dst, method="dpiat_scaled_gammafloor")
    assert report.details["gammas_floored"] == [] and report.details["rows_rescaled"] == 0
    assert all(torch.equal(a, b) for a, b in zip(src.parameters(), dst.parameters()))


# -- dpiat_wsel -----------------------------------------------------------------------------------------


def test_weight_selection_indices_are_evenly_spaced():
    assert _select_indices(8, 4).tolist() == [0, 2, 4, 6]  # step 2 when the size divides
    assert _select_indices(6, 4).tolist() == [0, 1, 3, 4]  # floor(i * 6 / 4)
    assert _select_indices(1280, 1000).max().item() < 1280


def test_select_copy_channels_evenly_kernel_centre_and_paste_like_faithful():
    src = torch.arange(8 * 2 * 5 * 5, dtype=torch.float).view(8, 2, 5, 5)
    dst = torch.full((4, 4, 3, 3), -1.0)
    n = select_copy(src, dst)
    assert n == 4 * 2 * 9
    # out channels 0, 2, 4, 6; the 2 input channels pasted at offset 1 of 4; the kernel's centre 3x3
    assert torch.equal(dst[:, 1:3], src[[0, 2, 4, 6]][:, :, 1:4, 1:4])
    assert (dst[:, 0] == -1).all() and (dst[:, 3] == -1).all()


def test_dpiat_wsel_copies_batchnorm_statistics_by_selection():
    src = nn.BatchNorm1d(8)
    src.running_mean.copy_(torch.arange(8.0))
    dst = nn.BatchNorm1d(4)
    report = dpiat.transfer(_net(src), _net(dst), method="dpiat_wsel")
    assert dst.running_mean.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert report.details["bn_statistics_copied"] == 1


# -- dpiat_names ----------------------------------------------------------------------------------------


class _Small(nn.Module):
    def __init__(self, width: int, head_name: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, width, 3)
        setattr(self, head_name, nn.Linear(width, 10))


def test_dpiat_names_copies_same_named_layers_whole_and_the_rest_faithfully():
    torch.manual_seed(0)
    src = _Small(16, "fc")
    _randomise_bn_stats(src)
    dst = _Small(12, "classifier")
    report = dpiat.transfer(src, dst, method="dpiat_names")
    assert report.details["exact_name_matches"] == 2  # stem and bn: same names and shapes
    assert torch.equal(dst.stem.weight, src.stem.weight) and torch.equal(dst.bn.running_mean, src.bn.running_mean)
    assert int(dst.bn.num_batches_tracked) == 7  # everything load_state_dict would copy
    assert torch.equal(dst.body.weight, src.body.weight[2:14])  # another width: the DP partner, centre clip
    assert torch.equal(dst.classifier.weight, src.fc.weight[:, 2:14])  # another name: the DP partner
    assert ("stem", "stem") in report.pairs and ("fc", "classifier") in report.pairs


def test_dpiat_names_prefers_the_same_name_over_the_dp_partner():
    # The DP pairs layers by shape and order; a same-named layer of identical shape wins over that.
    class A(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)

    class B(nn.Module):
        def __init__(self):
            super().__init__()
            self.second = nn.Linear(4, 4)

    src, dst = A(), B()
    faithful = dpiat.transfer(src, B(), method="dpiat")
    report = dpiat.transfer(src, dst, method="dpiat_names")
    assert ("first", "second") in faithful.pairs  # the DP's choice: the first source layer (skips win ties)
    assert ("second", "second") in report.pairs and torch.equal(dst.second.weight, src.second.weight)
