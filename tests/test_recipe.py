"""Fine-tuning recipes chosen on held-out training images (experiment=recipe): the held-out slice, the warm-up
of per-epoch schedules, the recipe axis (config, folders, plan) and the recipe table on hand-made runs.

The fake runs of the table tests (2 epochs, BN-recalibrated validation ``bn`` and held-out ``held`` curves):

    recipe paper (no settings)       random  seed0 bn [.4 .5]   held [.5 .6]   seed1 bn [.6 .4]  held [.4 .6]
                                     dpiat   seed0 bn [.8 .6]   held [.7 .7]   seed1 bn [.6 .9]  held [.6 .7]
    recipe slow (optim.lr=0.001)     random  seed0 bn [.2 .25]  held [.3 .4]   seed1 bn [.3 .2]  held [.5 .4]
                                     dpiat   seed0 bn [.9 .8]   held [.8 .9]   seed1 bn [.7 .6]  held [.7 .8]

    held-out mean of best: random paper .6, slow .45 -> paper; dpiat paper .7, slow .85 -> slow (validation
    would pick paper: .85 vs .80)
    selected vs selected: dpiat slow / random paper = .9/.5, .7/.6 = 1.8, 7/6 -> mean 1.483333
    paper's recipe: .8/.5, .9/.6 = 1.6, 1.5 -> mean 1.55, t interval 1.55 +- 12.7062 * 0.05
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from bench.config import apply_recipe, check_config
from bench.data.sampling import fixed_subset, train_and_heldout
from bench.errors import AggregateError, ConfigError, DataError, SweepError
from bench.layout import outside_grid, run_path
from bench.running.lit import lr_factor, warmed_lr_factor
from bench.running.target import run

FAST = ["experiment=smoke", "init=random", "data.train_subset=256", "data.batch_size=64", "epochs=2"]


def without(record: dict, *keys: str) -> list[dict]:
    """Per-epoch metrics without the wall-clock and without ``keys``."""
    return [{k: v for k, v in m.items() if k != "wall_seconds" and k not in keys} for m in record["metrics"]]


# ---------------------------------------------------------------------------------------------------------
# The held-out slice
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5000, None])
def test_heldout_slice_is_disjoint_fixed_and_leaves_the_training_subset_as_it_was(size):
    train, held = train_and_heldout(60000, size, 2500, seed=0)
    assert len(held) == 2500 and not set(train.tolist()) & set(held.tolist())
    if size is not None:
        assert torch.equal(train, fixed_subset(60000, size, 0))  # the same training images as without it
    else:
        assert len(train) == 60000 - 2500  # everything not held out
    again, held_again = train_and_heldout(60000, size, 2500, seed=0)
    assert torch.equal(held, held_again) and torch.equal(train, again)
    assert not torch.equal(held, train_and_heldout(60000, size, 2500, seed=1)[1])  # data.subset_seed decides
    off_train, off_held = train_and_heldout(60000, size, 0, seed=0)
    assert torch.equal(off_train, fixed_subset(60000, size, 0)) and len(off_held) == 0


def test_a_heldout_slice_that_does_not_fit_says_what_to_lower():
    with pytest.raises(DataError, match=r"data.train_subset=5000 \+ data.heldout=2000 .* 6000 images"):
        train_and_heldout(6000, 5000, 2000, seed=0)
    with pytest.raises(DataError, match="data.heldout must be 0"):
        train_and_heldout(6000, 5000, -1, seed=0)


def test_the_data_module_holds_out_training_images_that_training_never_sees():
    from bench.config import data_config
    from bench.data.module import build_datamodule

    dms = [build_datamodule(data_config("digits", train_subset=256, heldout=300), seed=s) for s in (0, 1)]
    for dm in dms:
        dm.setup()
    dm = dms[0]
    assert dm.num_heldout == 300 and not set(dm.train_idx.tolist()) & set(dm.heldout_idx.tolist())
    assert torch.equal(dms[0].heldout_idx, dms[1].heldout_idx)  # the same slice for every run seed
    seen = set()
    loader = dm.train_dataloader()
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        seen |= set(loader.sampler.shard().tolist())
    assert seen <= set(dm.train_idx.tolist()) and not seen & set(dm.heldout_idx.tolist())
    x, y = next(iter(dm.heldout_dataloader()))
    assert torch.equal(y, dm.train_y[dm.heldout_idx[: len(y)]])  # training-split labels, in order
    off = build_datamodule(data_config("digits", train_subset=256), seed=0)
    off.setup()
    assert off.heldout_dataloader() is None and torch.equal(off.train_idx, dm.train_idx)


def test_heldout_evaluation_leaves_training_bit_identical(compose_config, tmp_path):
    on = run(compose_config(*FAST, "data.heldout=300", f"paths.runs={tmp_path / 'on'}"))
    off = run(compose_config(*FAST, f"paths.runs={tmp_path / 'off'}"))
    assert without(on, "heldout_top1", "heldout_top1_bn") == without(off)  # same training, same validation
    for m in [on["init_metrics"], *on["metrics"]]:
        assert 0 <= m["heldout_top1"] <= 1 and 0 <= m["heldout_top1_bn"] <= 1
    assert "heldout_top1" not in off["metrics"][0] and "heldout_top1" not in off["init_metrics"]
    from bench.layout import hydra_dir

    weights = [torch.load(hydra_dir("target", compose_config(*FAST, *extra, f"paths.runs={tmp_path / side}"))
                          / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for side, extra in (("on", ["data.heldout=300"]), ("off", []))]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# ---------------------------------------------------------------------------------------------------------
# Warm-up on a per-epoch schedule
# ---------------------------------------------------------------------------------------------------------


def test_warmup_ramps_the_first_steps_then_follows_the_epoch_schedule():
    from bench.config import OptimConfig

    o = OptimConfig()  # the paper's mocked cosine
    assert warmed_lr_factor(0, 39, 20, o, 3) == pytest.approx(lr_factor(0, o, 3) / 20)
    assert warmed_lr_factor(9, 39, 20, o, 3) == pytest.approx(lr_factor(0, o, 3) * 10 / 20)
    for step in (20, 38, 39, 80, 116):  # after the warm-up: exactly the per-epoch factor of the step's epoch
        assert warmed_lr_factor(step, 39, 20, o, 3) == lr_factor(step // 39, o, 3)


def test_a_warmed_up_run_ends_at_the_same_learning_rate_along_another_path(compose_config, tmp_path):
    cold = run(compose_config(*FAST, f"paths.runs={tmp_path / 'cold'}"))
    warm = run(compose_config(*FAST, "optim.warmup_steps=3", f"paths.runs={tmp_path / 'warm'}"))
    assert warm["config"]["optim"]["warmup_steps"] == 3
    assert without(warm) != without(cold)  # the first 3 steps were smaller
    from bench.layout import hydra_dir

    lrs = [torch.load(hydra_dir("target", compose_config(*FAST, *extra, f"paths.runs={tmp_path / side}"))
                      / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"][0]["param_groups"][0]["lr"]
           for side, extra in (("cold", []), ("warm", ["optim.warmup_steps=3"]))]
    assert lrs[0] == pytest.approx(lrs[1]) and lrs[0] == pytest.approx(0.004 * lr_factor(2, warm_cfg_optim(), 2))


def warm_cfg_optim():
    from bench.config import OptimConfig

    return OptimConfig()


def test_negative_warmup_or_heldout_is_refused_in_one_line(compose_config):
    with pytest.raises(ConfigError, match="optim.warmup_steps must be 0"):
        check_config(compose_config(*FAST, "optim.warmup_steps=-1"))
    with pytest.raises(ConfigError, match="data.heldout must be 0"):
        check_config(compose_config(*FAST, "data.heldout=-5"))


# ---------------------------------------------------------------------------------------------------------
# The recipe axis: config, folders, plan
# ---------------------------------------------------------------------------------------------------------

RECIPES = ['+grid.recipes.slow=["optim.lr=0.001","optim.warmup_steps=2"]', "+grid.recipes.paper=[]"]


def test_a_recipe_applies_its_settings_and_names_its_folder(compose_config, tmp_path):
    cfg = apply_recipe(compose_config(*FAST, *RECIPES, "recipe=slow", f"paths.runs={tmp_path}"))
    assert cfg.optim.lr == 0.001 and cfg.optim.warmup_steps == 2
    record = run(compose_config(*FAST, *RECIPES, "recipe=slow", f"paths.runs={tmp_path}"))
    folder = tmp_path / "smoke" / "slow" / "test_resnet_to_effnet" / "random" / "seed0"
    assert json.loads((folder / "run.json").read_text())["recipe"] == "slow"
    assert record["config"]["optim"]["lr"] == 0.001 and record["config"]["recipe"] == "slow"


def test_recipe_mistakes_are_one_line_errors_with_suggestions(compose_config):
    with pytest.raises(ConfigError, match="unknown recipe 'slwo'; did you mean slow"):
        apply_recipe(compose_config(*FAST, *RECIPES, "recipe=slwo"))
    with pytest.raises(ConfigError, match="has no recipes"):
        apply_recipe(compose_config(*FAST, "recipe=slow"))
    with pytest.raises(ConfigError, match="optim has no key 'lrr'; did you mean optim.lr"):
        apply_recipe(compose_config(*FAST, '+grid.recipes.x=["optim.lrr=1"]', "recipe=x"))
    with pytest.raises(ConfigError, match="optim.<key>=value and distill.<key>=value settings only"):
        apply_recipe(compose_config(*FAST, '+grid.recipes.x=["epochs=4"]', "recipe=x"))
    with pytest.raises(ConfigError, match="cannot name a recipe"):
        apply_recipe(compose_config(*FAST, "+grid.recipes.sources=[]", "recipe=sources"))
    with pytest.raises(ConfigError, match="cannot be applied"):
        apply_recipe(compose_config(*FAST, '+grid.recipes.x=["optim.lr=fast"]', "recipe=x"))


def test_a_recipe_never_changes_how_a_source_is_trained(compose_config):
    cfg = apply_recipe(compose_config("experiment=smoke", '+grid.recipes.x=["optim.lr=0.001"]', "recipe=x"))
    with pytest.raises(ConfigError, match="would also change how the source is trained.*source.lr"):
        check_config(cfg)
    check_config(apply_recipe(compose_config("experiment=smoke", '+grid.recipes.x=["optim.lr=0.001"]', "recipe=x",
                                             "source.lr=0.004")))


def test_runs_of_a_recipe_grid_without_a_recipe_are_ad_hoc():
    grid = {"pairs": ["p"], "inits": ["random"], "seeds": [0], "recipes": {"a": [], "b": ["optim.lr=0.001"]}}
    assert outside_grid(grid, "p", "random", 0, "a") == []
    assert "no recipe given" in outside_grid(grid, "p", "random", 0)[0]
    assert str(run_path("r", "e", grid, "p", "random", 0, "b")) == "r/e/b/p/random/seed0"
    assert str(run_path("r", "e", grid, "p", "random", 0, "c")) == "r/e/adhoc/c/p/random/seed0"
    assert str(run_path("r", "e", grid, "p", "random", 0)) == "r/e/adhoc/p/random/seed0"


def test_the_recipe_experiment_plans_every_recipe_and_shares_sources_and_baselines(tmp_path):
    from bench.planning.plan import plan_sweep

    plan = plan_sweep(["experiment=recipe", f"paths.runs={tmp_path}"])
    assert plan.axes["recipe"] == ["paper", "adam_lr1e-3", "adam_lr4e-3_warmup20"]
    assert len(plan.runs) == 45  # per recipe and seed: random and ghn once for tinynet_e, dpiat for 3 pairs
    sources = [t for t in plan.prerequisites if t.kind == "source"]
    assert sorted(t.network for t in sources) == ["resnet10t", "tinynet_d"]  # once, whatever the recipe
    for recipe in plan.axes["recipe"]:
        mine = [t for t in plan.runs if f"recipe={recipe}" in t.argv]
        assert len(mine) == 15 and all(t.folder.parents[2] == tmp_path / "recipe" / recipe for t in mine)
    one = plan_sweep(["experiment=recipe", f"paths.runs={tmp_path}", "recipe=adam_lr1e-3", "pair=tinynet_d_to_e"])
    assert len(one.runs) == 9 and one.axes["recipe"] == ["adam_lr1e-3"]
    with pytest.raises(SweepError, match="recipe=nope: not a recipe of this experiment"):
        plan_sweep(["experiment=recipe", f"paths.runs={tmp_path}", "recipe=nope"])
    added = plan_sweep(["experiment=recipe", f"paths.runs={tmp_path}", '+grid.recipes.adam_lr2e-3=["optim.lr=0.002"]'])
    assert len(added.runs) == 60 and any("recipe=adam_lr2e-3" in t.argv for t in added.runs)


# ---------------------------------------------------------------------------------------------------------
# The recipe table, on hand-made runs
# ---------------------------------------------------------------------------------------------------------

SETTINGS = {"paper": [], "slow": ["optim.lr=0.001"]}
FAKE = {  # (recipe, init): [(bn curve, held-out bn curve) per seed]
    ("paper", "random"): [([0.4, 0.5], [0.5, 0.6]), ([0.6, 0.4], [0.4, 0.6])],
    ("paper", "dpiat"): [([0.8, 0.6], [0.7, 0.7]), ([0.6, 0.9], [0.6, 0.7])],
    ("slow", "random"): [([0.2, 0.25], [0.3, 0.4]), ([0.3, 0.2], [0.5, 0.4])],
    ("slow", "dpiat"): [([0.9, 0.8], [0.8, 0.9]), ([0.7, 0.6], [0.7, 0.8])],
}


def write_recipe_run(root: Path, recipe: str, pair: str, init: str, seed: int, bn: list[float], held: list[float],
                     source: str | None = "a") -> None:
    """A run.json as the harness writes it with a recipe and data.heldout, holding what the tables read."""
    path = root / recipe / pair / init / f"seed{seed}" / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = [{"epoch": e, "val_top1": v - 0.1, "val_loss": 1.0, "val_top1_bn": v, "heldout_top1": h - 0.05,
                "heldout_top1_bn": h} for e, (v, h) in enumerate(zip(bn, held), 1)]
    run = {"schema_version": 1, "status": "finished", "experiment": root.name, "pair": pair, "init": init,
           "seed": seed, "recipe": recipe, "source": source, "target": "t", "data": "fm", "epochs": len(bn),
           "similarity": None, "init_metrics": None, "metrics": metrics,
           "config": {"grid": {"recipes": SETTINGS}, "recipe": recipe}}
    path.write_text(json.dumps(run))


@pytest.fixture
def recipe_runs(tmp_path) -> Path:
    root = tmp_path / "runs" / "recipe"
    for (recipe, init), seeds in FAKE.items():
        for seed, (bn, held) in enumerate(seeds):
            write_recipe_run(root, recipe, "a_to_t", init, seed, bn, held)
    return root


def test_the_recipe_is_selected_on_heldout_images_and_the_ratios_are_paired_per_seed(recipe_runs):
    from bench.results.recipe import recipe_rows

    rows, notes = recipe_rows(recipe_runs)
    by = {(r["init"], r["recipe"]): r for r in rows}
    assert [(r["init"], r["recipe"]) for r in rows] == [("random", "paper"), ("random", "slow"),
                                                        ("dpiat", "paper"), ("dpiat", "slow")]
    assert by["random", "paper"]["heldout_top1_mean"] == pytest.approx(0.6)
    assert by["random", "slow"]["heldout_top1_mean"] == pytest.approx(0.45)
    assert by["dpiat", "paper"]["heldout_top1_mean"] == pytest.approx(0.7)
    assert by["dpiat", "slow"]["heldout_top1_mean"] == pytest.approx(0.85)
    assert [k for k, r in by.items() if r["selected"]] == [("random", "paper"), ("dpiat", "slow")]
    assert by["dpiat", "paper"]["best_top1_bn_mean"] == pytest.approx(0.85)  # validation would pick paper
    d = by["dpiat", "paper"]
    assert (d["selected_recipe"], d["random_recipe"]) == ("slow", "paper")
    assert d["ratio_selected_bn_mean"] == pytest.approx((0.9 / 0.5 + 0.7 / 0.6) / 2)
    assert d["ratio_selected_bn_seeds"] == "1.80 1.17"
    assert d["ratio_paper_bn_mean"] == pytest.approx(1.55)
    assert d["ratio_paper_bn_ci_low"] == pytest.approx(1.55 - 12.7062 * 0.05, abs=1e-4)
    assert d["ratio_paper_bn_ci_high"] == pytest.approx(1.55 + 12.7062 * 0.05, abs=1e-4)
    assert d["interval"] == "t" and d["n_ratio_selected"] == 2 and d["n_ratio_paper"] == 2
    assert by["dpiat", "slow"]["ratio_same_recipe_bn_mean"] == pytest.approx((0.9 / 0.25 + 0.7 / 0.3) / 2)
    assert by["random", "slow"]["ratio_selected_bn_mean"] == pytest.approx(1.0)
    assert by["dpiat", "paper"]["settings"] == "the experiment's own settings"
    assert by["dpiat", "slow"]["settings"] == "optim.lr=0.001"
    assert notes[0] == "paper's recipe (the reference): paper"


def test_the_recipe_table_is_what_aggregate_writes_for_a_recipe_experiment(recipe_runs, tmp_path):
    from bench.aggregate import main

    out = tmp_path / "table"
    assert main([str(recipe_runs), "--out", str(out), "--no-plots"]) == 0
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"pair", "init", "recipe", "n", "selected", "heldout_top1_mean", "best_top1_bn_mean"} <= set(rows[0])
    assert [(r["init"], r["recipe"], r["selected"]) for r in rows] == [
        ("random", "paper", "True"), ("random", "slow", "False"), ("dpiat", "paper", "False"), ("dpiat", "slow", "True")]
    md = (out / "table.md").read_text()
    assert "| a_to_t | dpiat | slow | paper | 1.48 [" in md
    assert (out / "paper" / "table.csv").exists() and (out / "slow" / "table.md").exists()  # each recipe's own


def test_a_tie_goes_to_the_first_recipe_by_name_and_a_missing_reference_is_said(tmp_path):
    from bench.results.recipe import recipe_rows

    root = tmp_path / "runs" / "recipe"
    for recipe in ("b", "a"):
        for init in ("random", "dpiat"):
            write_recipe_run(root, recipe, "a_to_t", init, 0, [0.5, 0.5], [0.5, 0.5])
    rows, notes = recipe_rows(root)  # SETTINGS has no "a" or "b": no recipe is known to set nothing
    assert [(r["init"], r["recipe"]) for r in rows if r["selected"]] == [("random", "a"), ("dpiat", "a")]
    assert any(n.startswith("no paper's-recipe ratio") for n in notes)
    assert all(r["ratio_paper_bn_mean"] is None for r in rows)
    with pytest.raises(AggregateError, match="not a recipe here"):
        recipe_rows(root, reference="paper")
