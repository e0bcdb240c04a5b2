"""bench/compare.py (bench/results/agreement.py) and where aggregating your own runs writes (bench/layout.py).

Hand-made run folders (tests/test_aggregate.py's writer) with numbers checked by hand, then the committed proxy
runs: an exact copy agrees, a copy with one run's accuracies halved disagrees and names that run's pair and init,
and aggregating a partial copy leaves the committed results/proxy/ untouched.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from scipy.stats import t

from bench.aggregate import main as aggregate_cli
from bench.compare import main
from bench.layout import default_table_dir
from bench.results.agreement import Pooled, judge
from tests.test_aggregate import write_run

REPO = Path(__file__).resolve().parents[1]
PROXY = REPO / "results" / "proxy" / "runs"

# (pair, init, source) -> best top-1 per seed (2 epochs; the curve is [best - 0.1, best])
CELLS = {("a_to_t", "random", None): [0.50, 0.54, 0.52], ("a_to_t", "dpiat", "a"): [0.60, 0.66, 0.63]}


@pytest.fixture(autouse=True)
def at_the_repository_root(monkeypatch):
    """compare.py prints paths inside the working folder relative to it: run from the repository root."""
    monkeypatch.chdir(REPO)


def make(root: Path, shift: dict | None = None, seeds: int = 3) -> Path:
    for (pair, init, source), best in CELLS.items():
        for seed, value in enumerate(best[:seeds]):
            value += (shift or {}).get((pair, init), 0.0)
            write_run(root, pair, init, seed, [value - 0.1, value], source=source, bn=[value - 0.1, value])
    return root


def test_the_rule_by_hand():
    # pooled std 0.02 on 10 df, 1 vs 3 seeds, one comparison: t_10(0.975) * 0.02 * sqrt(1 + 1/3)
    j = judge([0.66], [0.60, 0.62, 0.64], Pooled(0.02, 10), k=1)
    assert j.tolerance == pytest.approx(t.ppf(0.975, 10) * 0.02 * math.sqrt(4 / 3))  # 0.0515
    assert j.difference == pytest.approx(0.04) and j.agree
    # the cell's own std (0.1) is larger than the pooled one: it is used
    wide = judge([0.7], [0.5, 0.6, 0.7], Pooled(0.02, 10), k=1)
    assert wide.tolerance == pytest.approx(t.ppf(0.975, 10) * 0.1 * math.sqrt(4 / 3))
    # Bonferroni: 14 comparisons make each tolerance wider
    assert judge([0.7], [0.6, 0.62, 0.64], Pooled(0.02, 10), k=14).tolerance == pytest.approx(
        t.ppf(1 - 0.05 / 28, 10) * 0.02 * math.sqrt(4 / 3))
    assert not judge([0.80], [0.60, 0.62, 0.64], Pooled(0.02, 10), k=1).agree


def test_identical_runs_agree_and_a_shifted_cell_is_named(tmp_path, capsys):
    ref = make(tmp_path / "ref" / "exp")
    assert main([str(make(tmp_path / "mine" / "exp")), str(ref)]) == 0
    out = capsys.readouterr().out
    assert "verdict: all 2 (pair, init) compared agree with the reference over epochs 1-2 (6 seeds bit-identical)" \
        in out
    assert "a_to_t / dpiat: agree" in out and "n=3  best top-1 0.630 +- 0.030" in out
    assert out.count(": epochs 1-2 bit-identical") == 6 and ": difference" not in out  # identical: no mean judged

    # pooled std over both reference cells: 0.02 and 0.03 -> sqrt((0.02^2 + 0.03^2) / 2), 4 df; k = 2: the
    # shifted cell's two measures (the random cell's seeds are identical, so not judged by the rule)
    s = math.sqrt((0.02 ** 2 + 0.03 ** 2) / 2)
    tol = t.ppf(1 - 0.05 / 4, 4) * max(s, 0.03) * math.sqrt(2 / 3)
    mine = make(tmp_path / "low" / "exp", shift={("a_to_t", "dpiat"): -(tol + 0.01)})
    assert main([str(mine), str(ref)]) == 1
    out = capsys.readouterr().out
    assert f"agrees within +-{tol:.3f}" in out
    assert "seed 0: differs first at epoch 1, top-1" in out
    assert "a_to_t / dpiat: DISAGREE" in out and "a_to_t / random: agree" in out
    assert out.strip().splitlines()[-1] == "verdict: 1 of 2 (pair, init) DISAGREE with the reference: a_to_t/dpiat"
    close = make(tmp_path / "close" / "exp", shift={("a_to_t", "dpiat"): -(tol - 0.01)})
    assert main([str(close), str(ref)]) == 0


def test_a_partial_reproduction_compares_what_it_has(tmp_path, capsys):
    ref = make(tmp_path / "ref" / "exp")
    mine = make(tmp_path / "mine" / "exp", seeds=1)
    shutil.rmtree(mine / "a_to_t" / "dpiat")
    assert main([str(mine), str(ref)]) == 0
    out = capsys.readouterr().out
    assert "not in yours: 1 (pair, init) of the reference (a_to_t/dpiat)" in out
    assert out.strip().splitlines()[-1] == ("verdict: all 1 (pair, init) compared agree with the reference over "
                                            "epochs 1-2 (1 seed bit-identical); 1 (pair, init) of the reference not "
                                            "in yours")


def test_a_seed_both_sides_ran_is_checked_exactly_and_only_the_rest_by_means(tmp_path, capsys):
    """One rerun seed, bit-identical to the committed one, beside a three-seed reference: "identical", no
    "difference" against the reference's mean (the old output said +0.021 for such a seed)."""
    ref = make(tmp_path / "ref" / "exp")
    one = make(tmp_path / "one" / "exp", seeds=1)
    assert main([str(one), str(ref)]) == 0
    out = capsys.readouterr().out
    assert "seed 0: epochs 1-2 bit-identical" in out and ": difference" not in out and "seed 1" not in out
    # the same seed 0 plus a seed 5 the reference lacks: seed 0 checked exactly, seed 5 alone against the mean
    write_run(one, "a_to_t", "dpiat", 5, [0.53, 0.63], source="a", bn=[0.53, 0.63])
    assert main([str(one), str(ref)]) == 0
    out = capsys.readouterr().out
    dpiat_cell = out[out.index("a_to_t / dpiat"):]
    assert "seed 0: epochs 1-2 bit-identical" in dpiat_cell and "your seed 5 (not identical to a reference seed)" in dpiat_cell
    assert "best top-1: difference +0.000," in dpiat_cell  # 0.63 against the reference's mean 0.63
    # a shared seed that differs is named with the first number that differs, and judged with the rest
    write_run(one, "a_to_t", "dpiat", 0, [0.50, 0.60], source="a", bn=[0.50, 0.61])
    assert main([str(one), str(ref)]) == 0
    out = capsys.readouterr().out
    assert "seed 0: differs first at epoch 2, top-1, BN 0.6100 yours, 0.6000 the reference" in out
    assert "your seeds 0, 5 (not identical to a reference seed)" in out


