"""Source-free baselines: which runs serve every pair with the same target.

An init method that reads no source (``random``, ``ghn``: ``needs_source`` is False in ``dpiat.inits``, the one
registry) trains the same network whatever the pair's source, so one run of it per (target, seed) serves
every pair with that target. The sweep plan runs it once, in the pair folder :func:`pick_baseline` chooses;
the table takes a pair's missing source-free cells from the folder the same function chooses. One rule, so
the table looks where the plan put them: the folder that holds most runs of that init already, then the one
named after the target (``conf/pair/tinynet_e.yaml``), then the first in the caller's order.

    >>> pick_baseline([("a_to_t", 0), ("t", 0)], target="t")
    't'
    >>> pick_baseline([("a_to_t", 0), ("b_to_t", 3), ("t", 0)], target="t")
    'b_to_t'
"""

from __future__ import annotations

from collections.abc import Iterable

from dpiat.errors import UnknownNameError
from dpiat.inits import get_init


def needs_source(init: str) -> bool | None:
    """Whether init method ``init`` reads a source network; None for a name the registry does not know."""
    try:
        return get_init(init).needs_source
    except UnknownNameError:
        return None


def source_free(init: str, source: str | None) -> bool:
    """A run of ``init`` in a pair whose source is ``source`` is a baseline for every pair of its target.

    The registry decides; ``source`` None (a target-alone pair, or run.json's record) covers inits that this
    process does not know.
    """
    return source is None or needs_source(init) is False


def pick_baseline(candidates: Iterable[tuple[str, int]], target: str) -> str:
    """The folder that holds the baseline: from (pair folder, runs of the init it holds) in the caller's order."""
    ranked = sorted(candidates, key=lambda c: (-c[1], c[0] != target))  # stable: ties keep the caller's order
    if not ranked:
        raise ValueError("pick_baseline needs at least one candidate folder")
    return ranked[0][0]
