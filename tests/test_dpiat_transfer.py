"""Matching, centre clip copy, transfer and similarity: faithful to method.md, on real timm models."""

import pytest
import timm
import torch
from torch import nn

import dpiat
from dpiat.alignment import Aligner
from dpiat.clip import clip_copy, clip_windows
from tests import spec_reference as ref


def meta(name, **kw):
    with torch.device("meta"):
        return timm.create_model(name, **kw)


# ----------------------------------------------------------------------------------------- centre clip
def test_3x3_pasted_into_the_centre_of_5x5_keeps_the_rest():
    dst = torch.full((2, 2, 5, 5), -7.0)
    src = torch.arange(2 * 2 * 9, dtype=torch.float32).reshape(2, 2, 3, 3)
    assert clip_copy(src, dst) == 36
    assert torch.equal(dst[:, :, 1:4, 1:4], src)
    border = torch.ones(5, 5, dtype=torch.bool)
    border[1:4, 1:4] = False
    assert (dst[:, :, border] == -7.0).all()


def test_5x5_cropped_to_its_centre_3x3():
    src = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    dst = torch.zeros(1, 1, 3, 3)
    clip_copy(src, dst)
    assert torch.equal(dst, src[:, :, 1:4, 1:4])


def test_channels_take_the_middle_slice_and_odd_offsets_round_down():
    src = torch.arange(10, dtype=torch.float32)
    dst = torch.zeros(3)
    clip_copy(src, dst)  # offset floor((10 - 3) / 2) = 3
    assert dst.tolist() == [3.0, 4.0, 5.0]
    big = torch.zeros(10)
    clip_copy(torch.ones(3), big)  # pasted at floor(7 / 2) = 3
    assert big.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert clip_windows((1000, 8), (100, 8))[0][0] == slice(450, 550)  # a 1000-way head into 100: rows 450..549


def test_mixed_paste_and_crop_per_dimension():
    src = torch.arange(6 * 2, dtype=torch.float32).reshape(6, 2)
    dst = torch.zeros(4, 4)
    clip_copy(src, dst)
    assert torch.equal(dst[:, 1:3], src[1:5, :])
    assert (dst[:, 0] == 0).all() and (dst[:, 3] == 0).all()


def test_batchnorm_copies_gamma_beta_only_and_bias_follows_weight():
    torch.manual_seed(0)
    src = nn.Sequential(nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8))
    dst = nn.Sequential(nn.Conv2d(3, 4, 5, bias=True), nn.BatchNorm2d(4))
    with torch.no_grad():
        src[1].running_mean.fill_(3.0)
        src[1].running_var.fill_(9.0)
        src[1].weight.normal_()
        src[1].bias.normal_()
    src[1].num_batches_tracked.fill_(17)
    dst_before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = dpiat.transfer(src, dst)
    assert report.n_matched == 2
    assert torch.equal(dst[1].weight, src[1].weight[2:6]) and torch.equal(dst[1].bias, src[1].bias[2:6])
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(dst.state_dict()[k], dst_before[k])  # BN statistics are NOT transferred
    assert torch.equal(dst[0].bias, src[0].bias[2:6])
    assert torch.equal(dst[0].weight[:, :, 1:4, 1:4], src[0].weight[2:6])  # 3x3 into the centre of 5x5
    assert torch.equal(dst[0].weight[:, :, 0], dst_before["0.weight"][:, :, 0])


def test_no_bias_on_one_side_copies_the_weight_only():
    src, dst = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=True)
    b = dst.bias.detach().clone()
    dpiat.transfer(nn.Sequential(src), nn.Sequential(dst))
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, b)


# -------------------------------------------------------------------------------------------- matching
@pytest.mark.parametrize("src,dst", [("tf_efficientnet_b2", "tf_efficientnet_b0"), ("mixnet_s", "tinynet_e"),
                                     ("resnet10t", "tinynet_e"), ("tinynet_e", "rexnet_100")])
def test_matching_equals_the_literal_spec(src, dst):
    s, t = meta(src), meta(dst)
    m = dpiat.match(s, t)
    expected_value = ref.align(ref.standardize(s), ref.standardize(t))[0]
    assert m.value == expected_value  # bit-identical
    names_s = {mod: n for n, mod in s.named_modules()}
    names_t = {mod: n for n, mod in t.named_modules()}
    expected = [(names_s.get(a), names_t.get(b)) for a, b in ref.leaf_pairs(ref.standardize(s), ref.standardize(t))]
    assert m.pairs == expected


