"""Source selection, measured: does a predictor computed before training pick the source that helps most?

The analysis behind ``bench/selection.py`` (its entry point; ``results/selection/README.md`` shows the result).
Input: the run folders of ``experiment=selection`` (an all-pairs grid: faithful ``dpiat`` per (source,
target) pair and ``random`` per target, several seeds; conf/experiment/selection.yaml). The **gain** of a pair
is the paired ratio to random init with BatchNorm statistics recomputed (``val_top1_bn``): per seed, the best
top-1 over epochs 1..e of the DPIAT target / that of the random target of the same target and seed, averaged
over seeds; after epoch 1 and after the last epoch. Only finished runs count: a pair with a failed, running
or interrupted run is named and left out, never averaged.

**Predictors**, each computed from the source's weights, the target's initialisation (run seed 0) and 512
fixed training images outside the targets' training subset, before any target training, each timed
(seconds per pair, in ``predictors.json``):

- ``similarity``: DPIAT's architecture similarity (the paper's); shape-only.
- ``overwritten``: the fraction of the target's parameters the transfer writes; shape-only.
- ``transfer_top1``: the transferred target's top-1 on 256 of those images, its BatchNorm statistics
  recomputed on the other 256 (data-aware: it uses the source's trained classifier as the transfer maps it).
- ``probe_top1``: a ridge-regression linear probe on the transferred target's penultimate features (statistics
  recomputed as above), fitted on 256 images, scored on the other 256 (data-aware, head-free).
- ``source_top1``: the source's own validation top-1, as its training recorded it (what a user knows of a
  checkpoint).
- ``combined``: a ridge regression of the gain on the five above (standardised), fitted leave-one-target-out:
  the pairs of a target are scored by a fit on the other targets' pairs only.

The predictors are cached in ``<runs>/selection_predictors.json`` (the source checkpoints are needed once; the
committed copy of the runs carries the file). The statistics (:mod:`bench.results.selection_stats`, the same
function for our grid and for the authors' published pairs, ``results/selection/reference/sim.csv``) go to
the output folder (:func:`run`): ``selection.md``/``.csv``,
``summary.json``, ``pairs.csv``, ``similarity_heatmap.png``, ``predictors_vs_gain.png``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.errors import AggregateError
from bench.files import atomic_write_json, atomic_write_text
from bench.results.runs import find_runs
from bench.results.selection_stats import paired_difference, selection_stats

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "results" / "selection" / "reference" / "sim.csv"
PREDICTORS_FILE = "selection_predictors.json"
PREDICTOR_IMAGES = 512  # 256 to recompute BatchNorm statistics / fit the probe, 256 to score
PREDICTOR_SEED = 20  # which training images (fixed, outside the targets' training subset)
SHAPE_ONLY = ("similarity", "overwritten")
MEASURED = ("similarity", "overwritten", "transfer_top1", "probe_top1", "source_top1")
PREDICTORS = (*MEASURED, "combined")
LABELS = {"similarity": "DPIAT similarity (the paper's)", "overwritten": "fraction of target parameters overwritten",
          "transfer_top1": "transferred top-1, BN recomputed (256 images)",
          "probe_top1": "linear probe on transferred features (256+256 images)",
          "source_top1": "the source's own top-1",
          "combined": "ridge combination, leave-one-target-out"}


# -- gains -------------------------------------------------------------------------------------------------
def measured_gains(runs_dir: Path) -> tuple[list[dict], list[str], dict]:
    """One record per (source, target) pair with finished dpiat runs: gains after epoch 1 and the last epoch
    (mean over the seeds that have a finished random run of the same target and seed), and the notes."""
    runs, problems = find_runs(runs_dir)
    notes = [f"{pair}/{init}: {p}" for (pair, init), ps in problems.items() for p in ps]
    random = {(r.target, r.seed): r for r in runs if r.init == "random"}
    epochs = sorted({r.epochs for r in runs})
    if len(epochs) > 1:
        raise AggregateError(f"{runs_dir}: runs planned for different epochs {epochs}; one analysis needs one")
    if not runs:
        raise AggregateError(f"{runs_dir}: no run.json found (run the grid: .venv/bin/python bench/sweep.py "
                             "experiment=selection --local --jobs 2)")
    last = epochs[0]
    by_pair: dict[tuple[str, str], list] = defaultdict(list)
    for r in runs:
        if r.init == "dpiat":
            by_pair[r.source, r.target].append(r)
    records, info = [], {"epochs": last, "seeds": sorted({r.seed for r in runs})}
    for (source, target), rs in sorted(by_pair.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        bad = [r.describe(last) for r in rs if r.status != "finished"]
        bad += [f"random seed{r.seed} " + random[target, r.seed].describe(last) if (target, r.seed) in random
                else f"no random run for seed{r.seed}" for r in rs
                if (target, r.seed) not in random or random[target, r.seed].status != "finished"]
        if bad:
            notes.append(f"{source} -> {target} left out: " + "; ".join(bad))
            continue
        rec = {"target": target, "source": source, "pair": rs[0].pair, "seeds": sorted(r.seed for r in rs),
               "similarity_run": rs[0].similarity}
        for key, e in (("gain_epoch1", 1), ("gain_last", last)):
            per_seed = []
            for r in sorted(rs, key=lambda r: r.seed):
                mine, base = r.curve(e, bn=True), random[target, r.seed].curve(e, bn=True)
                if mine is None or base is None:
                    raise AggregateError(f"{r.path}: no BatchNorm-recomputed top-1 for epochs 1..{e} "
                                         "(runs made with eval.bn_batches=0 cannot be analysed here)")
                per_seed.append(max(mine) / max(base))
            rec[key] = float(np.mean(per_seed))
            rec[key + "_per_seed"] = per_seed
        records.append(rec)
    return records, notes, info


# -- predictors ------------------------------------------------------------------------------------------
def _run_json(runs_dir: Path, pair: str, seed: int) -> dict:
    return json.loads((runs_dir / pair / "dpiat" / f"seed{seed}" / "run.json").read_text())


def _images(cfg) -> tuple:
    """(x, y): PREDICTOR_IMAGES fixed training images outside the targets' training subset, eval transform."""
    import torch

    from bench.data.loaders import InMemoryLoader
    from bench.data.module import build_datamodule
    from bench.data.sampling import EpochSampler
    from bench.seeding import generator

    dm = build_datamodule(cfg.data, model_name=cfg.pair.target, seed=0)
    dm.setup()
    if not hasattr(dm, "train_x"):
        raise AggregateError("the predictors read in-memory data sets only (Fashion-MNIST, digits, CIFAR)")
    outside = torch.ones(len(dm.train_y), dtype=torch.bool)
    outside[dm.train_idx] = False
    pool = outside.nonzero().flatten()
    if len(pool) < PREDICTOR_IMAGES:
        raise AggregateError(f"only {len(pool)} training images outside the training subset; "
                             f"the predictors need {PREDICTOR_IMAGES}")
    idx = pool[torch.randperm(len(pool), generator=generator(PREDICTOR_SEED))[:PREDICTOR_IMAGES]].sort().values
    d = dm.cfg
    loader = InMemoryLoader(dm.train_x, dm.train_y, EpochSampler(idx, shuffle=False), batch_size=len(idx),
                            train=False, resolution=dm.resolution, mean=list(d.mean), std=list(d.std),
                            scale=dm.scale, hflip=False)
    return next(iter(loader))


