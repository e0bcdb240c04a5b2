"""Recommend a source: every pretrained timm architecture ranked for one target, from a cache of shapes.

    >>> import dpiat
    >>> rec = dpiat.recommend("tf_efficientnet_b0", top=3)          # ~1,150 candidates; seconds cold, < 1 s warm
    >>> [(c.name, round(c.similarity, 4)) for c in rec.candidates]   # best first
    >>> dpiat.recommend("resnet50", name="*efficientnet*", max_params=20e6, tags="*in1k*").candidates[0].as_dict()

Ranking needs only shapes, so each candidate is built once on the meta device (no weights, no downloads),
standardized (``dpiat.standardize``, or the structure of ``method``) and its *shape structure* stored in a
cache: the nested blocks with each leaf's PARAM type, weight shape and the shapes of the tensors a transfer
writes. A later call reads those files instead of building (``cache_dir()``: ``$DPIAT_CACHE_DIR``, else
``$XDG_CACHE_HOME/dpiat``, else ``~/.cache/dpiat``). Entries live under a folder named by the timm version,
the structure format version and a digest of the standardization code, so a timm upgrade or a change of the
standardization starts a fresh cache instead of reading stale shapes. Files are written atomically
(``dpiat/atomic.py``): two processes filling the cache at once each write whole files and readers see a
whole file or none. A file that cannot be read is rebuilt with a one-line note. A model that cannot be
built on the meta device, or has nothing to transfer, is listed in ``skipped`` with its reason.

Per target, the pair results (similarity, overwritten) are kept too (keyed by a digest of the target's own
shape structure), so asking again for the same target reads one file.

Scores (``score=``), each a number in [0, 1], higher is better:

- ``"similarity"``: the DPIAT architecture similarity ``dpiat.similarity(candidate, target, method)``;
- ``"overwritten"``: the fraction of the target's parameter elements a transfer from the candidate would
  write (the centre-clip windows of the weight and bias of every matched layer pair, from shapes alone; for
  ``method="dpiat"`` equal to ``dpiat.transfer(...).fraction_overwritten``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from dpiat.alignment import Aligner
from dpiat.atomic import atomic_open
from dpiat.errors import DpiatError, NoTransferableLayersError, UnknownNameError
from dpiat.structure import Block, Layer

# Bump when the content of a cache entry changes meaning (the encoding below, or what a leaf records).
STRUCTURE_FORMAT = 1

# name -> (the number a candidate is ranked by, one line for --help and the README)
SCORES: dict[str, tuple[Callable[["Candidate"], float], str]] = {
    "similarity": (lambda c: c.similarity, "DPIAT architecture similarity (docs/method.md, section 6)"),
    "overwritten": (lambda c: c.overwritten, "fraction of the target's parameters the transfer would write"),
}
DEFAULT_SCORE = "similarity"


def cache_dir() -> Path:
    """``$DPIAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dpiat``, else ``~/.cache/dpiat``."""
    own = os.environ.get("DPIAT_CACHE_DIR")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dpiat"


# ---------------------------------------------------------------------------------------------------------
# The shape structure: what ranking needs of a model, without the model
# ---------------------------------------------------------------------------------------------------------


class ShapeLayer(Layer):
    """A leaf read back from the cache: no module, but the shapes of the tensors a transfer would write."""

    __slots__ = ("tensor_shapes",)

    def __init__(self, mask: int, shape, tensor_shapes):
        super().__init__("", None, mask, shape)
        self.tensor_shapes = tensor_shapes


def _tensor_shapes(leaf: Layer) -> tuple:
    """Shapes of the tensors a copy into / from ``leaf`` touches, in copy order (None where absent)."""
    shapes = getattr(leaf, "tensor_shapes", None)
    if shapes is not None:
        return shapes
    if hasattr(leaf, "tensors"):  # a structure-aware leaf (dpiat_struct): its own tensors
        tensors = leaf.tensors()
    else:  # the faithful copy: weight and bias (dpiat/clip.py)
        tensors = (getattr(leaf.module, "weight", None), getattr(leaf.module, "bias", None))
    return tuple(tuple(t.shape) if hasattr(t, "shape") else None for t in tensors)


def encode(blocks: Block, n_params: int) -> dict:
    """The JSON-able shape structure of a standardized model: a table of distinct leaves
    ``[mask, weight shape, tensor shapes]`` and the nested blocks as lists of indices into it."""
    table: list = []
    index: dict = {}
    n_transferable = 0

    def walk(block: Block) -> list:
        nonlocal n_transferable
        out = []
        for item in block:
            if isinstance(item, Block):
                out.append(walk(item))
                continue
            if item.mask:
                n_transferable += 1
                key = (item.mask, item.shape, _tensor_shapes(item))
            else:
                key = (0, None, ())
            j = index.get(key)
            if j is None:
                j = index[key] = len(table)
                table.append([key[0], list(key[1]) if key[1] is not None else None,
                              [list(s) if s is not None else None for s in key[2]]])
            out.append(j)
        return out

    tree = walk(blocks)
    return {"leaves": table, "tree": tree, "n_transferable": n_transferable, "params": n_params}


def decode(entry: dict) -> Block:
    """The :class:`~dpiat.structure.Block` of an :func:`encode`-d structure (leaves are :class:`ShapeLayer`)."""
    leaves = [ShapeLayer(int(m), tuple(s) if s is not None else None,
                         tuple(tuple(t) if t is not None else None for t in ts)) for m, s, ts in entry["leaves"]]

    def build(items: list) -> Block:
        return Block([build(i) if isinstance(i, list) else leaves[i] for i in items], "")

    return build(entry["tree"])


def _written(source_shapes: tuple, target_shapes: tuple) -> int:
    """Elements the centre clip writes: per tensor present on both sides with the same rank, the product of
    the per-dimension minima (dpiat/clip.py)."""
    total = 0
    for a, b in zip(source_shapes, target_shapes):
        if a is not None and b is not None and len(a) == len(b):
            total += math.prod(min(x, y) for x, y in zip(a, b))
    return total


# ---------------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------------


def _structure_fn(method: str):
    """(cache folder name, standardization, transferability check) of ``method``."""
    from dpiat.ranking import _structure_of
    from dpiat.pipeline import STRUCTURES

    structure, check = _structure_of(method)
    return (method if method in STRUCTURES else "dpiat"), structure, check


def store_dir(method: str = "dpiat", root: Path | None = None) -> Path:
    """The cache folder of ``method``'s structures for the installed timm and this code."""
    import timm

    kind, structure, _ = _structure_fn(method)
    code = hashlib.sha256()
    for path in sorted({inspect.getsourcefile(structure), inspect.getsourcefile(Block),
                        inspect.getsourcefile(sys.modules["dpiat.layers"].type_mask)}):
        code.update(Path(path).read_bytes())
    version = f"timm-{timm.__version__}_format-{STRUCTURE_FORMAT}_code-{code.hexdigest()[:12]}"
    return (root or cache_dir()) / "structures" / version / kind


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _read_json(path: Path, notes: list) -> dict | None:
    """A cache file's content; None when absent; a file that does not parse gets a note (and is rebuilt)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        notes.append(f"note: cannot read cache entry {path} ({e.strerror}): rebuilding it")
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("format") == STRUCTURE_FORMAT:
            return data
    except ValueError:
        pass
    notes.append(f"note: corrupt cache entry {path}: rebuilding it")
    return None


def _write_json(path: Path, data: dict, notes: list) -> None:
    try:
        with atomic_open(path, "w") as f:
            json.dump(data, f, separators=(",", ":"))
    except OSError as e:  # a read-only or full cache slows the next call down, nothing else
        notes.append(f"note: cannot write cache entry {path} ({e.strerror}); continuing without it")


def _build_entry(arch: str, method: str) -> dict:
    """Build ``arch`` on the meta device and encode its structure, or say why it cannot be ranked."""
    from dpiat.models import create_model
    from dpiat.pipeline import _n_parameters

    _, structure, check = _structure_fn(method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = create_model(arch, device="meta")
            blocks = structure(model)
            check(blocks, "candidate", model)
    except NoTransferableLayersError:
        return {"format": STRUCTURE_FORMAT, "skipped": "no layer the method can transfer"}
    except Exception as e:  # noqa: BLE001 -- any failure of a third-party constructor skips that model only
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(": ")
        return {"format": STRUCTURE_FORMAT, "skipped": f"cannot be built on the meta device ({reason[:200]})"}
    return {"format": STRUCTURE_FORMAT, **encode(blocks, _n_parameters(model))}


def structure_entry(arch: str, method: str = "dpiat", root: Path | None = None,
                    notes: list | None = None) -> tuple[dict, bool]:
    """``(entry, built)``: ``arch``'s cached shape structure (built and stored when missing or unreadable)."""
    notes = [] if notes is None else notes
    path = (root if root is not None else store_dir(method)) / f"{_safe_name(arch)}.json"
    entry = _read_json(path, notes)
    if entry is not None and ("skipped" in entry or "tree" in entry):
        return entry, False
    entry = _build_entry(arch, method)
    _write_json(path, entry, notes)
    return entry, True


