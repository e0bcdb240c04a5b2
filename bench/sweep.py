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
(``bench/aggregate.py``). Exit status: 0 done or submitted, 1 a task or sbatch failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.manifest import MANIFESTS, Plan, SweepError, plan_sweep, save_record, submitted_job_ids, write_manifests

REPO_ROOT = Path(__file__).resolve().parent.parent
SBATCH_SCRIPT = REPO_ROOT / "slurm" / "array.sbatch"
DEFAULT_SITE = REPO_ROOT / "slurm" / "site.env"
# site-file key -> sbatch option (SETUP and PYTHON are read by the job script itself)
SITE_OPTIONS = {"PARTITION": "--partition", "ACCOUNT": "--account", "QOS": "--qos", "TIME": "--time",
                "GPUS_PER_NODE": "--gpus-per-node", "CPUS_PER_TASK": "--cpus-per-task", "MEM": "--mem",
                "CONSTRAINT": "--constraint"}
SITE_KEYS = (*SITE_OPTIONS, "PARALLEL", "SBATCH_EXTRA", "SETUP", "PYTHON")


# ---------------------------------------------------------------------------------------------------------
# Site settings
# ---------------------------------------------------------------------------------------------------------


def read_site(path: Path) -> dict[str, str]:
    """The site file's values, read by bash itself (the job sources the same file, so both agree)."""
    if not path.is_file():
        raise SweepError(f"site file {path} not found; copy slurm/site.example.env and fill it in")
    script = ('unset ' + " ".join(SITE_KEYS) + '; __before=" $(compgen -v | tr "\\n" " ") "; '
              'source "$1" >&2 || exit 3; '
              'for __k in $(compgen -v); do case "$__before" in *" $__k "*) ;; *) [ "$__k" = __before ] || '
              'printf "%s\\0%s\\0" "$__k" "${!__k}";; esac; done')
    try:
        out = subprocess.run(["bash", "-c", script, "site", str(path)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise SweepError(f"could not read {path} with bash: {e}") from None
    if out.returncode != 0:
        raise SweepError(f"{path} is not valid bash: {out.stderr.strip()}")
    fields = out.stdout.split("\0")
    values = dict(zip(fields[0::2], fields[1::2]))
    unknown = sorted(set(values) - set(SITE_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown keys {', '.join(unknown)}; the known ones are {', '.join(SITE_KEYS)}")
    return {k: v for k, v in values.items() if v != ""}


def sbatch_args(plan: Plan, site: dict[str, str], site_path: Path | None, *, stage: str, manifest: Path,
                n_tasks: int, parallel: int | None, dependency: str | None) -> list[str]:
    devices, nodes = int(plan.trainer.get("devices", 1)), int(plan.trainer.get("num_nodes", 1))
    if devices < 1 or nodes < 1:
        raise SweepError(f"trainer.devices={devices} / trainer.num_nodes={nodes}: give explicit counts for SLURM "
                         "(trainer.devices = GPUs per node = tasks per node)")
    parallel = parallel or (int(site["PARALLEL"]) if "PARALLEL" in site else None)
    logs = manifest.parent / "logs"
    args = ["sbatch", "--parsable", f"--array=0-{n_tasks - 1}" + (f"%{parallel}" if parallel else ""),
            f"--job-name=dpiat-{plan.experiment}-{stage}", f"--chdir={REPO_ROOT}",
            f"--output={logs}/%x-%A_%a.out", f"--nodes={nodes}", f"--ntasks-per-node={devices}"]
    for key, option in SITE_OPTIONS.items():
        if key in site:
            args.append(f"{option}={site[key]}")
    if "GPUS_PER_NODE" not in site and str(plan.trainer.get("accelerator")) in ("gpu", "cuda"):
        args.append(f"--gpus-per-node={devices}")
    if dependency:
        # A failed prerequisite cancels the runs instead of leaving them pending forever.
        args += [f"--dependency=afterok:{dependency}", "--kill-on-invalid-dep=yes"]
    args += shlex.split(site.get("SBATCH_EXTRA", ""))
    args += [str(SBATCH_SCRIPT), str(manifest)] + ([str(site_path.resolve())] if site_path else [])
    return args


# ---------------------------------------------------------------------------------------------------------
# The three modes
# ---------------------------------------------------------------------------------------------------------


def queued_jobs(plan: Plan) -> dict[str, str]:
    """Jobs of earlier submissions of this experiment that are still in the queue: {job id: record}."""
    ids = submitted_job_ids(plan.runs_dir)
    if not ids or shutil.which("squeue") is None:
        return {}
    out = subprocess.run(["squeue", "-h", "-o", "%F"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SweepError(f"squeue failed, so the queue cannot be checked for this experiment's earlier jobs: "
                         f"{out.stderr.strip()}")
    queued = set(out.stdout.split())
    return {j: p for j, p in ids.items() if j in queued}


def refuse_if_queued(plan: Plan) -> None:
    queued = queued_jobs(plan)
    if queued:
        raise SweepError(f"jobs of an earlier submission of {plan.experiment} are still queued or running "
                         f"({', '.join(sorted(queued))}; see {sorted(set(queued.values()))[-1]}). Wait for them "
                         f"(squeue --me) or cancel them (scancel {' '.join(sorted(queued))}), then run this again: "
                         "it submits only what is not finished.")


def dry_run(plan: Plan, site: dict[str, str], site_path: Path | None, parallel: int | None) -> int:
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


def submit(plan: Plan, site: dict[str, str], site_path: Path | None, parallel: int | None) -> int:
    if not plan.runs:
        print("nothing to submit: every run of this grid is finished" + (" or failed before" if plan.failed else ""))
        return 0
    if shutil.which("sbatch") is None:
        raise SweepError("sbatch not found: this machine is not a SLURM submit host. Run the grid here one task "
                         "after another with --local, or start a one-node test cluster with "
                         "`sudo bash slurm/local-cluster/up.sh`.")
    refuse_if_queued(plan)
    record = write_manifests(plan, mode="submit", command=sys.argv)
    job = None
    for stage in record["stages"]:
        args = sbatch_args(plan, site, site_path, stage=stage["stage"], manifest=Path(stage["manifest"]),
                           n_tasks=stage["n_tasks"], parallel=parallel, dependency=job)
        Path(stage["manifest"]).parent.joinpath("logs").mkdir(exist_ok=True)  # sbatch does not create it
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            out = subprocess.CompletedProcess(args, 1, "", f"{type(e).__name__}: {e}")
        if out.returncode != 0:
            print(f"error: sbatch failed (exit {out.returncode}): {out.stderr.strip()}\n  command: {shlex.join(args)}",
                  file=sys.stderr)
            if job:
                print(f"  stage 1 (job {job}) was submitted and will train the sources; fix the error and run this "
                      "command again once it has finished (finished work is skipped).", file=sys.stderr)
            return 1
        job = out.stdout.strip().split(";")[0]
        stage["job_id"] = job
        stage["sbatch"] = shlex.join(args)
        save_record(record)
        print(f"submitted stage {'1 (prerequisites)' if stage['stage'] == 'prereq' else '2 (runs)'}: job {job}, "
              f"{stage['n_tasks']} tasks, manifest {stage['manifest']}")
    logs = Path(record["stages"][0]["manifest"]).parent / "logs"
    print(f"record: {record['path']}\nlogs: {logs}/\nwatch: squeue --me; then: python bench/aggregate.py {plan.runs_dir}")
    return 0


def run_local(plan: Plan) -> int:
    failed: list = []
    if not plan.runs:
        print("nothing to run: every run of this grid is finished" + (" or failed before" if plan.failed else ""))
    else:
        if shutil.which("squeue"):
            refuse_if_queued(plan)
        record = write_manifests(plan, mode="local", command=sys.argv)
        print(f"manifests: {', '.join(s['manifest'] for s in record['stages'])}")
        tasks = plan.prerequisites + plan.runs
        for i, task in enumerate(tasks, 1):
            if task.kind == "run" and any(t.kind != "run" for t in failed):
                # a failed prerequisite: the runs that need it would fail too (on SLURM, afterok cancels them)
                print("\nstage 1 failed, so the runs were not started; fix it and run this command again "
                      "(finished work is skipped)", file=sys.stderr)
                break
            print(f"\n[{i}/{len(tasks)}] python {task.line}", flush=True)
            t0 = time.monotonic()
            rc = subprocess.call([sys.executable, *task.argv], cwd=REPO_ROOT)
            print(f"[{i}/{len(tasks)}] exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
            if rc != 0:
                failed.append(task)
        if failed:
            print(f"\n{len(failed)} of {len(tasks)} tasks failed (their run.json says why):", file=sys.stderr)
            for t in failed:
                print(f"  python {t.line}", file=sys.stderr)
    if any(t.kind != "run" for t in failed) or not (plan.runs or plan.finished):
        return 1 if failed else 0
    rc = aggregate_table(plan)
    return 1 if failed else rc


def aggregate_table(plan: Plan) -> int:
    from bench.aggregate import AggregateError, aggregate, default_out_dir

    try:
        out_dir = default_out_dir(plan.runs_dir)
    except AggregateError:  # paths.runs is not a folder named runs/: the table goes next to the experiment's runs
        out_dir = plan.runs_dir.parent / f"{plan.runs_dir.name}_table"
    try:
        rows = aggregate(plan.runs_dir, out_dir)
    except AggregateError as e:
        print(f"error: cannot aggregate: {e}", file=sys.stderr)
        return 1
    table = out_dir / "table.md"
    if table.exists():
        print("\n" + table.read_text().rstrip())
    print(f"\naggregated {len(rows)} table rows from {plan.runs_dir} into {table.parent}/ "
          f"(again: python bench/aggregate.py {plan.runs_dir} --out {out_dir})")
    return 0


# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run an experiment's grid here (--local) or on SLURM (--submit); with neither, print the plan.",
        epilog="Example: python bench/sweep.py experiment=paper_imagenet data.root=/data/imagenet --submit")
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
    args = parser.parse_args(argv)
    if args.parallel is not None and args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if Path.cwd().resolve() != REPO_ROOT:
        os.chdir(REPO_ROOT)  # tasks run in the checkout, so relative paths (paths.runs, data.root) mean the same
        print(f"note: paths are relative to the checkout {REPO_ROOT}")
    try:
        site_path = args.template or (DEFAULT_SITE if DEFAULT_SITE.exists() else None)
        site = read_site(site_path) if site_path else {}
        plan = plan_sweep(args.overrides)
        print(plan.summary())
        if args.local:
            return run_local(plan)
        if args.submit:
            return submit(plan, site, site_path, args.parallel)
        return dry_run(plan, site, site_path, args.parallel)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (finished runs are skipped, started ones "
              "resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
