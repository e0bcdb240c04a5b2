"""GHN-2 module layout (the official 31 keys) and checkpoint reading/writing, good and bad files."""

import os

import numpy as np
import pytest
import torch

from dpiat.errors import WeightsError
from dpiat.ghn.io import ghn_from_state, infer_config, load_ghn, read_checkpoint, save_ghn
from dpiat.ghn.model import GHN2, channel_index, channel_vocab, shape_4d, spatial_index, spatial_vocab


def official_shapes(spatial_rows: int, side: int, classes: int) -> dict:
    """ghn.md 1.2, written out by hand: the keys and shapes of ghn2_imagenet.pt / ghn2_cifar10.pt."""
    return {
        "ln.weight": (32,), "ln.bias": (32,), "embed.weight": (15, 32),
        "shape_enc.embed_spatial.weight": (spatial_rows, 8), "shape_enc.embed_channel.weight": (392, 8),
        "gnn.mlp.fc.0.weight": (16, 32), "gnn.mlp.fc.0.bias": (16,),
        "gnn.mlp.fc.2.weight": (32, 16), "gnn.mlp.fc.2.bias": (32,),
        "gnn.mlp_ve.fc.0.weight": (16, 32), "gnn.mlp_ve.fc.0.bias": (16,),
        "gnn.mlp_ve.fc.2.weight": (32, 16), "gnn.mlp_ve.fc.2.bias": (32,),
        "gnn.gru.weight_ih": (96, 32), "gnn.gru.weight_hh": (96, 32), "gnn.gru.bias_ih": (96,),
        "gnn.gru.bias_hh": (96,),
        "decoder.fc.0.weight": (128 * side * side, 32), "decoder.fc.0.bias": (128 * side * side,),
        "decoder.conv.0.weight": (256, 128, 1, 1), "decoder.conv.0.bias": (256,),
        "decoder.conv.2.weight": (4096, 256, 1, 1), "decoder.conv.2.bias": (4096,),
        "decoder.class_layer_predictor.1.weight": (classes, 64, 1, 1),
        "decoder.class_layer_predictor.1.bias": (classes,),
        "decoder_1d.fc.0.weight": (64, 32), "decoder_1d.fc.0.bias": (64,),
        "decoder_1d.fc.2.weight": (128, 64), "decoder_1d.fc.2.bias": (128,),
        "bias_class.1.weight": (classes, 64), "bias_class.1.bias": (classes,),
    }


OFFICIAL = {
    "imagenet": (official_shapes(11, 16, 1000), 2_319_720,
                 dict(max_shape=(64, 64, 16, 16), num_classes=1000, hypernet="gatedgnn", decoder="conv",
                      weight_norm=True, ve=True, layernorm=True, hid=32)),
    "cifar10": (official_shapes(9, 11, 10), 1_620_764,
                dict(max_shape=(64, 64, 11, 11), num_classes=10, hypernet="gatedgnn", decoder="conv",
                     weight_norm=True, ve=True, layernorm=True, hid=32)),
}


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.1 for k, s in shapes.items()}


@pytest.mark.parametrize("which", ["imagenet", "cifar10"])
def test_strict_load_of_the_official_key_layout(which, tmp_path):
    shapes, total, config = OFFICIAL[which]
    assert len(shapes) == 31 and sum(int(np.prod(s)) for s in shapes.values()) == total
    state = random_state(shapes)
    # with the config stored in the file ...
    ghn = ghn_from_state(state, config)
    assert {k: tuple(v.shape) for k, v in ghn.state_dict().items()} == shapes
    assert all(torch.equal(ghn.state_dict()[k], v) for k, v in state.items())
    # ... and inferred from the shapes when the file has none
    assert infer_config(state) == config
    # an official-format file, with the optimiser state ppuda's trainer leaves under "optimzer"
    path = tmp_path / f"ghn2_{which}.pt"
    torch.save({"state_dict": state, "config": config, "epoch": 300, "optimzer": {"state": {}}}, path)
    loaded = load_ghn(path)
    assert loaded.epoch == 300 and loaded.config == config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    # a bare state dict (no config, as GHN-3's hub files are stored)
    torch.save(state, tmp_path / "bare.pt")
    assert load_ghn(tmp_path / "bare.pt").config == config


def test_ghn1_and_mlp_variants():
    ghn1 = GHN2(max_shape=(64, 64, 16, 16), num_classes=1000, ve=False, layernorm=False, weight_norm=False)
    assert sum(p.numel() for p in ghn1.parameters()) == 2_319_624  # ghn.md 1.1
    keys = set(ghn1.state_dict())
    assert not any(k.startswith(("ln.", "gnn.mlp_ve.")) for k in keys)
    assert ghn1.state_dict()["gnn.mlp.fc.0.weight"].shape == (32, 32)
    assert sum(p.numel() for p in GHN2(ve=False, layernorm=False, weight_norm=False).parameters()) == 1_620_668
    mlp = GHN2(hypernet="mlp")
    assert {"gnn.fc.0.weight", "gnn.fc.2.weight"} <= set(mlp.state_dict())
    assert infer_config(mlp.state_dict())["hypernet"] == "mlp"
    assert infer_config(ghn1.state_dict())["ve"] is False


