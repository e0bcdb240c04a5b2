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

Per target, the pair results (similarity, overwritten) are kept too, so asking again for the same target
reads one file: keyed by the target's name and head (or, for a module, a digest of its shape structure), in
a folder named by the timm version and a digest of the whole library's code. That path, and the catalog of
pretrained tags and timm families (one file per timm version), need neither torch nor timm: ``import dpiat``
is lazy, so a repeated ``dpiat recommend`` answers in a fraction of a second.

dpiat ships the structures of every pretrained architecture of the timm version it pins, for each kind of
structure (``dpiat/data/structures_dpiat.json.gz`` and ``structures_dpiat_struct.json.gz``, made by
``bench/structure_index.py`` and checked by the tests): when the installed timm, the format and the
standardization code are the ones it was made for, a structure missing from the cache is taken from it (and
written to the cache) instead of being built, which is what makes the first call take seconds instead of
minutes. Any other timm version builds, as described above. ``DPIAT_SHIPPED_INDEX=0`` ignores them.

``method="auto"`` (the default) measures ``dpiat_struct``'s matching when the target has layers only it
transfers (attention, LayerNorm, tokens, position embeddings: a ViT, a ConvNeXt), else the faithful
``dpiat``'s; the choice is kept with the target's results, and every candidate says which (``method``).
timm's smoke-test nets (``test_*``: tiny random architectures for timm's own tests, with "pretrained" tags)
are left out unless ``include_test_nets=True`` or named in ``candidates``.

Scores (``score=``), each a number in [0, 1], higher is better:

- ``"similarity"``: the DPIAT architecture similarity ``dpiat.similarity(candidate, target, method)``;
- ``"overwritten"``: the fraction of the target's parameter elements a transfer from the candidate would
  write (the centre-clip windows of the weight and bias of every matched layer pair, from shapes alone; for
  ``method="dpiat"`` equal to ``dpiat.transfer(...).fraction_overwritten``).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from dpiat.atomic import atomic_open
from dpiat.errors import DpiatError, UnknownNameError

if TYPE_CHECKING:  # torch is imported only when something has to be built or scored
    from torch import nn

# Bump when the content of a cache entry changes meaning (dpiat/shapes.py's encoding, or what a leaf records).
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
# The cache
# ---------------------------------------------------------------------------------------------------------


DATA_DIR = Path(__file__).resolve().parent / "data"
# the shipped index of each kind of structure (bench/structure_index.py writes them)
SHIPPED_INDEXES: dict[str, Path] = {kind: DATA_DIR / f"structures_{kind}.json.gz" for kind in ("dpiat", "dpiat_struct")}
SHIPPED_INDEX = SHIPPED_INDEXES["dpiat"]  # the faithful method's (the name older code imports)
AUTO = "auto"  # recommend's default method: dpiat_struct for a target with layers only it transfers, else dpiat
TEST_NETS = "test_*"  # timm's smoke-test architectures, left out of the default candidates


def timm_version() -> str:
    """The installed timm's version, read from its package metadata (timm is not imported)."""
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        raise DpiatError("timm is not installed: pip install timm (dpiat pins the version it was tested with)") from None


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the library's source (every module and the C alignment core): the pair results of a target
    depend on all of it, so any change of it starts a fresh set of them."""
    code = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for path in sorted([*here.glob("*.py"), *here.glob("*.c")]):
        code.update(path.name.encode() + b"\0" + path.read_bytes())
    return code.hexdigest()[:12]


def structure_version(method: str = "dpiat") -> tuple[str, str]:
    """``(version folder, kind)`` of ``method``'s structures: the timm version, the format version and a
    digest of the code that standardizes (so a timm upgrade or a change of that code starts afresh)."""
    from dpiat.shapes import structure_code

    digest, kind = structure_code(method)
    return f"timm-{timm_version()}_format-{STRUCTURE_FORMAT}_code-{digest}", kind


def store_dir(method: str = "dpiat", root: Path | None = None) -> Path:
    """The cache folder of ``method``'s structures for the installed timm and this code."""
    version, kind = structure_version(method)
    return (root or cache_dir()) / "structures" / version / kind


