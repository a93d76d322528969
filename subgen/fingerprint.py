"""Fingerprints: hashes of exact (modular) tensor values, and of a graph's outputs as a multiset.

A graph's fingerprint must not depend on the order of its outputs: two graphs that compute the
same tensors, listed differently, are candidates for the same rule.  So the graph fingerprint
hashes the *sorted* list of its outputs' value hashes.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np


def value_hash(value: np.ndarray) -> int:
    """64-bit hash of one exact tensor: its shape and its residues."""
    v = np.ascontiguousarray(value, dtype=np.int64)
    h = hashlib.blake2b(repr(v.shape).encode(), digest_size=8)
    h.update(v.tobytes())
    return int.from_bytes(h.digest(), "little")


def multiset_hash(value_hashes: Iterable[int]) -> int:
    """Order-invariant hash of several output value hashes."""
    h = hashlib.blake2b(repr(tuple(sorted(value_hashes))).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def graph_fingerprint(outputs: Sequence[np.ndarray]) -> int:
    """Fingerprint of a graph from the exact values of its outputs (any order)."""
    return multiset_hash(value_hash(v) for v in outputs)
