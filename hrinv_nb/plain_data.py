"""Plain copies of nested values: dicts with string keys, lists, and Python scalars in place of numpy ones.

:func:`to_plain` does the walk that JSON records and constructor-argument checks share; what a
caller does with any other value (a tensor, a path, a non-finite float) is its ``leaf`` function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def _unchanged(value: Any) -> Any:
    return value


def to_plain(value: Any, leaf: Callable[[Any], Any] = _unchanged) -> Any:
    """A copy of ``value``: mappings as dicts with ``str`` keys, lists and tuples as lists, numpy
    scalars as Python scalars; every other value (at any depth) is replaced by ``leaf(value)``."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, leaf) for v in value]
    if isinstance(value, np.generic):
        return to_plain(value.item(), leaf)
    return leaf(value)