# ---------------------------------------------------------------------------------------------------------
# Scoring one candidate against the target
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Target:
    blocks: Block
    n_transferable: int
    params: int
    digest: str


def _target(target: nn.Module | str, method: str, model_kwargs: dict) -> _Target:
    from dpiat.models import as_model
    from dpiat.pipeline import _n_parameters

    _, structure, check = _structure_fn(method)
    model = as_model(target, **model_kwargs)
    blocks = structure(model)
    n = check(blocks, "target", model)
    params = _n_parameters(model)
    code = json.dumps([method, encode(blocks, params)], separators=(",", ":"))
    return _Target(blocks, n, params, hashlib.sha256(code.encode()).hexdigest()[:20])


def _pair(aligner: Aligner, entry: dict, target: _Target) -> list[float]:
    """``[similarity, overwritten]`` of a candidate (its cache entry) as the source for ``target``."""
    blocks = decode(entry)
    ab = aligner.align(blocks, target.blocks).value
    ba = aligner.align(target.blocks, blocks).value
    sim = (ab * ba / (entry["n_transferable"] * target.n_transferable)) ** 0.5
    written = sum(_written(s.tensor_shapes, _tensor_shapes(t))
                  for s, t, _ in aligner.leaf_pairs(blocks, target.blocks) if s is not None and t is not None)
    return [sim, written / target.params if target.params else 0.0]