def test_a_different_set_up_disagrees_and_planned_epochs_alone_are_none(tmp_path, capsys):
    ref = make(tmp_path / "ref" / "exp")
    other = tmp_path / "other" / "exp"
    for seed in range(3):
        write_run(other, "a_to_t", "random", seed, [0.4, 0.5], data="cifar")
    assert main([str(other), str(ref)]) == 1
    assert "a_to_t / random: DISAGREE (different set-up: yours t on cifar, the reference t on fm)" in \
        capsys.readouterr().out
    # 3 planned epochs beside 2 (no schedule recorded over them): epochs 1-2 compared, seed by seed
    longer = tmp_path / "longer" / "exp"
    for seed, best in enumerate(CELLS["a_to_t", "random", None]):
        write_run(longer, "a_to_t", "random", seed, [best - 0.1, best, best + 0.01], bn=[best - 0.1, best, best],
                  epochs=3)
    assert main([str(longer), str(ref)]) == 0
    out = capsys.readouterr().out
    assert "epochs:    1-2 (the planned epochs both sides have: yours 3, the reference 2)" in out
    assert out.count(": epochs 1-2 bit-identical") == 3


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere"], "nowhere: no such folder"),
    (["{tmp}/empty"], "empty: no run.json under it at any level of <experiment>/[<recipe>/]<pair>/<init>/seed<k>/"),
    (["{tmp}/mine/exp"], "no committed results for the runs of experiment 'exp' (no results/exp/runs; committed "
                         "experiments: horizon, "),
    (["{tmp}/mine/exp", "{tmp}/nowhere"], "nowhere: no such folder"),
    (["{tmp}/mine/exp", "{tmp}/other/exp"], "have no (pair, init) in common"),
    (["{tmp}/mine/exp", "{tmp}/mine/exp", "--epochs", "0"], "--epochs must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    make(tmp_path / "mine" / "exp")
    (tmp_path / "empty").mkdir()
    write_run(tmp_path / "other" / "exp", "b_to_u", "random", 0, [0.3, 0.4], target="u")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_runs_of_two_experiments_are_refused(tmp_path, capsys):
    root = make(tmp_path / "mine" / "exp")
    path = root / "a_to_t" / "random" / "seed0" / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "experiment": "other"}))
    assert main([str(root)]) == 2
    assert "holds runs of 2 experiments (exp, other)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the committed proxy runs