def ridge_probe(f_fit, y_fit, f_score, y_score, num_classes: int, alpha: float = 1.0) -> float:
    """Top-1 of a ridge-regression classifier (one-hot targets, standardised features, bias) on the score set."""
    mu, sd = f_fit.mean(0), f_fit.std(0) + 1e-6
    a = np.hstack([(f_fit - mu) / sd, np.ones((len(f_fit), 1))])
    b = np.hstack([(f_score - mu) / sd, np.ones((len(f_score), 1))])
    onehot = np.eye(num_classes)[y_fit]
    reg = alpha * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(a.T @ a + reg, a.T @ onehot)
    return float(((b @ w).argmax(1) == y_score).mean())


def compute_predictors(runs_dir: Path, records: list[dict], log=print) -> dict:
    """The measured predictors of every pair in ``records`` (needs the sources' weight files), timed."""
    import torch
    from omegaconf import OmegaConf

    import dpiat
    from bench.running.bn_eval import recalibrated
    from bench.running.harness import fresh_model

    torch.set_num_threads(1)
    out, images = {}, None
    for rec in records:
        run = _run_json(runs_dir, rec["pair"], rec["seeds"][0])
        cfg = OmegaConf.create(run["config"])
        sw = run.get("source_weights") or {}
        path = Path(sw.get("path") or "")
        if not path.is_file():
            raise AggregateError(f"{rec['source']} -> {rec['target']}: the source's weights {path} are not here; "
                                 f"the predictors are computed once from them (or copy {PREDICTORS_FILE} beside "
                                 "the runs)")
        if images is None:
            x, y = _images(cfg)
            half = len(y) // 2
            fit_x, score_x, fit_y, score_y = x[:half], x[half:], y[:half].numpy(), y[half:].numpy()
        nc, ic = cfg.data.num_classes, cfg.data.in_chans
        t = {}
        t0 = time.perf_counter()
        sim = dpiat.similarity(dpiat.create_model(rec["source"], device="meta", num_classes=nc, in_chans=ic),
                               dpiat.create_model(rec["target"], device="meta", num_classes=nc, in_chans=ic))
        t["similarity"] = time.perf_counter() - t0
        source = dpiat.create_model(rec["source"], num_classes=cfg.source.num_classes or nc,
                                    in_chans=cfg.source.in_chans or ic)
        dpiat.load_weights(source, path)
        target = fresh_model(rec["target"], cfg, 0)
        t0 = time.perf_counter()
        report = dpiat.transfer(source.eval(), target)
        t["overwritten"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            net = recalibrated(target, [fit_x[i:i + 128] for i in range(0, len(fit_x), 128)])
            top1 = float((net(score_x).argmax(1).numpy() == score_y).mean())
        t["transfer_top1"] = t["overwritten"] + time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            feats = [net.forward_head(net.forward_features(z), pre_logits=True).flatten(1).numpy().astype(np.float64)
                     for z in (fit_x, score_x)]
        probe = ridge_probe(feats[0], fit_y, feats[1], score_y, nc)
        t["probe_top1"] = t["transfer_top1"] + time.perf_counter() - t0
        out[rec["pair"]] = {"source": rec["source"], "target": rec["target"], "similarity": float(sim),
                            "overwritten": float(report.fraction_overwritten), "transfer_top1": top1,
                            "probe_top1": probe, "source_top1": sw.get("best_val_top1"), "seconds": t,
                            "source_weights": str(path)}
        log(f"  {rec['source']:>24} -> {rec['target']:<22} similarity {sim:.3f}  overwritten "
            f"{report.fraction_overwritten:.2f}  transfer top-1 {top1:.3f}  probe {probe:.3f}  "
            f"({sum(t.values()):.1f} s)")
    return out


def load_or_compute_predictors(runs_dir: Path, records: list[dict], log=print) -> dict:
    """The cached predictors for these pairs, computing (and caching atomically) the ones that are missing."""
    path = runs_dir / PREDICTORS_FILE
    cached = json.loads(path.read_text())["pairs"] if path.exists() else {}
    missing = [r for r in records if r["pair"] not in cached]
    if missing:
        log(f"computing the predictors of {len(missing)} pairs (one thread, {PREDICTOR_IMAGES} training images)")
        import platform

        import torch
        cached.update(compute_predictors(runs_dir, missing, log))
        atomic_write_json(path, {"images": PREDICTOR_IMAGES, "image_seed": PREDICTOR_SEED, "threads": 1,
                                 "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                                 "pairs": cached})
    return cached


def leave_one_target_out(records: list[dict], gain: str, features=MEASURED, alpha: float = 1.0) -> dict[str, float]:
    """``combined``: per pair, a ridge regression's prediction of ``gain`` from the standardised features,
    fitted on the pairs of the *other* targets only."""
    out = {}
    for target in dict.fromkeys(r["target"] for r in records):
        fit = [r for r in records if r["target"] != target and all(r.get(f) is not None for f in features)]
        if len(fit) < len(features) + 2:
            continue
        a = np.array([[r[f] for f in features] for r in fit], dtype=float)
        mu, sd = a.mean(0), a.std(0) + 1e-9
        z = np.hstack([(a - mu) / sd, np.ones((len(a), 1))])
        reg = alpha * np.eye(z.shape[1])
        reg[-1, -1] = 0.0
        w = np.linalg.solve(z.T @ z + reg, z.T @ np.array([r[gain] for r in fit]))
        for r in records:
            if r["target"] == target and all(r.get(f) is not None for f in features):
                out[r["pair"]] = float(np.append((np.array([r[f] for f in features]) - mu) / sd, 1.0) @ w)
    return out


# -- the reference: the authors' published pairs ---------------------------------------------------------
def read_reference(path: Path = REFERENCE) -> list[dict]:
    """The authors' pairs as records: teacher -> source, student -> target, sim, acc_ratio."""
    if not path.is_file():
        raise AggregateError(f"{path}: missing (it is committed with the repository; restore it with git)")
    with path.open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    try:
        return [{"source": r["teacher"], "target": r["student"], "pair": f"{r['teacher']}_to_{r['student']}",
                 "sim": float(r["sim"]), "acc_ratio": float(r["acc_ratio"])} for r in rows]
    except (KeyError, ValueError) as e:
        raise AggregateError(f"{path}: expected columns teacher, student, sim, acc_ratio with numbers ({e})") from None


# -- the analysis ------------------------------------------------------------------------------------------
STAT_KEYS = ("pooled_spearman", "within_target_spearman_mean", "within_target_interval", "top1_hits",
             "mean_pick_over_best")


def _public(st: dict) -> dict:
    return {k: v for k, v in st.items() if k != "per_target"} | {"per_target": {
        t: {k: v for k, v in d.items()} for t, d in st["per_target"].items()}}


def analyse(records: list[dict], reference: list[dict]) -> dict:
    """summary.json: the reference's statistics and every predictor's on both gains, with paired differences."""
    ref = selection_stats(reference, "sim", "acc_ratio")
    summary = {"reference": {"pairs": ref["pairs"], "targets": ref["targets"], "predictor": "sim",
                             "gain": "acc_ratio (authors: CIFAR-100, 4 epochs)", **_public(ref)}}
    if not records:
        return summary
    grid = {"pairs": len(records), "gain": "gain_last", "predictors": {}, "epoch1": {}, "noise_ceiling": {}}
    for gain, where in (("gain_last", grid["predictors"]), ("gain_epoch1", grid["epoch1"])):
        combined = leave_one_target_out(records, gain)
        rows = [dict(r, combined=combined.get(r["pair"])) for r in records]
        stats = {p: selection_stats(rows, p, gain) for p in PREDICTORS}
        for p, st in stats.items():
            where[p] = _public(st)
            if p != "similarity":
                where[p]["vs_similarity"] = paired_difference(st, stats["similarity"])
        # the noise ceiling: how well one seed's gains rank the sources of the other seeds
        grid["noise_ceiling"][gain] = seed_split(records, gain)
    return summary | {"grid": grid}


def seed_split(records: list[dict], gain: str) -> dict | None:
    """Within-target Spearman between the gain of the first seed and the mean gain of the others: how well the
    measurement ranks sources against itself, the ceiling a predictor can reach at this number of seeds."""
    rows = [dict(r, first=r[gain + "_per_seed"][0], rest=float(np.mean(r[gain + "_per_seed"][1:])))
            for r in records if len(r[gain + "_per_seed"]) > 1]
    if not rows:
        return None
    st = selection_stats(rows, "first", "rest")
    return {k: st[k] for k in ("within_target_spearman_mean", "within_target_interval", "interval_kind", "top1_hits")}


def decide_default(summary: dict) -> dict:
    """Which score source ranking should offer by default: similarity unless another *shape-only* predictor's
    paired difference over targets (last-epoch gain) has an interval clear of 0; data-aware ones are reported."""
    grid = summary.get("grid")
    out = {"default": "similarity", "why": "no shape-only predictor ranks sources measurably better"}
    if not grid:
        return out
    for p in SHAPE_ONLY[1:]:
        d = grid["predictors"][p].get("vs_similarity")
        if d and d["interval"] and d["interval"][0] > 0:
            out = {"default": p, "why": f"paired within-target Spearman vs similarity {d['mean']:+.2f} "
                                        f"[{d['interval'][0]:+.2f}, {d['interval'][1]:+.2f}] over {d['targets']} targets"}
    better = [p for p in PREDICTORS if p != "similarity" and (d := grid["predictors"][p].get("vs_similarity"))
              and d["interval"] and d["interval"][0] > 0]
    out["measurably_better_than_similarity"] = better
    return out


# -- writing -----------------------------------------------------------------------------------------------
def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _interval(iv) -> str:
    return f"[{iv[0]:+.2f}, {iv[1]:+.2f}]" if iv else "-"


def table_rows(summary: dict) -> list[dict]:
    ref = summary["reference"]
    rows = [{**ref, "data": "authors: CIFAR-100, 4 epochs", "gain": "their accuracy ratio to random",
             "predictor": "similarity"}]
    grid = summary.get("grid")
    if grid:
        for gain, block in (("last epoch (3)", grid["predictors"]), ("epoch 1", grid["epoch1"])):
            for p in PREDICTORS:
                rows.append({"data": "ours: Fashion-MNIST 32 px, 3 epochs", "gain": f"BN ratio to random, {gain}",
                             "predictor": p, **block[p]})
    return rows


def to_markdown(summary: dict, notes: list[str], command: str) -> str:
    rows = table_rows(summary)
    lines = ["# Source selection: how well each predictor ranks the sources of a target", "",
             "Within-target Spearman: mean over targets [95% interval over targets]; top-1 hits: targets whose "
             "best-scored source is the measured best (ties split evenly); pick/best: mean over targets of "
             "gain(pick) / gain(best source); random: the same for a uniformly random pick. vs similarity: the "
             "paired per-target difference of within-target Spearman, mean [interval], targets better/worse.", "",
             "| data | gain | predictor | pairs | targets | pooled Spearman | within-target Spearman | top-1 hits "
             "(random) | pick/best (random) | vs similarity |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = r.get("vs_similarity")
        vs_text = f"{vs['mean']:+.2f} {_interval(vs['interval'])}, {vs['better']}/{vs['worse']}" if vs else ""
        lines.append(
            f"| {r['data']} | {r['gain']} | {LABELS.get(r['predictor'], r['predictor'])} | {r['pairs']} | "
            f"{r['targets']} | {_f(r['pooled_spearman'])} | {_f(r['within_target_spearman_mean'])} "
            f"{_interval(r['within_target_interval'])} | {_f(r['top1_hits'], '{:.1f}')} of {r['targets']} "
            f"({_f(r['random_top1_hits'], '{:.1f}')}) | {_f(r['mean_pick_over_best'])} "
            f"({_f(r['random_pick_over_best'])}) | {vs_text} |")
    grid = summary.get("grid")
    if grid:
        ceiling = grid["noise_ceiling"]
        lines += ["", "Noise ceiling (within-target Spearman of the first seed's gains against the mean of the other "
                  "seeds, i.e. how well the measurement ranks sources against itself): "
                  + ", ".join(f"{g} {_f(ceiling[k]['within_target_spearman_mean'])} "
                              f"{_interval(ceiling[k]['within_target_interval'])}"
                              for g, k in (("last epoch", "gain_last"), ("epoch 1", "gain_epoch1"))
                              if ceiling.get(k)) + "."]
        d = summary.get("default_ranking")
        if d:
            lines += ["", f"Default score for source ranking: **{d['default']}** ({d['why']})."]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    lines += ["", f"Regenerate: `{command}`"]
    return "\n".join(lines) + "\n"


def to_csv_text(summary: dict) -> str:
    cols = ["data", "gain", "predictor", "pairs", "targets", "pooled_spearman", "within_target_spearman_mean",
            "within_target_low", "within_target_high", "interval_kind", "top1_hits", "random_top1_hits",
            "mean_pick_over_best", "random_pick_over_best", "vs_similarity_mean", "vs_similarity_low",
            "vs_similarity_high", "vs_similarity_better", "vs_similarity_worse"]
    out = [",".join(cols)]
    for r in table_rows(summary):
        iv, vs = r.get("within_target_interval") or [None, None], r.get("vs_similarity") or {}
        viv = vs.get("interval") or [None, None]
        vals = [r["data"], r["gain"], r["predictor"], r["pairs"], r["targets"], r["pooled_spearman"],
                r["within_target_spearman_mean"], iv[0], iv[1], r.get("interval_kind"), r["top1_hits"],
                r["random_top1_hits"], r["mean_pick_over_best"], r["random_pick_over_best"], vs.get("mean"),
                viv[0], viv[1], vs.get("better"), vs.get("worse")]
        out.append(",".join("" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in vals))
    return "\n".join(out) + "\n"


def pairs_csv(records: list[dict]) -> str:
    cols = ["target", "source", "seeds", *MEASURED, "combined_last", "gain_epoch1", "gain_last",
            "gain_last_per_seed", *(f"seconds_{p}" for p in MEASURED[:4])]
    out = [",".join(cols)]
    for r in records:
        vals = [r["target"], r["source"], " ".join(map(str, r["seeds"])), *(r.get(p) for p in MEASURED),
                r.get("combined_last"), r["gain_epoch1"], r["gain_last"],
                " ".join(f"{g:.4f}" for g in r["gain_last_per_seed"]),
                *(r.get("seconds", {}).get(p) for p in MEASURED[:4])]
        out.append(",".join("" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in vals))
    return "\n".join(out) + "\n"


def write(out_dir: Path, records: list[dict], summary: dict, notes: list[str], command: str, plots: bool,
          reference: list[dict]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"selection.md": to_markdown(summary, notes, command), "selection.csv": to_csv_text(summary)}
    if records:
        files["pairs.csv"] = pairs_csv(records)
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
    atomic_write_json(out_dir / "summary.json", summary)
    written = [out_dir / n for n in files] + [out_dir / "summary.json"]
    if plots:
        from bench.results.selection_plots import plot_heatmap, plot_scatter

        written += [p for p in (plot_scatter(records, summary, out_dir / "predictors_vs_gain.png", reference),
                                plot_heatmap(records, out_dir / "similarity_heatmap.png")) if p]
    return written


def run(runs_dir: Path | None, out_dir: Path | None, reference: Path, plots: bool = True, log=print) -> dict:
    records, notes, info = ([], [], {}) if runs_dir is None else measured_gains(runs_dir)
    if runs_dir is not None and not records:
        raise AggregateError(f"{runs_dir}: no pair has finished dpiat and random runs yet" +
                             (f" ({len(notes)} notes: {notes[0]} ...)" if notes else ""))
    if records:
        preds = load_or_compute_predictors(runs_dir, records, log)
        for r in records:
            p = preds[r["pair"]]
            r.update({k: p.get(k) for k in MEASURED}, seconds=p.get("seconds", {}))
        for gain in ("gain_last", "gain_epoch1"):
            for pair, v in leave_one_target_out(records, gain).items():
                next(r for r in records if r["pair"] == pair)["combined_" + gain.split("_")[1]] = v
    ref_records = read_reference(reference)
    summary = analyse(records, ref_records)
    if records:
        summary["grid"] |= {"models": sorted({r["source"] for r in records} | {r["target"] for r in records}),
                            "targets": list(dict.fromkeys(r["target"] for r in records)),
                            "seeds": info["seeds"], "epochs": info["epochs"],
                            "predictor_seconds_median": {
                                p: float(np.median(v)) for p in MEASURED[:4]
                                if (v := [r["seconds"][p] for r in records if p in r["seconds"]])}}
        summary["default_ranking"] = decide_default(summary)
    summary["notes"] = notes
    src = f" {runs_dir}" if runs_dir else " --reference-only"
    command = f".venv/bin/python bench/selection.py{src} --out {out_dir}"
    written = write(out_dir, records, summary, notes, command, plots, ref_records)
    log(f"wrote {', '.join(p.name for p in written)} to {out_dir}/")
    return summary
