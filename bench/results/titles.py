"""Words for a pair in plots: "TinyNet-D -> TinyNet-E (same family)" rather than the folder name.

Where a pair's title comes from, first that applies:

1. ``pair.title`` as its runs recorded it (run.json ``config.pair.title``; ``conf/pair/*.yaml`` set it);
2. for runs recorded before that key existed: the ``title`` of ``conf/pair/<pair>.yaml`` when that file names
   the same source and target networks as the runs;
3. derived from the runs: ``"<source> -> <target>"``, with the source's weights when they are not trained
   here (``untrained ... (control)``, ``... (zoo: <name>)``, ``... (timm weights)``), or
   ``"<target> alone (no source)"`` for a source-free baseline folder; ``pair=custom`` runs read this way.

    >>> from bench.running.record import RunRecord
    >>> run = RunRecord(None, "mixnet_m_to_b1", "dpiat", 0, "finished", None, "mixnet_m", "tf_efficientnet_b1",
    ...                 "fm", 3, 0.7, None)
    >>> pair_title("mixnet_m_to_b1", [run])
    'mixnet_m -> tf_efficientnet_b1'
"""

from __future__ import annotations

from functools import lru_cache

from bench.config import CONF_DIR
from bench.results.columns import ALL

ALL_TITLE = "mean over pairs"  # the ALL rows, in words


@lru_cache(maxsize=None)
def _conf_pair(name: str) -> tuple[str | None, str | None, str | None]:
    """(title, source, target) of ``conf/pair/<name>.yaml``; Nones when there is no such file or it is unreadable."""
    import yaml

    path = CONF_DIR / "pair" / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None, None, None
    pair = raw.get("pair", raw) if isinstance(raw, dict) else {}  # '@package _global_' files nest it
    if not isinstance(pair, dict):
        return None, None, None
    return pair.get("title"), pair.get("source"), pair.get("target")


def derived_title(source: str | None, target: str, weights: str | None) -> str:
    """'<source> -> <target>' with a word on source weights that were not trained here."""
    if not source:
        return f"{target} alone (no source)"
    if weights == "none":
        return f"untrained {source} -> {target} (control)"
    if weights and weights.startswith("zoo:"):
        return f"{source} (zoo: {weights[4:]}) -> {target}"
    if weights == "timm":
        return f"{source} (timm weights) -> {target}"
    return f"{source} -> {target}"


def pair_title(pair: str, runs: list, words: bool = True) -> str:
    """The title of ``pair`` from its runs (:class:`bench.running.record.RunRecord`; shared baseline runs of
    another folder are ignored); the pair's name when it has no runs of its own. ``words=False``: rule 3
    only, the title derived from the runs' networks."""
    if pair == ALL:
        return ALL_TITLE
    own = [r for r in runs if r.pair == pair]
    recorded = {r.title for r in own if r.title}
    if words and len(recorded) == 1:
        return recorded.pop()
    if not own:
        return pair
    with_source = [r for r in own if r.source] or own
    first = with_source[0]
    title, source, target = _conf_pair(pair)
    if words and title and source == first.source and target == first.target:
        return title
    return derived_title(first.source, first.target, first.source_weights)


def pair_titles(cells) -> dict[str, str]:
    """pair -> title for every pair of ``cells`` (:class:`bench.results.cells.Cell`), plus ``ALL``.

    One figure names its pairs one way: when only some pairs have a title of their own (an all-pairs grid that
    reuses one titled pair), every pair gets the title derived from its networks, so that no pair stands out
    in words among model names."""
    runs: dict[str, list] = {}
    for cell in cells:
        runs.setdefault(cell.pair, []).extend(cell.runs)
    titled = {pair: pair_title(pair, rs) for pair, rs in runs.items()}
    derived = {pair: pair_title(pair, rs, words=False) for pair, rs in runs.items()}
    own = [pair for pair in titled if titled[pair] != derived[pair]]
    if own and len(own) < len(titled):
        titled = derived
    return {ALL: ALL_TITLE, **titled}