def test_pairs_cover_every_target_layer_once_in_target_order():
    s, t = meta("mixnet_m"), meta("tf_efficientnet_b0")
    pairs = dpiat.match(s, t).pairs
    targets = [b for _, b in pairs if b is not None]
    transferable = [n for n, mod in t.named_modules() if isinstance(mod, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    assert targets == transferable


def test_self_value_equals_number_of_param_layers():
    for name in ("tf_efficientnet_b0", "mixnet_s", "resnet18"):
        m = meta(name)
        blocks = dpiat.standardize(m)
        n = sum(1 for leaf in blocks.layers() if leaf.transferable)
        assert Aligner().align(blocks, blocks).value == float(n)


# ------------------------------------------------------------------------------------------ similarity
def test_sanity_similarities_from_the_reference():
    assert round(dpiat.similarity("tf_efficientnet_b1", "tf_efficientnet_b0"), 4) == 0.8967
    assert round(dpiat.similarity("tf_efficientnet_b2", "tf_efficientnet_b0"), 4) == 0.8040


def test_similarity_is_symmetric_and_one_on_itself():
    a, b = meta("mixnet_s"), meta("resnet18")
    assert dpiat.similarity(a, b) == dpiat.similarity(b, a)
    assert dpiat.similarity(a, a) == 1.0
    mat = dpiat.similarity_matrix(["tinynet_e", "mixnet_s", "resnet18"])
    assert mat[0][0] == 1.0 and mat[0][1] == mat[1][0] and 0 < mat[1][2] < 1


def test_rank_sources_puts_the_same_family_first():
    ranked = dpiat.rank_sources("tf_efficientnet_b0", ["resnet50", "tf_efficientnet_b2", "mixnet_l"])
    assert [name for name, _ in ranked] == ["tf_efficientnet_b2", "mixnet_l", "resnet50"]
    assert ranked[0][1] == pytest.approx(0.8040, abs=1e-4)
    modules = dpiat.rank_sources(meta("tinynet_e"), [meta("resnet18"), meta("tinynet_d")])
    assert isinstance(modules[0][0], nn.Module) and modules[0][1] > modules[1][1]


# -------------------------------------------------------------------------------------------- transfer
def test_identity_transfer_reproduces_the_source_outputs_exactly():
    torch.manual_seed(0)
    src = timm.create_model("mixnet_s", num_classes=7).eval()
    with torch.no_grad():  # non-trivial BN affine params so a wrong copy would show
        for mod in src.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    dst = timm.create_model("mixnet_s", num_classes=7).eval()
    dst.load_state_dict({k: v for k, v in src.state_dict().items() if "running" in k or "num_batches" in k},
                        strict=False)  # statistics are not transferred: give the twin the same ones
    report = dpiat.transfer(src, dst)
    assert report.n_matched == report.n_target_layers == report.n_identical_shape
    assert report.fraction_overwritten == 1.0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_report_fields():
    src, dst = timm.create_model("resnet10t", num_classes=10), timm.create_model("tinynet_e", num_classes=10)
    r = dpiat.transfer(src, dst)
    d = r.as_dict()
    assert d["method"] == "dpiat" and d["source"] == "resnet10t" and d["target"] == "tinynet_e"
    assert 0 < d["n_matched"] < d["n_target_layers"] and 0 < d["fraction_overwritten"] < 1
    assert d["seconds"] > 0 and len(d["pairs"]) >= d["n_target_layers"]
    assert d["value"] == dpiat.match(src, dst).value



def test_the_report_names_every_target_tensor_left_at_init():
    src, dst = timm.create_model("resnet10t", num_classes=10), timm.create_model("tinynet_e", num_classes=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # noise: no source value can equal the target's init by accident
        for p in src.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    before = {n: p.detach().clone() for n, p in dst.named_parameters()}
    r = dpiat.transfer(src, dst)
    unchanged = [n for n, p in dst.named_parameters() if torch.equal(p, before[n])]
    assert r.tensors_left == unchanged and len(unchanged) > 0
    unmatched = {t for s, t in r.pairs if s is None and t}
    assert unmatched and unmatched <= {n.rsplit(".", 1)[0] for n in r.tensors_left}
    # the rest are biases whose source partner has none (a conv with bias fed by one without)
    assert all(n.endswith(".bias") for n in r.tensors_left if n.rsplit(".", 1)[0] not in unmatched)
    assert f"{len(unchanged)} target parameter tensors left at init ({unchanged[0]}" in r.summary()
    assert r.as_dict()["tensors_left"] == unchanged

# ------------------------------------------------------------------------------------------- bad input
def test_non_module_is_rejected():
    with pytest.raises(dpiat.DpiatError, match="must be a torch.nn.Module or a timm name, got int"):
        dpiat.transfer(42, nn.Linear(2, 2))
    with pytest.raises(dpiat.DpiatError, match="fills the target in place"):  # the built model would be lost
        dpiat.initialize("dpiat", "tinynet_e", source=nn.Linear(2, 2))


def test_timm_names_are_accepted_wherever_a_model_is():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random init is transferred"):
        report = dpiat.transfer("tinynet_d", "tinynet_e")
    torch.manual_seed(0)  # the same two models, built the way a name is (timm's defaults, in this order)
    src, dst = timm.create_model("tinynet_d"), timm.create_model("tinynet_e")
    same = dpiat.transfer(src, dst)
    built = report.target_model.state_dict()
    assert isinstance(report.target_model, nn.Module) and report.pairs == same.pairs
    assert all(torch.equal(v, built[k]) for k, v in dst.state_dict().items())
    assert "target_model" not in report.as_dict() and same.target_model is dst
    assert dpiat.match("tinynet_d", "tinynet_e").pairs == same.pairs
    assert dpiat.standardize("tinynet_e").tree() == dpiat.standardize(dst).tree()
    target = timm.create_model("tinynet_e")
    with pytest.warns(UserWarning):
        assert dpiat.initialize("dpiat", target, source="tinynet_d")["n_matched"] == same.n_matched


def test_model_without_transferable_layers_is_rejected():
    no_layers = nn.Sequential(nn.LayerNorm(4), nn.ReLU())
    with pytest.raises(dpiat.NoTransferableLayersError, match="no layer DPIAT can transfer"):
        dpiat.transfer(nn.Sequential(nn.Linear(4, 4)), no_layers)
    with pytest.raises(dpiat.NoTransferableLayersError):
        dpiat.similarity(no_layers, nn.Linear(2, 2))


def test_unknown_timm_name_suggests_close_names():
    with pytest.raises(dpiat.UnknownNameError, match="Did you mean: efficientnet_b0"):
        dpiat.similarity("efficientnet_bo", "resnet18")


def test_meta_target_cannot_receive_weights():
    with pytest.raises(dpiat.DpiatError, match="meta device"):
        dpiat.transfer(timm.create_model("tinynet_e"), meta("tinynet_e"))


def test_unknown_transfer_method():
    with pytest.raises(dpiat.UnknownNameError, match="transfer method"):
        dpiat.transfer(nn.Linear(2, 2), nn.Linear(2, 2), method="dpiat_bn_typo")


def test_the_parameter_count_behind_fraction_overwritten_equals_model_parameters():
    """Shared modules and tied parameters count once, a None parameter not at all, and a class that overrides
    the traversal sends the count through ``model.parameters()``, exactly as ``fraction_overwritten`` needs."""
    from dpiat.pipeline import _n_parameters

    shared = nn.Conv2d(3, 4, 3)
    tied = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Sequential(shared, nn.BatchNorm2d(4)), tied, nn.Linear(4, 4, bias=False))
    model[3].weight = tied.weight
    model.register_parameter("scale", nn.Parameter(torch.ones(5)))
    model.register_parameter("absent", None)
    want = sum(p.numel() for p in model.parameters())
    assert _n_parameters(model) == want == 3 * 4 * 9 + 4 + 8 + 16 + 4 + 5

    class Hidden(nn.Module):  # parameters() of this class also yields an extra tensor
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.extra = torch.nn.Parameter(torch.zeros(7))

        def named_parameters(self, *args, **kwargs):
            yield from super().named_parameters(*args, **kwargs)
            yield "outside", nn.Parameter(torch.zeros(11))

    hidden = Hidden()
    assert _n_parameters(hidden) == sum(p.numel() for p in hidden.parameters()) == 6 + 7 + 11
    nested = nn.Sequential(Hidden(), nn.Linear(2, 3))  # the root's parameters() does not call the child's
    assert _n_parameters(nested) == sum(p.numel() for p in nested.parameters()) == 6 + 7 + 9
    for m in ("tinynet_e", "mixnet_s"):
        net = timm.create_model(m)
        assert _n_parameters(net) == sum(p.numel() for p in net.parameters())


def test_tensors_left_are_found_in_inference_mode_too():
    with torch.inference_mode():  # inference tensors keep no version counter: values are compared instead
        src = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=1, num_classes=10)
        dst = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=1, num_classes=10)
        report = dpiat.transfer(src, dst)
    assert "cls_token" in report.tensors_left and "head.weight" not in report.tensors_left
