"""The aggregated table as files: ``table.csv`` (data), ``table.md`` (README), ``table.tex`` (paper).

All three are rendered from the same rows (:mod:`bench.results.cells`) and written atomically::

    from bench.results.formats import write_tables
    write_tables(rows, "results/proxy", experiment="proxy")

The csv keeps every column at 6 decimals; md and tex show accuracies with 3 decimals and ratios with 2.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bench.files import atomic_write_text
from bench.results.columns import ALL, COLUMNS


def fmt_csv(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(round(x, 6))
    return str(x)


def fmt_acc(mean, std) -> str:
    """'0.812 ± 0.004'; std '-' when there is one seed; '-' when there is nothing."""
    if mean is None:
        return "-"
    return f"{mean:.3f} ± " + ("-" if std is None else f"{std:.3f}")


def fmt_ratio(x, low=None, high=None) -> str:
    """'1.62 [1.40, 1.85]', or '1.62' without an interval, or '-'."""
    if x is None:
        return "-"
    return f"{x:.2f}" + ("" if low is None else f" [{low:.2f}, {high:.2f}]")


def fmt_n(row) -> str:
    """'3', or '2 of 3' when some runs are counted but not averaged in."""
    return str(row["n"]) if row["n"] == row["n_runs"] else f"{row['n']} of {row['n_runs']}"


def _epochs_text(rows) -> str:
    ns = {r["epochs"] for r in rows if r["pair"] != ALL and r["epochs"] is not None}
    return f"N = {ns.pop()}" if len(ns) == 1 else "N per row, see the epochs column of table.csv"


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([fmt_csv(r[c]) for c in columns])
    return buf.getvalue()


def _paper_line(rows, paper) -> str | None:
    """The paper's figure beside ours, from the ALL row of the paper's init."""
    if not paper:
        return None
    ours = next((r for r in rows if r["pair"] == ALL and r["init"] == paper["init"]), None)
    text = f"Paper: {paper['value']}x ({paper['text']})."
    if ours is None or ours["ratio_best_paper"] is None:
        return text + f" Ours: no {paper['init']} ratio yet."
    return (text + f" Ours, best over epochs 1..{ours['epochs'] or 'N (mixed)'}, mean over {ours['n']} pairs: "
            f"{fmt_ratio(ours['ratio_best_paper'])} (paper definition), "
            f"{fmt_ratio(ours['ratio_best_paper_clipped'])} clipped at 1, "
            f"{fmt_ratio(ours['ratio_best_mean'])} as the mean of per-seed ratios.")


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_pair(a, b, fmt) -> str:
    """'<protocol> / <BatchNorm recalibrated>', each formatted by ``fmt``; just the first without the second."""
    left = fmt(a)
    return left if b is None else f"{left} / {fmt(b)}"


def _acc(x) -> str:
    return "-" if x is None else f"{x:.3f}"


INTRO = ("Validation top-1 (fraction) two ways: as the paper's protocol evaluates (BatchNorm running statistics "
         "as training left them) and **BN**: with the statistics recomputed on fixed training batches first "
         "(what an init is worth without their lag; training is identical). Best over epochs 1..N and final at "
         "epoch N ({epochs}), mean ± sample std over the n seeds that reached epoch N (std '-' when n = 1; 'n of "
         "m': m runs counted, the rest running, failed or partial, see the note); 'before': epoch 0, right after "
         "the init. Ratio: method / random init of the same pair and seed, mean over seeds [95% interval: "
         "Student's t below 5 seeds, percentile bootstrap from 5; the per-seed ratios are in table.csv]. vs dpiat: "
         "the same, paired with faithful DPIAT instead of random. `random` rows are 1 by construction. "
         "Regenerate: `{command}`; all columns are in `table.csv`.")


# The same without BatchNorm anywhere (e.g. transformers, ConvNeXt): one evaluation, no BN columns.
INTRO_NO_BN = ("Validation top-1 (fraction) as the paper's protocol evaluates (no run here has a BatchNorm "
               "evaluation, so there are no BN columns). " + INTRO[INTRO.index("Best over epochs"):])


def has_bn(rows: list[dict]) -> bool:
    """Whether any row has the recalibrated-BatchNorm evaluation (networks with BatchNorm, eval.bn_batches > 0)."""
    return any(r.get(c) is not None for r in rows for c in ("best_top1_bn_mean", "init_top1_bn_mean"))


def to_markdown(rows: list[dict], experiment: str, paper: dict | None, notes: list[str], command: str) -> str:
    """One table; without any BatchNorm evaluation (:func:`has_bn`) the BN columns give way to final top-1 and
    the paired ratio to dpiat as the protocol evaluates."""
    bn = has_bn(rows)
    pairs = [r for r in rows if r["pair"] != ALL]
    if bn:
        header = ("| pair | init | n | before: top-1 / BN | best top-1 / BN | ratio best [95% CI] | ratio final [95% CI] "
                  "| ratio best, BN [95% CI] | vs dpiat, BN [95% CI] | note |")
    else:
        header = ("| pair | init | n | before: top-1 | best top-1 | final top-1 | ratio best [95% CI] "
                  "| ratio final [95% CI] | vs dpiat, best [95% CI] | note |")
    lines = [f"# {experiment}: accuracy and ratio to random init", "",
             (INTRO if bn else INTRO_NO_BN).format(epochs=_epochs_text(rows), command=command), "",
             header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in pairs:
        best = fmt_acc(r["best_top1_mean"], r["best_top1_std"])
        ratios = [fmt_ratio(r["ratio_best_mean"], r["ratio_best_ci_low"], r["ratio_best_ci_high"]),
                  fmt_ratio(r["ratio_final_mean"], r["ratio_final_ci_low"], r["ratio_final_ci_high"])]
        if bn:
            cells = [fmt_pair(r["init_top1_mean"], r["init_top1_bn_mean"], _acc),
                     best + ("" if r["best_top1_bn_mean"] is None
                             else " / " + fmt_acc(r["best_top1_bn_mean"], r["best_top1_bn_std"])),
                     *ratios,
                     fmt_ratio(r["ratio_best_bn_mean"], r["ratio_best_bn_ci_low"], r["ratio_best_bn_ci_high"]),
                     fmt_ratio(r["vs_dpiat_best_bn_mean"], r["vs_dpiat_best_bn_ci_low"], r["vs_dpiat_best_bn_ci_high"])]
        else:
            cells = [_acc(r["init_top1_mean"]), best, fmt_acc(r["final_top1_mean"], r["final_top1_std"]), *ratios,
                     fmt_ratio(r["vs_dpiat_best_mean"], r["vs_dpiat_best_ci_low"], r["vs_dpiat_best_ci_high"])]
        lines.append("| " + " | ".join(_md_cell(c) for c in [r["pair"], r["init"], fmt_n(r), *cells, r["note"] or ""])
                     + " |")
    summary = [r for r in rows if r["pair"] == ALL]
    if summary:
        middle = ("ratio best, BN | ratio final, BN | vs dpiat, BN" if bn else "vs dpiat, best")
        lines += ["", "## Mean over pairs (pair = ALL)", "",
                  "Each ratio averaged over the pairs that have one; 'clipped': each pair's ratio clipped below "
                  "at 1 first (the paper's second column); paper def.: the seeds' curves averaged first, then "
                  "best of the method's / best of random's.", "",
                  f"| init | pairs | ratio best | clipped | ratio final | clipped | {middle} "
                  "| ratio best, paper def. | clipped | paper | note |",
                  "|---|---|---|---|---|---|" + "---|" * (3 if bn else 1) + "---|---|---|---|"]
        compared = (["ratio_best_bn_mean", "ratio_final_bn_mean", "vs_dpiat_best_bn_mean"] if bn
                    else ["vs_dpiat_best_mean"])
        for r in summary:
            lines.append("| " + " | ".join(_md_cell(c) for c in [
                r["init"], r["n"], fmt_ratio(r["ratio_best_mean"]), fmt_ratio(r["ratio_best_clipped"]),
                fmt_ratio(r["ratio_final_mean"]), fmt_ratio(r["ratio_final_clipped"]),
                *[fmt_ratio(r[c]) for c in compared], fmt_ratio(r["ratio_best_paper"]),
                fmt_ratio(r["ratio_best_paper_clipped"]),
                "-" if r["paper_figure"] is None else f"{r['paper_figure']}x", r["note"]]) + " |")
    if line := _paper_line(rows, paper):
        lines += ["", line]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_md_cell(n)}" for n in notes]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _tex_num(text: str) -> str:
    return text.replace("±", r"$\pm$")


def to_latex(rows: list[dict], experiment: str, paper: dict | None, notes: list[str], command: str) -> str:
    bn = has_bn(rows)
    pairs = [r for r in rows if r["pair"] != ALL]
    evaluated = ("as the protocol evaluates and with BatchNorm statistics recalibrated (BN)" if bn else
                 "as the protocol evaluates (no BatchNorm evaluation here)")
    lines = [f"% {experiment}: generated by `{command}`; do not edit. Needs \\usepackage{{booktabs}}.",
             f"% Top-1 (fraction), best over epochs 1..N ({_epochs_text(rows)}), mean $\\pm$ sample std over n seeds, "
             f"{evaluated}; ratio = method / random init per seed, mean [95% CI: Student's t below 5 seeds, "
             "bootstrap from 5]; vs dpiat: paired with faithful DPIAT."]
    if bn:
        lines += [r"\begin{tabular}{llrllllll}", r"\toprule",
                  r"Pair & Init & $n$ & Best top-1 & Best top-1 (BN) & Ratio best [95\% CI] & Ratio final [95\% CI] "
                  r"& Ratio best, BN [95\% CI] & vs DPIAT, BN [95\% CI] \\", r"\midrule"]
    else:
        lines += [r"\begin{tabular}{llrlllll}", r"\toprule",
                  r"Pair & Init & $n$ & Best top-1 & Final top-1 & Ratio best [95\% CI] & Ratio final [95\% CI] "
                  r"& vs DPIAT [95\% CI] \\", r"\midrule"]
    for r in pairs:
        cells = [_tex(r["pair"]), _tex(r["init"]), fmt_n(r), _tex_num(fmt_acc(r["best_top1_mean"], r["best_top1_std"]))]
        if bn:
            cells += [_tex_num(fmt_acc(r["best_top1_bn_mean"], r["best_top1_bn_std"]))]
        else:
            cells += [_tex_num(fmt_acc(r["final_top1_mean"], r["final_top1_std"]))]
        cells += [fmt_ratio(r["ratio_best_mean"], r["ratio_best_ci_low"], r["ratio_best_ci_high"]),
                  fmt_ratio(r["ratio_final_mean"], r["ratio_final_ci_low"], r["ratio_final_ci_high"])]
        if bn:
            cells += [fmt_ratio(r["ratio_best_bn_mean"], r["ratio_best_bn_ci_low"], r["ratio_best_bn_ci_high"]),
                      fmt_ratio(r["vs_dpiat_best_bn_mean"], r["vs_dpiat_best_bn_ci_low"], r["vs_dpiat_best_bn_ci_high"])]
        else:
            cells += [fmt_ratio(r["vs_dpiat_best_mean"], r["vs_dpiat_best_ci_low"], r["vs_dpiat_best_ci_high"])]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    summary = [r for r in rows if r["pair"] == ALL]
    if summary:
        cols = (["ratio_best_mean", "ratio_best_clipped", "ratio_final_mean", "ratio_final_clipped",
                 "ratio_best_bn_mean", "ratio_final_bn_mean", "vs_dpiat_best_bn_mean"] if bn else
                ["ratio_best_mean", "ratio_best_clipped", "ratio_final_mean", "ratio_final_clipped",
                 "vs_dpiat_best_mean"])
        heads = (r"Ratio best & Clipped & Ratio final & Clipped & Best, BN & Final, BN & vs DPIAT, BN" if bn else
                 r"Ratio best & Clipped & Ratio final & Clipped & vs DPIAT")
        lines += ["", r"\medskip", "", "% Mean over pairs; 'clipped': each pair's ratio clipped below at 1 first.",
                  r"\begin{tabular}{lr" + "l" * (len(cols) + 1) + "}", r"\toprule",
                  r"Init & Pairs & " + heads + r" & Paper \\", r"\midrule"]
        for r in summary:
            lines.append(" & ".join([_tex(r["init"]), str(r["n"])] + [fmt_ratio(r[c]) for c in cols]
                                    + ["-" if r["paper_figure"] is None else f"{r['paper_figure']}$\\times$"]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
    comments = [_paper_line(rows, paper)] if paper else []
    comments += [f"{r['pair']}/{r['init']}: {r['note']}" for r in rows if r["note"]] + notes
    lines += [""] + [f"% {c}".replace("\n", " ") for c in comments]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], out_dir: str | Path, *, experiment: str, paper: dict | None = None,
                 notes: list[str] = (), command: str = ".venv/bin/python bench/aggregate.py") -> list[Path]:
    """Write table.csv (every column of :data:`COLUMNS`), table.md and table.tex into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    files = {"table.csv": to_csv(rows, COLUMNS),
             "table.md": to_markdown(rows, experiment, paper, list(notes), command),
             "table.tex": to_latex(rows, experiment, paper, list(notes), command)}
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
    return [out_dir / n for n in files]
