"""``pair.source_kwargs`` / ``pair.target_kwargs``: extra timm arguments of a pair's networks (a ViT's image
size, patch size, depth), used wherever the harness builds them, checked before anything runs."""

from __future__ import annotations

import pytest

from bench.config import check_config
from bench.errors import ConfigError
from bench.running.harness import fresh_model, model_kwargs
from bench.running.sources import build_source_model


def test_the_vit_pair_builds_its_networks_with_their_own_timm_arguments(compose_config):
    cfg = compose_config("experiment=transformers", "pair=vit_small_to_tiny_32px", "init=dpiat_struct")
    check_config(cfg)
    assert model_kwargs(cfg, "source") == {"img_size": 32, "patch_size": 8, "depth": 4}
    target = fresh_model(cfg.pair.target, cfg, 0)
    assert target.patch_embed.proj.kernel_size == (8, 8) and len(target.blocks) == 4
    assert target.patch_embed.proj.in_channels == 1 and target.head.out_features == 10
    source = build_source_model(cfg, device="meta")
    assert source.embed_dim == 384 and len(source.blocks) == 4 and source.pos_embed.shape == (1, 17, 384)
    same = fresh_model(cfg.pair.source, cfg, 0, role="source")
    assert same.pos_embed.shape == (1, 17, 384)


def test_a_pair_without_kwargs_builds_the_default_network(compose_config):
    cfg = compose_config("experiment=transformers", "pair=convnext_pico_to_atto", "init=dpiat_struct")
    assert model_kwargs(cfg, "source") == {} and model_kwargs(cfg, "target") == {}
    assert type(fresh_model(cfg.pair.target, cfg, 0)).__name__ == "ConvNeXt"


def test_an_argument_timm_refuses_fails_before_the_run_in_one_line(compose_config):
    cfg = compose_config("experiment=transformers", "pair=vit_small_to_tiny_32px", "init=dpiat_struct",
                         "+pair.target_kwargs.patch_sise=8")
    with pytest.raises(ConfigError, match=r"pair.target_kwargs=.*patch_sise.*timm could not build "
                                          r"'vit_tiny_patch16_224'") as e:
        check_config(cfg)
    assert "\n" not in str(e.value)