# A forked worker reads the job from here (set before the pool starts; fork copies it).
_JOB: dict = {}


def _work(arch: str) -> tuple[str, dict, list, list, bool]:
    """``(arch, entry without its tree, [sim, overwritten] or [], notes, built)`` for one candidate."""
    job, notes = _JOB, []
    entry, built = structure_entry(arch, job["method"], job["store"], notes)
    if "skipped" in entry:
        return arch, entry, [], notes, built
    try:
        result = _pair(job["aligner"], entry, job["target"])
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):  # valid JSON, wrong content
        notes.append(f"note: corrupt cache entry {job['store'] / (_safe_name(arch) + '.json')}: rebuilding it")
        entry, built = _build_entry(arch, job["method"]), True
        _write_json(job["store"] / f"{_safe_name(arch)}.json", entry, notes)
        if "skipped" in entry:
            return arch, entry, [], notes, built
        result = _pair(job["aligner"], entry, job["target"])
    return arch, {"params": entry["params"]}, result, notes, built


# ---------------------------------------------------------------------------------------------------------
# Candidates and their pretrained tags
# ---------------------------------------------------------------------------------------------------------


def pretrained_tags() -> dict[str, list[dict]]:
    """``{architecture: [{"tag": ..., "input_size": [C, H, W]}, ...]}`` for every timm architecture with
    pretrained weights, from timm's registry (offline: nothing is downloaded)."""
    import timm
    from timm.models import get_pretrained_cfg

    out: dict[str, list[dict]] = {}
    for name in timm.list_pretrained():
        arch, _, tag = name.partition(".")
        cfg = get_pretrained_cfg(name)
        size = list(cfg.input_size) if cfg is not None and cfg.input_size else None
        out.setdefault(arch, []).append({"tag": tag, "input_size": size})
    return out