def pairs_dir(root: Path | None = None) -> Path:
    """The cache folder of the pair results, per method and target (no torch needed to find it)."""
    return (root or cache_dir()) / "pairs" / f"timm-{timm_version()}_format-{STRUCTURE_FORMAT}_code-{code_digest()}"


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


_SHIPPED: dict = {}


def shipped_entries(version: str, kind: str) -> dict:
    """``{arch: entry}`` of the index shipped with dpiat when it was made for exactly this structure
    ``version`` (timm, format, standardization code) and ``kind``; otherwise, or with
    ``DPIAT_SHIPPED_INDEX=0``, empty."""
    if os.environ.get("DPIAT_SHIPPED_INDEX", "1") == "0":
        return {}
    if (version, kind) not in _SHIPPED:
        entries: dict = {}
        try:
            with gzip.open(SHIPPED_INDEXES[kind], "rt") as f:
                data = json.load(f)
            if data.get("version") == version and data.get("kind") == kind:
                entries = data["entries"]
        except (OSError, ValueError, EOFError, KeyError, AttributeError):  # absent or damaged: build instead
            entries = {}
        _SHIPPED[version, kind] = entries
    return _SHIPPED[version, kind]


def structure_entry(arch: str, method: str = "dpiat", root: Path | None = None,
                    notes: list | None = None) -> tuple[dict, str]:
    """``(entry, where)``: ``arch``'s shape structure and where it came from: ``"cache"``, ``"shipped"`` (the
    index shipped with dpiat; now written to the cache) or ``"built"`` (on the meta device; now cached)."""
    from dpiat.shapes import build_entry

    notes = [] if notes is None else notes
    store = root if root is not None else store_dir(method)
    path = store / f"{_safe_name(arch)}.json"
    entry = _read_json(path, notes)
    if entry is not None and ("skipped" in entry or "tree" in entry):
        return entry, "cache"
    shipped = shipped_entries(store.parent.name, store.name).get(arch)
    if shipped is not None:
        entry, where = {"format": STRUCTURE_FORMAT, **shipped}, "shipped"
    else:
        entry, where = {"format": STRUCTURE_FORMAT, **build_entry(arch, method)}, "built"
    _write_json(path, entry, notes)
    return entry, where


# A forked worker reads the job from here (set before the pool starts; fork copies it).
_JOB: dict = {}


def _work(arch: str) -> tuple[str, dict, list, list, str]:
    """``(arch, entry without its tree, [sim, overwritten] or [], notes, where)`` for one candidate."""
    from dpiat.shapes import build_entry, score_pair

    job, notes = _JOB, []
    entry, where = structure_entry(arch, job["method"], job["store"], notes)
    if "skipped" in entry:
        return arch, entry, [], notes, where
    try:
        result = score_pair(job["aligner"], entry, job["target"])
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):  # valid JSON, wrong content
        notes.append(f"note: corrupt cache entry {job['store'] / (_safe_name(arch) + '.json')}: rebuilding it")
        entry, where = {"format": STRUCTURE_FORMAT, **build_entry(arch, job["method"])}, "built"
        _write_json(job["store"] / f"{_safe_name(arch)}.json", entry, notes)
        if "skipped" in entry:
            return arch, entry, [], notes, where
        result = score_pair(job["aligner"], entry, job["target"])
    return arch, {"params": entry["params"]}, result, notes, where

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


def catalog(notes: list | None = None, root: Path | None = None) -> dict:
    """What the filters read, per timm version, from the cache (built once with timm when absent):
    ``tags`` (:func:`pretrained_tags`), ``families`` (:func:`family` of each of those architectures) and
    ``modules`` (every timm module, the universe of ``exclude_families``)."""
    notes = [] if notes is None else notes
    path = (root or cache_dir()) / "catalog" / f"timm-{timm_version()}_format-{STRUCTURE_FORMAT}.json"
    data = _read_json(path, notes)
    if data is not None and {"tags", "families", "modules"} <= set(data):
        return data
    import timm

    tags = pretrained_tags()
    data = {"format": STRUCTURE_FORMAT, "tags": tags, "families": {a: family(a) for a in tags},
            "modules": sorted(timm.list_modules())}
    _write_json(path, data, notes)
    return data


