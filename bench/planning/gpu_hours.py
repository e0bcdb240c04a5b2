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

    >>> round(run_hours("tf_efficientnet_b0", "imagenet", 50), 2)
    10.1
"""

from __future__ import annotations

import tempfile
from collections import Counter

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
# (training images, validation images) per epoch
DATA = {"imagenet": (1_281_167, 50_000), "cifar100": (50_000, 10_000), "cifar10": (50_000, 10_000)}


def run_hours(model: str, data: str, epochs: int) -> float:
    train_ips, infer_ips, _ = THROUGHPUT[model]
    n_train, n_val = DATA[data]
    return (epochs * n_train / train_ips + (epochs + 1) * n_val / infer_ips) / 3600


def estimate(overrides: list[str]) -> str:
    """A markdown table of the GPU-hours per network and role of the sweep ``overrides`` describes."""
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
    missing = sorted((set(targets) | set(sources)) - set(THROUGHPUT))
    if missing:
        raise SweepError(f"no published throughput here for {', '.join(missing)}: add its rows to THROUGHPUT")
    lines = [f"{plan.experiment} ({data}, {epochs} epochs): {len(plan.runs)} runs"
             + (f" + {sum(sources.values())} source trainings of {source_epochs} epochs" if sources else ""),
             "| network | role | count | GPU-h per run | GPU-h |", "|---|---|---|---|---|"]
    total = 0.0
    for role, counts, n_epochs in (("target", targets, epochs), ("source", sources, source_epochs)):
        for model, n in sorted(counts.items()):
            h = run_hours(model, data, n_epochs)
            total += n * h
            lines.append(f"| {model} ({THROUGHPUT[model][2]} px) | {role} | {n} | {h:.2f} | {n * h:.1f} |")
    lines.append(f"| **total** | | | | **{total:.0f}** |")
    return "\n".join(lines)