def family(arch: str) -> str:
    """The timm module an architecture is defined in (``efficientnet``, ``resnet``, ``vision_transformer``...),
    as ``timm.list_modules()`` names them."""
    from timm.models import model_entrypoint

    return model_entrypoint(arch).__module__.rsplit(".", 1)[-1]


def _patterns(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _check_patterns(kind: str, patterns: list[str], universe: Iterable[str]) -> None:
    universe = sorted(set(universe))
    for p in patterns:
        if not fnmatch.filter(universe, p):
            raise UnknownNameError(kind, p, universe, hint="Patterns use shell wildcards (*, ?, [...]).")


def _select(candidates, name, tags, exclude_families, all_tags) -> list[tuple[str, list[dict]]]:
    """Candidates (with the tags they are listed with) that pass the name, tag and family filters."""
    from dpiat.models import check_model_name

    if candidates is None:
        archs = sorted(all_tags)
    else:
        archs = list(dict.fromkeys(_patterns(candidates)))
        for a in archs:
            check_model_name(a)
    names, tag_patterns, families = _patterns(name), _patterns(tags), _patterns(exclude_families)
    if tag_patterns:
        _check_patterns("pretrained tag pattern", tag_patterns,
                        {t["tag"] for ts in all_tags.values() for t in ts})
    if families:
        import timm

        _check_patterns("timm model family", families, timm.list_modules())
    out = []
    for a in archs:
        if names and not any(fnmatch.fnmatchcase(a, p) for p in names):
            continue
        listed = all_tags.get(a, [])
        if tag_patterns:
            listed = [t for t in listed if any(fnmatch.fnmatchcase(t["tag"], p) for p in tag_patterns)]
            if not listed:
                continue
        if families and any(fnmatch.fnmatchcase(family(a), p) for p in families):
            continue
        out.append((a, listed))
    return out


# ---------------------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    name: str
    score: float
    similarity: float
    overwritten: float
    params: int
    tags: list[dict]

    def as_dict(self) -> dict:
        return {"name": self.name, "score": self.score, "similarity": self.similarity,
                "overwritten": self.overwritten, "params": self.params, "tags": self.tags}


@dataclass
class Recommendation:
    target: str
    method: str
    score: str
    candidates: list[Candidate]  # best first (after --top)
    skipped: list[tuple[str, str]]  # (name, reason)
    n_ranked: int  # candidates ranked (before ``top``)
    built: int  # structures built in this call (0 when the cache had them all)
    seconds: float
    cache: str
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"sources for {self.target}, best first by {self.score} (method {self.method}): "
                 f"{self.n_ranked} ranked, {len(self.skipped)} skipped, {self.built} built, "
                 f"{self.seconds:.1f} s",
                 f"{'#':>4}  {'name':<34} {'score':>6} {'similarity':>10} {'overwritten':>11} {'params':>8}  tags"]
        for i, c in enumerate(self.candidates, 1):
            shown = ", ".join(_tag_text(t) for t in c.tags[:3]) + (f", +{len(c.tags) - 3}" if len(c.tags) > 3 else "")
            lines.append(f"{i:>4}  {c.name:<34} {c.score:6.4f} {c.similarity:10.4f} {100 * c.overwritten:10.1f}% "
                         f"{_count(c.params):>8}  {shown}")
        return "\n".join(lines)


def _tag_text(t: dict) -> str:
    size = t.get("input_size")
    return f"{t['tag']}@{size[-1]}" if size else t["tag"]


def _count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


# ---------------------------------------------------------------------------------------------------------
# recommend
# ---------------------------------------------------------------------------------------------------------


