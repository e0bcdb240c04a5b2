"""The harness config: its typed schema, registered in Hydra's ConfigStore, and the checks before a run.

``conf/config.yaml`` starts its defaults list with ``base_config`` (the :class:`Config` dataclass below), so
every config group is merged onto a typed node: a typo or a wrong type fails before any work, e.g. ``python
bench/run.py optim.lr=abc`` or ``pair=nope``, in one line that bench/refusal.py words from Hydra's error (a misspelt
key, ``trainer.devics=2``, is caught before Hydra by bench/config_help.py). The ``init`` group is the exception on purpose: it
holds ``name`` plus whatever options that method takes, and the method itself rejects unknown options.

The ``init`` group's options are the init methods registered in ``dpiat.inits`` (the one registry): each gets
a node ``{name: <name>}``, so registering a method is all it takes to run it (``init=<name>``). A yaml file
``conf/init/<name>.yaml`` documents a method's options and takes the node's place (Hydra would otherwise
use the node as a schema for the file, a deprecated behaviour that warns). Hydra's output folder is the run
folder, through the ``run_folder`` resolver (:func:`bench.layout.hydra_dir`).

Compose the real config without the command line (what the tests do)::

    from hydra import compose, initialize_config_dir
    import bench.config  # registers the schema
    with initialize_config_dir(str(bench.config.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke"])
    print(cfg.pair.target, cfg.data.name)
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

import dpiat
from bench.errors import ConfigError
from bench.layout import ADHOC, MANIFESTS, SOURCES, hydra_dir
from dpiat.errors import close_matches

# the classes of each in-memory data set (data.num_classes below it cannot train on its labels)
DATASET_CLASSES = {"fashion_mnist": 10, "digits": 10, "cifar10": 10, "cifar100": 100}

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class PathsConfig:
    runs: str = "results/runs"  # run folders: <runs>/<experiment>/<pair>/<init>/seed<k>/
    checkpoints: str = "checkpoints"  # files fetched by hand, e.g. ppuda's official ghn2_imagenet.pt (git-ignored)


@dataclass
class PairConfig:
    name: str = MISSING  # = the file name in conf/pair/; part of the run folder (bench/layout.py)
    source: Optional[str] = None  # timm name of the network whose weights are transferred
    target: str = MISSING  # timm name of the network that is trained
    note: str = ""  # free text about the pair, kept in the config and run.json
    # extra timm arguments of each network, e.g. {img_size: 32, patch_size: 4, depth: 6} for a ViT (dpiat.create_model);
    # recorded in run.json with the config. A source's cache folder is named by its timm name only, so two pairs of
    # one experiment with the same source name must not differ in source_kwargs
    source_kwargs: Dict[str, Any] = field(default_factory=dict)
    target_kwargs: Dict[str, Any] = field(default_factory=dict)  # the same for the target network
    # the pair in words for plots, e.g. "TinyNet-D -> TinyNet-E (same family)"; a label, not part of the run's
    # identity. None: "<source> -> <target>" (bench/results/titles.py)
    title: Optional[str] = None


@dataclass
class SourceConfig:
    # train: train it here with the same recipe and data, cached and shared by all target runs;
    # timm: timm's pretrained weights (needs internet, or the local Hugging Face cache holding them) of the tag
    # pair.source names (its default tag for a bare name); none: an untrained source (the control that shows
    # a gain comes from training); zoo:<name>: offline real weights (dpiat.zoo); anything else: the path of
    # a weights file (see dpiat.load_weights)
    weights: str = "train"
    epochs: int = 2  # when weights=train: epochs over source.train_subset
    seed: int = 0  # sources are trained once and shared by every target seed
    experiment: Optional[str] = None  # whose trained sources to use (None: this experiment's own)
    # A source is a converged network, as in the paper and in any real use: it gets its own budget, not the
    # targets' (data.train_subset). None: the whole training split; N: a fixed seeded subset of N images.
    train_subset: Optional[int] = None
    lr: Optional[float] = None  # None: optim.lr (the protocol uses 1e-3 to fine-tune pretrained sources)
    schedule: Optional[str] = None  # None: optim.schedule; e.g. cosine_steps to converge in a few epochs
    warmup_steps: Optional[int] = None  # None: optim.warmup_steps
    optimizer: Optional[str] = None  # None: optim.name (adam | sgd)
    weight_decay: Optional[float] = None  # None: optim.weight_decay
    crop_scale: Optional[List[float]] = None  # None: data.crop_scale (lighter augmentation converges faster)
    num_classes: Optional[int] = None  # None: the data's; e.g. 1000 for an ImageNet-headed weights file
    in_chans: Optional[int] = None  # None: the data's


@dataclass
class SyntheticConfig:
    train_per_class: int = 24  # generated training images per class
    val_per_class: int = 8  # generated validation images per class
    min_size: int = 40  # generated images are W x H with sides in [min_size, max_size], not square on purpose
    max_size: int = 64  # see min_size


@dataclass
class DataConfig:
    name: str = MISSING  # imagenet | cifar10 | cifar100 | fashion_mnist | digits | synthetic
    root: Optional[str] = None  # data location; None: the data set's default
    num_classes: int = MISSING  # classes of the data set: the size of every classifier head
    in_chans: int = 3  # image channels (1: Fashion-MNIST, digits; 3: RGB)
    resolution: Optional[int] = None  # None: per target model (b0 224, b1 240, b2 260, others 224)
    mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # per channel, of pixels in [0, 1]
    std: List[float] = field(default_factory=lambda: list(IMAGENET_STD))  # per channel: x -> (x - mean) / std
    batch_size: int = 128  # global: split across devices
    eval_batch_size: Optional[int] = None  # None: 2 x batch_size
    train_subset: Optional[int] = None  # an "epoch" = this many images, a fixed seeded subset
    val_subset: Optional[int] = None  # validate on this many images, a fixed seeded subset; None: all
    subset_seed: int = 0  # fixed across run seeds: every init sees the same images
    # a fixed slice of this many training-split images that training never sees, drawn with the training
    # subset (disjoint from it, the same for every run seed and init) and evaluated after every epoch
    # (heldout_top1 in run.json): what a choice among recipes may be made on, never the validation set. 0: off
    heldout: int = 0
    crop_scale: Optional[List[float]] = None  # None: (0.1, 1), or (0.5, 1) below 100 px (protocol)
    hflip: bool = True  # random horizontal flips in training
    # DataLoader worker processes per training process (image files only: in-memory data sets never use them).
    # 0: load in the training process (small CPU machines); auto: this process's CPUs minus one for it
    # (SLURM_CPUS_PER_TASK, else the CPUs it may run on divided by the processes of a ddp run on this machine)
    num_workers: Any = 0
    # who decodes JPEGs: pil (PIL + torchvision's PIL transforms) or torchvision (torchvision.io to uint8
    # tensors + v2 transforms; ~1.6x the images/s per worker, bench/measure/loader_speed.py); the pixels
    # differ by rounding
    decoder: str = "pil"
    pin_memory: Optional[bool] = None  # page-locked batches for asynchronous copies to the GPU; None: on with a GPU
    # keep workers between epochs: saves their start-up (seconds per epoch) but their random crops then depend
    # on the epochs before, so a run resumed from a checkpoint no longer repeats an uninterrupted one
    persistent_workers: bool = False
    download: bool = False  # torchvision data sets: download into root when missing
    synthetic: Optional[SyntheticConfig] = None  # data=synthetic only: the generated image folder


class OptimName(str, Enum):
    adam = "adam"
    sgd = "sgd"


class Schedule(str, Enum):
    mocked_cosine = "mocked_cosine"  # the paper's: cosine over a mocked `mock_epochs`, stepped per epoch
    cosine = "cosine"  # cosine over the real number of epochs, stepped per epoch
    cosine_steps = "cosine_steps"  # linear warm-up for optim.warmup_steps, then cosine to 0, stepped per step
    constant = "constant"


@dataclass
class OptimConfig:
    name: OptimName = OptimName.adam
    lr: float = 4e-3  # the learning rate (the paper's recipe: 4e-3 with Adam at batch 128)
    weight_decay: float = 0.0  # the optimiser's weight decay (0 in the paper's recipe)
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam only
    schedule: Schedule = Schedule.mocked_cosine
    mock_epochs: int = 100  # mocked_cosine only: the length of the mocked cosine, in epochs
    min_factor: float = 0.1  # the lr factor never goes below this (per-epoch schedules)
    # steps of linear warm-up from lr/warmup_steps to lr: cosine_steps ramps into its cosine; a per-epoch
    # schedule is then stepped per step, its epoch's factor times the warm-up's (0: none, the epoch schedule as is)
    warmup_steps: int = 0


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"  # cpu | gpu | auto
    devices: int = 1  # devices per node (with ddp: one process each)
    num_nodes: int = 1  # machines (SLURM --nodes)
    strategy: str = "auto"  # auto | ddp (one process per device)
    precision: str = "32-true"  # 16-mixed / bf16-mixed for AMP on GPUs (bf16: tensor cores, no loss scaling)
    channels_last: bool = False  # NHWC tensors: cuDNN's fast convolution kernels under AMP (GPUs); off on CPUs
    # torch.compile the network (fused kernels: faster GPU steps after a minute or two of compiling). Off by
    # default: the numerics change (an accuracy-relevant departure from the paper's eager recipe)
    compile: bool = False
    # cuDNN tries its convolution algorithms once per shape and keeps the fastest (GPUs; a fixed input size, as
    # here). None: Lightning's default (off when deterministic). On overrides `deterministic` for convolutions
    cudnn_benchmark: Optional[bool] = None
    deterministic: Optional[bool] = None  # None: True on CPU, "warn" on GPU
    float32_matmul_precision: Optional[str] = None  # "high" enables TF32 on Ampere+ GPUs
    enable_progress_bar: bool = True  # Lightning's progress bar (off where logs are files)
    log_every_n_steps: int = 50  # the training loss goes to the CSV / W&B logs every this many steps
    max_loss: float = 1000.0  # a training loss above this is divergence, not learning: stop the run
    limit_train_batches: Optional[int] = None  # smoke tests only: caps the batches per epoch
    threads: Optional[int] = None  # torch intra-op threads (None: torch's default, one per core); results are
    #                                bit-identical only at the same count, so experiments that promise it pin it


@dataclass
class EvalConfig:
    # Every evaluation (after init and after each epoch) is done twice: as the protocol does it, with the
    # BatchNorm running statistics training left (val_top1), and with them recomputed on this many fixed
    # training batches (val_top1_bn: what an init is worth, without the statistics' lag). The second works
    # on a copy of the network, so training is the same with it on or off. 0: off.
    bn_batches: int = 20


@dataclass
class DistillConfig:
    """Knowledge distillation from the pair's trained source (the weights a transfer copies) while the target
    trains: ``logits`` trains on ``(1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) ||
    softmax(student / T))`` (Hinton et al. 2015), the teacher in eval mode, without gradients, on the same
    augmented batch. Any init combines with it. alpha = 0.9 and T = 4 are the common setting, not tuned here."""

    kind: str = "none"  # none | logits
    alpha: float = 0.9  # weight of the distillation term (1 - alpha: the labels' cross-entropy)
    temperature: float = 4.0  # T: both softmaxes are softened by it; T^2 keeps the gradient scale


DISTILL_KINDS = ("none", "logits")


def distilled(cfg: Any) -> bool:
    """Whether a run (its config, or run.json's ``config``) trains with a teacher: then it reads the source."""
    d = (cfg or {}).get("distill") or {}
    return str(d.get("kind", "none")) != "none"


@dataclass
class LoggerConfig:
    csv: bool = True  # Lightning CSVLogger into <run>/csv/
    wandb: bool = False  # also log to Weights & Biases, one W&B run per run folder
    wandb_mode: str = "offline"  # offline (sync later with `wandb sync`), online, disabled
    wandb_project: str = "dpiat-bench"  # the W&B project
    wandb_entity: Optional[str] = None  # the W&B team or user; None: your default


@dataclass
class GridConfig:
    """What a sweep over this experiment expands to (read by the sweep tooling, not by a single run)."""

    pairs: List[str] = field(default_factory=list)  # names of conf/pair/*.yaml
    models: List[str] = field(default_factory=list)  # all ordered (source, target) pairs, via pair=custom
    # every (source, target) pair of these two lists with source != target, via pair=custom (an all-pairs grid
    # where only some models are also targets)
    sources: List[str] = field(default_factory=list)
    targets: List[str] = field(default_factory=list)  # the targets of that grid
    inits: List[str] = field(default_factory=list)  # init methods (init=<name>)
    seeds: List[int] = field(default_factory=list)  # run seeds (seed=<k>)
    # options for one init method only, e.g. {ghn: ["init.checkpoint=results/runs/proxy/ghn/ghn.pt"]}
    init_overrides: Dict[str, List[str]] = field(default_factory=dict)
    # stage-1 commands run before any run (python script + overrides, idempotent), e.g. a GHN meta-training:
    # "bench/train_ghn.py data=cifar10"; bench/sweep.py submits them with the source trainings
    prerequisites: List[str] = field(default_factory=list)
    # experiments whose runs of this grid's pairs join its table (e.g. variants: proxy's random and dpiat);
    # their runs are theirs to make: run those experiments first
    compare_with: List[str] = field(default_factory=list)
    # analyses run after the table by `bench/sweep.py --local` (python script + arguments, idempotent), e.g.
    # "bench/selection.py ${paths.runs}/${experiment_name}"; on SLURM, run them yourself once the runs are done
    analyses: List[str] = field(default_factory=list)
    # fine-tuning recipes, each a name and the optim.<key>=value settings it applies, e.g.
    # {adam_lr1e-3: ["optim.lr=0.001"]}: every run of the grid is made once per recipe (recipe=<name>), in
    # <experiment>/<recipe>/<pair>/<init>/seed<k>/ (bench/layout.py); empty: no recipe axis
    recipes: Dict[str, List[str]] = field(default_factory=dict)
    # where a recipe runs only on part of the grid: {recipe: {pairs: [...], inits: [...]}} (a key left out: all of
    # that axis), e.g. {adam_lr1e-3: {pairs: [tinynet_d_to_e], inits: [dpiat]}}, or a list of such scopes (their
    # union: {paper: [{inits: [random]}, {pairs: [a_to_t], inits: [dpiat]}]}); a recipe not named: every point
    recipe_scope: Dict[str, Any] = field(default_factory=dict)
    # run the grid seed by seed (every run of seed 0, then seed 1, ...): a long grid stopped early holds whole
    # seeds; false: the order of pairs, inits, recipes and seeds as listed
    seed_major: bool = False
    # keep the finished runs in the repository: a sweep takes those of results/<experiment>/runs as done (copying
    # them into its runs folder) and copies each run it finishes there (bench/planning/committed.py)
    resume_committed: bool = False
    # the table the runs make (bench/aggregate.py): "" the paper's table (one per recipe, the recipe chosen on
    # held-out images, when grid.recipes), or "horizon": ratios at every epoch and time to random's final accuracy
    table: str = ""


@dataclass
class Config:
    experiment_name: str = "default"  # part of the run folder (bench/layout.py)
    seed: int = 0  # the run seed: the target's initial weights and every random choice of its training
    epochs: int = MISSING  # epochs to train the target (an epoch: data.train_subset images, or all)
    paths: PathsConfig = field(default_factory=PathsConfig)
    pair: PairConfig = field(default_factory=PairConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    # `name` plus the method's options, passed on to dpiat.initialize(name, target, source, **options)
    init: Dict[str, Any] = field(default_factory=lambda: {"name": MISSING})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    # the fine-tuning recipe of this run: a name in grid.recipes, whose settings apply_recipe() puts in optim;
    # part of the run folder. None: the experiment's optim as composed
    recipe: Optional[str] = None


def register_configs() -> None:
    """The schema, one ``init`` option per registered method without a yaml file, and the ``run_folder`` resolver.

    Called on import; call it again after registering an init method later in the process.
    """
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for name in dpiat.available_inits():
        if not (CONF_DIR / "init" / f"{name}.yaml").exists():
            store.store(group="init", name=name, node={"name": name})
    OmegaConf.register_new_resolver("run_folder", lambda kind, *, _root_: str(hydra_dir(kind, _root_)), replace=True)


register_configs()


def check_config(cfg: DictConfig) -> None:
    """What Hydra's schema cannot check: missing values, the init method and models by name, epochs."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError("these settings have no value: " + ", ".join(missing) + ". Give them on the command "
                          "line, e.g. " + " ".join(f"{k}=..." for k in missing) + ".")
    if not isinstance(cfg.init.name, str):
        raise ConfigError(f"init.name must be the name of an init method, got {cfg.init.name!r}")
    method = dpiat.get_init(cfg.init.name)  # UnknownNameError for a yaml whose method is not registered
    dpiat.models.check_model_name(cfg.pair.target)
    check_distill(cfg)
    if method.needs_source or distilled(cfg):
        if not cfg.pair.source:
            who = f"init {cfg.init.name!r}" if method.needs_source else f"distill.kind={cfg.distill.kind}"
            raise ConfigError(f"{who} needs a source network, and pair {cfg.pair.name!r} has none")
        from dpiat.pretrained import is_pretrained_name

        if is_pretrained_name(cfg.pair.source) and cfg.source.weights == "train":
            raise ConfigError(f"pair.source={cfg.pair.source} names pretrained weights, but source.weights=train "
                              "would train that architecture here from scratch: add source.weights=timm to load "
                              "them, or name the bare architecture to train it")
        if not (cfg.pair.source.startswith("hf-hub:") and cfg.source.weights == "timm"):  # a hub repo: its config
            dpiat.models.check_model_name(cfg.pair.source)
    for role in ("source", "target"):  # extra timm arguments: build on the meta device now, not after hours
        kwargs = cfg.pair.get(f"{role}_kwargs")
        if kwargs and cfg.pair.get(role):
            try:
                dpiat.create_model(cfg.pair[role], device="meta", **OmegaConf.to_container(kwargs, resolve=True))
            except Exception as e:  # timm raises TypeError, ValueError, AssertionError for arguments it refuses
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ConfigError(f"pair.{role}_kwargs={dict(kwargs)}: timm could not build {cfg.pair[role]!r} with "
                                  f"them ({message}); fix or remove the argument") from None
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {cfg.epochs}")
    known = DATASET_CLASSES.get(cfg.data.name)
    if cfg.data.num_classes < max(known or 1, 1):
        raise ConfigError(f"data.num_classes={cfg.data.num_classes}: " + (
            f"{cfg.data.name} has {known} classes, so every classifier head needs at least {known} outputs "
            f"(leave data.num_classes out to use {known})" if known else "a classifier needs at least 1 class"))
    schedules = [s.value for s in Schedule]
    if cfg.source.schedule is not None and cfg.source.schedule not in schedules:
        raise ConfigError(f"source.schedule={cfg.source.schedule!r} is not a schedule; choose from {', '.join(schedules)}")
    optimizers = [o.value for o in OptimName]
    if cfg.source.optimizer is not None and cfg.source.optimizer not in optimizers:
        raise ConfigError(f"source.optimizer={cfg.source.optimizer!r} is not an optimizer; choose from "
                          f"{', '.join(optimizers)}")
    if cfg.trainer.threads is not None and cfg.trainer.threads < 1:
        raise ConfigError(f"trainer.threads must be 1 or more (or null: torch's default), got {cfg.trainer.threads}")
    workers = cfg.data.num_workers
    if not (workers == "auto" or (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0)):
        raise ConfigError(f"data.num_workers must be a number of worker processes (0 or more) or auto, got {workers!r}")
    if cfg.data.decoder not in ("pil", "torchvision"):
        raise ConfigError(f"data.decoder={cfg.data.decoder!r} is not a decoder; choose from pil, torchvision")
    if cfg.eval.bn_batches < 0:
        raise ConfigError(f"eval.bn_batches must be 0 (off) or more, got {cfg.eval.bn_batches}")
    if cfg.data.get("heldout", 0) < 0:
        raise ConfigError(f"data.heldout must be 0 (off) or a number of training images to hold out, got "
                          f"{cfg.data.heldout}")
    if cfg.optim.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps must be 0 (no warm-up) or more, got {cfg.optim.warmup_steps}")
    check_recipes(cfg.get("grid"))
    if cfg.get("recipe") is not None:
        settings = [line for line in recipe_settings(cfg.grid, cfg.recipe) if line.startswith("optim.")]
        if (method.needs_source or distilled(cfg)) and cfg.source.weights == "train":
            loose = [line for line in settings if line.split("=", 1)[0] in SOURCE_TWINS
                     and cfg.source.get(SOURCE_TWINS[line.split("=", 1)[0]]) is None]
            loose += [line for line in settings if line.split("=", 1)[0] not in SOURCE_TWINS]
            if loose:
                raise ConfigError(f"recipe {cfg.recipe}: {', '.join(loose)} would also change how the source is "
                                  "trained here (a recipe is how targets are fine-tuned); set the source's own value "
                                  "(" + ", ".join(f"source.{SOURCE_TWINS[k]}" for k in SOURCE_TWINS) + "), or "
                                  "leave that key out of the recipe")


# optim keys a recipe may set, and the source.* key that gives a trained source its own value instead
SOURCE_TWINS = {"optim.lr": "lr", "optim.schedule": "schedule", "optim.warmup_steps": "warmup_steps",
                "optim.name": "optimizer", "optim.weight_decay": "weight_decay"}
_RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_distill(cfg: Any) -> None:
    """``distill``: a known kind, 0 <= alpha <= 1, a positive temperature."""
    d = cfg.get("distill")
    if d is None:
        return
    if d.kind not in DISTILL_KINDS:
        close = close_matches(str(d.kind), list(DISTILL_KINDS))
        raise ConfigError(f"distill.kind={d.kind!r} is not a kind of distillation"
                          + (f"; did you mean {', '.join(close)}?" if close else "")
                          + f" (choose from {', '.join(DISTILL_KINDS)})")
    if not 0.0 <= float(d.alpha) <= 1.0:
        raise ConfigError(f"distill.alpha must be between 0 and 1 (the distillation term's weight), got {d.alpha}")
    if not float(d.temperature) > 0.0:
        raise ConfigError(f"distill.temperature must be positive, got {d.temperature}")


RECIPE_GROUPS = {"optim": "OptimConfig", "distill": "DistillConfig"}  # the config groups a recipe may set


def check_recipes(grid: Any) -> None:
    """``grid.recipes``: folder-safe names, each with ``optim.<key>=value`` or ``distill.<key>=value`` settings
    only; ``grid.recipe_scope``: a scope (or a list of scopes, their union) per recipe."""
    for name, settings in ((grid or {}).get("recipes") or {}).items():
        if not _RECIPE_NAME.fullmatch(str(name)) or name in (SOURCES, ADHOC, MANIFESTS, "ghn", "local_logs"):
            raise ConfigError(f"grid.recipes: {name!r} cannot name a recipe (it becomes a folder: letters, digits and "
                              f"_ . + - only, and not {SOURCES}, {ADHOC}, {MANIFESTS}, ghn or local_logs)")
        for line in settings or []:
            key = str(line).split("=", 1)[0]
            group = key.split(".", 1)[0]
            if "=" not in str(line) or group not in RECIPE_GROUPS or key.count(".") != 1:
                raise ConfigError(f"grid.recipes.{name}: {line!r} - a recipe holds optim.<key>=value and "
                                  "distill.<key>=value settings only, e.g. optim.lr=0.001 or distill.kind=logits")
            fields = list(globals()[RECIPE_GROUPS[group]].__dataclass_fields__)
            if key.split(".", 1)[1] not in fields:
                close = close_matches(key.split(".", 1)[1], fields)
                raise ConfigError(f"grid.recipes.{name}: {line!r} - {group} has no key {key.split('.', 1)[1]!r}"
                                  + (f"; did you mean {', '.join(group + '.' + c for c in close)}?" if close else ""))
    recipes = list((grid or {}).get("recipes") or {})
    for name, scope in ((grid or {}).get("recipe_scope") or {}).items():
        if name not in recipes:
            close = close_matches(str(name), recipes)
            raise ConfigError(f"grid.recipe_scope: {name!r} is not a recipe of grid.recipes"
                              + (f"; did you mean {', '.join(close)}?" if close else "")
                              + f" (its recipes: {', '.join(recipes) or 'none'})")
        for part in (scope if isinstance(scope, (list, ListConfig)) else [scope]):
            bad = [k for k in (part or {}) if k not in ("pairs", "inits")] if isinstance(part, (dict, DictConfig)) \
                else [repr(part)]
            if bad:
                raise ConfigError(f"grid.recipe_scope.{name}: {', '.join(map(str, bad))} - a scope names pairs and/or "
                                  "inits only, e.g. {pairs: [tinynet_d_to_e], inits: [dpiat]}, or is a list of such "
                                  "scopes (the recipe runs on their union)")


def recipe_settings(grid: Any, name: str) -> list[str]:
    """The ``optim.<key>=value`` settings of recipe ``name`` in ``grid.recipes``; ConfigError naming the recipes
    (close ones first) when there is no such recipe."""
    recipes = (grid or {}).get("recipes") or {}
    if name not in recipes:
        if not recipes:
            raise ConfigError(f"recipe={name}: this experiment's grid has no recipes (grid.recipes); drop recipe= or "
                              "define the recipe in grid.recipes")
        close = close_matches(str(name), list(recipes))
        raise ConfigError(f"unknown recipe {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                          + f" This experiment's recipes: {', '.join(recipes)}")
    return [str(line) for line in recipes[name] or []]


def apply_recipe(cfg: DictConfig) -> DictConfig:
    """Put the settings of ``cfg.recipe`` (a name in ``grid.recipes``) into ``cfg.optim`` and ``cfg.distill``, in place, and return
    ``cfg``; nothing when ``cfg.recipe`` is None. The recipe's values replace the composed ones. Idempotent:
    bench/run.py and the sweep plan both apply it, and get the same run identity.

    >>> cfg = OmegaConf.structured(Config)
    >>> cfg.grid.recipes = {"slow": ["optim.lr=0.001", "optim.warmup_steps=20"]}
    >>> cfg.recipe = "slow"
    >>> apply_recipe(cfg).optim.lr, cfg.optim.warmup_steps
    (0.001, 20)
    """
    if cfg.get("recipe") is None:
        return cfg
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_recipes(cfg.grid)
    parser = OverridesParser.create()
    for line in recipe_settings(cfg.grid, cfg.recipe):
        try:
            override = parser.parse_override(line)
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
        except (HydraException, OmegaConfBaseException) as e:
            message = " ".join(str(e).split())
            raise ConfigError(f"grid.recipes.{cfg.recipe}: {line!r} cannot be applied: {message}") from None
    return cfg


def source_config(cfg: DictConfig) -> DictConfig:
    """The config a source is trained with: the experiment's, with the source's own budget and recipe
    (``source.train_subset``, ``.lr``, ``.schedule``, ``.warmup_steps``, ``.optimizer``, ``.weight_decay``,
    ``.crop_scale``) in data/optim."""
    s = cfg.source
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.data.train_subset = s.train_subset
        if s.get("crop_scale") is not None:
            out.data.crop_scale = list(s.crop_scale)
        if s.get("optimizer") is not None:
            out.optim.name = s.optimizer
        if s.get("weight_decay") is not None:
            out.optim.weight_decay = s.weight_decay
        if s.lr is not None:
            out.optim.lr = s.lr
        if s.schedule is not None:
            out.optim.schedule = s.schedule
        if s.warmup_steps is not None:
            out.optim.warmup_steps = s.warmup_steps
    return out


def data_config(name: str, **overrides: Any) -> DictConfig:
    """A data config from ``conf/data/<name>.yaml`` without Hydra, for scripts and tests.

    >>> cfg = data_config("digits", batch_size=64)
    >>> cfg.num_classes, cfg.batch_size
    (10, 64)
    """
    path = CONF_DIR / "data" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))
        raise ConfigError(f"unknown data set {name!r}; the data sets are {', '.join(known)}")
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(path), overrides)
    return cfg


def init_options(init_cfg: Any) -> dict:
    """Everything in the init group but ``name``: the keyword options of the init method."""
    options = OmegaConf.to_container(init_cfg, resolve=True) if isinstance(init_cfg, DictConfig) else dict(init_cfg)
    options.pop("name", None)
    return options
