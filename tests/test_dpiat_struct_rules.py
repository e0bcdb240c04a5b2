"""``dpiat_struct``'s general rule (dpiat/struct_rules.py): every parameter the DP leaves unwritten is matched
with its module; one architecture of each timm family that needed it comes out identical, and the rules of
layout (gates, experts, heads, bias tables, position grids) put each source value where it belongs."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import CondConv2d
from torch import nn

import dpiat
from bench.measure.zoo_identity import check

# One pretrained architecture per timm family whose identity transfer needed the general rule (the smallest of
# each, results/zoo/identity.csv), and what it needed.
FAMILIES = {
    "eca_botnext26ts_256": "BoT PosEmbedRel height_rel / width_rel",
    "coat_tiny": "numbered tokens cls_token1..4",
    "convit_tiny": "gating_param",
    "convnextv2_atto": "GRN",
    "crossvit_tiny_240": "pos_embed_0 / cls_token_0",
    "edgenext_xx_small": "XCA temperature",
    "efficientformerv2_s0": "attention_biases",
    "test_efficientnet_evos": "EvoNorm",
    "efficientvim_m1": "free parameters (alpha, A, D, weights)",
    "efficientvit_m0": "attention_biases",
    "eva02_tiny_patch14_224": "q_bias / v_bias",
    "fastvit_t8": "LayerScale2d (C,1,1)",
    "hgnetv2_b0": "LearnableAffineBlock",
    "levit_128s": "attention_biases",
    "poolformerv2_s12": "Scale, StarReLU",
    "resmlp_12_224": "Affine, ls1 / ls2",
    "swiftformer_xs": "LayerScale2d",
    "test_nfnet": "ScaledStdConv2d gain",
    "test_vit3": "attention pooling latent",
    "tiny_vit_5m_224": "attention_biases",
    "visformer_tiny": "pos_embed1..3",
    "xcit_nano_12_p16_224": "gamma1/2/3, temperature",
    "tf_efficientnet_cc_b0_4e": "CondConv experts",
}


@pytest.mark.parametrize("name", FAMILIES)
def test_one_architecture_per_family_comes_out_identical(name):
    (row,) = check(name, ["dpiat_struct"])
    assert row["error"] == "" and row["identical"] == 1, row["tensors_left"]


def _filled(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def _gates(rows: int, gates: int) -> torch.Tensor:
    """Row labels 100 * gate + position in gate."""
    n = rows // gates
    return torch.tensor([100.0 * g + i for g in range(gates) for i in range(n)])


class Recurrent(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.rnn = nn.LSTM(8, hidden)
        self.fc = nn.Linear(hidden, 8)  # a layer the DP matches, so the modules correspond


def test_lstm_gates_land_in_the_same_gates():
    src, dst = _filled(Recurrent(16)), Recurrent(8)
    with torch.no_grad():
        src.rnn.weight_ih_l0.copy_(_gates(64, 4)[:, None].expand(-1, 8))
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    expected = torch.tensor([100.0 * g + i for g in range(4) for i in range(4, 12)])  # the centre 8 of 16, per gate
    assert torch.equal(dst.rnn.weight_ih_l0[:, 0], expected)
    assert report.tensors_left == []


class Experts(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.routing = nn.Linear(8, 4)
        self.conv = CondConv2d(width, width, 3, num_experts=4, bias=True)


def test_condconv_experts_keep_their_kernel_layout():
    src, dst = _filled(Experts(16)), Experts(8)
    dpiat.transfer(src, dst, method="dpiat_struct")
    a = src.conv.weight.reshape(4, 16, 16, 3, 3)
    b = dst.conv.weight.reshape(4, 8, 8, 3, 3)
    assert torch.equal(b, a[:, 4:12, 4:12])  # per expert, the centre 8 output and input channels, whole kernels
    assert torch.equal(dst.conv.bias, src.conv.bias[:, 4:12])


def _eva(dim, heads):
    return timm.create_model("eva02_tiny_patch14_224", img_size=28, patch_size=14, embed_dim=dim, num_heads=heads,
                             depth=1, num_classes=10)


def test_separate_q_and_v_biases_keep_whole_heads():
    torch.manual_seed(0)
    src, dst = _filled(_eva(64, 4)), _eva(32, 4)  # 4 heads of 16 -> 4 heads of 8
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    keep = torch.tensor([16 * h + i for h in range(4) for i in range(4, 12)])  # the centre 8 of every head
    for attr in ("q_bias", "v_bias"):
        assert torch.equal(getattr(dst.blocks[0].attn, attr), getattr(src.blocks[0].attn, attr)[keep]), attr
    assert "blocks.0.attn.q_bias" in report.details["module_rule"]


class Biased(nn.Module):
    """An attention with LeViT's per-head table of offsets over an r x r grid, and MViT's 1-D tables."""

    def __init__(self, heads, r):
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(8 * heads, 24 * heads)
        self.attention_biases = nn.Parameter(torch.zeros(heads, r * r))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * r - 1, 8))


def test_bias_tables_are_resampled_to_the_target_grid():
    src, dst = _filled(Biased(4, 4)), Biased(2, 2)
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    image = F.interpolate(src.attention_biases.detach().reshape(1, 4, 4, 4), size=(2, 2), mode="bicubic",
                          align_corners=False, antialias=True)
    assert torch.equal(dst.attention_biases, image.reshape(4, 4)[1:3])  # heads 1, 2 of 4: the ones qkv keeps
    line = F.interpolate(src.rel_pos_h.detach().t()[None], size=3, mode="linear", align_corners=False)[0].t()
    assert torch.equal(dst.rel_pos_h, line)
    assert sorted(report.details["resampled"]) == ["attention_biases", "rel_pos_h"]


def test_numbered_position_grids_are_resampled():
    torch.manual_seed(0)
    src = _filled(timm.create_model("visformer_tiny", img_size=64, num_classes=10))
    dst = timm.create_model("visformer_tiny", img_size=32, num_classes=10)
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    a = src.pos_embed1.detach()  # [1, C, 8, 8] -> [1, C, 4, 4]
    assert a.shape[2:] == (8, 8) and dst.pos_embed1.shape[2:] == (4, 4)
    expected = F.interpolate(a, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(dst.pos_embed1, expected)
    assert {"pos_embed1", "pos_embed2", "pos_embed3"} <= set(report.details["resampled"])


def test_swin_v2_gets_every_norm_from_swin_despite_post_norm_order():
    kw = dict(img_size=64, window_size=4, num_classes=10)
    torch.manual_seed(0)
    src = _filled(timm.create_model("swin_tiny_patch4_window7_224", **kw))
    dst = timm.create_model("swinv2_tiny_window8_256", **kw)
    report = dpiat.transfer(src, dst, method="dpiat_struct")
    norms = [n for n, m in dst.named_modules() if isinstance(m, nn.LayerNorm)]
    assert not [n for n in report.tensors_left if n.rsplit(".", 1)[0] in norms]
    # what Swin has no counterpart for stays at init, named: V2's logit scale, split q/v biases, bias MLP
    assert {n.rsplit(".", 1)[-1] for n in report.tensors_left} == {"logit_scale", "q_bias", "v_bias", "weight", "bias"}
    assert all("cpb_mlp" in n or n.endswith(("logit_scale", "q_bias", "v_bias")) for n in report.tensors_left)
    # block 0's post-norms: norm1 from Swin's norm1, norm2 from Swin's norm2 (the same width)
    assert torch.equal(dst.layers[0].blocks[0].norm2.weight, src.layers[0].blocks[0].norm2.weight)


def test_pvt_v2_b2_into_b1_overwrites_everything():
    with torch.device("meta"):
        src, dst = timm.create_model("pvt_v2_b2"), timm.create_model("pvt_v2_b1")
    src, dst = src.to_empty(device="cpu"), dst.to_empty(device="cpu")
    assert dpiat.transfer(src, dst, method="dpiat_struct").fraction_overwritten >= 0.9
    assert dpiat.transfer(src, dst).fraction_overwritten < 0.6  # faithful: block 0 of stages 1-3 unmatched


def test_zoo_script_stops_on_ctrl_c_with_its_rows_kept_and_resumes(tmp_path, monkeypatch, capsys):
    """bench/measure/zoo_identity.py: Ctrl-C after the first architecture is one line and exit 130, the finished
    row stays in the CSV, and the same command goes on with the rest only."""
    import bench.measure.zoo_identity as zoo

    out = tmp_path / "identity.csv"
    threads = torch.get_num_threads()
    argv = ["--only", "test_vit,test_vit2", "--methods", "dpiat_struct", "--out", str(out)]
    real_check, calls = zoo.check, []

    def check_then_ctrl_c(name, methods):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_check(name, methods)

    monkeypatch.setattr(zoo, "check", check_then_ctrl_c)
    monkeypatch.setattr(zoo.torch, "set_num_threads", lambda n: None)  # main pins 1 thread: not this process's
    assert zoo.main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    rows = zoo.read_rows(out)
    assert [r["name"] for r in rows] == ["test_vit"] and rows[0]["identical"] == "1"
    monkeypatch.setattr(zoo, "check", real_check)
    assert zoo.main(argv) == 0
    assert [r["name"] for r in zoo.read_rows(out)] == ["test_vit", "test_vit2"]
    assert "identical (parameters, persistent buffers and eval forward) on 2 of 2" in capsys.readouterr().out
    assert torch.get_num_threads() == threads  # the suite's later in-process runs keep their thread count