def _halve(run_json: Path) -> None:
    run = json.loads(run_json.read_text())
    for entry in [run.get("init_metrics") or {}, *run["metrics"]]:
        for key in ("val_top1", "val_top1_bn"):
            if key in entry:
                entry[key] /= 2
    for key in ("best_val_top1", "final_val_top1"):
        run[key] /= 2
    run_json.write_text(json.dumps(run))


@pytest.mark.skipif(not PROXY.is_dir(), reason="the committed proxy runs are not in this checkout")
def test_proxy_copy_agrees_and_one_halved_run_is_named(tmp_path, capsys):
    exact = tmp_path / "exact" / "proxy"
    shutil.copytree(PROXY, exact)
    assert main([str(exact)]) == 0  # the reference: the committed results/proxy/runs
    out = capsys.readouterr().out
    assert "reference: results/proxy/runs\n" in out and "verdict: all 7 (pair, init) compared agree" in out
    assert "AMD EPYC (AVX512), torch 2.14.1+cu130, 1 thread: 21 runs" in out

    halved = tmp_path / "halved" / "proxy"
    shutil.copytree(PROXY, halved)
    _halve(halved / "rexnet_100_to_tinynet_e" / "dpiat" / "seed1" / "run.json")
    assert main([str(halved)]) == 1
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert verdict == ("verdict: 1 of 7 (pair, init) DISAGREE with the reference: rexnet_100_to_tinynet_e/dpiat")