def _workers(requested: int | None) -> int:
    if requested is not None:
        if requested < 1:
            raise DpiatError(f"workers must be >= 1, got {requested}")
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def recommend(target: nn.Module | str, *, candidates: Sequence[str] | None = None,
              name: str | Sequence[str] | None = None, max_params: float | None = None,
              tags: str | Sequence[str] | None = None, exclude_families: str | Sequence[str] | None = None,
              top: int | None = None, score: str = DEFAULT_SCORE, method: str = "dpiat",
              workers: int | None = None, num_classes: int | None = None, in_chans: int | None = None,
              ) -> Recommendation:
    """Rank candidate sources for ``target`` (a timm name or a module), best first.

    ``candidates``: timm architecture names (default: every architecture with pretrained weights in the
    installed timm). Filters: ``name`` (shell patterns on the architecture, any may match), ``tags`` (patterns
    on pretrained tags, e.g. ``"*in1k*"``; a candidate is kept when one of its tags matches, and is listed
    with the matching tags), ``exclude_families`` (patterns on the timm module, ``family()``), ``max_params``.
    ``score``: a name of ``SCORES``. ``method``: the transfer method whose matching is measured (as in
    ``dpiat.similarity``). ``workers``: processes building and scoring (default: the usable CPUs).
    ``num_classes`` / ``in_chans``: the target's, when it is a timm name.
    """
    t0 = time.perf_counter()
    if score not in SCORES:
        raise UnknownNameError("score", score, SCORES)
    if top is not None and top < 1:
        raise DpiatError(f"top must be >= 1, got {top}")
    if max_params is not None and not max_params > 0:
        raise DpiatError(f"max_params must be a positive number of parameters, got {max_params}")
    model_kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    if isinstance(target, str):
        from dpiat.models import check_model_name

        check_model_name(target)
    elif model_kwargs:
        raise DpiatError("num_classes / in_chans apply to a target given by name, not to a built module")
    all_tags = pretrained_tags()
    selected = _select(candidates, name, tags, exclude_families, all_tags)
    if not selected:
        raise DpiatError("no candidate passes the filters: loosen --name / --tags / --exclude-family")

    tgt = _target(target, method, model_kwargs)
    store = store_dir(method)
    memo_path = store.parent / "pairs" / f"{_safe_name(method)}_{tgt.digest}.json"
    notes: list[str] = []
    memo = _read_json(memo_path, notes) or {"format": STRUCTURE_FORMAT, "pairs": {}}
    pairs: dict = memo["pairs"]
    todo = [a for a, _ in selected if a not in pairs]
    built = 0
    if todo:
        _JOB.update(method=method, store=store, target=tgt, aligner=Aligner())
        n_proc = min(_workers(workers), len(todo))
        try:
            if n_proc > 1 and len(todo) >= 2 * n_proc:
                import multiprocessing

                with multiprocessing.get_context("fork").Pool(n_proc) as pool:
                    results = list(pool.imap_unordered(_work, todo, chunksize=4))
            else:
                results = [_work(a) for a in todo]
        finally:
            _JOB.clear()
        for arch, entry, result, entry_notes, was_built in results:
            notes.extend(entry_notes)
            built += was_built
            pairs[arch] = {"skipped": entry["skipped"]} if "skipped" in entry else [*result, entry["params"]]
        _write_json(memo_path, memo, notes)

    key = SCORES[score][0]
    ranked, skipped = [], []
    for arch, listed in selected:
        r = pairs[arch]
        if isinstance(r, dict):
            skipped.append((arch, r["skipped"]))
            continue
        sim, over, params = r
        if max_params is not None and params > max_params:
            continue
        c = Candidate(arch, 0.0, sim, over, int(params), listed)
        c.score = key(c)
        ranked.append(c)
    ranked.sort(key=lambda c: (-c.score, c.name))
    shown = ranked[:top] if top else ranked
    target_name = target if isinstance(target, str) else type(target).__name__
    return Recommendation(target_name, method, score, shown, skipped, len(ranked), built,
                          time.perf_counter() - t0, str(cache_dir()), notes)


__all__ = ["recommend", "Recommendation", "Candidate", "SCORES", "DEFAULT_SCORE", "cache_dir", "store_dir",
           "structure_entry", "encode", "decode", "pretrained_tags", "family", "STRUCTURE_FORMAT"]
