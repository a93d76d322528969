"""Normal forms (`subgen.pairing.normal_form`) as 64-bit hashes, for one term or for arrays of nodes.

The string normal form is built bottom up from three parts per expression: its floating scalars
(a sorted tuple), its flattened operand list when its top operator flattens, and its core.  Here
each part is hashed instead, so that a parent's hash follows from its children's hashes with a
few integer operations, and millions of last-level nodes get theirs in numpy:

  scalars      a multiset: (count, sum of mixed hashes)           (sorted tuples compare so)
  flat list    commutative op: a multiset, as above; otherwise a sequence: (count, polynomial
               hash, BASE**count), so two lists concatenate as h1 * BASE**n2 + h2
  core, full   chains over the same pieces the string writes

Two expressions get one form hash exactly when their normal-form strings are equal, up to
64-bit collisions (`tests/test_form_hash.py` compares the partitions on every term of a depth-3
enumeration).
"""
from __future__ import annotations

from typing import Callable, Hashable

import numpy as np

from envcore.ops import COMMUTATIVE, LINEAR_IN_EACH_INPUT, OPS
from subgen.enumeration.fingerprint import splitmix64, text_hash
from subgen.pairing.normal_form import FLATTENS, SCALING, _plain
from subgen.pairing.digests import MASK, chain, chain_columns, mix

BASE = 0x9E3779B97F4A7C15 | 1
_T_LEAF, _T_FLAT, _T_OP, _T_SCALED, _T_NONE = (0xF0 + i for i in range(5))
_U = np.uint64


def op_key(op: str, params: tuple) -> int:
    return text_hash(f"{op}{params}")


def act_key(act: str) -> int:
    return text_hash(f"{act}{tuple(sorted(OPS[act].full_params({}).items()))}")


def leaf_form(name: str) -> tuple:
    core = chain((_T_LEAF, text_hash(name)))
    return (0, 0, 0, 0, 0, 1, core, core)


# a form: (scalar count, scalar hash, flat key (0: none), flat count, flat hash, flat
# BASE**count, core, full)

def _full(n: int, h: int, core: int) -> int:
    return core if n == 0 else chain((_T_SCALED, n, h, core))


def op_form(op: str, params: tuple, kids: list[tuple], index: int, scalar_in) -> tuple:
    """The form of output `index` of `op` over kids' forms (`NormalForms._op`, hashed)."""
    act = dict(params).get("activation", "none")
    if act != "none" and act in OPS and index == 0:
        plain = tuple((k, "none" if k == "activation" else v) for k, v in params)
        inner = op_form(op, plain, kids, index, scalar_in)
        # written as the activation's own operator applied to the plain op (as the string is)
        core = chain((_T_OP, act_key(act), inner[7], _T_NONE, 0))
        return (0, 0, 0, 0, 0, 1, core, core)
    plain = _plain(params)
    linear = op in LINEAR_IN_EACH_INPUT and plain and index == 0
    n, h = 0, 0
    if linear:
        for k in kids:
            n, h = n + k[0], (h + k[1]) & MASK
        if op in SCALING:
            tensor = [k for k, sc in zip(kids, scalar_in) if not sc]
            for k, sc in zip(kids, scalar_in):
                if sc:
                    n, h = n + 1, (h + mix(k[7])) & MASK
            if len(tensor) == 1:
                t = tensor[0]
                return (n, h, t[2], t[3], t[4], t[5], t[6], _full(n, h, t[6]))
        operands = [(k[2:6], k[6]) for k in kids]
    else:
        operands = [((0, 0, 0, 1) if k[0] else k[2:6], k[7]) for k in kids]
    key = op_key(op, params)
    if op in FLATTENS and plain and index == 0:
        comm = op in COMMUTATIVE
        cnt, fh, fp = 0, 0, 1
        for flat, core in operands:
            if flat[0] == key:
                c2, h2, p2 = flat[1], flat[2], flat[3]
            else:
                c2, h2, p2 = 1, mix(core), BASE
            if comm:
                cnt, fh = cnt + c2, (fh + h2) & MASK
            else:
                cnt, fh, fp = cnt + c2, (fh * p2 + h2) & MASK, (fp * p2) & MASK
        core = chain((_T_FLAT, key, cnt, fh))
        return (n, h, key, cnt, fh, fp, core, _full(n, h, core))
    cores = [c for _, c in operands] + [_T_NONE] * (2 - len(operands))
    core = chain((_T_OP, key, *cores, index))
    return (n, h, 0, 0, 0, 1, core, _full(n, h, core))


