"""Submitting a plan to SLURM: the site file, the sbatch options, the queue check, the two job arrays.

``--submit`` submits ``slurm/array.sbatch`` twice: stage 1 (source trainings and the grid's prerequisites),
then stage 2 (the runs) with ``--dependency=afterok`` on it. Site settings (partition, account, time, GPUs,
environment setup) come from a bash file (``slurm/site.env``; copy ``slurm/site.example.env``). Each run gets
``--ntasks-per-node=trainer.devices`` and ``--nodes=trainer.num_nodes``, so DDP runs start under ``srun``.

    from bench.planning.slurm import read_site, sbatch_args
    sbatch_args(plan, read_site(Path("slurm/site.example.env")), None, stage="runs",
                manifest=Path("m-runs.txt"), n_tasks=3, parallel=2, dependency=None)
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from bench.errors import SweepError
from bench.planning.manifests import save_record, submitted_job_ids, write_manifests
from bench.planning.plan import Plan

REPO_ROOT = Path(__file__).resolve().parents[2]
SBATCH_SCRIPT = REPO_ROOT / "slurm" / "array.sbatch"
DEFAULT_SITE = REPO_ROOT / "slurm" / "site.env"
# site-file key -> sbatch option (SETUP and PYTHON are read by the job script itself)
SITE_OPTIONS = {"PARTITION": "--partition", "ACCOUNT": "--account", "QOS": "--qos", "TIME": "--time",
                "GPUS_PER_NODE": "--gpus-per-node", "CPUS_PER_TASK": "--cpus-per-task", "MEM": "--mem",
                "CONSTRAINT": "--constraint"}
SITE_KEYS = (*SITE_OPTIONS, "PARALLEL", "SBATCH_EXTRA", "SETUP", "PYTHON")


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



def submit(plan: Plan, site: dict[str, str], site_path: Path | None, parallel: int | None) -> int:
    """Write the manifests and submit the two stages; 0 submitted (or nothing to do), 1 sbatch failed."""
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
    print(f"record: {record['path']}\nlogs: {logs}/\n"
          f"watch: squeue --me; then: .venv/bin/python bench/aggregate.py {plan.runs_dir}")
    return 0
