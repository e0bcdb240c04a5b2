"""Standardization (method.md section 2) on hand-built nested modules and on timm models."""

import pytest
import timm
import torch
from torch import nn

import dpiat
from dpiat.layers import shape_score
from tests import spec_reference as ref


def names(model):
    return dpiat.standardize(model).tree()


class Block2(nn.Module):
    """conv, bn, relu, conv: a block with 2 DIM layers."""

    def __init__(self, c=4):
        super().__init__()
        self.conv1, self.bn, self.act, self.conv2 = nn.Conv2d(c, c, 3), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 1)


def test_flat_sequential_of_layers_is_one_top_level_list():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Linear(8, 2))
    assert names(m) == ["0", "1", "2", "3"]


def test_blocks_are_lists_and_containers_of_blocks_are_spliced():
    m = nn.Sequential()
    m.add_module("stem", nn.Conv2d(3, 4, 3))
    m.add_module("stage", nn.Sequential(Block2(), Block2()))  # a container of two blocks: spliced
    m.add_module("head", nn.Linear(4, 2))
    assert names(m) == [
        "stem",
        ["stage.0.conv1", "stage.0.bn", "stage.0.act", "stage.0.conv2"],
        ["stage.1.conv1", "stage.1.bn", "stage.1.act", "stage.1.conv2"],
        "head",
    ]


def test_group_with_fewer_than_two_dim_layers_is_inlined():
    class SE(nn.Module):  # one DIM layer (+ act): spliced into the enclosing block
        def __init__(self):
            super().__init__()
            self.fc, self.gate = nn.Conv2d(4, 4, 1), nn.Sigmoid()

    class Blk(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.se, self.bn = nn.Conv2d(4, 4, 3), SE(), nn.BatchNorm2d(4)

    m = nn.Sequential(nn.Conv2d(3, 4, 3), Blk(), Blk())
    assert names(m) == ["0", ["1.conv", "1.se.fc", "1.se.gate", "1.bn"], ["2.conv", "2.se.fc", "2.se.gate", "2.bn"]]


def test_single_child_wrappers_add_no_level_and_param_modules_are_leaves():
    class Wrap(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    class BNWithChildren(nn.BatchNorm2d):  # like timm's BatchNormAct2d: children never visited
        def __init__(self, c):
            super().__init__(c)
            self.act = nn.ReLU()

    m = Wrap(nn.Sequential(nn.Conv2d(3, 4, 3), BNWithChildren(4), Wrap(Wrap(Block2())), nn.Linear(4, 2)))
    assert names(m) == ["inner.0", "inner.1",
                        ["inner.2.inner.inner.conv1", "inner.2.inner.inner.bn", "inner.2.inner.inner.act",
                         "inner.2.inner.inner.conv2"],
                        "inner.3"]


def test_parameter_free_leaves_are_entries_and_layernorm_is_not_transferable():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(4), nn.Identity(), nn.Linear(4, 2))
    blocks = dpiat.standardize(m)
    assert [leaf.transferable for leaf in blocks.layers()] == [True, False, False, True]


@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "mixnet_s", "rexnet_100", "resnet18", "tinynet_e"])
def test_timm_models_match_the_literal_spec(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    expected = ref.standardize(model)
    mods = {m: n for n, m in model.named_modules()}

    def as_names(e):
        return [as_names(i) if isinstance(i, list) else mods[i] for i in e]

    assert names(model) == as_names(expected)


def test_timm_efficientnet_shape_is_stem_blocks_head():
    with torch.device("meta"):
        model = timm.create_model("tf_efficientnet_b0")
    tree = names(model)
    assert tree[:2] == ["conv_stem", "bn1"]
    blocks = [t for t in tree if isinstance(t, list)]
    assert len(blocks) == 16  # one per DepthwiseSeparableConv / InvertedResidual
    assert blocks[1][:4] == ["blocks.1.0.conv_pw", "blocks.1.0.bn1", "blocks.1.0.conv_dw", "blocks.1.0.bn2"]
    assert "blocks.1.0.se.conv_reduce" in blocks[1]  # SE convs inlined as layers of the block
    assert tree[-5:] == ["conv_head", "bn2", "global_pool.pool", "global_pool.flatten", "classifier"]


def test_mixnet_split_convs_are_inlined():
    with torch.device("meta"):
        model = timm.create_model("mixnet_s")
    blocks = [t for t in names(model) if isinstance(t, list)]
    assert "blocks.1.0.conv_pw.0" in blocks[1] and "blocks.1.0.conv_pw.1" in blocks[1]


def test_shape_score_examples():
    assert shape_score((8, 1, 3, 3), (8, 1, 5, 5)) == (3 / 5) * (3 / 5)
    assert shape_score((10, 4), (5, 8)) == 0.5 * 0.5
    assert shape_score((16,), (16,)) == 1.0
    assert shape_score((0, 3), (4, 3)) == 0.0


def test_standardize_rejects_non_modules():
    with pytest.raises(dpiat.DpiatError, match="nn.Module"):
        dpiat.standardize(42)
