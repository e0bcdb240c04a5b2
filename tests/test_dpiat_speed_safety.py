"""The speed work changes no value: transfers equal a plain reference copy bit for bit, the vectorised leaf
scores equal ``shape_score``, and the one-thread copy leaves torch's thread setting as it found it."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from torch import nn

import dpiat
from dpiat.alignment import Aligner, score_leaves
from dpiat.clip import clip_windows, copy_layer, one_thread
from dpiat.layers import shape_score
from dpiat.structure import Block, Layer, _intern
from tests import spec_reference as ref

PAIRS = [("tf_efficientnet_b2", "tf_efficientnet_b0"), ("mixnet_s", "tinynet_e"), ("resnet10t", "tinynet_e"),
         ("tinynet_e", "rexnet_100")]


def seeded(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = dpiat.create_model(name)
    with torch.no_grad():
        for t in model.state_dict().values():  # every value distinct from the target's, BN statistics too
            if t.is_floating_point():
                t.normal_()
    return model


def reference_transfer(source: nn.Module, target: nn.Module) -> None:
    """The literal spec's matching (tests/spec_reference.py) and a plain slice assignment per tensor."""
    with torch.no_grad():
        for a, b in ref.leaf_pairs(ref.standardize(source), ref.standardize(target)):
            if a is None or b is None:
                continue
            for name in ("weight", "bias"):
                x, y = getattr(a, name, None), getattr(b, name, None)
                if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
                    s, d = clip_windows(x.shape, y.shape)
                    y[d] = x[s]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the setting that oversubscribed a busy machine
    yield 2
    torch.set_num_threads(before)


@pytest.mark.parametrize("src,dst", PAIRS)
def test_transfer_is_bit_identical_to_a_plain_reference_copy(src, dst, two_threads):
    source = seeded(src, 0)
    target = seeded(dst, 1)
    expected = seeded(dst, 1)
    reference_transfer(source, expected)
    report = dpiat.transfer(source, target)
    assert torch.get_num_threads() == two_threads  # restored after the one-thread copy
    assert report.n_matched > 0
    got, want = target.state_dict(), expected.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_similarity_equals_the_literal_spec_bit_for_bit():
    for a, b in PAIRS[1:]:
        s, t = dpiat.create_model(a, device="meta"), dpiat.create_model(b, device="meta")
        S, T = ref.standardize(s), ref.standardize(t)
        ab, ba = ref.align(S, T)[0], ref.align(T, S)[0]
        n_s = sum(1 for leaf in dpiat.standardize(s).layers() if leaf.transferable)
        n_t = sum(1 for leaf in dpiat.standardize(t).layers() if leaf.transferable)
        assert dpiat.similarity(s, t) == (ab * ba / (n_s * n_t)) ** 0.5


def _leaf(mask: int, shape) -> Layer:
    leaf = object.__new__(Layer)
    leaf.name, leaf.module, leaf.mask, leaf.shape = f"l{mask}_{shape}", None, mask, shape
    leaf.sig = _intern(("L", mask, shape))
    return leaf


