"""``dpiat_struct`` (dpiat/struct.py): the structure-aware variant for transformers and LayerNorm networks.

Identity transfers (a network into a fresh copy of its own architecture reproduces its outputs exactly), q, k
and v landing in q, k and v with whole heads kept, norms, layer scales, tokens, position embeddings and Swin's
bias tables arriving where they should, exactly what faithful ``dpiat`` does on CNNs, and the similarity."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

import dpiat
from dpiat.struct import standardize_struct


def _scramble(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter replaced by random values, so that nothing can match the target by accident
    (LayerNorms start at 1 and 0 in both networks)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def _tiny_vit(**kw) -> nn.Module:
    args = dict(img_size=32, patch_size=4, depth=2, num_classes=10)
    args.update(kw)
    return timm.create_model("vit_tiny_patch16_224", **args)


def _tiny_swin(**kw) -> nn.Module:
    args = dict(img_size=32, patch_size=2, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(2, 4),
                num_classes=10)
    args.update(kw)
    return timm.create_model("swin_tiny_patch4_window7_224", **args)


# -- registration ---------------------------------------------------------------------------------------


def test_dpiat_struct_is_a_transfer_method_an_init_and_a_similarity_method():
    assert "dpiat_struct" in dpiat.METHODS and "dpiat_struct" in dpiat.available_inits()
    assert dpiat.get_init("dpiat_struct").needs_source
    src, dst = _scramble(_tiny_vit()), _tiny_vit()
    report = dpiat.initialize("dpiat_struct", dst, source=src)
    assert report["method"] == "dpiat_struct" and report["fraction_overwritten"] == 1.0
    assert dpiat.similarity(src, dst, method="dpiat_struct") == 1.0


def test_an_unknown_similarity_method_suggests_close_names():
    with pytest.raises(dpiat.UnknownNameError, match="dpiat_struct"):
        dpiat.similarity("resnet10t", "tinynet_e", method="dpiat_strct")


# -- identity -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda: _tiny_vit(),
    lambda: _tiny_vit(reg_tokens=2, init_values=0.1, qk_norm=True),
    lambda: timm.create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=4, depth=2, num_classes=10),
    lambda: timm.create_model("convnext_atto", num_classes=10),
    lambda: _tiny_swin(),
], ids=["vit", "vit_reg_ls_qknorm", "deit_distilled", "convnext_atto", "swin"])
def test_identity_transfer_reproduces_outputs_exactly(build):
    torch.manual_seed(0)
    src = _scramble(build()).eval()
    torch.manual_seed(1)
    dst = build().eval()
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    assert report.n_matched == report.n_target_layers
    assert report.tensors_left == []
    assert report.fraction_overwritten == 1.0
    for (name, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_faithful_dpiat_does_not_reproduce_a_vit_which_is_why_the_variant_exists():
    src, dst = _scramble(_tiny_vit()).eval(), _tiny_vit().eval()
    report = dpiat.transfer(src, dst)
    assert report.fraction_overwritten < 1.0
    assert not torch.equal(src.pos_embed, dst.pos_embed)


# -- q, k, v and heads ----------------------------------------------------------------------------------


def _labelled_attention(dim: int, heads: int) -> Attention:
    """An attention whose qkv rows hold 100*(1 + part) + 10*head + position-in-head (part q=0, k=1, v=2), and
    whose proj columns hold 10*head + position-in-head: where every value came from is readable."""
    attn = Attention(dim, num_heads=heads, qkv_bias=True)
    hd = dim // heads
    with torch.no_grad():
        rows = torch.tensor([100.0 * (1 + p) + 10 * h + i for p in range(3) for h in range(heads) for i in range(hd)])
        attn.qkv.weight.copy_(rows[:, None].expand(-1, dim))
        attn.qkv.bias.copy_(rows)
        cols = torch.tensor([10.0 * h + i for h in range(heads) for i in range(hd)])
        attn.proj.weight.copy_(cols[None, :].expand(dim, -1))
    return attn


def _labels(dst: Attention, part: int) -> torch.Tensor:
    n = dst.qkv.weight.shape[0] // 3
    return dst.qkv.weight[part * n:(part + 1) * n, 0]


def test_q_k_v_land_in_q_k_v_and_whole_heads_are_kept_by_head_index():
    src = nn.Sequential(_labelled_attention(32, 4))  # 4 heads of 8
    dst = nn.Sequential(Attention(16, num_heads=2, qkv_bias=True))  # 2 heads of 8
    dpiat.transfer(src, dst, method="dpiat_struct")
    attn = dst[0]
    for part in range(3):
        expected = torch.tensor([100.0 * (1 + part) + 10 * h + i for h in (1, 2) for i in range(8)])  # heads 1, 2
        assert torch.equal(_labels(attn, part), expected), part
        n = 16
        assert torch.equal(attn.qkv.bias[part * n:(part + 1) * n], expected)
    proj_cols = torch.tensor([10.0 * h + i for h in (1, 2) for i in range(8)])
    assert torch.equal(attn.proj.weight[0], proj_cols)  # proj reads the heads qkv kept


def test_faithful_dpiat_mixes_q_k_v_on_the_same_pair():
    src = nn.Sequential(_labelled_attention(32, 4))
    dst = nn.Sequential(Attention(16, num_heads=2, qkv_bias=True))
    dpiat.transfer(src, dst)
    q = _labels(dst[0], 0)
    assert (q >= 200).any()  # the target's queries received key rows: the fused tensor was cropped as one


def test_head_dim_is_cropped_inside_each_head_when_head_sizes_differ():
    src = nn.Sequential(_labelled_attention(32, 2))  # 2 heads of 16
    dst = nn.Sequential(Attention(16, num_heads=2, qkv_bias=True))  # 2 heads of 8
    dpiat.transfer(src, dst, method="dpiat_struct")
    for part in range(3):
        expected = torch.tensor([100.0 * (1 + part) + 10 * h + i for h in range(2) for i in range(4, 12)])
        assert torch.equal(_labels(dst[0], part), expected)
    assert torch.equal(dst[0].proj.weight[0], torch.tensor([10.0 * h + i for h in range(2) for i in range(4, 12)]))


def test_a_smaller_source_is_pasted_head_by_head_into_the_centre():
    src = nn.Sequential(_labelled_attention(8, 2))  # 2 heads of 4
    dst = nn.Sequential(Attention(16, num_heads=4, qkv_bias=True))  # 4 heads of 4
    before = dst[0].qkv.weight.detach().clone()
    dpiat.transfer(src, dst, method="dpiat_struct")
    q = dst[0].qkv.weight[:16]  # target heads 1 and 2 hold source heads 0 and 1, in input columns 4..7
    assert torch.equal(q[4:12, 4:8], torch.tensor([100.0 + 10 * h + i for h in range(2) for i in range(4)])[:, None]
                       .expand(-1, 4))
    assert torch.equal(q[:4], before[:4]) and torch.equal(q[12:], before[12:16])


# -- norms, layer scales, tokens, position embeddings ---------------------------------------------------


def test_norms_layer_scales_tokens_and_a_resampled_position_embedding_arrive():
    torch.manual_seed(0)
    src = _scramble(_tiny_vit(embed_dim=64, num_heads=4, reg_tokens=2, init_values=0.1))  # grid 8x8
    dst = _tiny_vit(embed_dim=32, num_heads=2, reg_tokens=2, init_values=0.1, patch_size=8)  # grid 4x4
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    w = slice(16, 48)  # the centre 32 of 64 channels
    assert torch.equal(dst.cls_token, src.cls_token[..., w])
    assert torch.equal(dst.reg_token, src.reg_token[..., w])
    assert torch.equal(dst.blocks[1].norm2.weight, src.blocks[1].norm2.weight[w])
    assert torch.equal(dst.blocks[1].norm2.bias, src.blocks[1].norm2.bias[w])
    assert torch.equal(dst.blocks[0].ls1.gamma, src.blocks[0].ls1.gamma[w])
    assert torch.equal(dst.norm.weight, src.norm.weight[w])
    # prefix rows (class, registers) as they are; the 8x8 grid resampled to 4x4, then the width cropped
    assert torch.equal(dst.pos_embed[:, :3], src.pos_embed[:, :3, w])
    grid = src.pos_embed[:, 3:].reshape(1, 8, 8, 64).permute(0, 3, 1, 2)
    small = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
    expected = small.permute(0, 2, 3, 1).reshape(1, 16, 64)[..., w]
    assert torch.equal(dst.pos_embed[:, 3:], expected)
    assert report.details["resampled"] == ["pos_embed"]
    assert report.tensors_left == []


def test_convnext_layernorms_and_layer_scale_gammas_arrive():
    torch.manual_seed(0)
    src = _scramble(timm.create_model("convnext_pico", num_classes=10))  # widths 64..512
    dst = timm.create_model("convnext_atto", num_classes=10)  # widths 40..320
    dpiat.transfer(src, dst, method="dpiat_struct")
    w = slice(12, 52)  # centre 40 of 64
    assert torch.equal(dst.stem[1].weight, src.stem[1].weight[w])  # LayerNorm2d
    assert torch.equal(dst.stages[0].blocks[0].gamma, src.stages[0].blocks[0].gamma[w])
    assert torch.equal(dst.stages[0].blocks[0].norm.weight, src.stages[0].blocks[0].norm.weight[w])
    # faithful dpiat leaves all of these at the target's init
    dst2 = timm.create_model("convnext_atto", num_classes=10)
    init = dst2.stages[0].blocks[0].gamma.detach().clone()
    dpiat.transfer(src, dst2)
    assert torch.equal(dst2.stages[0].blocks[0].gamma, init)


def test_swin_bias_tables_are_resampled_to_the_window_and_keep_the_heads_of_qkv():
    torch.manual_seed(0)
    src = _scramble(_tiny_swin(embed_dim=32, num_heads=(4, 4)))  # window 4: table 7x7, 4 heads of 8
    dst = _tiny_swin(embed_dim=24, window_size=2, num_heads=(3, 3))  # window 2: table 3x3, 3 heads of 8
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    a = src.layers[0].blocks[0].attn.relative_position_bias_table  # (49, 4)
    b = dst.layers[0].blocks[0].attn.relative_position_bias_table  # (9, 3)
    image = a.t().reshape(1, 4, 7, 7)
    table = F.interpolate(image, size=(3, 3), mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(b, table.reshape(4, 9).t()[:, 0:3])  # heads 0..2 of 4 (offset (4-3)//2), as in qkv
    q_src, q_dst = src.layers[0].blocks[0].attn.qkv.weight, dst.layers[0].blocks[0].attn.qkv.weight
    assert torch.equal(q_dst[:24], q_src[0:24, 4:28])  # q: heads 0..2 of 4; the centre 24 input channels
    assert len(report.details["resampled"]) == 2


def test_swin_patch_merging_keeps_the_four_positions_apart():
    torch.manual_seed(0)
    src = _scramble(_tiny_swin(embed_dim=32, num_heads=(4, 4)))
    dst = _tiny_swin(embed_dim=24, num_heads=(3, 3))
    dpiat.transfer(src, dst, method="dpiat_struct")
    a = src.layers[1].downsample.reduction.weight  # (64, 4 * 32)
    b = dst.layers[1].downsample.reduction.weight  # (48, 4 * 24)
    expected = a[8:56].reshape(48, 4, 32)[:, :, 4:28].reshape(48, 96)  # per position, the centre channels
    assert torch.equal(b, expected)
    n_a, n_b = src.layers[1].downsample.norm.weight, dst.layers[1].downsample.norm.weight
    assert torch.equal(n_b, n_a.reshape(4, 32)[:, 4:28].reshape(96))


# -- CNNs: exactly what dpiat does ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["tinynet_e", "resnet10t", "mobilenetv3_small_050", "regnetx_002"])
def test_cnn_structure_is_the_faithful_one(arch):
    with torch.device("meta"):
        model = timm.create_model(arch)
    assert standardize_struct(model).tree() == dpiat.standardize(model).tree()


@pytest.mark.parametrize("pair", [("resnet10t", "tinynet_e"), ("mobilenetv3_small_050", "tinynet_e"),
                                  ("tinynet_e", "regnetx_002")])
def test_on_cnns_dpiat_struct_writes_exactly_what_dpiat_writes(pair):
    a, b = pair
    torch.manual_seed(0)
    src = _scramble(timm.create_model(a, num_classes=10))
    torch.manual_seed(1)
    d1 = timm.create_model(b, num_classes=10)
    d2 = timm.create_model(b, num_classes=10)
    d2.load_state_dict(d1.state_dict())
    r1, r2 = dpiat.transfer(src, d1), dpiat.transfer(src, d2, method="dpiat_struct")
    assert r1.pairs == r2.pairs and r1.value == r2.value
    assert r1.elements_overwritten == r2.elements_overwritten
    for (name, x), (_, y) in zip(d1.state_dict().items(), d2.state_dict().items()):
        assert torch.equal(x, y), name
    assert dpiat.similarity(a, b) == dpiat.similarity(a, b, method="dpiat_struct")


# -- similarity -----------------------------------------------------------------------------------------


def test_struct_similarity_is_symmetric_and_one_on_itself():
    names = ["vit_small_patch16_224", "vit_tiny_patch16_224", "convnext_atto"]
    m = dpiat.similarity_matrix(names, method="dpiat_struct")
    assert all(m[i][i] == 1.0 for i in range(3))
    assert all(m[i][j] == m[j][i] and 0 < m[i][j] < 1 for i in range(3) for j in range(3) if i != j)


def test_struct_similarity_tells_two_vit_sizes_from_a_convnext_better_than_dpiat():
    close = ("vit_small_patch16_224", "vit_tiny_patch16_224")
    far = ("convnext_tiny", "vit_tiny_patch16_224")
    faithful = dpiat.similarity(*close) / dpiat.similarity(*far)
    struct = dpiat.similarity(*close, method="dpiat_struct") / dpiat.similarity(*far, method="dpiat_struct")
    assert struct > 1.5 > faithful  # measured: 1.62 and 1.17
    assert dpiat.rank_sources("vit_tiny_patch16_224", list(far[:1]) + list(close[:1]),
                              method="dpiat_struct")[0][0] == close[0]
