"""TASO's protobuf rule format (graph_subst.pb), read and written by hand.

This is the only reader/writer of the format (see ../shared/anchors/taso/FORMAT.md).  The wire
format is proto2: varint keys `(field << 3) | wire_type`, varints (wire type 0) and
length-delimited submessages (wire type 2); negative int32 values are 10-byte varints.

Layers, bottom up:
  * varints and fields                       -> `_read_fields`, `_varint`
  * messages as plain records                 -> `PbOp`, `PbRule`, `decode`, `encode`
  * records <-> our `Rule` (with shape inference, since the file stores no shapes)
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from envcore.graph import GraphBuilder, Ref
from envcore.ops import ShapeError
from envcore.rewrite.rule import MalformedRule, Rule
from subgen.errors import BadInput

# ----------------------------------------------------------------------------------------------
# wire format


def _varint(value: int) -> bytes:
    if value < 0:  # int32 negatives are sign-extended to 64 bits: always 10 bytes
        value += 1 << 64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")
    return result, pos


def _int32(v: int) -> int:
    v &= (1 << 64) - 1
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _read_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _read_varint(buf, pos)
            out.append((num, v))
        elif wt == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated length-delimited field")
            out.append((num, buf[pos:pos + n]))
            pos += n
        elif wt == 5:
            pos += 4
        elif wt == 1:
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wt}")
    if pos != len(buf):
        raise ValueError("trailing bytes")
    return out


def _field_int(num: int, v: int) -> bytes:
    return _varint(num << 3) + _varint(v)


def _field_msg(num: int, payload: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


# ----------------------------------------------------------------------------------------------
# messages as records

@dataclass
class PbOp:
    type: int
    inputs: list[tuple[int, int]] = field(default_factory=list)   # (opId, tsId)
    params: list[tuple[int, int]] = field(default_factory=list)   # (key, value)

    @property
    def p(self) -> dict[int, int]:
        return dict(self.params)


@dataclass
class PbRule:
    src: list[PbOp]
    dst: list[PbOp]
    mapped: list[tuple[int, int, int, int]]  # (srcOpId, dstOpId, srcTsId, dstTsId)


def _decode_op(buf: bytes) -> PbOp:
    op = PbOp(type=-1)
    for num, v in _read_fields(buf):
        if num == 1:
            op.type = _int32(v)
        elif num == 2:
            t = dict(_read_fields(v))
            op.inputs.append((_int32(t[1]), _int32(t[2])))
        elif num == 3:
            t = dict(_read_fields(v))
            op.params.append((_int32(t[1]), _int32(t[2])))
    if op.type < 0:
        raise ValueError("operator without a type")
    return op


def decode(data: bytes) -> list[PbRule]:
    rules = []
    for num, v in _read_fields(data):
        if num != 1 or isinstance(v, int):
            raise ValueError(f"unexpected top-level field {num}")
        r = PbRule([], [], [])
        for n2, v2 in _read_fields(v):
            if n2 == 1:
                r.src.append(_decode_op(v2))
            elif n2 == 2:
                r.dst.append(_decode_op(v2))
            elif n2 == 3:
                t = dict(_read_fields(v2))
                r.mapped.append(tuple(_int32(t[k]) for k in (1, 2, 3, 4)))
        rules.append(r)
    return rules


def _encode_op(op: PbOp) -> bytes:
    out = _field_int(1, op.type)
    for o, t in op.inputs:
        out += _field_msg(2, _field_int(1, o) + _field_int(2, t))
    for k, v in op.params:
        out += _field_msg(3, _field_int(1, k) + _field_int(2, v))
    return out


def encode(rules: list[PbRule]) -> bytes:
    out = bytearray()
    for r in rules:
        body = b"".join(_field_msg(1, _encode_op(o)) for o in r.src)
        body += b"".join(_field_msg(2, _encode_op(o)) for o in r.dst)
        for m in r.mapped:
            body += _field_msg(3, b"".join(_field_int(k, v) for k, v in zip((1, 2, 3, 4), m)))
        out += _field_msg(1, body)
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# records <-> our Rule

T_CONV, T_POOL_MAX, T_POOL_AVG, T_RELU, T_SIGMOID, T_TANH = 3, 6, 7, 8, 9, 10
T_CONCAT, T_SPLIT, T_TRANSPOSE, T_EWADD, T_EWMUL, T_MATMUL = 12, 13, 15, 16, 17, 18
T_SMUL, T_ENLARGE = 19, 20
ACT_CODE = {"none": 0, "sigmoid": 1, "relu": 2, "tanh": 3}
ACT_NAME = {v: k for k, v in ACT_CODE.items()}
SIMPLE = {T_RELU: "relu", T_SIGMOID: "sigmoid", T_TANH: "tanh", T_EWADD: "ewadd",
          T_EWMUL: "ewmul", T_SMUL: "scalar_mul", T_ENLARGE: "enlarge"}
SIMPLE_CODE = {v: k for k, v in SIMPLE.items()}

# the generator's input pool (FORMAT.md): id -> shape, and the alternatives tried for ids whose
# role the file does not keep to (ids -4/-5 concatenated with 4-D kernels in 8 rules)
TABLE: dict[int, tuple] = {
    **{i: (2, 4) for i in (-1, -2, -3)}, **{i: (4, 4) for i in (-4, -5, -6)},
    **{i: (2, 4, 5, 5) for i in (-7, -8, -9)}, **{i: (4, 4, 3, 3) for i in (-10, -11, -12)},
    **{i: (4, 4, 1, 3) for i in (-13, -14, -15)}, **{i: (4, 4, 3, 1) for i in (-16, -17, -18)},
    -19: (4, 1, 3, 3), -20: (),
}
ALTERNATIVES = {-4: [(4, 4, 3, 3), (4, 1, 3, 3), (4, 4, 1, 3), (4, 4, 3, 1)],
                -5: [(4, 4, 3, 3), (4, 1, 3, 3), (4, 4, 1, 3), (4, 4, 3, 1)]}


class _Shaped:
    """What `subgen.enumeration.enumerator._propagate_bounds` reads: a shape and tracked split bounds."""
    __slots__ = ("shape", "bounds")

    def __init__(self, shape, bounds):
        self.shape, self.bounds = shape, bounds


def _side(ops: list[PbOp], shapes: dict[int, tuple], b: GraphBuilder, leaves: dict):
    """Adds one side's operators to the builder; returns op index -> list of output Refs."""
    from subgen.enumeration.enumerator import _propagate_bounds
    out: dict[int, list[Ref]] = {}
    bounds: dict[Ref, dict] = {}

    def ref(op_id: int, ts: int) -> Ref:
        if op_id < 0:
            if op_id not in leaves:
                leaves[op_id] = b.input(f"i{-op_id}", shapes[op_id])
            return leaves[op_id]
        if op_id not in out or ts >= len(out[op_id]):
            raise ValueError(f"operator reads missing tensor ({op_id}, {ts})")
        return out[op_id][ts]

    for k, op in enumerate(ops):
        ins = [ref(o, t) for o, t in op.inputs]
        name, params = _op_params(op, ins, b, bounds)
        res = b.add(name, *ins, **params)
        refs = [res] if isinstance(res, Ref) else list(res)
        shaped = [_Shaped(b.shape(r), bounds.get(r, {})) for r in ins]
        for r, bd in zip(refs, _propagate_bounds(name, b.nodes[refs[0].node].p, shaped,
                                                 [b.shape(x) for x in refs])):
            bounds[r] = bd
        out[k] = refs
    return out


