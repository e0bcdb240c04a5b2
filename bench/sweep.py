"""Run a whole experiment grid (pairs x inits x seeds): here, one task after another, or on SLURM as job arrays.

    python bench/sweep.py experiment=paper_imagenet data.root=/data/imagenet            # print the plan only
    python bench/sweep.py experiment=paper_imagenet data.root=/data/imagenet --submit   # SLURM (slurm/site.env)
    python bench/sweep.py experiment=paper_imagenet data.root=/data/imagenet init=dpiat seed=0,1 --submit --parallel 8
    python bench/sweep.py experiment=paper_imagenet data.root=/data/imagenet trainer=ddp trainer.devices=4 --submit
    python bench/sweep.py experiment=smoke grid.inits=[random,dpiat] grid.seeds=[0,1] --local   # here, then the table

The grid comes from the experiment's ``grid:`` (``pairs`` or ``models``, ``inits``, ``seeds``,
``prerequisites``); ``pair=``/``init=``/``seed=`` on the command line (comma lists allowed) fix an axis, and
every other override goes to every run. Runs whose folder is finished are left out, so the same command
again submits only what is missing (nothing, once all is done). The tasks are written to
``<paths.runs>/<experiment>/manifests/<stamp>-{prereq,runs}.txt`` (one ``bench/run.py`` line per task).

``--submit`` submits ``slurm/array.sbatch`` twice: stage 1 trains each needed source once
(``bench/train_source.py``) and runs the grid's prerequisites; stage 2, the runs, waits for it with
``--dependency=afterok``. Site settings (partition, account, time, GPUs, environment setup) come from
``--template`` (default ``slurm/site.env`` when it exists; copy ``slurm/site.example.env``). Each run gets
``--ntasks-per-node=trainer.devices`` and ``--nodes=trainer.num_nodes``, so DDP runs start under ``srun``.
``--local`` runs the same lines with this Python, stage 1 first, then aggregates the table
(``bench/aggregate.py``). Points outside the experiment's grid go to its ``adhoc/`` folder, with a table of
their own. A file the runs need that nothing in the plan makes (e.g. the official GHN-2 checkpoint of
``paper_imagenet``) is listed with the plan, one line each saying where to get it; ``--local`` and
``--submit`` refuse until it is there. Ctrl-C or SIGTERM to a ``--local`` sweep stops the tasks it started (each
saves its run as interrupted), names them in one line, and the same command again resumes them; each task's
log in ``<runs>/local_logs/`` is named after its run and only ever appended to, one header line per attempt.
Exit status: 0 done or submitted, 1 a task or sbatch failed, 2 bad input or a missing file, 130 / 143 stopped
by SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from bench.errors import USER_ERRORS, AggregateError
from bench.layout import MANIFESTS, table_dir
from bench.planning.local import Stopped, run_local
from bench.planning.plan import Plan, plan_sweep
from bench.planning.slurm import DEFAULT_SITE, REPO_ROOT, read_site, sbatch_args, submit
from bench.results.table import aggregate


def dry_run(plan: Plan, site: dict[str, str], site_path: Path | None, parallel: int | None) -> int:
    """Print the tasks and the sbatch commands --submit would run."""
    for stage, tasks in (("prereq", plan.prerequisites), ("runs", plan.runs)):
        if tasks:
            print(f"\n{'stage 1, prerequisites' if stage == 'prereq' else 'stage 2, runs'}:")
            for t in tasks:
                print(f"  python {t.line}")
    if not plan.runs:
        print("\nnothing to run: every run of this grid is finished" + (" or failed before" if plan.failed else ""))
        return 0
    manifests = plan.runs_dir.resolve() / MANIFESTS
    print("\nwould submit (--submit):")
    for stage, tasks in (("prereq", plan.prerequisites), ("runs", plan.runs)):
        if tasks:
            dep = "<stage-1 job id>" if stage == "runs" and plan.prerequisites else None
            args = sbatch_args(plan, site, site_path, stage=stage, manifest=manifests / f"<stamp>-{stage}.txt",
                               n_tasks=len(tasks), parallel=parallel, dependency=dep)
            print("  " + shlex.join(args))
    print("or run it here one task after another with --local")
    return 0


def local(plan: Plan, jobs: int = 1) -> int:
    """Run the plan here (``jobs`` tasks at once), then print the table; 1 when a task failed."""
    failed = run_local(plan, jobs)
    if any(t.kind != "run" for t in failed) or not (plan.runs or plan.finished):
        return 1 if failed else 0
    adhoc = {id(t) for t in plan.adhoc}
    rc = 0
    if any(id(t) not in adhoc for t in plan.runs + plan.finished):
        rc = aggregate_table(plan.runs_dir, [d for d in plan.compare_dirs if d.is_dir()],
                             plan.axes["pair"] if plan.compare_dirs else None)
    if adhoc:  # points outside the grid: their own table, never the experiment's
        rc = max(rc, aggregate_table(plan.adhoc_dir))
    if rc == 0 and not failed:
        rc = run_analyses(plan.analyses)
    return 1 if failed else rc


def run_analyses(lines: list[str]) -> int:
    """The grid's ``analyses`` (python script + arguments), each once, after the table; 1 if one failed."""
    rc = 0
    for line in lines:
        print(f"\nanalysis: .venv/bin/python {line}")
        done = subprocess.run([sys.executable, *shlex.split(line)], cwd=REPO_ROOT)
        if done.returncode:
            print(f"error: the analysis exited with {done.returncode}: {line}", file=sys.stderr)
            rc = 1
    return rc