class FormHashes:
    """Memoized form hashes over a `describe` callback (`normal_form.term_describer`)."""

    def __init__(self, describe: Callable[[Hashable], tuple]):
        self.describe = describe
        self._memo: dict[Hashable, tuple] = {}

    def form(self, x) -> tuple:
        f = self._memo.get(x)
        if f is None:
            d = self.describe(x)
            f = leaf_form(d[1]) if d[0] == "leaf" else \
                op_form(d[1], d[2], [self.form(i) for i in d[3]], d[4], d[5])
            self._memo[x] = f
        return f

    def of(self, x) -> int:
        return self.form(x)[7]


# ----------------------------------------------------------------------------------------------
# arrays

FIELDS = 8


def form_arrays(forms: list[tuple]) -> np.ndarray:
    """[n, 8] uint64 array of forms."""
    return np.array(forms, dtype=np.uint64).reshape(-1, FIELDS)


def node_forms(op: str, params: tuple, kids: list[np.ndarray], index: int,
               scalar_in: tuple) -> np.ndarray:
    """`op_form` for many nodes of one op, params, output index and scalar-input pattern:
    kids[i] is the [n, 8] form array of input i."""
    n_rows = len(kids[0])
    act = dict(params).get("activation", "none")
    with np.errstate(over="ignore"):
        if act != "none" and act in OPS and index == 0:
            plain = tuple((k, "none" if k == "activation" else v) for k, v in params)
            inner = node_forms(op, plain, kids, index, scalar_in)
            core = chain_columns([np.full(n_rows, _T_OP, _U), np.full(n_rows, act_key(act), _U),
                                  inner[:, 7], np.full(n_rows, _T_NONE, _U),
                                  np.zeros(n_rows, _U)])
            return _pack(0, 0, 0, 0, 0, 1, core, core, n_rows)
        plain = _plain(params)
        linear = op in LINEAR_IN_EACH_INPUT and plain and index == 0
        n = np.zeros(n_rows, _U)
        h = np.zeros(n_rows, _U)
        if linear:
            for k in kids:
                n, h = n + k[:, 0], h + k[:, 1]
            if op in SCALING:
                tensor = [k for k, sc in zip(kids, scalar_in) if not sc]
                for k, sc in zip(kids, scalar_in):
                    if sc:
                        n, h = n + _U(1), h + splitmix64(k[:, 7])
                if len(tensor) == 1:
                    t = tensor[0]
                    return _pack(n, h, t[:, 2], t[:, 3], t[:, 4], t[:, 5], t[:, 6],
                                 _full_cols(n, h, t[:, 6]), n_rows)
            operands = [(k[:, 2:6], k[:, 6]) for k in kids]
        else:
            operands = []
            for k in kids:
                has = k[:, 0] > 0
                flat = np.where(has[:, None], np.array([0, 0, 0, 1], _U), k[:, 2:6])
                operands.append((flat, k[:, 7]))
        key = op_key(op, params)
        if op in FLATTENS and plain and index == 0:
            comm = op in COMMUTATIVE
            cnt = np.zeros(n_rows, _U)
            fh = np.zeros(n_rows, _U)
            fp = np.ones(n_rows, _U)
            for flat, core in operands:
                same = flat[:, 0] == _U(key)
                c2 = np.where(same, flat[:, 1], _U(1))
                h2 = np.where(same, flat[:, 2], splitmix64(core))
                p2 = np.where(same, flat[:, 3], _U(BASE))
                if comm:
                    cnt, fh = cnt + c2, fh + h2
                else:
                    cnt, fh, fp = cnt + c2, fh * p2 + h2, fp * p2
            core = chain_columns([np.full(n_rows, _T_FLAT, _U), np.full(n_rows, key, _U),
                                  cnt, fh])
            return _pack(n, h, np.full(n_rows, key, _U), cnt, fh, fp, core,
                         _full_cols(n, h, core), n_rows)
        cores = [c for _, c in operands] + [np.full(n_rows, _T_NONE, _U)] * (2 - len(operands))
        core = chain_columns([np.full(n_rows, _T_OP, _U), np.full(n_rows, key, _U), *cores,
                              np.full(n_rows, index, _U)])
        return _pack(n, h, 0, 0, 0, 1, core, _full_cols(n, h, core), n_rows)


def _full_cols(n, h, core):
    scaled = chain_columns([np.full(len(core), _T_SCALED, _U), n, h, core])
    return np.where(n == 0, core, scaled)


def _pack(*cols_and_n):
    *cols, n_rows = cols_and_n
    out = np.empty((n_rows, FIELDS), _U)
    for i, c in enumerate(cols):
        out[:, i] = c
    return out