@pytest.mark.skipif(not PROXY.is_dir(), reason="the committed proxy runs are not in this checkout")
def test_aggregating_a_partial_copy_of_the_proxy_leaves_the_committed_results_alone(tmp_path, capsys):
    def status() -> str:
        return subprocess.run(["git", "status", "--porcelain", "--", "results/proxy"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout

    before = status()
    partial = tmp_path / "results" / "runs" / "proxy"  # laid out as a sweep leaves your runs
    shutil.copytree(PROXY / "tinynet_d_to_e", partial / "tinynet_d_to_e")
    shutil.rmtree(partial / "tinynet_d_to_e" / "ghn" / "seed2")
    assert aggregate_cli([str(partial), "--no-plots"]) == 0
    assert "wrote " + str(partial / "table") in capsys.readouterr().out
    assert (partial / "table" / "table.md").exists() and status() == before
    assert default_table_dir(PROXY) == PROXY.parent  # only the committed copy writes the committed table
    assert default_table_dir(partial / "adhoc") == partial / "adhoc" / "table"
    assert main([str(partial)]) == 0  # the table folder inside is not mistaken for runs


# ----------------------------------------------------------------------------- slices of committed experiments
# A reviewer reruns a few epochs of one run of a long experiment (bench/run.py ... epochs=2 paths.runs=DIR) and
# compares them. A slice is made here from the committed run itself, cut after its first epochs, as a rerun on the
# committed machine writes it (bit-identical epochs).

RESULTS = REPO / "results"
COMMITTED = sorted(p.parent.name for p in RESULTS.glob("*/runs") if next(p.rglob("seed*/run.json"), None))


def cut(experiment: str, rel: str, epochs: int, runs: Path) -> Path:
    """The committed ``results/<experiment>/runs/<rel>/run.json`` cut after ``epochs`` epochs, as a run planned
    for ``epochs`` writes it, in ``<runs>/<experiment>/<rel>``; its folder."""
    run = json.loads((RESULTS / experiment / "runs" / rel / "run.json").read_text())
    run["metrics"] = run["metrics"][:epochs]
    run["epochs"] = epochs
    if isinstance(run.get("config"), dict):
        run["config"]["epochs"] = epochs
    for key in ("best_val_top1", "final_val_top1"):
        if key in run:
            run[key] = max(m["val_top1"] for m in run["metrics"]) if key.startswith("best") else \
                run["metrics"][-1]["val_top1"]
    folder = runs / experiment / rel
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(run))
    return folder


HORIZON_RUN = "paper/tinynet_d_to_e/random/seed0"


@pytest.mark.parametrize("level", ["", "horizon", "horizon/paper", "horizon/paper/tinynet_d_to_e",
                                   "horizon/paper/tinynet_d_to_e/random", "horizon/paper/tinynet_d_to_e/random/seed0"])
def test_a_two_epoch_slice_of_horizon_is_compared_from_any_level(tmp_path, capsys, level):
    """The issue's snags: DIR/horizon said "no run.json under <pair>/<init>/seed<k>/", DIR/horizon/paper "no
    (pair, init) in common" (the reference lacked paper/)."""
    cut("horizon", HORIZON_RUN, 2, tmp_path)
    assert main([str(tmp_path / level)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "reference: results/horizon/runs/paper\n" in out
    assert "epochs:    1-2 (the planned epochs both sides have: yours 2, the reference 50)" in out
    assert "tinynet_d_to_e / random: agree" in out and "  seed 0: epochs 1-2 bit-identical" in out
    last = "verdict: all 1 (pair, init) compared agree with the reference over epochs 1-2 (1 seed bit-identical)"
    if "random" in level:  # a slice of one cell: the reference's other cells are not the question
        assert "not in yours" not in out and out.strip().splitlines()[-1] == last
    else:  # a runs folder or a pair: what the reference has there and yours lacks is named in one line
        absent = 2 if level.endswith("tinynet_d_to_e") else 5
        assert f"not in yours: {absent} (pair, init) of the reference (" in out
        assert out.strip().splitlines()[-1] == f"{last}; {absent} (pair, init) of the reference not in yours"


def test_a_slice_against_the_named_reference_with_epochs_is_not_a_different_set_up(tmp_path, capsys):
    """The issue: --epochs 2 DIR/horizon/paper results/horizon/runs/paper said "DISAGREE (different set-up: 2
    planned epochs; the reference 50)", with no per-seed verdict."""
    cut("horizon", HORIZON_RUN, 2, tmp_path)
    args = ["--epochs", "2", str(tmp_path / "horizon" / "paper"), str(RESULTS / "horizon" / "runs" / "paper")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "different set-up" not in out and "seed 0: epochs 1-2 bit-identical" in out
    assert main(["--epochs", "1", *args[2:]]) == 0
    assert "seed 0: epoch 1 bit-identical" in capsys.readouterr().out
    # more epochs than the slice has: refused, naming the epochs there are
    assert main(["--epochs", "3", *args[2:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs 3: your runs were planned for 2 epochs" in err, err


def test_a_slice_of_two_recipes_is_compared_recipe_by_recipe(tmp_path, capsys):
    cut("horizon", HORIZON_RUN, 2, tmp_path)
    cut("horizon", "adam_lr1e-3/tinynet_d_to_e/dpiat/seed1", 2, tmp_path)
    assert main([str(tmp_path / "horizon")]) == 0
    out = capsys.readouterr().out
    assert "reference: results/horizon/runs/paper\n" in out and "reference: results/horizon/runs/adam_lr1e-3\n" in out
    assert "seed 1: epochs 1-2 bit-identical" in out and "seed 0: epochs 1-2 bit-identical" in out
    assert "yours:     recipe paper: " in out and "yours:     recipe adam_lr1e-3: " in out
    assert out.strip().splitlines()[-1] == ("verdict: all 2 (pair, init) compared agree with the reference over "
                                            "epochs 1-2 (2 seeds bit-identical); 5 (pair, init) of the reference not "
                                            "in yours")


def test_a_runs_folder_of_several_experiments_compares_those_with_committed_runs(tmp_path, capsys):
    cut("horizon", HORIZON_RUN, 2, tmp_path)
    cut("proxy", "tinynet_d_to_e/random/seed1", 1, tmp_path)
    write_run(tmp_path / "mine", "a_to_t", "random", 0, [0.4, 0.5])  # experiment "mine": nothing committed
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"not compared: {tmp_path}: no committed results for the runs of experiment 'mine' (no " \
           "results/mine/runs)" in out
    assert "yours:     experiment horizon, recipe paper: " in out and "yours:     experiment proxy, the runs: " in out
    assert "seed 0: epochs 1-2 bit-identical" in out and "seed 1: epoch 1 bit-identical" in out


@pytest.mark.parametrize("experiment", COMMITTED)
def test_a_one_epoch_slice_of_every_committed_experiment_is_found_and_agrees(tmp_path, capsys, experiment):
    """Whatever levels the experiment writes (recipes or not, pairs by model): the slice's own seed checked."""
    runs = RESULTS / experiment / "runs"
    first = next(p for p in sorted(runs.rglob("seed*/run.json")) if json.loads(p.read_text())["status"] == "finished"
                 and "sources" not in p.parts and "adhoc" not in p.parts)
    rel = first.parent.relative_to(runs)
    cut(experiment, str(rel), 1, tmp_path)
    assert main([str(tmp_path / experiment)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert f"reference: {(runs / rel).parents[2].relative_to(REPO)}\n" in out
    assert f"{rel.parts[-3]} / {rel.parts[-2]}: agree" in out
    assert f"seed {int(rel.name[4:])}: epoch 1 bit-identical" in out


def test_planned_epochs_differ_under_a_cosine_over_them_is_a_different_set_up(tmp_path, capsys):
    """Only where the learning rate depends on the planned epochs (optim.schedule cosine): the paper's mocked
    cosine does not, so a 2-epoch run's epochs are the 50-epoch run's."""
    cut("horizon", HORIZON_RUN, 2, tmp_path)
    path = tmp_path / "horizon" / HORIZON_RUN / "run.json"
    run = json.loads(path.read_text())
    run["config"]["optim"]["schedule"] = "cosine"
    path.write_text(json.dumps(run))
    assert main([str(tmp_path / "horizon")]) == 1
    out = capsys.readouterr().out
    assert ("tinynet_d_to_e / random: DISAGREE (different set-up: the learning rate follows a cosine over the "
            "planned epochs, yours 2, the reference 50)") in out


# ----------------------------------------------------------------------------- docs/reproducing.md's slices

def doc_slices() -> list[tuple[str, str]]:
    """(run command, compare command) of docs/reproducing.md's "Check a slice" block, in order."""
    page = (REPO / "docs" / "reproducing.md").read_text()
    block = page[page.index("<!-- slices:"):].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.splitlines() if ln and not ln.startswith("#")]
    return list(zip(lines[::2], lines[1::2]))


def test_the_documented_slices_cover_every_long_experiment():
    experiments = [run.split("experiment=")[1].split()[0] for run, _ in doc_slices()]
    assert {"proxy", "horizon", "recipe", "selection", "transformers", "variants"} <= set(experiments)
    for run, check in doc_slices():
        assert run.startswith(".venv/bin/python bench/run.py ") and run.endswith(" paths.runs=/tmp/slice")
        assert check == f".venv/bin/python bench/compare.py /tmp/slice/{run.split('experiment=')[1].split()[0]}"


@pytest.mark.parametrize("run, check", doc_slices(), ids=lambda c: c.split("experiment=")[-1].split()[0])
def test_each_documented_slice_is_compared_as_printed(tmp_path, compose_config, capsys, run, check):
    """The run command composes to a folder whose committed run exists at the same place; a slice cut from that
    run (what a rerun on the committed machine writes) is then compared by the printed command, seed by seed."""
    from bench.layout import target_run_path

    overrides = [o.replace("/tmp/slice", str(tmp_path)) for o in run.split()[2:]]
    cfg = compose_config(*overrides)
    folder = target_run_path(cfg)
    experiment_dir = tmp_path / cfg.experiment_name
    rel = folder.relative_to(experiment_dir)
    assert (RESULTS / cfg.experiment_name / "runs" / rel / "run.json").is_file(), f"no committed run at {rel}"
    cut(cfg.experiment_name, str(rel), cfg.epochs, tmp_path)
    assert main([check.split()[-1].replace("/tmp/slice", str(tmp_path))]) == 0
    out = capsys.readouterr().out
    span = "epoch 1" if cfg.epochs == 1 else f"epochs 1-{cfg.epochs}"
    assert f"seed {cfg.seed}: {span} bit-identical" in out


def test_the_slices_run_here_say_what_their_committed_run_json_says(capsys):
    """docs/reproducing.md's table of the slices run as printed: each row's time is its terminal log's, and its
    seed line what compare.py prints for its run.json in results/<experiment>/slice."""
    page = (REPO / "docs" / "reproducing.md").read_text()
    table = page[page.index("<!-- slices run here:"):].split("\n\n")[0].splitlines()[3:]
    assert len(table) >= 5
    for row in table:
        experiment, wall, seed_line = (c.strip() for c in row.strip("|").split("|"))
        folder = RESULTS / experiment / "slice"
        seconds = float(re.search(r"wall ([\d.]+) s", (folder / "terminal.log").read_text()).group(1))
        assert wall.startswith(f"{int(seconds // 60)} min {round(seconds % 60)} s "), (experiment, seconds)
        assert main([str(folder / experiment)]) == 0
        assert f"  {seed_line}\n" in capsys.readouterr().out, experiment
