"""The horizon's pictures (written atomically by :func:`write_horizon_plots`), epoch 0 always on the axis:

- ``accuracy_by_epoch.png``: validation top-1 with BatchNorm statistics recalibrated, epochs 0 (the init, before
  training) to N on a linear axis, one panel per pair, one colour per arm: the mean over seeds, a band from the
  lowest to the highest seed, a dot at epoch 0, and random init's final accuracy R as a dotted line;
- ``ratio_by_epoch.png``: the ratio to random init of the best accuracy so far (BatchNorm recalibrated), epochs 0
  to N, one panel per pair, the mean over seeds and its 95% t interval as a band (drawn only with two seeds or
  more), the line of no gain at 1; an epoch-0 ratio above the axis (a trained start over random init at chance) is
  drawn as a triangle at the top edge with its value;
- the pictures against time: ``accuracy_by_seconds.png``, the same accuracy against minutes (epoch 0 at its
  start cost), and ``seconds_to_reach.png``, the minutes each arm took to reach R, one dot per seed, seeds that
  never reached it marked at the right edge. Where a costs file (``costs.json`` in the runs folder,
  bench/measure/reuse_costs.py) covers every arm drawn, in *costed* minutes: epoch e at the arm's start cost + e x
  its epoch cost, measured side by side on one machine, so that the runs' machines and loads do not enter
  (docs/protocol.md 8.8). Otherwise in the runs' own wall-clock minutes (epoch 0 at the start cost, then the
  mean cumulative seconds of each epoch), drawn only where every run recorded its start cost (experiment=reuse)
  and all ran on one kind of CPU (a stale picture is removed otherwise).

Pairs are titled in words (conf/pair/*.yaml ``title``, as run.json recorded it); legends sit outside the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench.results.horizon import (
    ARM,
    _free,
    _series,
    _target_of,
    COSTS_FILE,
    arm_name,
    costed_everywhere,
    load_costs,
    one_machine,
    write_horizon_tables,
)
from bench.results.plots import STYLE, save_png
from bench.running.record import RunRecord


def _colors(keys) -> dict:
    return {k: f"C{i % 10}" for i, k in enumerate(keys)}


def _dashes(keys) -> dict:
    """A line style per arm besides its colour: arms whose curves coincide (two recipes of one start whose best so
    far is still the start itself) stay visible."""
    return {k: ("-", "--", "-.")[i % 3] for i, k in enumerate(keys)}


def _titles(runs: list[RunRecord]) -> dict[str, str]:
    out = {}
    for r in runs:
        if r.title and r.source:
            out.setdefault(r.pair, r.title)
    return out


def write_horizon(runs_dir: str | Path, out_dir: str | Path, *, epochs: int | None = None, plots: bool = True,
                  experiment: str = "horizon", command: str = "") -> list[dict]:
    """The horizon tables of ``runs_dir`` and, with ``plots``, their pictures, into ``out_dir``; the ratio rows."""
    runs, ratio_rows, time_rows, n = write_horizon_tables(runs_dir, out_dir, epochs=epochs, experiment=experiment,
                                                          command=command)
    if plots:
        write_horizon_plots(runs, ratio_rows, time_rows, n, out_dir, costs=load_costs(runs_dir))
    return ratio_rows


def write_horizon_plots(runs: list[RunRecord], ratio_rows: list[dict], time_rows: list[dict], epochs: int,
                        out_dir: str | Path, costs: dict | None = None) -> list[Path]:
    """The pictures of the horizon tables' rows into ``out_dir``; against costed time where ``costs`` (the costs
    file the rows' costed columns came from) covers every arm, else against the runs' own seconds."""
    out_dir = Path(out_dir)
    titles = _titles(runs)
    pairs = list(dict.fromkeys(r["pair"] for r in time_rows))
    keys = list(dict.fromkeys(tuple(r[k] for k in ARM[1:]) for r in time_rows))
    colors = _colors(keys)
    series = _series(runs, epochs, [])
    served = _served(series, runs, pairs, time_rows)
    written = []

    def save(fig: Figure, name: str) -> None:
        save_png(fig, out_dir / name)
        written.append(out_dir / name)

    if pairs:
        save(_accuracy(served, pairs, keys, colors, titles, time_rows, epochs, seconds=False), "accuracy_by_epoch.png")
    if ratio_rows:
        save(_ratios(ratio_rows, pairs, keys, colors, titles), "ratio_by_epoch.png")
    shown = [s for by_key in served.values() for s in by_key.values()]
    timed = all(len(s.seconds) == len(s.bn) for s in shown)
    costed = _costed_label(costs) if costs is not None and costed_everywhere(time_rows) else None
    if pairs and (costed or (timed and one_machine(*shown))):
        save(_accuracy(served, pairs, keys, colors, titles, time_rows, epochs, seconds=True, costed=costed),
             "accuracy_by_seconds.png")
        save(_seconds_to_reach(served, pairs, keys, colors, titles, time_rows, costed=costed), "seconds_to_reach.png")
    else:  # seconds of two kinds of CPU on one axis would compare the machines, not the starts (the notes say so)
        for name in ("accuracy_by_seconds.png", "seconds_to_reach.png"):
            (out_dir / name).unlink(missing_ok=True)
    return written


def _costed_label(costs: dict) -> str:
    """Where the costs behind costed minutes were measured, for a picture's title."""
    return (f"each arm's start and epoch cost measured side by side on {costs.get('cpu_model', '?')} "
            f"({costs.get('cpu_capability', '?')}), {COSTS_FILE}" + (", a --smoke measurement" if costs.get("smoke")
                                                                     else ""))


