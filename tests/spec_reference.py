"""A literal, slow transcription of method.md (standardize, score, align, backtrack), for cross-checks.

It shares no code with ``dpiat``: no signature caches, no C, plain 2-D Python lists, recursion exactly as
the pseudo-code reads. The library's fast paths must agree with it bit for bit.
"""

from __future__ import annotations

from torch import nn

PARAM = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
         nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Linear)
DIM = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def flat(module, level):
    if isinstance(module, PARAM):
        return 0, (1 if isinstance(module, DIM) else 0), module
    kids = list(module.children())
    child_level = level if len(kids) == 1 else level + 1
    entries, n_blocks, n_single, n_dim = [], 0, 0, 0
    for c in kids:
        d, k, e = flat(c, child_level)
        n_dim += k
        items = e if (d > 1 or (isinstance(e, list) and k < 2)) else [e]
        for item in items:
            entries.append(item)
            if isinstance(item, list):
                n_blocks += 1
            else:
                n_single += 1
    if n_single > n_blocks and level > 0:
        new = []
        for item in entries:
            new.extend(item if isinstance(item, list) else [item])
        entries, depth = new, 1
    else:
        depth = 2
    if len(entries) == 1:
        return 1, n_dim, entries[0]
    if len(entries) == 0:
        return 0, n_dim, module
    return depth, n_dim, entries


def standardize(model):
    e = flat(model, 0)[2]
    return e if isinstance(e, list) else [e]


def shape_score(p, q):
    r = 1.0
    for a, b in zip(p, q):
        r *= min(a / b, b / a)
    return r


def score(x, y):
    if isinstance(x, list) and isinstance(y, list):
        return align(x, y)[0]
    for C in PARAM:
        if isinstance(x, C) and isinstance(y, C):
            return shape_score(x.weight.shape, y.weight.shape)
    return 0


def dp(s, n, m):
    """s[i][j], 1-based (row/col 0 unused). Returns value, back (2-D)."""
    D = [[0.0] * (m + 1) for _ in range(n + 1)]
    back = [[None] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if D[i - 1][j] > D[i][j - 1]:
                D[i][j] = D[i - 1][j]
                back[i][j] = ("skip_target",)
            else:
                D[i][j] = D[i][j - 1]
                back[i][j] = ("skip_source",)
            acc = 0
            for k in range(i, 0, -1):
                acc += s[k][j]
                v = D[k - 1][j - 1] + acc / (i - k + 1) ** 0.5
                if v > D[i][j]:
                    D[i][j] = v
                    back[i][j] = ("run", k)
    return D[n][m], back


def align(S, T):
    n, m = len(T), len(S)
    s = [[0.0] * (m + 1)] + [[0.0] + [score(S[j - 1], T[i - 1]) for j in range(1, m + 1)] for i in range(1, n + 1)]
    value, back = dp(s, n, m)
    return value, back, s


def leaf_pairs(S, T):
    """(source module | None, target module | None) for PARAM leaves, in target order."""
    value, back, s = align(S, T)
    out = []
    i, j = len(T), len(S)
    while i > 0 or j > 0:
        b = back[i][j] if i > 0 and j > 0 else (("skip_source",) if j > 0 else ("skip_target",))
        if b[0] == "skip_target":
            out.append(_leaves(None, T[i - 1]))
            i -= 1
        elif b[0] == "skip_source":
            out.append(_leaves(S[j - 1], None))
            j -= 1
        else:
            k = b[1]
            group = []
            for t in range(k, i + 1):
                if s[t][j] == 0:
                    group += _leaves(None, T[t - 1])
                elif isinstance(S[j - 1], list):
                    group += leaf_pairs(S[j - 1], T[t - 1])
                else:
                    group.append((S[j - 1], T[t - 1]))
            out.append(group)
            i, j = k - 1, j - 1
    result = []
    for group in reversed(out):
        result.extend(group)
    return result


def _leaves(x, y):
    item = x if x is not None else y
    mods = _flatten(item) if isinstance(item, list) else [item]
    mods = [m for m in mods if isinstance(m, PARAM) and getattr(m, "weight", None) is not None]
    return [(m, None) if x is not None else (None, m) for m in mods]


def _flatten(block):
    for item in block:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item
