"""The GPU-hours of an experiment's sweep, estimated from timm's published throughput (no GPU needed).

The runs and source trainings counted are exactly what ``bench/sweep.py`` would submit for the same overrides
(:func:`bench.planning.plan.plan_sweep`; finished runs under paths.runs are left out, so :func:`estimate`
plans against an empty folder unless ``paths.runs`` is given). Each run trains ``epochs`` x the training set,
validates once after init and once per epoch; a source training does the same for ``source.epochs``.

An ESTIMATE, not a measurement on our hardware. Images per second come from timm's own benchmark CSVs
(huggingface/pytorch-image-models, ``results/``), measured by timm's ``benchmark.py`` on one RTX 3090, AMP,
channels-last, PyTorch 1.12 / CUDA 11.3, on synthetic tensors already on the GPU (no data loading), batch
192-512 for training and 768-1024 for inference:

    results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv   column train_samples_per_sec
    results/benchmark-infer-amp-nhwc-pt112-cu113-rtx3090.csv   column infer_samples_per_sec

Our runs use a global batch of 128 and read JPEGs, so expect them slower: read the figures as lower bounds.

MEASURED instead, when ``results/gpu/gpu_check.json`` exists (``bench/measure/gpu_check.py`` on our GPU, committed):
its harness images/s at its resolution, scaled to a run's resolution by pixel count, for the networks it
measured; every other network gets its published figures times the median ratio measured / published of
the measured ones (the GPU's speed relative to the RTX 3090), inference too. :func:`throughput_table` says
which it used.

    >>> round(run_hours("tf_efficientnet_b0", "imagenet", 50), 2)
    10.1
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from hydra import compose, initialize_config_dir

from bench.config import CONF_DIR
from bench.errors import SweepError
from bench.planning.plan import plan_sweep

SOURCE = "huggingface/pytorch-image-models results/benchmark-{kind}-amp-nhwc-pt112-cu113-rtx3090.csv"
# model: (train images/s, inference images/s, image size), the rows of the two files above
THROUGHPUT = {
    "tf_efficientnet_b0": (1779.02, 7052.24, 224),
    "tf_efficientnet_b1": (1099.77, 4403.29, 240),
    "tf_efficientnet_b2": (848.58, 3412.60, 260),
    "efficientnet_b0": (1751.72, 8015.36, 224),
    "mixnet_m": (878.04, 3496.31, 224),
    "mixnet_l": (702.18, 2682.98, 224),
    "rexnet_100": (1364.31, 6291.85, 224),
    "rexnet_150": (866.26, 3870.49, 224),
    "mnasnet_100": (2929.31, 11303.72, 224),
    "semnasnet_100": (2279.15, 9728.29, 224),
    "resnet50": (1218.01, 3676.35, 224),
}
# bench/measure/gpu_check.py's figures on our GPU, when committed
MEASURED = Path(__file__).resolve().parents[2] / "results" / "gpu" / "gpu_check.json"
# (training images, validation images) per epoch
DATA = {"imagenet": (1_281_167, 50_000), "cifar100": (50_000, 10_000), "cifar10": (50_000, 10_000)}


def throughput_table(measured: Path | None = MEASURED) -> tuple[dict, str]:
    """(model -> (train images/s, inference images/s, image size), where the figures come from).

    From ``measured`` (bench/measure/gpu_check.py's JSON) when that file exists, else the published :data:`THROUGHPUT`.
    """
    if measured is None or not Path(measured).exists():
        return dict(THROUGHPUT), f"published: {SOURCE.format(kind='train|infer')} (RTX 3090)"
    try:
        check = json.loads(Path(measured).read_text())
        rows = [r for r in check["throughput"] if r["model"] in THROUGHPUT and r.get("harness_img_s")]
    except (ValueError, KeyError, TypeError) as e:
        raise SweepError(f"{measured} is not a bench/measure/gpu_check.py result ({type(e).__name__}: {e}); "
                         "fix or delete it")
    if not rows:
        raise SweepError(f"{measured} has no harness throughput of a known network; rerun bench/measure/gpu_check.py")
    table, factors = dict(THROUGHPUT), []
    for r in rows:
        train, infer, size = THROUGHPUT[r["model"]]
        at_size = r["harness_img_s"] * (r["resolution"] / size) ** 2  # measured at r's resolution, run at size
        factors.append(at_size / train)
        table[r["model"]] = (at_size, infer * at_size / train, size)
    factor = statistics.median(factors)
    for model, (train, infer, size) in THROUGHPUT.items():
        if model not in {r["model"] for r in rows}:
            table[model] = (train * factor, infer * factor, size)
    names = ", ".join(sorted({r["model"] for r in rows}))
    return table, (f"measured: {measured} ({check.get('device', '?')}, {check.get('date', '?')}): {names} "
                   f"through the harness; the others published x {factor:.2f}")


def run_hours(model: str, data: str, epochs: int, table: dict | None = None) -> float:
    train_ips, infer_ips, _ = (table or THROUGHPUT)[model]
    n_train, n_val = DATA[data]
    return (epochs * n_train / train_ips + (epochs + 1) * n_val / infer_ips) / 3600


def estimate(overrides: list[str], measured: Path | None = MEASURED) -> str:
    """A markdown table of the GPU-hours per network and role of the sweep ``overrides`` describes, from
    ``measured`` figures when that file exists, published ones otherwise (the table's first line says which)."""
    table, origin = throughput_table(measured)
    with tempfile.TemporaryDirectory() as empty:
        overrides = [*overrides, f"paths.runs={empty}"] if not any(o.startswith("paths.runs=") for o in overrides) \
            else overrides
        plan = plan_sweep(overrides)
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[o for o in overrides if o.split("=")[0] in ("experiment", "epochs",
                                                                                             "source.epochs", "data")])
    data, epochs, source_epochs = cfg.data.name, cfg.epochs, cfg.source.epochs
    if data not in DATA:
        raise SweepError(f"no image counts for data={data}; known: {', '.join(DATA)}")
    targets = Counter(t.network for t in plan.runs)
    sources = Counter(t.network for t in plan.prerequisites if t.kind == "source")
    missing = sorted((set(targets) | set(sources)) - set(table))
    if missing:
        raise SweepError(f"no published throughput here for {', '.join(missing)}: add its rows to THROUGHPUT")
    lines = [f"{plan.experiment} ({data}, {epochs} epochs): {len(plan.runs)} runs"
             + (f" + {sum(sources.values())} source trainings of {source_epochs} epochs" if sources else ""),
             "| network | role | count | GPU-h per run | GPU-h |", "|---|---|---|---|---|"]
    total = 0.0
    for role, counts, n_epochs in (("target", targets, epochs), ("source", sources, source_epochs)):
        for model, n in sorted(counts.items()):
            h = run_hours(model, data, n_epochs, table)
            total += n * h
            lines.append(f"| {model} ({table[model][2]} px) | {role} | {n} | {h:.2f} | {n * h:.1f} |")
    lines.append(f"| **total** | | | | **{total:.0f}** |")
    lines.append(f"throughput {origin}")
    return "\n".join(lines)