def _op_params(op: PbOp, ins, b: GraphBuilder, bounds) -> tuple[str, dict]:
    p, t = op.p, op.type
    if t in SIMPLE:
        return SIMPLE[t], {}
    if t == T_CONV:
        x, w = b.shape(ins[0]), b.shape(ins[1])
        if len(x) != 4 or len(w) != 4:
            raise ShapeError("conv2d needs 4-D input and kernel")
        if (p.get(4, w[2]), p.get(5, w[3])) != tuple(w[2:]):
            raise ShapeError("conv kernel size differs from its weight")
        return "conv2d", {"stride": (p.get(6, 1), p.get(7, 1)),
                          "padding": "same" if p.get(8, 0) == 0 else "valid",
                          "activation": ACT_NAME[p.get(9, 0)],
                          # TASO's conv infers its groups from the channels
                          "groups": p.get(3, x[1] // w[1] if w[1] and x[1] % w[1] == 0 else 1)}
    if t in (T_POOL_MAX, T_POOL_AVG):
        return ("pool_max" if t == T_POOL_MAX else "pool_avg"), {
            "kernel": (p.get(4, 3), p.get(5, 3)), "stride": (p.get(6, 1), p.get(7, 1)),
            "padding": "same" if p.get(8, 0) == 0 else "valid",
            "activation": ACT_NAME[p.get(9, 0)]}
    if t == T_CONCAT:
        if p.get(10, len(b.shape(ins[0]))) != len(b.shape(ins[0])):
            raise ShapeError("concat rank differs from its inputs")
        return "concat", {"axis": p[11]}
    if t == T_SPLIT:
        ax = p[11]
        sizes = bounds.get(ins[0], {}).get(ax)
        if sizes is None:
            raise ShapeError("split of a tensor with no concat boundary on its axis")
        return "split", {"axis": ax, "sizes": sizes}
    if t == T_MATMUL:
        return "matmul", {"activation": ACT_NAME[p.get(9, 0)]}
    if t == T_TRANSPOSE:
        nd = p.get(10, len(b.shape(ins[0])))
        code, perm = p[12], []
        for _ in range(nd):
            perm.append(code % nd)
            code //= nd
        return "transpose", {"perm": tuple(reversed(perm))}
    raise ValueError(f"operator type {t} is not supported")


def _inputs(r: PbRule) -> list[int]:
    return sorted({o for op in r.src + r.dst for o, _ in op.inputs if o < 0}, reverse=True)


def to_rule(r: PbRule, name: str) -> Rule:
    """Our Rule for one TASO rule, inferring input shapes (FORMAT.md): the table's shapes
    first, then the alternatives, the first assignment under which both sides are well formed
    and agree numerically; failing agreement, the first well-formed one."""
    from envcore.execute import equivalent
    ids = _inputs(r)
    # ids outside the table (our exports use -21... for shapes TASO's pool lacks) try every
    # shape either pool has
    spare = sorted({*TABLE.values(), (4, 4, 1, 1), (2, 4, 4, 4), (4, 4, 4, 4)}, key=repr)
    choices = [[TABLE[i]] + ALTERNATIVES.get(i, []) if i in TABLE else spare for i in ids]
    first, last_err = None, "no input shapes fit"
    for combo in itertools.product(*choices):
        shapes = dict(zip(ids, combo))
        try:
            rule = _build(r, shapes, name)
        except (ShapeError, MalformedRule, ValueError) as e:
            last_err = str(e)
            continue
        ok, _ = equivalent(rule.src, rule.dst, trials=1)
        if ok:
            return rule
        first = first or rule
    if first is not None:
        return first
    raise ValueError(f"{name}: {last_err}")


def _build(r: PbRule, shapes, name) -> Rule:
    from envcore.graph import Graph
    sides = []
    for ops, pick in ((r.src, 0), (r.dst, 1)):
        b, leaves = GraphBuilder(), {}
        out = _side(ops, shapes, b, leaves)
        refs = []
        for m in r.mapped:
            op_id, ts = (m[0], m[2]) if pick == 0 else (m[1], m[3])
            if op_id not in out or ts >= len(out[op_id]):
                raise ValueError("mapped output names a missing tensor")
            refs.append(out[op_id][ts])
        sides.append(Graph(dict(b.nodes), refs))
    return Rule(name, sides[0], sides[1], {"source": "taso"})


def read_rules(path) -> list[Rule]:
    """Every rule of a TASO .pb file (BadInput when the file is not one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}") from None
    try:
        recs = decode(data)
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path} is not a TASO rule file ({e})") from None
    rules = []
    for k, rec in enumerate(recs):
        try:
            rules.append(to_rule(rec, f"taso-{k}"))
        except (ValueError, KeyError, ShapeError, MalformedRule) as e:
            raise BadInput(f"{path}: rule {k} cannot be read ({str(e).splitlines()[0]})") \
                from None
    return rules


# -- writing -----------------------------------------------------------------------------------

def _role_ids(rule: Rule) -> dict[str, int]:
    """Input name -> TASO pool id, by the role its shape plays (FORMAT.md's table)."""
    slots = {"2d": [-1, -2, -3], "mat": [-4, -5, -6], "act": [-7, -8, -9],
             "k33": [-10, -11, -12], "k13": [-13, -14, -15], "k31": [-16, -17, -18],
             "k1c": [-19], "scalar": [-20], "spare": []}
    spare = itertools.count(-21, -1)
    out = {}
    for name in rule.src.inputs:  # rules read from TASO keep their ids ("i4" is -4)
        if name[:1] == "i" and name[1:].isdigit() and -int(name[1:]) in TABLE:
            out[name] = -int(name[1:])
            for ids in slots.values():
                if out[name] in ids:
                    ids.remove(out[name])
    for name, ref in sorted(rule.src.inputs.items()):
        if name in out:
            continue
        s = rule.src.shape(ref)
        if s == ():
            role = "scalar"
        elif len(s) == 2:
            role = "mat" if s[0] == s[1] else "2d"
        elif len(s) == 4 and s[1] == 1 and s[0] != 1:
            role = "k1c"
        elif len(s) == 4 and s[2:] in ((3, 3), (1, 3), (3, 1)):
            role = {(3, 3): "k33", (1, 3): "k13", (3, 1): "k31"}[s[2:]]
        elif len(s) == 4 and s[2] == s[3] and s[2] >= 4:
            role = "act"
        else:
            role = "spare"   # no slot in TASO's pool (e.g. a 1x1 kernel): ids from -21 down
        out[name] = slots[role].pop(0) if slots[role] else next(spare)
    return out


def _encode_side(g, ids: dict[str, int]) -> tuple[list[PbOp], dict[int, int]]:
    from envcore.ops import LEAVES
    ops, pos = [], {}
    order = sorted(g.nodes)   # builder order when it is topological (keeps TASO's op order)
    if any(r.node >= i for i in order for r in g.nodes[i].inputs):
        order = g.topo_order
    for i in order:
        n = g.nodes[i]
        if n.op in LEAVES:
            continue
        ins = [((ids[g.nodes[r.node].p["name"]], 0) if g.nodes[r.node].op in LEAVES
                else (pos[r.node], r.index)) for r in n.inputs]
        ops.append(PbOp(_op_code(n), ins, _op_pb_params(n, g)))
        pos[i] = len(ops) - 1
    return ops, pos


def _op_code(n) -> int:
    codes = {"conv2d": T_CONV, "pool_max": T_POOL_MAX, "pool_avg": T_POOL_AVG,
             "concat": T_CONCAT, "split": T_SPLIT, "transpose": T_TRANSPOSE,
             "matmul": T_MATMUL, **SIMPLE_CODE}
    if n.op not in codes:
        raise ValueError(f"operator {n.op} has no TASO type code")
    return codes[n.op]


def _op_pb_params(n, g) -> list[tuple[int, int]]:
    p = n.p
    if n.op == "conv2d":
        w = g.shape(n.inputs[1])
        out = [(4, w[2]), (5, w[3]), (6, p["stride"][0]), (7, p["stride"][1]),
               (8, 0 if p["padding"] == "same" else 1), (9, ACT_CODE[p["activation"]])]
        x = g.shape(n.inputs[0])
        inferred = x[1] // w[1] if w[1] and x[1] % w[1] == 0 else 1
        return ([(3, p["groups"])] if p["groups"] != inferred else []) + out
    if n.op in ("pool_max", "pool_avg"):
        return [(4, p["kernel"][0]), (5, p["kernel"][1]), (6, p["stride"][0]),
                (7, p["stride"][1]), (8, 0 if p["padding"] == "same" else 1),
                (9, ACT_CODE[p["activation"]])]
    if n.op == "concat":
        return [(1, len(n.inputs)), (11, p["axis"]), (10, len(n.shapes[0]))]
    if n.op == "split":
        return [(2, len(n.shapes)), (11, p["axis"])]
    if n.op == "matmul":
        return [(9, ACT_CODE[p["activation"]])]
    if n.op == "transpose":
        code = 0
        for a in p["perm"]:
            code = code * len(p["perm"]) + a
        return [(10, len(p["perm"])), (12, code), (13, 0)]
    return []


def from_rule(rule: Rule) -> PbRule:
    """TASO's record for one of our rules (ValueError when the format cannot express it:
    an operator with no type code, or an output that is a bare input)."""
    ids = _role_ids(rule)
    src, spos = _encode_side(rule.src, ids)
    dst, dpos = _encode_side(rule.dst, ids)
    mapped = []
    for a, b in zip(rule.src.outputs, rule.dst.outputs):
        if a.node not in spos or b.node not in dpos:
            raise ValueError(f"rule {rule.name}: an output is a bare input")
        mapped.append((spos[a.node], dpos[b.node], a.index, b.index))
    return PbRule(src, dst, mapped)


def write_rules(rules, path) -> tuple[int, list[str]]:
    """Writes what the format can express; returns (written, names of the rules left out)."""
    recs, skipped = [], []
    for r in rules:
        try:
            recs.append(from_rule(r))
        except (ValueError, KeyError) as e:
            skipped.append(f"{r.name}: {e}")
    from subgen.outputs import write_atomic
    data = encode(recs)
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return len(recs), skipped
