"""bench/data/: the data sets the harness trains on, their shards, their augmentation and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config import data_config
from bench.data.loaders import crop_params, resize_center_crop
from bench.data.module import build_datamodule, default_resolution
from bench.data.sampling import EpochSampler, fixed_subset
from bench.data.synthetic import generate_synthetic
from bench.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_digits_split_shapes_and_normalisation():
    dm = build_datamodule(data_config("digits", batch_size=32), seed=0)
    dm.setup()
    assert (dm.num_train, dm.num_val) == (1438, 359)
    train = batches(dm.train_dataloader(), 0)
    assert len(train) == 1438 // 32 and all(x.shape == (32, 1, 16, 16) for x, _ in train)
    val = batches(dm.val_dataloader(), 0)
    assert sum(len(y) for _, y in val) == 359  # nothing dropped or padded in validation
    x = torch.cat([x for x, _ in val])
    assert abs(x.mean().item()) < 0.15 and 0.8 < x.std().item() < 1.2  # mean/std from the config fit the data


def test_same_epoch_same_batches_other_epoch_other_batches():
    dm = build_datamodule(data_config("digits", batch_size=64), seed=3)
    dm.setup()
    loader = dm.train_dataloader()
    a, b, c = batches(loader, 1), batches(loader, 1), batches(loader, 2)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    other_seed = build_datamodule(data_config("digits", batch_size=64), seed=4)
    other_seed.setup()
    assert not torch.equal(a[0][1], batches(other_seed.train_dataloader(), 1)[0][1])


def test_subset_is_fixed_across_run_seeds():
    assert torch.equal(fixed_subset(1000, 100, seed=0), fixed_subset(1000, 100, seed=0))
    assert len(set(fixed_subset(1000, 100, seed=0).tolist())) == 100
    assert torch.equal(fixed_subset(10, None, seed=5), torch.arange(10))
    dms = [build_datamodule(data_config("digits", train_subset=200), seed=s) for s in (0, 1)]
    for dm in dms:
        dm.setup()
    assert torch.equal(dms[0].train_idx, dms[1].train_idx) and dms[0].num_train == 200


def test_shards_split_training_evenly_and_validation_exactly():
    idx = torch.arange(103)
    train = [EpochSampler(idx, shuffle=True, seed=0, rank=r, world=2) for r in range(2)]
    for s in train:
        s.set_epoch(5)
    a, b = (set(s) for s in train)
    assert len(a) == len(b) == 51 and not a & b  # equal length: every process takes the same number of steps
    val = [list(EpochSampler(idx, shuffle=False, rank=r, world=2)) for r in range(2)]
    assert sorted(val[0] + val[1]) == list(range(103))  # unpadded: every image validated exactly once


def test_crops_lie_inside_the_image_and_half_are_flipped():
    theta = crop_params(4000, (0.5, 1.0), True, torch.Generator().manual_seed(0))
    w, h = theta[:, 0, 0].abs(), theta[:, 1, 1]
    cx, cy = theta[:, 0, 2], theta[:, 1, 2]
    assert ((cx - w) >= -1 - 1e-6).all() and ((cx + w) <= 1 + 1e-6).all()
    assert ((cy - h) >= -1 - 1e-6).all() and ((cy + h) <= 1 + 1e-6).all()
    area = w * h
    assert area.min() >= 0.5 - 1e-6 and area.max() <= 1 + 1e-6
    assert 0.45 < (theta[:, 0, 0] < 0).float().mean() < 0.55
    no_flip = crop_params(100, (0.5, 1.0), False, torch.Generator().manual_seed(0))
    assert (no_flip[:, 0, 0] > 0).all()


def test_eval_transform_resizes_shorter_side_and_crops_centre():
    x = torch.zeros(1, 1, 40, 80)
    x[..., 20:60] = 1.0  # the centre 40x40 square is white
    y = resize_center_crop(x, 20)
    assert y.shape == (1, 1, 20, 20)
    assert y[..., 1:-1].min() > 0.99 and y[..., [0, -1]].min() > 0.5  # only the antialiased border blends


def test_default_resolution_follows_the_protocol():
    assert [default_resolution(m) for m in ("tf_efficientnet_b0", "efficientnet_b1", "tf_efficientnet_b2",
                                            "mixnet_l", None)] == [224, 240, 260, 224, 224]
    dm = build_datamodule(data_config("cifar10"), model_name="tf_efficientnet_b2")
    assert dm.resolution == 260 and dm.scale == (0.1, 1.0)
    assert build_datamodule(data_config("digits")).scale == (0.5, 1.0)  # below 100 px


@pytest.mark.skipif(not FASHION.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    dm = build_datamodule(data_config("fashion_mnist"), seed=0)
    dm.setup()
    assert (len(dm.train_y), len(dm.val_y)) == (60000, 10000)
    assert dm.num_train == 5000 and dm.num_val == 10000
    assert torch.bincount(dm.val_y).tolist() == [1000] * 10
    x, y = batches(dm.train_dataloader(), 0)[0]
    assert x.shape == (128, 1, 32, 32)


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/fashion_mnist download folder here either
    dm = build_datamodule(data_config("fashion_mnist", root=str(tmp_path / "nowhere"), download=False))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        dm.setup()


def test_missing_cifar_says_how_to_download(tmp_path):
    dm = build_datamodule(data_config("cifar100", root=str(tmp_path)))
    with pytest.raises(DataError, match="data.download=true"):
        dm.setup()


def test_missing_imagenet_folder_explains_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"train/<class>/\*\.JPEG"):
        build_datamodule(data_config("imagenet", root=str(tmp_path / "imagenet"))).setup()
    (tmp_path / "imagenet" / "train" / "n01440764").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no class folders in .*val"):
        build_datamodule(data_config("imagenet", root=str(tmp_path / "imagenet"))).setup()


def test_wrong_number_of_classes_is_caught(tmp_path):
    root = generate_synthetic(tmp_path / "syn", 3, data_config("synthetic").synthetic)
    with pytest.raises(DataError, match="3 class folders but data.num_classes=4"):
        build_datamodule(data_config("synthetic", root=str(root), num_classes=4)).setup()


def test_synthetic_image_folder_through_dataloader_workers(tmp_path):
    cfg = data_config("synthetic", root=str(tmp_path / "syn"), num_workers=2, batch_size=16)
    dm = build_datamodule(cfg, seed=0)
    dm.setup()
    assert sorted(p.name for p in (tmp_path / "syn").iterdir()) == ["train", "val"]
    assert (dm.num_train, dm.num_val) == (4 * 24, 4 * 8)
    loader = dm.train_dataloader()
    a, b, c = batches(loader, 1), batches(loader, 1), batches(loader, 2)
    assert a[0][0].shape == (16, 3, 32, 32) and len(a) == 96 // 16
    # Worker RNGs are seeded from the epoch: the same epoch gives the same crops, in any process.
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    again = build_datamodule(cfg, seed=0)
    again.setup()
    assert again.data_hash == dm.data_hash  # the generated set is created once and found again


@pytest.mark.parametrize("in_chans", [3, 1])
def test_pil_and_torchvision_decoders_give_the_same_tensors(tmp_path, in_chans):
    """data.decoder: both read the same files into float tensors of one shape, dtype and range; the eval
    transform (no randomness) gives nearly the same pixels."""
    from bench.data.datasets import ImageFolderData

    root = generate_synthetic(tmp_path / "syn", 4, data_config("synthetic").synthetic)
    out = {}
    for decoder in ("pil", "torchvision"):
        grey = {"mean": [0.5], "std": [0.25]} if in_chans == 1 else {}
        cfg = data_config("synthetic", root=str(root), decoder=decoder, in_chans=in_chans, **grey)
        data = ImageFolderData(root, cfg, 32, (0.5, 1.0))
        torch.manual_seed(0)
        train = torch.stack([data.train[i][0] for i in range(8)])
        val = torch.stack([data.val[i][0] for i in range(8)])
        out[decoder] = train, val
        assert train.shape == val.shape == (8, in_chans, 32, 32) and train.dtype == val.dtype == torch.float32
        low = (0 - max(cfg.mean)) / min(cfg.std)
        high = (1 - min(cfg.mean)) / min(cfg.std)
        assert low - 1e-4 <= train.min() and train.max() <= high + 1e-4
        assert train.std() > 0.1  # images, not constants
    (_, val_pil), (_, val_tv) = out["pil"], out["torchvision"]
    # the same resize and crop on the same decoded pixels: rounding apart, the same images
    assert (val_pil - val_tv).abs().mean() < 0.05


def test_torchvision_decoder_through_dataloader_workers(tmp_path):
    cfg = data_config("synthetic", root=str(tmp_path / "syn"), num_workers=2, batch_size=16, decoder="torchvision")
    dm = build_datamodule(cfg, seed=0)
    loader = dm.train_dataloader()
    a, b = batches(loader, 1), batches(loader, 1)
    assert a[0][0].shape == (16, 3, 32, 32) and len(a) == 96 // 16
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))  # epoch-seeded crops, as with PIL


def test_unknown_decoder_is_one_line(tmp_path):
    cfg = data_config("synthetic", root=str(tmp_path / "syn"), decoder="opencv")
    with pytest.raises(DataError, match="data.decoder='opencv' is not a decoder; choose from pil, torchvision"):
        build_datamodule(cfg).setup()


def test_num_workers_auto_follows_the_allocation(monkeypatch):
    import os

    from bench.data.module import resolve_num_workers
    from bench.errors import ConfigError

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "10")
    assert resolve_num_workers("auto") == 9 and resolve_num_workers("auto", local_processes=4) == 9  # per task
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    cpus = len(os.sched_getaffinity(0))
    assert resolve_num_workers("auto") == max(cpus - 1, 0)
    assert resolve_num_workers("auto", local_processes=cpus) == 0
    assert resolve_num_workers(4) == 4
    with pytest.raises(ConfigError, match="0 or more"):
        resolve_num_workers("many")
    cfg = data_config("synthetic", num_workers="auto", pin_memory=True, persistent_workers=True)
    dm = build_datamodule(cfg)
    options = dm._loader_options(torch.device("cpu"))
    assert options == {"num_workers": max(cpus - 1, 0), "pin_memory": True,
                       "persistent_workers": cpus > 1}


def test_a_wrong_data_root_writes_no_run_record(compose_config, tmp_path):
    """The folder check comes before run.json is written: a typo in data.root is an error, not a failed run."""
    from bench.running.target import run

    cfg = compose_config("experiment=paper_imagenet", "pair=b2_to_b0", "init=random", "trainer.accelerator=cpu",
                         f"data.root={tmp_path / 'nowhere'}", f"paths.runs={tmp_path / 'runs'}")
    with pytest.raises(DataError, match="does not exist"):
        run(cfg)
    assert not list((tmp_path / "runs").rglob("run.json"))
