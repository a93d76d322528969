"""Fingerprints: hashes of exact (modular) tensor values, and of a graph's outputs as a multiset.

A value's hash is two random linear forms of its residues modulo 2**64 (multipliers drawn
from a counter-based generator, so every process draws the same ones), mixed with its shape and
finished by splitmix64.  Being linear, it runs on a whole batch of values in a few numpy calls:
the generator hashes millions of tiny tensors.  Two different values of one shape agree on one
form with probability at most 2**-40 (residues are below 2**25, so a difference has at most 24
factors of two), on both below 2**-80, before the final 64-bit mix.

A graph's fingerprint must not depend on the order of its outputs: two graphs that compute the
same tensors, listed differently, are candidates for the same rule.  So the graph fingerprint
hashes the *sorted* list of its outputs' value hashes.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np

_U = np.uint64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = np.asarray(x, dtype=_U) + _U(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return z ^ (z >> _U(31))


_MULTIPLIERS: list[np.ndarray] = [np.zeros((2, 0), dtype=_U)]


def _multipliers(n: int) -> np.ndarray:
    """The first n multipliers of each of the two forms (grown on demand, always the same)."""
    m = _MULTIPLIERS[0]
    if m.shape[1] < n:
        size = max(n, 2 * m.shape[1], 1024)
        i = np.arange(size, dtype=_U)
        m = _MULTIPLIERS[0] = np.stack([splitmix64(2 * i), splitmix64(2 * i + _U(1))])
    return m[:, :n]


def text_hash(text: str) -> int:
    """A stable 64-bit hash of a text (Python's `hash` of a str changes between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _shape_code(shape: tuple) -> np.uint64:
    return _U(text_hash(repr(tuple(shape))))


def value_hashes(values: np.ndarray) -> np.ndarray:
    """uint64 hash of each values[b] (a batch of exact tensors of one shape)."""
    values = np.asarray(values)
    b, shape = values.shape[0], values.shape[1:]
    flat = values.reshape(b, -1).astype(_U)
    m = _multipliers(flat.shape[1])
    with np.errstate(over="ignore"):
        h1 = (flat * m[0]).sum(axis=1, dtype=_U)
        h2 = (flat * m[1]).sum(axis=1, dtype=_U)
        return splitmix64(h1 ^ splitmix64(h2 ^ _shape_code(shape)))


def value_hash(value: np.ndarray) -> int:
    """64-bit hash of one exact tensor: its shape and its residues."""
    return int(value_hashes(np.asarray(value)[None])[0])


def multiset_hash(value_hashes: Iterable[int]) -> int:
    """Order-invariant hash of several output value hashes."""
    h = hashlib.blake2b(repr(tuple(sorted(value_hashes))).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def graph_fingerprint(outputs: Sequence[np.ndarray]) -> int:
    """Fingerprint of a graph from the exact values of its outputs (any order)."""
    return multiset_hash(value_hash(v) for v in outputs)
