"""Why a numeric option is unusable, in the words every error line of cellseg uses."""

from __future__ import annotations

import math
from typing import Any


def number_problem(name: str, value: Any, kind: Any, low: float, high: float, open_low: bool = False) -> str | None:
    """``"NAME is 'abc', not a finite integer"``, ``"NAME=-1 is out of range [0, 64]"``, or None
    when ``value`` is a ``kind`` (int, or (int, float)) in range; bools and NaN are refused."""
    if isinstance(value, bool) or not isinstance(value, kind) or not _finite(value):
        return f"{name} is {value!r}, not a finite {'integer' if kind is int else 'number'}"
    if value < low or value > high or (open_low and value == low):
        return f"{name}={value!r} is out of range {'(' if open_low else '['}{shown(low)}, {shown(high)}]"
    return None


def shown(bound: float) -> str:
    """A range bound as people write it: ``0.5``, ``64``, ``4294967295`` (not ``4.29497e+09``)."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _finite(value: int | float) -> bool:
    """Finite as a float: NaN, infinities and ints past float's range (10**400) are not."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