def test_save_is_official_format_and_round_trips(tmp_path):
    ghn = GHN2(num_classes=10)
    path = tmp_path / "sub" / "ghn.pt"
    save_ghn(path, ghn, epoch=7, optimizer_state={"state": {}, "param_groups": []})
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "config", "epoch", "optimzer", "graph_rules"} and raw["epoch"] == 7
    assert raw["graph_rules"] == "structural"  # the rules it is trained with, next to ppuda's keys
    assert raw["config"]["max_shape"] == (64, 64, 11, 11)
    assert [p.name for p in path.parent.iterdir()] == ["ghn.pt"]  # no temporary file left behind
    assert oct(path.stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    again = load_ghn(path)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ghn.state_dict().items())
    assert (again.graph_rules, again.graph_rules_source) == ("structural", "checkpoint")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class NotAllowed:
    pass


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    shapes, _, config = OFFICIAL["cifar10"]
    good = random_state(shapes)
    with pytest.raises(WeightsError, match="does not exist"):
        load_ghn(tmp_path / "missing.pt")

    torch.save({"state_dict": good, "config": config}, tmp_path / "ok.pt")
    blob = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WeightsError, match="truncated, corrupted or another format"):
        load_ghn(tmp_path / "truncated.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable torch checkpoint"):
        load_ghn(tmp_path / "text.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WeightsError, match="not a readable torch checkpoint"):
        load_ghn(tmp_path / "empty.pt")

    torch.save({"state_dict": good, "config": config, "extra": NotAllowed()}, tmp_path / "unsafe.pt")
    with pytest.raises(WeightsError, match="refusing to load.*NotAllowed"):
        load_ghn(tmp_path / "unsafe.pt")

    torch.save({"model": good}, tmp_path / "foreign.pt")
    with pytest.raises(WeightsError, match="no 'state_dict' key"):
        load_ghn(tmp_path / "foreign.pt")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other_net.pt")
    with pytest.raises(WeightsError, match="not a GHN-2 state dict: missing embed.weight"):
        load_ghn(tmp_path / "other_net.pt")

    broken = dict(good)
    del broken["gnn.gru.bias_hh"]
    broken["gnn.extra.weight"] = torch.zeros(2)
    broken["embed.weight"] = torch.zeros(14, 32)
    torch.save({"state_dict": broken, "config": config}, tmp_path / "broken.pt")
    with pytest.raises(WeightsError) as e:
        load_ghn(tmp_path / "broken.pt")
    msg = str(e.value)
    assert "missing keys: gnn.gru.bias_hh" in msg and "unexpected keys: gnn.extra.weight" in msg
    assert "embed.weight (14, 32) (expected (15, 32))" in msg

    torch.save({"state_dict": good, "config": {**config, "layers": 3}}, tmp_path / "ghn3.pt")
    with pytest.raises(WeightsError, match="GHN-3 checkpoints are not supported"):
        load_ghn(tmp_path / "ghn3.pt")
    torch.save({"state_dict": good, "config": {**config, "hypernet": "transformer"}}, tmp_path / "cfg.pt")
    with pytest.raises(WeightsError, match="bad GHN config"):
        load_ghn(tmp_path / "cfg.pt")
    nan = dict(good)
    nan["ln.weight"] = torch.full((32,), float("nan"))
    torch.save({"state_dict": nan, "config": config}, tmp_path / "nan.pt")
    with pytest.raises(WeightsError, match="'ln.weight' has non-finite values"):
        load_ghn(tmp_path / "nan.pt")
    assert read_checkpoint(tmp_path / "ok.pt")["epoch"] is None


def test_shape_vocabularies_and_lookups():
    for classes in (10, 1000):
        assert len(channel_vocab(classes)) == 391
    v = channel_vocab(10)
    look = lambda c: int(v[channel_index(v, np.array([c]))[0]])  # noqa: E731
    assert [look(c) for c in (1, 3, 10, 8, 56, 64, 4080, 4096, 8192)] == [1, 3, 10, 8, 56, 64, 4080, 4096, 8192]
    assert look(5) == 8 and look(7) == 8     # 4-7 -> 8, not the nearer 3
    assert look(2) == 1                      # tie between 1 and 3 -> the smaller
    assert look(70) == 64 and look(72) == 64 and look(73) == 80   # nearest, ties to the smaller
    assert look(4100) == 4096 and look(9000) == 8192 and look(10**6) == 8192
    assert spatial_vocab(16).tolist() == [1, 3, 5, 7, 9, 11, 13, 14, 15, 16]
    assert spatial_vocab(11).tolist() == [1, 3, 5, 7, 9, 11, 14, 16]
    s = spatial_vocab(11)
    sl = lambda k: int(s[spatial_index(s, np.array([k]))[0]])  # noqa: E731
    assert [sl(k) for k in (1, 2, 3, 4, 12, 13, 15, 40)] == [1, 3, 3, 3, 11, 14, 14, 16]
    assert shape_4d((7,)) == (7, 1, 1, 1) and shape_4d((5, 4)) == (5, 4, 1, 1)
    assert shape_4d((1, 197, 768)) == (1, 768, 14, 14) and shape_4d((2, 3, 4)) == (2, 3, 4, 1)
    assert shape_4d((8, 3, 3, 3)) == (8, 3, 3, 3) and shape_4d(None) is None
    ghn = GHN2(num_classes=10)
    rows = ghn.shape_enc.indices([(16, 3, 3, 3), None, (10, 64)]).tolist()
    assert rows[1] == [391, 391, 8, 8]  # "no shape": the extra last row of each table
    assert rows[2] == [int(np.searchsorted(v, 10)), int(np.searchsorted(v, 64)), 0, 0]