@pytest.mark.parametrize("path", ["c", "numpy", "numpy-chunked"])  # numpy: one chunk; many chunks of source leaves
def test_batched_leaf_scores_equal_shape_score_bit_for_bit(path, monkeypatch):
    import dpiat.alignment as A

    if path == "c" and A._leaf_scores_c is None:
        pytest.skip("C extension without leaf_scores")
    if path != "c":
        monkeypatch.setattr(A, "_leaf_scores_c", None)
    if path == "numpy-chunked":
        monkeypatch.setattr(A, "SCORE_CHUNK", 7)
    rng = random.Random(0)
    sizes = [0, 1, 2, 3, 5, 7, 16, 24, 40, 96, 112, 1000, 1280, 2 ** 40 + 1]
    leaves = [_leaf(0, None), _leaf(1, ())]  # a 0-d weight scores 1.0 against another (empty product)
    for _ in range(300):
        shape = tuple(rng.choice(sizes) for _ in range(rng.randint(0, 5)))
        leaves.append(_leaf(rng.choice([1, 2, 3, 64, 256, 512, 1 << 9 | 2]), shape))
    xs, ys = leaves[: len(leaves) // 2], leaves[len(leaves) // 2:] + leaves[:20]
    matrix, xsig, ysig = score_leaves(Block(xs, "s"), Block(ys, "t"))
    nx = len({x.sig for x in xs})
    assert len(xsig) == nx and len(ysig) == len({y.sig for y in ys}) and len(matrix) == nx * len(ysig)
    for x in xs:
        for y in ys:
            want = shape_score(x.shape, y.shape) if x.mask & y.mask else 0.0
            got = matrix[ysig.index(y.sig) * nx + xsig.index(x.sig)]
            assert got.hex() == want.hex(), (x, y)


@pytest.mark.parametrize("c", [True, False])
def test_a_huge_dimension_falls_back_to_the_one_pair_path(c, monkeypatch):
    import dpiat.alignment as A

    if not c:
        monkeypatch.setattr(A, "_leaf_scores_c", None)
    x, y = _leaf(2, (2 ** 54, 3)), _leaf(2, (5, 3))
    assert score_leaves(Block([x, _leaf(1, (3,))], "s"), Block([y, _leaf(1, (4,))], "t")) is None
    # left to Aligner.score, which calls shape_score itself
    aligner = Aligner()
    assert aligner.score(x, y) == shape_score(x.shape, y.shape)


def test_one_thread_restores_the_setting_also_on_errors(two_threads):
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == two_threads
    with pytest.raises(RuntimeError):
        with one_thread():
            raise RuntimeError("boom")
    assert torch.get_num_threads() == two_threads
    with pytest.raises((NotImplementedError, RuntimeError)):  # a copy that fails inside the library
        copy_layer(nn.Linear(3, 4, device="meta"), nn.Linear(3, 4))  # a meta tensor has no values to copy
    assert torch.get_num_threads() == two_threads
    torch.set_num_threads(1)
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1


def test_clip_copy_equals_slice_assignment_with_clip_windows():
    rng = random.Random(1)
    for _ in range(200):
        ndim = rng.randint(1, 4)
        a_shape = tuple(rng.randint(1, 7) for _ in range(ndim))
        b_shape = tuple(rng.randint(1, 7) for _ in range(ndim))
        src, dst = torch.randn(a_shape), torch.randn(b_shape)
        expected = dst.clone()
        s, d = clip_windows(a_shape, b_shape)
        expected[d] = src[s]
        assert dpiat.clip_copy(src, dst) == expected[d].numel()
        assert torch.equal(dst, expected), (a_shape, b_shape)


def test_clip_copy_outside_no_grad_and_across_dtypes():
    src = torch.randn(6, 3, requires_grad=True)
    dst = torch.zeros(4, 5, dtype=torch.float64, requires_grad=True)
    assert dpiat.clip_copy(src, dst) == 12
    assert torch.equal(dst.detach()[:, 1:4], src.detach()[1:5].double())
    assert torch.equal(dst.detach()[:, 0], torch.zeros(4, dtype=torch.float64))


def test_the_speed_benchmark_stops_its_busy_processes_also_on_errors():
    from bench.measure.speed import Busy

    with pytest.raises(KeyboardInterrupt):
        with Busy(1) as busy:
            procs = list(busy.procs)
            assert procs and all(p.poll() is None for p in procs)  # spinning
            raise KeyboardInterrupt
    assert all(p.poll() is not None for p in procs)


def test_batched_leaf_block_values_equal_the_one_pair_dp():
    """The C batch of innermost block pairs (``dp_pairs``) gives every value the one-pair DP gives."""
    import dpiat.alignment as A

    if A._dp_pairs_c is None:
        pytest.skip("C extension without dp_pairs")
    for a, b in PAIRS:
        s = dpiat.standardize(dpiat.create_model(a, device="meta"))
        t = dpiat.standardize(dpiat.create_model(b, device="meta"))
        batched, plain = Aligner(), Aligner()
        batched.align(s, t)
        xs, ys = A._inventory(s)[1], A._inventory(t)[1]
        assert xs and ys
        for y in ys.values():
            assert batched.tables[y.sig][0]  # came from the batch
            for x in xs.values():
                assert batched.score(x, y) == plain._align(x, y).value  # plain: one pair, shape_score


def test_match_with_and_without_the_batch_is_identical(monkeypatch):
    import dpiat.alignment as A

    for a, b in PAIRS:
        s, t = dpiat.create_model(a, device="meta"), dpiat.create_model(b, device="meta")
        fast = dpiat.match(s, t)
        with monkeypatch.context() as m:
            m.setattr(A, "_dp_pairs_c", None)
            slow = dpiat.match(s, t)
        assert fast.value == slow.value
        assert [(x and x.name, y and y.name, sc) for x, y, sc in fast.layers] == \
            [(x and x.name, y and y.name, sc) for x, y, sc in slow.layers]


def _layer_pairs(rng, n):
    """Random (source, target) modules with random weight/bias shapes, some of other dtypes or strides."""
    pairs = []
    for _ in range(n):
        ndim = rng.randint(0, 5)
        a_shape = tuple(rng.randint(0, 7) for _ in range(ndim))
        b_shape = tuple(rng.randint(0, 7) for _ in range(ndim if rng.random() < 0.9 else max(0, ndim - 1)))
        dtype_a = rng.choice([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16])
        dtype_b = dtype_a if rng.random() < 0.8 else torch.float32
        a, b = nn.Module(), nn.Module()
        a.weight = nn.Parameter(torch.randn(a_shape).to(dtype_a))
        w = torch.randn(b_shape).to(dtype_b)
        if ndim >= 2 and rng.random() < 0.1:  # a non-contiguous target: goes through copy_
            w = torch.randn(tuple(reversed(b_shape))).to(dtype_b).transpose(0, -1)
        b.weight = nn.Parameter(w)
        if rng.random() < 0.7:
            a.bias = nn.Parameter(torch.randn(rng.randint(0, 9)).to(dtype_a))
            b.bias = nn.Parameter(torch.randn(rng.randint(0, 9)).to(dtype_b))
        pairs.append((a, b))
    return pairs


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


def test_the_c_copy_of_many_layers_equals_copy_(monkeypatch):
    """``copy_layers`` through ``_dpcore.clip_copy`` writes the same bytes and counts the same elements as the
    one-copy-at-a-time torch path, mixing eligible and ineligible pairs, empty and 0-d tensors, aliasing."""
    import dpiat.clip as C

    if C._clip_copy_c is None:
        pytest.skip("C extension without clip_copy")
    rng = random.Random(7)
    for trial in range(30):
        pairs = _layer_pairs(random.Random(trial), rng.randint(1, 25))
        if trial % 3 == 0:  # over 1 MiB: written with non-temporal stores, from an odd offset
            big_a, big_b = nn.Module(), nn.Module()
            big_a.weight = nn.Parameter(torch.randn(rng.randint(500, 700), rng.randint(300, 700), 3))
            big_b.weight = nn.Parameter(torch.randn(rng.randint(500, 700), rng.randint(300, 700), 3))
            pairs.insert(rng.randint(0, len(pairs)), (big_a, big_b))
        if trial % 5 == 0:  # a layer copied onto itself (transfer(model, model))
            pairs.append((pairs[0][1], pairs[0][1]))
        twin = [(a, copy.deepcopy(b)) for a, b in pairs[:len(pairs) - (trial % 5 == 0)]]
        if trial % 5 == 0:
            twin.append((twin[0][1], twin[0][1]))
        versions = [b.weight._version for _, b in pairs]
        fast = C.copy_layers(pairs)
        with monkeypatch.context() as m:
            m.setattr(C, "_clip_copy_c", None)
            slow = C.copy_layers(twin)
        assert fast == slow
        for (a, b), (_, t) in zip(pairs, twin):
            for name in ("weight", "bias"):
                x, y = getattr(b, name, None), getattr(t, name, None)
                assert (x is None) == (y is None)
                if x is not None:
                    assert x.dtype == y.dtype and x.shape == y.shape
                    assert torch.equal(_bytes(x), _bytes(y))  # bit for bit, NaN payloads and -0.0 too
        changed = [b.weight._version > v for (_, b), v in zip(pairs, versions)]
        assert any(changed)


def test_the_c_copy_is_used_for_a_model_transfer(monkeypatch):
    import dpiat.clip as C

    if C._clip_copy_c is None:
        pytest.skip("C extension without clip_copy")
    calls = []
    real = C._clip_copy_c
    monkeypatch.setattr(C, "_clip_copy_c", lambda spec: calls.append(len(spec)) or real(spec))
    source, target, expected = seeded("tinynet_e", 0), seeded("mixnet_s", 1), seeded("mixnet_s", 1)
    dpiat.transfer(source, target)
    reference_transfer(source, expected)
    assert calls
    for key, value in expected.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_streaming_store_settings_write_the_same_bytes_at_any_alignment():
    """``clip_copy`` writes identical bytes whatever its streaming settings (every copy streamed, none, whole
    lines of 16/32/64 bytes) for runs of 1 to ~600 elements starting at any 4-byte alignment; each equals
    slice assignment with ``clip_windows``."""
    import array

    from dpiat import _dpcore

    if not hasattr(_dpcore, "clip_copy"):
        pytest.skip("C extension without clip_copy")
    settings = [(1 << 62, 1 << 62, 64), (0, 0, 16), (0, 0, 32), (0, 0, 64), (0, 256, 64), (1 << 16, 256, 64), ()]
    rng = random.Random(11)
    for _ in range(60):
        nd = rng.randint(1, 3)
        a_shape = tuple(rng.randint(1, 9) for _ in range(nd - 1)) + (rng.randint(1, 600),)
        b_shape = tuple(rng.randint(1, 9) for _ in range(nd - 1)) + (rng.randint(1, 600),)
        src_off, dst_off = rng.randint(0, 15), rng.randint(0, 15)  # elements: every 4-byte alignment mod 64
        src = torch.randn(src_off + math.prod(a_shape))[src_off:].view(a_shape)
        s, d = clip_windows(a_shape, b_shape)
        results = []
        for setting in settings:
            base = torch.full((dst_off + math.prod(b_shape),), -3.5)
            dst = base[dst_off:].view(b_shape)
            spec = array.array("q", [dst.data_ptr(), src.data_ptr(), 4, nd, *a_shape, *b_shape])
            assert _dpcore.clip_copy(spec, *setting) == src[s].numel()
            results.append(base)
        expected = torch.full((dst_off + math.prod(b_shape),), -3.5)
        expected[dst_off:].view(b_shape)[d] = src[s]
        for setting, got in zip(settings, results):
            assert torch.equal(_bytes(got), _bytes(expected)), (a_shape, b_shape, src_off, dst_off, setting)
    with pytest.raises(ValueError, match="line"):
        _dpcore.clip_copy(array.array("q"), 0, 0, 48)
