"""Weight selection (Xu et al. 2024) exactly as published: by state-dict key, uniform element selection.

The reference below is written from the rule, not from dpiat/wsel.py: along each dimension of size n selected
down to m, the indices 0, n/m, 2n/m, ... when m divides n, else round(linspace(0, n - 1, m)) as the authors'
code computes it (torch's float32 linspace, round half to even).
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
import torch

import dpiat
from dpiat.wsel import uniform_indices


def reference_indices(n: int, m: int) -> list[int]:
    if n % m == 0:
        return [i * (n // m) for i in range(m)]
    return [int(v) for v in torch.linspace(0, n - 1, m).round().tolist()]


def reference_select(src: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    out = src
    for dim, m in enumerate(shape):
        out = out.index_select(dim, torch.tensor(reference_indices(out.shape[dim], m), dtype=torch.long))
    return out


def noisy(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded values in every float entry (parameters and buffers), so that a wrong index cannot pass."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g).abs() + 0.1)
            elif t.dim() == 0:
                t.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
    return model


def check_exact(src: torch.nn.Module, dst: torch.nn.Module) -> dict:
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    source = src.state_dict()
    report = dpiat.transfer(src, dst, method="weight_selection")
    written = 0
    for key, value in dst.state_dict().items():
        s = source.get(key)
        if s is not None and s.dim() == value.dim() and all(a >= b for a, b in zip(s.shape, value.shape)):
            assert torch.equal(value, reference_select(s, tuple(value.shape)).to(value.dtype)), key
            written += 1
        else:
            assert torch.equal(value, before[key]), f"{key} changed, but the rule leaves it"
            assert key in report.details["entries_left"]
    assert report.details["entries_written"] == written
    return report.as_dict()


def test_tinynet_d_to_e_is_exact_to_the_rule_parameters_and_buffers():
    src = noisy(dpiat.create_model("tinynet_d", num_classes=10, in_chans=1), 0)
    dst = noisy(dpiat.create_model("tinynet_e", num_classes=10, in_chans=1), 1)
    report = check_exact(src, dst)
    assert report["fraction_overwritten"] == 1.0 and report["tensors_left"] == []
    assert report["details"]["entries_written"] == report["details"]["entries_total"]  # buffers too
    # an entry whose selection is not a plain stride (144 channels down to 96: linspace) is in the pair
    shapes = {(s, d) for s, d in ((src.state_dict()[k].shape, v.shape) for k, v in dst.state_dict().items())}
    assert any(a % b for s, d in shapes for a, b in zip(s, d))
    bn = dst.blocks[1][0].bn1
    assert torch.equal(bn.num_batches_tracked, src.blocks[1][0].bn1.num_batches_tracked)


def test_vit_small_to_tiny_is_exact_to_the_rule():
    src = noisy(dpiat.create_model("vit_small_patch16_224", num_classes=10, img_size=32), 2)
    dst = noisy(dpiat.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32), 3)
    report = check_exact(src, dst)
    assert report["fraction_overwritten"] == 1.0
    # every other channel of the fused qkv projection (1152 -> 576 rows), as the published rule takes them
    q = src.blocks[0].attn.qkv.weight
    assert torch.equal(dst.blocks[0].attn.qkv.weight, q[0::2, 0::2])


def test_indices_follow_the_published_computation_where_exact_arithmetic_would_differ():
    # 48 -> 23: linspace in float32 puts element 11 a hair off 23.5 (exact: 23.5, rounded half to even: 24)
    exact = [round(Fraction(i * 47, 22)) for i in range(23)]
    assert uniform_indices(48, 23).tolist() == reference_indices(48, 23)
    assert uniform_indices(48, 23).tolist() != exact
    assert uniform_indices(8, 4).tolist() == [0, 2, 4, 6] and uniform_indices(5, 3).tolist() == [0, 2, 4]
    with pytest.raises(ValueError):
        uniform_indices(3, 4)


def test_a_larger_target_dimension_or_other_rank_leaves_the_entry_and_names_it():
    src = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    dst = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Linear(16, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = dpiat.transfer(src, dst, method="weight_selection")
    # 0.weight (16, 4) and 1.weight (2, 16) are larger than the source's: left; the biases 0.bias too (16 > 8)
    assert set(report.details["entries_left"]) == {"0.weight", "0.bias", "1.weight"}
    assert set(report.tensors_left) == {"0.weight", "0.bias", "1.weight"}
    assert torch.equal(dst[1].bias, src[1].bias)
    assert any("weight_selection wrote" in str(w.message) for w in caught)  # under half of the target written


def test_across_families_it_writes_almost_nothing_and_warns():
    src = dpiat.create_model("resnet10t", num_classes=10, in_chans=1)
    dst = dpiat.create_model("tinynet_e", num_classes=10, in_chans=1)
    with pytest.warns(UserWarning, match="weight_selection wrote"):
        report = dpiat.transfer(src, dst, method="weight_selection")
    assert report.fraction_overwritten < 0.01 and len(report.tensors_left) > 100


def test_it_is_an_init_method_of_the_harness():
    assert dpiat.get_init("weight_selection").needs_source
    dst = dpiat.create_model("test_efficientnet", num_classes=10, in_chans=1)
    out = dpiat.initialize("weight_selection", dst, source=dpiat.create_model("test_efficientnet", num_classes=10,
                                                                                in_chans=1))
    assert out["method"] == "weight_selection" and out["fraction_overwritten"] == 1.0


def test_its_report_is_plain_json_and_says_there_is_no_dp_value():
    import json

    src = dpiat.create_model("test_efficientnet", num_classes=10, in_chans=1)
    report = dpiat.transfer(src, dpiat.create_model("test_efficientnet", num_classes=10, in_chans=1),
                            method="weight_selection")
    text = json.dumps(report.as_dict(), allow_nan=False)  # run.json must stay strict JSON
    assert json.loads(text)["value"] is None and "no DP value (matched by key)" in report.summary()