def _select(candidates, name, tags, exclude_families, cat: dict,
            include_test_nets: bool = False) -> list[tuple[str, list[dict]]]:
    """Candidates (with the tags they are listed with) that pass the name, tag and family filters. Names
    given explicitly are checked against timm later, only if the cache has no result for them; the default
    list leaves timm's smoke-test nets out unless ``include_test_nets``."""
    all_tags = cat["tags"]
    if candidates is None:
        archs = sorted(a for a in all_tags if include_test_nets or not fnmatch.fnmatchcase(a, TEST_NETS))
    else:
        archs = list(dict.fromkeys(_patterns(candidates)))
    names, tag_patterns, families = _patterns(name), _patterns(tags), _patterns(exclude_families)
    if tag_patterns:
        _check_patterns("pretrained tag pattern", tag_patterns,
                        {t["tag"] for ts in all_tags.values() for t in ts})
    if families:
        _check_patterns("timm model family", families, cat["modules"])
    out = []
    for a in archs:
        if names and not any(fnmatch.fnmatchcase(a, p) for p in names):
            continue
        listed = all_tags.get(a, [])
        if tag_patterns:
            listed = [t for t in listed if any(fnmatch.fnmatchcase(t["tag"], p) for p in tag_patterns)]
            if not listed:
                continue
        if families:
            fam = cat["families"].get(a) or family(a)
            if any(fnmatch.fnmatchcase(fam, p) for p in families):
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
    method: str = "dpiat"  # the transfer method whose matching gave similarity and overwritten

    def as_dict(self) -> dict:
        return {"name": self.name, "score": self.score, "similarity": self.similarity,
                "overwritten": self.overwritten, "params": self.params, "method": self.method, "tags": self.tags}


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
    shipped: int = 0  # structures taken from the index shipped with dpiat in this call
    asked: str = "dpiat"  # the method asked for (``auto`` or a name); ``method`` is the one measured

    def __str__(self) -> str:
        return self.table()

    def table(self) -> str:
        """The ranking as printed by ``dpiat recommend``: a header line, then one row per candidate."""
        shipped = f", {self.shipped} from the shipped index" if self.shipped else ""
        method = f"{self.method}, chosen by auto" if self.asked == AUTO else self.method
        lines = [f"sources for {self.target}, best first by {self.score} (method {method}): "
                 f"{self.n_ranked} ranked, {len(self.skipped)} skipped, {self.built} built{shipped}, "
                 f"{self.seconds:.{1 if self.seconds >= 1 else 2}f} s",
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
              top: int | None = None, score: str = DEFAULT_SCORE, method: str = AUTO,
              workers: int | None = None, num_classes: int | None = None, in_chans: int | None = None,
              include_test_nets: bool = False) -> Recommendation:
    """Rank candidate sources for ``target`` (a timm name or a module), best first.

    ``candidates``: timm architecture names (default: every architecture with pretrained weights in the
    installed timm). Filters: ``name`` (shell patterns on the architecture, any may match), ``tags`` (patterns
    on pretrained tags, e.g. ``"*in1k*"``; a candidate is kept when one of its tags matches, and is listed
    with the matching tags), ``exclude_families`` (patterns on the timm module, ``family()``), ``max_params``.
    ``score``: a name of ``SCORES``. ``method``: the transfer method whose matching is measured (as in
    ``dpiat.similarity``), or ``"auto"``: ``dpiat_struct`` when the target has layers only it transfers, else
    ``dpiat``. ``workers``: processes building and scoring (default: the usable CPUs). ``num_classes`` /
    ``in_chans``: the target's, when it is a timm name. ``include_test_nets``: rank timm's ``test_*`` nets too.

        >>> rec = dpiat.recommend("vit_tiny_patch16_224", top=5)
        >>> print(rec.table())                    # as `dpiat recommend` prints it; rec.candidates[0].as_dict()
    """
    t0 = time.perf_counter()
    if score not in SCORES:
        raise UnknownNameError("score", score, SCORES)
    if top is not None and top < 1:
        raise DpiatError(f"top must be >= 1, got {top}")
    if max_params is not None and not max_params > 0:
        raise DpiatError(f"max_params must be a positive number of parameters, got {max_params}")
    model_kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    if not isinstance(target, str) and model_kwargs:
        raise DpiatError("num_classes / in_chans apply to a target given by name, not to a built module")
    if not isinstance(target, str) and not hasattr(target, "named_modules"):
        raise DpiatError(f"the target must be a timm name or a torch.nn.Module, got {type(target).__name__}")
    notes: list[str] = []
    cat = catalog(notes)
    selected = _select(candidates, name, tags, exclude_families, cat, include_test_nets)
    if not selected:
        raise DpiatError("no candidate passes the filters: loosen --name / --tags / --exclude-family")

    asked = method
    tgt = None
    if isinstance(target, str):  # the same name and head: the same results, found without building anything
        memo_name = f"{_safe_name(target)}__classes-{num_classes}_chans-{in_chans}.json"
    else:
        memo_name = None
    if method == AUTO:
        method = _auto_method(target, memo_name, model_kwargs, notes)
    if memo_name is None:
        from dpiat.shapes import target_structure

        tgt = target_structure(target, method, {})
        memo_name = f"module_{tgt.digest}.json"
    memo_path = pairs_dir() / _safe_name(method) / memo_name
    memo = _read_json(memo_path, notes) or {"format": STRUCTURE_FORMAT, "pairs": {}}
    pairs: dict = memo["pairs"]
    todo = [a for a, _ in selected if a not in pairs]
    counts = {"cache": 0, "shipped": 0, "built": 0}
    if todo:
        from dpiat.alignment import Aligner
        from dpiat.models import check_model_name
        from dpiat.shapes import target_structure

        if tgt is None:
            check_model_name(target)
            tgt = target_structure(target, method, model_kwargs)
        for a in todo:
            if a not in cat["tags"]:
                check_model_name(a)  # a name given with --candidates: fail on a typo before building anything
        version, kind = structure_version(method)
        store = cache_dir() / "structures" / version / kind
        shipped_entries(version, kind)  # read once here, before the workers fork
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
        for arch, entry, result, entry_notes, where in results:
            notes.extend(entry_notes)
            counts[where] += 1
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
        c = Candidate(arch, 0.0, sim, over, int(params), listed, method)
        c.score = key(c)
        ranked.append(c)
    ranked.sort(key=lambda c: (-c.score, c.name))
    shown = ranked[:top] if top else ranked
    target_name = target if isinstance(target, str) else type(target).__name__
    return Recommendation(target_name, method, score, shown, skipped, len(ranked), counts["built"],
                          time.perf_counter() - t0, str(cache_dir()), notes, counts["shipped"], asked)


def _auto_method(target, memo_name: str | None, model_kwargs: dict, notes: list) -> str:
    """The method ``auto`` stands for with this target: read from the cache for a target given by name (no
    torch), else decided (:func:`dpiat.shapes.needs_own_structure`) and, for a name, kept there."""
    path = pairs_dir() / AUTO / memo_name if memo_name else None
    if path is not None:
        known = _read_json(path, notes)
        if known is not None and known.get("method") in ("dpiat", "dpiat_struct"):
            return known["method"]
    from dpiat.models import check_model_name
    from dpiat.shapes import needs_own_structure

    if isinstance(target, str):
        check_model_name(target)
    method = "dpiat_struct" if needs_own_structure(target, model_kwargs) else "dpiat"
    if path is not None:
        _write_json(path, {"format": STRUCTURE_FORMAT, "method": method}, notes)
    return method


__all__ = ["recommend", "Recommendation", "Candidate", "SCORES", "DEFAULT_SCORE", "AUTO", "TEST_NETS", "cache_dir",
           "store_dir", "structure_version", "pairs_dir", "structure_entry", "shipped_entries", "catalog",
           "pretrained_tags", "family", "STRUCTURE_FORMAT", "SHIPPED_INDEX", "SHIPPED_INDEXES"]
