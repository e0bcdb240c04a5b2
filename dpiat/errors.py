"""User-facing errors.

Everything a user can get wrong (a model name, a weights file, a config value) raises a subclass of
:class:`DpiatError` with a message that says what is wrong and what to do. The CLI and the harness catch
``DpiatError`` and print its message without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DpiatError(ValueError):
    """A problem with the user's input, explained in the message."""


def _closeness(name: str, choice: str) -> tuple[float, float, int]:
    """(score, difflib ratio, common prefix length) of a choice for a mistyped ``name``, case-insensitive.

    The score is the ratio plus a bonus for the prefix the two share, as a fraction of ``name``: a name is
    mostly mistyped at its end, so ``resnet_nonexist`` finds ``resnet50_gn`` before ``tresnet_xl`` (whose
    ratio alone is higher), and a shortened name (``vit_tiny``) finds ``vit_tiny_patch16_224``."""
    a, b = name.lower(), choice.lower()
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    prefix = 0
    for x, y in zip(a, b):
        if x != y:
            break
        prefix += 1
    return ratio + 0.5 * prefix / max(len(a), 1), ratio, prefix


def close_matches(name: str, choices: Iterable[str], n: int = 5, cutoff: float = 0.6) -> list[str]:
    """The ``n`` choices most similar to ``name``, best first (ties in alphabetical order, so b0 comes before b8).

    A choice qualifies when its difflib ratio reaches ``cutoff``, or when it starts with the first four or more
    characters of ``name`` (all of them for a shorter name); qualified choices are ranked by :func:`_closeness`."""
    scored = []
    for c in choices:
        score, ratio, prefix = _closeness(name, c)
        if ratio >= cutoff or prefix >= min(4, len(name)) > 0:
            scored.append((-score, c))
    return [c for _, c in sorted(scored)[:n]]


class UnknownNameError(DpiatError, KeyError):
    """An unknown registry name (model, init method, ...), with close matches suggested."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = ""):
        name = str(name)  # YAML may hand over a float or bool for a mistyped name
        self.kind, self.name = kind, name
        choices = sorted(set(map(str, choices)))
        close = close_matches(name, choices)
        if not close:  # substring matches catch e.g. "effnet_b0" -> "*efficientnet_b0"
            key = name.lower().replace("-", "_")
            close = [c for c in choices if key in c.lower()][:5]
        msg = f"unknown {kind} {name!r}."
        if close:
            msg += " Did you mean: " + ", ".join(close) + "?"
        elif len(choices) <= 20:
            msg += " Available: " + ", ".join(choices) + "."
        if hint:
            msg += " " + hint
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class WeightsError(DpiatError):
    """A weights file that cannot be read safely, or does not fit the architecture."""


class WeightsMismatchError(WeightsError):
    """A readable weights file whose tensors do not fit the architecture (missing, unexpected or wrongly shaped
    keys): the one case where the architecture's options (classes, input channels) are the likely fix."""


class NoTransferableLayersError(DpiatError):
    """A model without any layer the method can transfer (Conv, ConvTranspose, BatchNorm, Linear)."""