def _row_of(time_rows, pair, key) -> dict:
    return next(r for r in time_rows if r["pair"] == pair and tuple(r[k] for k in ARM[1:]) == key)


def _served(series, runs, pairs, time_rows) -> dict[str, dict]:
    """pair -> {(init, distill, recipe): the series shown in its panel} (source-free arms from the target's runs)."""
    target = _target_of(runs)
    out = {}
    for pair in pairs:
        shown = {tuple(r[k] for k in ARM[1:]) for r in time_rows if r["pair"] == pair}
        out[pair] = {s.arm[1:]: s for s in series.values()
                     if s.arm[1:] in shown and (s.pair == pair or (_free(s.init, s.distill)
                                                                  and target.get(s.pair) == target[pair]))}
    return out


def _label(key, ns: dict, shared: bool) -> str:
    n = "/".join(map(str, sorted(ns.get(key, {0}))))
    return f"{arm_name(*key)} (n={n}" + (", the same runs in every panel)" if shared and _free(key[0], key[1]) else ")")


def _accuracy(served, pairs, keys, colors, titles, time_rows, epochs, *, seconds: bool, costed: str | None = None
              ) -> Figure:
    fig = Figure(figsize=(max(6.4 * len(pairs), 9.0), 5.8), layout="constrained")
    axes = fig.subplots(1, len(pairs), sharey=True, squeeze=False)[0]
    drawn, ns, banded = [], {}, False
    for ax, pair in zip(axes, pairs):
        level = next(r["R"] for r in time_rows if r["pair"] == pair)
        for key in keys:
            s = served[pair].get(key)
            if s is None or not s.raw_bn:
                continue
            c = np.array([s.raw_bn[k] for k in sorted(s.raw_bn)])
            if costed:  # epoch e at start + e x epoch cost: the same for every seed
                row = _row_of(time_rows, pair, key)
                x = (row["costed_start_seconds"] + np.arange(c.shape[1]) * row["costed_epoch_seconds"]) / 60
            else:
                x = (np.mean([s.seconds[k] for k in sorted(s.seconds)], axis=0) / 60 if seconds
                     else np.arange(c.shape[1]))
            color = colors[key]
            ax.plot(x, c.mean(axis=0), color=color, lw=1.5, ls=_dashes(keys)[key])
            ax.plot(x[:1], c.mean(axis=0)[:1], "o", color=color, ms=5)
            if len(c) > 1:
                ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=color, alpha=0.15, lw=0)
                banded = True
            if key not in drawn:
                drawn.append(key)
            ns.setdefault(key, set()).add(len(c))
        ax.axhline(level, color="k", ls=":", lw=1)
        ax.set_xlabel("minutes, costed: start cost + epochs x the arm's epoch cost" if costed
                      else "wall-clock minutes on the machine that ran it (epoch 0 at the start cost)" if seconds
                      else "epoch (0: the init, before training)")
        ax.set_xlim(left=0)
        ax.set_title(titles.get(pair, pair), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation top-1, BatchNorm recalibrated")
    handles = [Line2D([], [], color=colors[k], lw=2, ls=_dashes(keys)[k], label=_label(k, ns, len(pairs) > 1))
               for k in drawn]
    handles.append(Line2D([], [], color=STYLE, marker="o", ls="", label="epoch 0: the init before any training"))
    if banded:
        handles.append(Patch(color=STYLE, alpha=0.25, lw=0, label="band: lowest..highest seed"))
    handles.append(Line2D([], [], color="k", ls=":", lw=1,
                          label="R: random init's final best accuracy (mean over seeds)"))
    what = "costed time" if costed else "wall-clock time" if seconds else "epoch"
    fig.suptitle(f"Validation top-1 against {what}, from before training to epoch {epochs}, mean over seeds"
                 + (f"\n({costed})" if costed else ""), fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    return fig


def _ratios(ratio_rows, pairs, keys, colors, titles) -> Figure:
    fig = Figure(figsize=(max(6.4 * len(pairs), 9.0), 5.8), layout="constrained")
    axes = fig.subplots(1, len(pairs), sharey=True, squeeze=False)[0]
    later = [v for r in ratio_rows if r["epoch"] >= 1 for v in (r["ratio_bn_mean"], r["ratio_bn_hi"]) if v is not None]
    top = max(later) * 1.08 if later else None
    lows = [v for r in ratio_rows for v in (r["ratio_bn_mean"], r["ratio_bn_lo"]) if v is not None]
    bottom = min(min(lows) * 0.95, 0.9) if lows else 0.0
    drawn, band, clipped = [], False, False
    for ax, pair in zip(axes, pairs):
        for key in keys:
            rows = [r for r in ratio_rows if r["pair"] == pair and tuple(r[k] for k in ARM[1:]) == key]
            if not rows:
                continue
            x = np.array([r["epoch"] for r in rows])
            y = np.array([r["ratio_bn_mean"] for r in rows])
            color = colors[key]
            shown = np.minimum(y, top) if top else y
            ax.plot(x, shown, color=color, lw=1.5, ls=_dashes(keys)[key])
            if all(r["ratio_bn_lo"] is not None for r in rows):
                band = True
                hi = np.array([r["ratio_bn_hi"] for r in rows])
                ax.fill_between(x, [r["ratio_bn_lo"] for r in rows], np.minimum(hi, top) if top else hi,
                                color=color, alpha=0.15, lw=0)
            if top and y[0] > top:
                clipped = True
                ax.plot([0], [top], marker="^", color=color, ms=7, clip_on=False)
                ax.annotate(f"{y[0]:.1f}", (0, top), xytext=(6, -4 - 10 * keys.index(key)), textcoords="offset points",
                            color=color, fontsize=7, va="top")
            if key not in drawn:
                drawn.append(key)
        ax.axhline(1.0, color="k", ls=":", lw=1)
        ax.set_xlim(left=0)
        if top:
            ax.set_ylim(bottom, top)
        ax.set_xlabel("epoch (0: the init, before training)")
        ax.set_title(titles.get(pair, pair), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best top-1 so far / random init's\n(BatchNorm recalibrated)")
    handles = [Line2D([], [], color=colors[k], lw=2, ls=_dashes(keys)[k], label=arm_name(*k)) for k in drawn]
    if band:
        handles.append(Patch(color=STYLE, alpha=0.25, lw=0, label="band: 95% t interval over seeds (paired by seed)"))
    if clipped:
        handles.append(Line2D([], [], color=STYLE, marker="^", ls="", label="epoch-0 ratio above the axis, its value "
                              "beside it (random init is at chance before training)"))
    handles.append(Line2D([], [], color="k", ls=":", lw=1, label="1: no gain over random init"))
    fig.suptitle("Ratio to random init of the best accuracy so far, from before training on, mean over seeds",
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    return fig


def _seconds_to_reach(served, pairs, keys, colors, titles, time_rows, costed: str | None = None) -> Figure:
    column = "costed_seconds_to_reach_per_seed" if costed else "seconds_to_reach_per_seed"
    rows_per_pair = [[k for k in keys if k in served[p]] for p in pairs]
    height = max(3.2, 0.42 * max(len(r) for r in rows_per_pair) + 2.2)
    fig = Figure(figsize=(max(6.4 * len(pairs), 9.0), height), layout="constrained")
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    never_any = False
    for ax, pair, shown in zip(axes, pairs, rows_per_pair):
        times = {tuple(r[k] for k in ARM[1:]): r for r in time_rows if r["pair"] == pair}
        reached = [float(x) / 60 for k in shown for x in times[k][column].split() if x not in ("never", "-")]
        right = max(reached) * 1.1 if reached else 1.0
        for y, key in enumerate(shown):
            values = times[key][column].split()
            got = [float(x) / 60 for x in values if x not in ("never", "-")]
            missed = sum(x == "never" for x in values)
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.plot(got, y + jitter[:len(got)], "o", color=colors[key], ms=5, alpha=0.85)
            if missed:
                never_any = True
                ax.plot([right] * missed, y + jitter[len(got):len(got) + missed], "x", color=colors[key], ms=6,
                        clip_on=False)
        ax.set_yticks(range(len(shown)), [arm_name(*k) for k in shown], fontsize=8)
        ax.set_ylim(len(shown) - 0.5, -0.5)
        ax.set_xlim(0, right * 1.02)
        ax.set_xlabel("minutes to reach R, costed: start cost + epochs to R x the arm's epoch cost" if costed
                      else "minutes to reach R, random init's final accuracy (start cost included)")
        ax.set_title(titles.get(pair, pair), fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    handles = [Line2D([], [], color=STYLE, marker="o", ls="", label="one seed")]
    if never_any:
        handles.append(Line2D([], [], color=STYLE, marker="x", ls="", label="a seed that never reached R"))
    fig.suptitle(("Costed minutes" if costed else "Wall-clock minutes")
                 + " each start needs to reach random init's final accuracy" + (f"\n({costed})" if costed else ""),
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    return fig