def aggregate_table(runs_dir: Path, also: list[Path] = (), pairs: list[str] | None = None) -> int:
    """The table of ``runs_dir`` (bench/aggregate.py; ``also``, ``pairs``: grid.compare_with), printed;
    1 when there is nothing to aggregate."""
    out_dir = table_dir(runs_dir)
    try:
        rows = aggregate(runs_dir, out_dir, also=list(also), pairs=pairs)
    except AggregateError as e:
        print(f"error: cannot aggregate: {e}", file=sys.stderr)
        return 1
    table = out_dir / "table.md"
    if table.exists():
        print("\n" + table.read_text().rstrip())
    print(f"\naggregated {len(rows)} table rows from {runs_dir} into {table.parent}/ "
          f"(again: .venv/bin/python bench/aggregate.py {runs_dir}{''.join(f' --also {d}' for d in also)}"
          f"{' --pairs ' + ' '.join(pairs) if pairs else ''} --out {out_dir})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run an experiment's grid here (--local) or on SLURM (--submit); with neither, print the plan.",
        epilog="Example: .venv/bin/python bench/sweep.py experiment=paper_imagenet data.root=/data/imagenet --submit. "
               "The overrides are bench/run.py's: `.venv/bin/python bench/run.py [overrides] --help` lists the "
               "config groups, the init methods and every key with its value and meaning (grid.* keys: what a sweep expands).")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for bench/run.py (e.g. experiment=smoke)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--local", action="store_true", help="run the tasks here, one after another, then aggregate")
    mode.add_argument("--submit", action="store_true", help="submit two sbatch job arrays (prerequisites, then runs)")
    mode.add_argument("--dry-run", action="store_true", help="print the tasks and sbatch commands (the default)")
    parser.add_argument("--template", type=Path, default=None,
                        help="site settings for --submit (default: slurm/site.env if it exists; "
                             "see slurm/site.example.env)")
    parser.add_argument("--parallel", type=int, default=None, metavar="P",
                        help="at most P array tasks at once (sbatch --array=0-N%%P)")
    parser.add_argument("--jobs", type=int, default=1, metavar="J",
                        help="with --local: J tasks at once, output to <runs>/local_logs/ (pin trainer.threads)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.parallel is not None and args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if Path.cwd().resolve() != REPO_ROOT:
        os.chdir(REPO_ROOT)  # tasks run in the checkout, so relative paths (paths.runs, data.root) mean the same
        print(f"note: paths are relative to the checkout {REPO_ROOT}")
    try:
        site_path = args.template or (DEFAULT_SITE if DEFAULT_SITE.exists() else None)
        site = read_site(site_path) if site_path else {}
        plan = plan_sweep(args.overrides, adopt=args.local or args.submit)  # a plan alone writes nothing
        print(plan.summary())
        if plan.missing and (args.local or args.submit):
            for line in plan.missing:
                print(f"error: missing file: {line}", file=sys.stderr)
            return 2
        if args.local:
            return local(plan, args.jobs)
        if args.submit:
            return submit(plan, site, site_path, args.parallel)
        return dry_run(plan, site, site_path, args.parallel)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:  # --local: its tasks were stopped and named (bench/planning/local.py)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (finished runs are skipped, started ones "
              "resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
