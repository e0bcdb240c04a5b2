"""``dpiat_struct`` on users' own transformers, initialised from a timm ViT: q, k and v land in q, k and v (whole
heads kept), every LayerNorm is written, and the report names whatever stays at init.

Three attention layouts a user writes: nanoGPT's (``c_attn``, ``c_proj``, ``n_head``), ``nn.MultiheadAttention``
(packed ``in_proj_weight``), and a plain pre-norm block (``norm1, attn, norm2, mlp``, no placeholder modules,
which the authors' block rule dissolves into its parent)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import dpiat

DIM, HEADS, DEPTH = 64, 4, 2  # the source: 4 heads of 16
T_DIM, T_HEADS = 32, 2  # the targets: 2 heads of 16 -> source heads 1 and 2, input channels 16..47


class NanoAttention(nn.Module):  # nanoGPT's names
    def __init__(self, dim, n_head):
        super().__init__()
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.n_head = n_head

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, N, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.c_proj(y.transpose(1, 2).reshape(B, N, C))


class PlainAttention(nn.Module):  # timm's layout, nothing else: qkv, proj, num_heads
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class MHAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


def mlp(dim):
    return nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))


class Block(nn.Module):
    def __init__(self, dim, heads, attention, names=("norm1", "norm2")):
        super().__init__()
        self.names = names
        setattr(self, names[0], nn.LayerNorm(dim))
        self.attn = attention(dim, heads)
        setattr(self, names[1], nn.LayerNorm(dim))
        self.mlp = mlp(dim)

    def forward(self, x):
        x = x + self.attn(getattr(self, self.names[0])(x))
        return x + self.mlp(getattr(self, self.names[1])(x))


class TinyViT(nn.Module):
    """A user's ViT: patch conv, class token, position embedding, ``blocks``, final norm, head."""

    def __init__(self, attention, dim=T_DIM, heads=T_HEADS, depth=DEPTH, names=("norm1", "norm2"), final="norm"):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 65, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, attention, names) for _ in range(depth))
        self.final = final
        setattr(self, final, nn.LayerNorm(dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(getattr(self, self.final)(x)[:, 0])


def _source():
    torch.manual_seed(0)
    src = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=DIM, num_heads=HEADS,
                            depth=DEPTH, num_classes=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in src.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return src


def _fused(model, i):
    """(weight, bias) of block i's fused [q | k | v] projection, whichever layout holds it."""
    attn = model.blocks[i].attn
    if hasattr(attn, "mha"):
        return attn.mha.in_proj_weight, attn.mha.in_proj_bias
    lin = getattr(attn, "c_attn", None) or attn.qkv
    return lin.weight, lin.bias


def _out_proj(model, i):
    attn = model.blocks[i].attn
    return attn.mha.out_proj if hasattr(attn, "mha") else getattr(attn, "c_proj", None) or attn.proj


CASES = {
    "nanogpt": dict(attention=NanoAttention, names=("ln_1", "ln_2"), final="ln_f"),
    "multihead": dict(attention=MHAttention),
    "plain_prenorm": dict(attention=PlainAttention),
}


@pytest.mark.parametrize("case", CASES)
def test_a_custom_transformer_gets_q_k_v_from_q_k_v_and_every_norm(case):
    src = _source()
    dst = TinyViT(**CASES[case])
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    heads = slice(16, 48)  # source heads 1 and 2 (of 4, 16 rows each) = the centre 32 of 64 channels
    for i in range(DEPTH):
        a_w, a_b = _fused(src, i)
        b_w, b_b = _fused(dst, i)
        for part in range(3):  # q, k, v: rows of the same part, whole heads; input columns the centre 32
            rows = slice(part * DIM + heads.start, part * DIM + heads.stop)
            assert torch.equal(b_w[part * T_DIM:(part + 1) * T_DIM], a_w[rows, heads]), (i, part)
            assert torch.equal(b_b[part * T_DIM:(part + 1) * T_DIM], a_b[rows]), (i, part)
        # the output projection reads the heads q, k, v kept
        assert torch.equal(_out_proj(dst, i).weight, src.blocks[i].attn.proj.weight[heads, heads])
        names = CASES[case].get("names", ("norm1", "norm2"))
        for mine, theirs in zip(names, ("norm1", "norm2")):
            assert torch.equal(getattr(dst.blocks[i], mine).weight, getattr(src.blocks[i], theirs).weight[heads])
            assert torch.equal(getattr(dst.blocks[i], mine).bias, getattr(src.blocks[i], theirs).bias[heads])
    final = getattr(dst, CASES[case].get("final", "norm"))
    assert torch.equal(final.weight, src.norm.weight[heads])
    assert report.tensors_left == []
    assert "every target parameter tensor written" in report.summary()
    assert report.details["qkv_split_without_heads"] == []
    dst(torch.randn(2, 3, 32, 32))  # still a working network


def test_faithful_dpiat_leaves_these_norms_and_says_so():
    src, dst = _source(), TinyViT(PlainAttention)
    report = dpiat.transfer(src, dst)
    assert "blocks.0.norm1.weight" in report.tensors_left
    assert f"{len(report.tensors_left)} target parameter tensors left at init" in report.summary()


class HeadlessAttention(PlainAttention):
    """An attention that keeps its head count to itself (a local in forward, say)."""

    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        del self.num_heads


def test_a_fused_qkv_without_a_head_count_is_split_in_three_and_reported():
    src = _source()
    dst = TinyViT(HeadlessAttention, dim=DIM, heads=HEADS)  # the same width: q, k, v copied whole
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    for i in range(DEPTH):
        assert torch.equal(_fused(dst, i)[0], _fused(src, i)[0])
    assert report.details["qkv_split_without_heads"] == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    src_w = _fused(src, 0)[0]
    dst = TinyViT(HeadlessAttention, dim=T_DIM, heads=T_HEADS)  # narrower: each third centre-clipped on its own
    dpiat.transfer(src, dst, method="dpiat_struct")
    for part in range(3):
        rows = slice(part * DIM + 16, part * DIM + 48)
        assert torch.equal(_fused(dst, 0)[0][part * T_DIM:(part + 1) * T_DIM], src_w[rows, 16:48])
