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


def to_markdown(rows: list[dict], experiment: str, paper: dict | None, notes: list[str], command: str) -> str:
    pairs = [r for r in rows if r["pair"] != ALL]
    lines = [f"# {experiment}: accuracy and ratio to random init", "",
             f"Validation top-1 (fraction): best over epochs 1..N and final at epoch N ({_epochs_text(rows)}), "
             "mean ± sample std over the n seeds that reached epoch N (std '-' when n = 1; 'n of m': m runs "
             "counted, the rest running, failed or partial, see the note). Ratio: method / random init of the "
             "same pair and seed, mean over seeds [percentile bootstrap 95% interval]. Paper def.: the seeds' "
             "curves averaged first, then best of the method's / best of random's. `random` rows are 1 by "
             f"construction. Regenerate: `{command}`; all columns are in `table.csv`.", "",
             "| pair | init | n | best top-1 | final top-1 | ratio best [95% CI] | ratio final [95% CI] "
             "| ratio best, paper def. | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in pairs:
        lines.append("| " + " | ".join(_md_cell(c) for c in [
            r["pair"], r["init"], fmt_n(r), fmt_acc(r["best_top1_mean"], r["best_top1_std"]),
            fmt_acc(r["final_top1_mean"], r["final_top1_std"]),
            fmt_ratio(r["ratio_best_mean"], r["ratio_best_ci_low"], r["ratio_best_ci_high"]),
            fmt_ratio(r["ratio_final_mean"], r["ratio_final_ci_low"], r["ratio_final_ci_high"]),
            fmt_ratio(r["ratio_best_paper"]), r["note"] or ""]) + " |")
    summary = [r for r in rows if r["pair"] == ALL]
    if summary:
        lines += ["", "## Mean over pairs (pair = ALL)", "",
                  "Each ratio averaged over the pairs that have one; 'clipped': each pair's ratio clipped below "
                  "at 1 first (the paper's second column).", "",
                  "| init | pairs | ratio best | clipped | ratio final | clipped | ratio best, paper def. "
                  "| clipped | paper | note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in summary:
            lines.append("| " + " | ".join(_md_cell(c) for c in [
                r["init"], r["n"], fmt_ratio(r["ratio_best_mean"]), fmt_ratio(r["ratio_best_clipped"]),
                fmt_ratio(r["ratio_final_mean"]), fmt_ratio(r["ratio_final_clipped"]),
                fmt_ratio(r["ratio_best_paper"]), fmt_ratio(r["ratio_best_paper_clipped"]),
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
    pairs = [r for r in rows if r["pair"] != ALL]
    lines = [f"% {experiment}: generated by `{command}`; do not edit. Needs \\usepackage{{booktabs}}.",
             f"% Top-1 (fraction), best over epochs 1..N and at epoch N ({_epochs_text(rows)}), mean $\\pm$ sample "
             "std over n seeds; ratio = method / random init per seed, mean [bootstrap 95% CI].",
             r"\begin{tabular}{llrlllll}", r"\toprule",
             r"Pair & Init & $n$ & Best top-1 & Final top-1 & Ratio best [95\% CI] & Ratio final [95\% CI] "
             r"& Ratio best (paper def.) \\", r"\midrule"]
    for r in pairs:
        lines.append(" & ".join([_tex(r["pair"]), _tex(r["init"]), fmt_n(r),
                                 _tex_num(fmt_acc(r["best_top1_mean"], r["best_top1_std"])),
                                 _tex_num(fmt_acc(r["final_top1_mean"], r["final_top1_std"])),
                                 fmt_ratio(r["ratio_best_mean"], r["ratio_best_ci_low"], r["ratio_best_ci_high"]),
                                 fmt_ratio(r["ratio_final_mean"], r["ratio_final_ci_low"], r["ratio_final_ci_high"]),
                                 fmt_ratio(r["ratio_best_paper"])]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    summary = [r for r in rows if r["pair"] == ALL]
    if summary:
        lines += ["", r"\medskip", "", "% Mean over pairs; 'clipped': each pair's ratio clipped below at 1 first.",
                  r"\begin{tabular}{lrlllllll}", r"\toprule",
                  r"Init & Pairs & Ratio best & Clipped & Ratio final & Clipped & Paper def. & Clipped & Paper \\",
                  r"\midrule"]
        for r in summary:
            lines.append(" & ".join([_tex(r["init"]), str(r["n"])] + [fmt_ratio(r[c]) for c in [
                "ratio_best_mean", "ratio_best_clipped", "ratio_final_mean", "ratio_final_clipped",
                "ratio_best_paper", "ratio_best_paper_clipped"]]
                + ["-" if r["paper_figure"] is None else f"{r['paper_figure']}$\\times$"]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
    comments = [_paper_line(rows, paper)] if paper else []
    comments += [f"{r['pair']}/{r['init']}: {r['note']}" for r in rows if r["note"]] + notes
    lines += [""] + [f"% {c}".replace("\n", " ") for c in comments]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], out_dir: str | Path, *, experiment: str, paper: dict | None = None,
                 notes: list[str] = (), command: str = "python bench/aggregate.py") -> list[Path]:
    """Write table.csv (every column of :data:`COLUMNS`), table.md and table.tex into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    files = {"table.csv": to_csv(rows, COLUMNS),
             "table.md": to_markdown(rows, experiment, paper, list(notes), command),
             "table.tex": to_latex(rows, experiment, paper, list(notes), command)}
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
    return [out_dir / n for n in files]
