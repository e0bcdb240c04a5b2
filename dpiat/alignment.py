"""Alignment: the order-preserving DP that matches blocks, and layers inside blocks (docs/method.md §4).

``align(source, target)`` aligns two standardized sequences (:class:`~dpiat.structure.Block`) and
returns the DP value and the matched leaf pairs in target order. Scores of two blocks are the (raw) value
of aligning their contents, so the DP recurses; equal-looking blocks share one cached alignment.

The DP itself runs in C when the optional extension ``dpiat._dpcore`` was built (``BACKEND == "c"``) and in
pure Python otherwise (or with ``DPIAT_PURE_PYTHON=1``). Both perform the same float64 operations in the
same order as the authors' reference, so matchings are bit-identical (checked by the tests). The shape
scores of all leaf pairs are computed at once (:func:`score_leaves`: one C call, or numpy), with the same
float64 operations as :func:`dpiat.layers.shape_score`, so they are bit-identical too. With the C backend, the
values of all innermost block pairs (blocks made of leaves only) are computed in one C call
(``dp_pairs``: the same DP code on the same scores, values only); the Python recursion then only runs the
outer DPs and, for a transfer, re-runs the few matched inner pairs with backtracking.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from dpiat.layers import shape_score
from dpiat.structure import Block, Layer

SKIP_TARGET, SKIP_SOURCE = -1, -2

try:
    if os.environ.get("DPIAT_PURE_PYTHON"):
        raise ImportError
    from dpiat._dpcore import dp as _dp_c

    BACKEND = "c"
except ImportError:  # no compiler at install time: same results, slower
    _dp_c = None
    BACKEND = "python"
try:  # the batch of leaf-block DPs (absent from an extension built before it existed)
    if _dp_c is None:
        raise ImportError
    from dpiat._dpcore import dp_pairs as _dp_pairs_c
except ImportError:
    _dp_pairs_c = None
try:  # all leaf shape scores in one C call (numpy otherwise)
    if _dp_c is None:
        raise ImportError
    from dpiat._dpcore import leaf_scores as _leaf_scores_c
except ImportError:
    _leaf_scores_c = None

SCORE_CHUNK = 2_000_000  # elements of score_leaves' temporaries per chunk (~16 MB of float64)

_DIV = array("d", [0.0])  # _DIV[L] = L ** 0.5, the divisor of a run of length L (Python's own pow)


def _divisors(n: int) -> array:
    while len(_DIV) <= n:
        _DIV.append(len(_DIV) ** 0.5)
    return _DIV


def _dp_python(s, n: int, m: int, div) -> tuple[float, list[int]]:
    """The reference DP. ``s[(i-1)*m + (j-1)]`` = score(source j, target i); returns (value, back)."""
    W = m + 1
    D = [0.0] * ((n + 1) * W)
    back = [0] * ((n + 1) * W)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            up, left = D[(i - 1) * W + j], D[i * W + j - 1]
            if up > left:
                best, b = up, SKIP_TARGET  # T_i unmatched
            else:
                best, b = left, SKIP_SOURCE  # S_j unused (wins ties)
            acc = 0.0
            for k in range(i, 0, -1):  # S_j feeds the contiguous target run T_k..T_i
                acc += s[(k - 1) * m + (j - 1)]
                v = D[(k - 1) * W + (j - 1)] + acc / div[i - k + 1]
                if v > best:  # strictly greater: skips beat an equal run, shorter runs beat longer
                    best, b = v, k
            D[i * W + j] = best
            back[i * W + j] = b
    return D[n * W + m], back


def dp(scores, n: int, m: int) -> tuple[float, object]:
    """Run the DP on a flat float64 score buffer; returns (value, back) with back indexable as ints."""
    div = _divisors(n)
    if _dp_c is not None:
        value, raw = _dp_c(scores, n, m, div)
        return value, memoryview(raw).cast("i")
    return _dp_python(scores, n, m, div)


def backtrack(back, n: int, m: int) -> list[tuple]:
    """Steps in target order: ("run", j, k, i) = S_j feeds T_k..T_i; ("skip_target", i); ("skip_source", j).

    Indices are 1-based as in the spec."""
    W = m + 1
    steps = []
    i, j = n, m
    while i > 0 and j > 0:
        b = back[i * W + j]
        if b == SKIP_TARGET:
            steps.append(("skip_target", i))
            i -= 1
        elif b == SKIP_SOURCE:
            steps.append(("skip_source", j))
            j -= 1
        else:
            steps.append(("run", j, b, i))
            i, j = b - 1, j - 1
    while j > 0:
        steps.append(("skip_source", j))
        j -= 1
    while i > 0:
        steps.append(("skip_target", i))
        i -= 1
    steps.reverse()
    return steps


class Aligned:
    """The alignment of two sequences: DP value, the steps, and the score matrix (target-major).

    ``steps`` are traced back from the DP's decisions on first use: most alignments are inner block
    pairs whose value is all a similarity or an outer DP needs."""

    __slots__ = ("value", "scores", "_steps", "_back", "_n", "_m")

    def __init__(self, value: float, steps: list | None, scores: array, back=None, n: int = 0, m: int = 0):
        self.value, self.scores, self._steps = value, scores, steps
        self._back, self._n, self._m = back, n, m

    @property
    def steps(self) -> list:
        if self._steps is None:
            self._steps = backtrack(self._back, self._n, self._m)
            self._back = None
        return self._steps

    def __repr__(self) -> str:
        return f"Aligned(value={self.value!r}, steps={self.steps!r})"


def _inventory(block: Block) -> tuple[dict[int, Layer], dict[int, Block]]:
    """One walk of ``block``: its leaves, one per signature (equal signatures score alike), and every nested
    block (``block`` itself included) whose items are all leaves, one per signature."""
    leaves: dict[int, Layer] = {}
    leaf_blocks: dict[int, Block] = {}
    seen = set()
    stack = [block]
    while stack:
        b = stack.pop()
        if b.sig in seen:
            continue
        seen.add(b.sig)
        inner = False
        for item in b:
            if isinstance(item, Block):
                stack.append(item)
                inner = True
            elif item.sig not in leaves:
                leaves[item.sig] = item
        if not inner:
            leaf_blocks[b.sig] = b
    return leaves, leaf_blocks


def score_leaves(source: Block, target: Block, leaves=None):
    """``score(x, y)`` of every leaf ``x`` of ``source`` and leaf ``y`` of ``target``, computed for all pairs
    at once: ``(matrix, source sigs, target sigs)``, where ``matrix`` is a flat float64 ``array`` in target
    major order, ``matrix[t * len(source sigs) + s]`` = score(source leaf s, target leaf t); None when there
    is nothing to score (or a size is too large, below). ``leaves``: the two leaf dicts of
    :func:`_inventory` when already known. One C call (``_dpcore.leaf_scores``) when the extension has it,
    numpy otherwise.

    Bit for bit :func:`dpiat.layers.shape_score` (0 when the PARAM types do not meet): the same float64
    divisions of exactly representable integers, ``min``, and products in dimension order starting from
    1.0. Shapes with a size of 2**53 or more (never in practice) are left to the one-pair path.
    """
    xs, ys = leaves if leaves is not None else (_inventory(source)[0], _inventory(target)[0])
    if not xs or not ys:
        return None
    both = [*xs.values(), *ys.values()]  # source leaves first
    shapes = [leaf.shape or () for leaf in both]
    masks = [leaf.mask for leaf in both]
    if _leaf_scores_c is not None:
        try:
            dims = array("q", chain.from_iterable(shapes))
        except OverflowError:  # a size beyond int64
            return None
        raw = _leaf_scores_c(dims, array("q", map(len, shapes)), array("q", masks), len(xs))
        if raw is None:
            return None
        matrix = array("d")
        matrix.frombytes(raw)
        return matrix, list(xs), list(ys)
    matrix = _score_leaves_numpy(shapes, masks, len(xs))
    return (array("d", matrix.tobytes()), list(xs), list(ys)) if matrix is not None else None


def _score_leaves_numpy(shapes: list, masks: list, nx: int):
    """:func:`score_leaves` with numpy: a (target, source) float64 array, or None. A compared dimension of
    size 0 makes a ratio 0 (or 0/0 = NaN), so the product is 0 or NaN: both become the 0 shape_score
    returns. A dimension one of the two shapes lacks multiplies by 1.0, which changes nothing."""
    n = len(shapes)
    ny = n - nx
    ndim = np.fromiter(map(len, shapes), dtype=np.int64, count=n)
    width = int(ndim.max())
    if width == 0:
        return None
    pad = (1,) * width
    table = np.array([s + pad[len(s):] for s in shapes], dtype=np.float64)  # padded with 1: never / 0
    if table.max() >= 2.0 ** 53:  # ints below 2**53 convert exactly, so this is exact
        return None
    masks = np.array(masks, dtype=np.int64)
    b, b_ndim, b_mask = table[None, nx:, :], ndim[None, nx:], masks[None, nx:]  # (1, target, d)
    matrix = np.empty((ny, nx), dtype=np.float64)
    step = max(1, SCORE_CHUNK // (ny * width))  # source leaves per chunk
    dims = np.arange(width)
    for lo in range(0, nx, step):
        hi = min(lo + step, nx)
        a = table[lo:hi, None, :]  # (source, 1, d)
        compared = dims < np.minimum(ndim[lo:hi, None], b_ndim)[:, :, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(compared, np.minimum(a / b, b / a), 1.0)
        value = ratio[:, :, 0].copy()  # 1.0 * r == r exactly
        for d in range(1, width):  # in dimension order, as shape_score multiplies
            value *= ratio[:, :, d]
        value[np.isnan(value) | ((masks[lo:hi, None] & b_mask) == 0)] = 0.0
        matrix[:, lo:hi] = value.T
    return matrix


@dataclass
class Aligner:
    """Aligns standardized structures, caching scores and block alignments by signature.

    ``scores[target sig][source sig]`` holds every score looked up so far: leaf shape scores, block-vs-block
    alignment values, and the zeros of mixed pairs. ``tables[target sig] = (values, offset, position of
    source sig)`` holds the scores computed in batches (all leaf pairs, all innermost block pairs):
    ``values[offset + position[x.sig]]``, read when a row of scores is built, so that only the scores a DP
    reads become dict entries."""

    scores: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)  # rows[source sig][target item sig] -> row of scores
    blocks: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)

    def score(self, x, y) -> float:
        """score(x from source, y from target), docs/method.md §3."""
        col = self.scores.get(y.sig)
        if col is None:
            col = self.scores[y.sig] = {}
        s = col.get(x.sig)
        if s is None:
            table = self.tables.get(y.sig)
            if table is not None and (p := table[2].get(x.sig)) is not None:
                s = table[0][table[1] + p]
            else:
                xb, yb = isinstance(x, Block), isinstance(y, Block)
                if xb and yb:
                    s = self._align(x, y).value  # raw, not normalised
                elif xb or yb:
                    s = 0.0  # block vs layer
                else:
                    s = shape_score(x.shape, y.shape) if x.mask & y.mask else 0.0
            col[x.sig] = s
        return s

    def align(self, source: Block, target: Block) -> Aligned:
        hit = self.blocks.get((source.sig, target.sig))
        if hit is not None:
            return hit
        (xl, xb), (yl, yb) = _inventory(source), _inventory(target)
        dense = score_leaves(source, target, (xl, yl))
        if dense is not None:
            matrix, xsig, ysig = dense
            xpos = {sig: i for i, sig in enumerate(xsig)}
            nx, tables = len(xsig), self.tables
            for t, y in enumerate(ysig):
                tables[y] = (matrix, t * nx, xpos)
            if _dp_pairs_c is not None:  # every innermost block pair's value in one C call
                self._score_leaf_blocks(xb, yb, matrix, xpos, ysig)
        return self._align(source, target)

    def _score_leaf_blocks(self, xb: dict, yb: dict, matrix, xpos: dict, ysig: list) -> None:
        """Scores of every block ``x`` of the source and ``y`` of the target made of leaves only (``xb``,
        ``yb`` by signature): the value of aligning their items, the same DP on the same scores as
        :meth:`_align`, into ``tables``."""
        if not xb or not yb:
            return
        ypos = {sig: i for i, sig in enumerate(ysig)}
        xidx, xoff = array("i"), array("i", [0])
        for block in xb.values():
            xidx.extend([xpos[item.sig] for item in block])
            xoff.append(len(xidx))
        yidx, yoff = array("i"), array("i", [0])
        for block in yb.values():
            yidx.extend([ypos[item.sig] for item in block])
            yoff.append(len(yidx))
        n = max(map(len, yb.values()))
        values = array("d")
        values.frombytes(_dp_pairs_c(matrix, len(xpos), xidx, xoff, yidx, yoff, _divisors(n)))
        k, tables = len(xb), self.tables
        bpos = {sig: i for i, sig in enumerate(xb)}
        for b, y in enumerate(yb):
            tables[y] = (values, b * k, bpos)

    def _align(self, source: Block, target: Block) -> Aligned:
        key = (source.sig, target.sig)
        hit = self.blocks.get(key)
        if hit is not None:
            return hit
        n, m = len(target), len(source)
        cols, score = self.scores, self.score
        rows = self.rows.get(source.sig)
        if rows is None:
            rows = self.rows[source.sig] = {}
        tables = self.tables
        scores = array("d")
        for y in target:  # hot loop: a row of scores depends only on (source, y), and often repeats
            ys = y.sig
            row = rows.get(ys)
            if row is None:
                table = tables.get(ys)
                if table is not None:  # batch-computed: an array lookup per score
                    values, off, pos = table
                    get = pos.get
                    row = [score(x, y) if (p := get(x.sig)) is None else values[off + p] for x in source]
                else:
                    col = cols.get(ys)
                    if col is None:
                        col = cols[ys] = {}
                    get = col.get
                    row = [score(x, y) if (v := get(x.sig)) is None else v for x in source]
                row = rows[ys] = array("d", row)
            scores.extend(row)
        value, back = dp(scores, n, m)
        result = self.blocks[key] = Aligned(value, None, scores, back, n, m)
        return result

    def leaf_pairs(self, source: Block, target: Block, out: list | None = None) -> list:
        """Matched leaves in target order: (src Layer | None, dst Layer | None, score).

        Only transferable (PARAM) layers are listed: parameter-free leaves can never be matched."""
        if out is None:
            out, aligned = [], self.align(source, target)
        else:  # an inner pair: its leaves were scored by the outer align
            aligned = self._align(source, target)
        m = len(source)
        for step in aligned.steps:
            if step[0] == "run":
                _, j, k, i = step
                x = source[j - 1]
                for t in range(k, i + 1):
                    y = target[t - 1]
                    s = aligned.scores[(t - 1) * m + (j - 1)]
                    if s == 0.0:  # a target in a run whose score is 0 stays unmatched
                        _unmatched(y, out)
                    elif isinstance(x, Block):
                        self.leaf_pairs(x, y, out)
                    else:
                        out.append((x, y, s))
            elif step[0] == "skip_target":
                _unmatched(target[step[1] - 1], out)
            else:
                _unused(source[step[1] - 1], out)
        return out


def _unmatched(y, out: list) -> None:
    for leaf in (y.layers() if isinstance(y, Block) else (y,)):
        if leaf.transferable:
            out.append((None, leaf, 0.0))


def _unused(x, out: list) -> None:
    for leaf in (x.layers() if isinstance(x, Block) else (x,)):
        if leaf.transferable:
            out.append((leaf, None, 0.0))


def align(source: Block, target: Block) -> Aligned:
    """Align two standardized structures (one-off; use :class:`Aligner` to share caches)."""
    return Aligner().align(source, target)


__all__ = ["Aligner", "Aligned", "align", "backtrack", "dp", "BACKEND", "Layer", "Block"]
