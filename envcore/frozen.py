"""Hashable parameter values: the one conversion every params tuple goes through."""
from __future__ import annotations

from typing import Any

import numpy as np


def freeze(value: Any) -> Any:
    """Lists become tuples, recursively, so params are hashable and JSON round-trips."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
