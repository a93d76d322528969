"""ONNX into the IR: `load_onnx`.

    graph, weights = load_onnx("model.onnx")   # Graph + {weight leaf name: np.ndarray}

Import maps the standard operators onto the catalogue.  Anything else -- an unknown op, or a
known one with settings the IR cannot express (dilations, odd paddings, broadcasting) -- becomes
an `opaque` node that passes through untouched, so import never fails on an operator.  An opaque
node keeps what is needed to run and re-export it in its params:
    op_type, out_shapes, attrs = ((name, value), ...) with the ONNX attributes (ints, floats,
    strings and lists of them as themselves; anything else as ("@proto", hex)), plus reserved
    entries "@domain", "@opset", "@out_types" (ONNX elem types of its outputs) and "@slots": per
    ONNX input either the index of a graph input of the node, a hex TensorProto for a constant
    input (non-float initializers such as indices or axes), or "" for an omitted optional input.
Opaque nodes execute through `run_opaque` (a cached one-node onnxruntime session; onnx's reference
evaluator when onnxruntime is absent), which the numpy and torch executors both call.

Float initializers and Constant outputs become `weight` leaves; graph inputs become `input`
leaves (symbolic dims default to 1, or pass `input_shapes`).  Shapes come from ONNX shape
inference; models older than opset 13 are converted to 13 first.  Nodes computable from
constants alone are folded (with onnx's reference evaluator); one it cannot evaluate stays an
opaque node, so a valid model always imports.  Malformed files raise `OnnxError` (a
ValueError); the CLI turns it into one line and exit code 2.

The round trip is lossless: every IR node, and the graph, carry an `origin`
(`envcore.onnx.origin`) with the ONNX node it was imported as (name, op_type, attributes,
domain), its constant inputs, the element types of leaves, and the model's interface, opsets
and metadata, from which the exporter writes back whatever no rewrite touched as it was.
onnx and onnxruntime are imported lazily, inside these functions.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import numpy as np

from envcore.graph import Graph, GraphBuilder, Ref
from envcore.onnx.opaque import EXPORT_OPSET, FLOAT as _FLOAT
from envcore.onnx.origin import ConstInput, Leaf, ModelOrigin, Spelled, Spelling
from envcore.ops import LEAVES, ShapeError, _pads


class OnnxError(ValueError):
    """The file is not a usable ONNX model."""


def load_onnx(path_or_model, input_shapes: Mapping[str, tuple] | None = None
              ) -> tuple[Graph, dict[str, np.ndarray]]:
    """ONNX file (or ModelProto) -> (Graph, weights by leaf name)."""
    import onnx
    model = _read(path_or_model)
    if model is path_or_model:     # the caller's: pinning its inputs must not change it
        model = onnx.ModelProto()
        model.CopyFrom(path_or_model)
    try:
        opset = _opset(model)
        if opset < 13:
            model = onnx.version_converter.convert_version(model, 13)
            opset = 13
        model = _fix_inputs(model, input_shapes or {})
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        model = _complete_shapes(model)
        _refuse_giant_tensors(model)
    except OnnxError:
        raise
    except Exception as e:  # onnx raises many types for broken models
        raise OnnxError(f"cannot read ONNX model: {_first_line(e)}") from None
    return _Importer(model, opset).run()


# a float initializer larger than this that folded nodes read is not copied into their records:
# its value is the weight of that name (see `ConstInput`)
SMALL_CONSTANT = 1 << 16

# the numeric check runs the model on random inputs, so a tensor it cannot hold is refused here,
# before any work, rather than as a MemoryError at the end
MAX_TENSOR_ELEMENTS = 1 << 31


def _refuse_giant_tensors(model) -> None:
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        n = 1
        for d in dims:
            n *= max(int(d), 1)
        if n > MAX_TENSOR_ELEMENTS:
            raise OnnxError(f"tensor {vi.name!r} of shape {tuple(dims)} has {n:.3g} elements, "
                            f"more than subgen handles ({MAX_TENSOR_ELEMENTS:.3g})")


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def _read(path_or_model):
    import onnx
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        path = os.fspath(path_or_model)
        if not os.path.exists(path):
            raise OnnxError(f"no such ONNX file: {path}")
        try:
            model = onnx.load(path)
        except Exception as e:
            raise OnnxError(f"{path} is not an ONNX model: {_first_line(e)}") from None
    if not model.graph.node and not model.graph.output:
        raise OnnxError("ONNX model has an empty graph")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise OnnxError(f"malformed ONNX model: {_first_line(e)}") from None
    return model


def _complete_shapes(model):
    """Where static shape inference gave up (shapes computed at run time, e.g. Shape->Slice
    chains), runs the model once in onnxruntime on random inputs and records every tensor's
    shape and type.  Input sizes are fixed by then, so these shapes are the shapes."""
    from onnx import helper
    known = {vi.name for vi in list(model.graph.value_info) + list(model.graph.output)
             if vi.type.tensor_type.HasField("shape")
             and all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim)}
    known |= {t.name for t in model.graph.initializer}
    missing = [o for n in model.graph.node for o in n.output if o and o not in known]
    if not missing:
        return model
    try:
        import onnxruntime as ort
    except ImportError:
        return model        # the importer names the tensor whose shape it cannot find
    probe = type(model)()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.ValueInfoProto(name=o) for o in missing)
    feeds = {}
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = [d.dim_value for d in tt.shape.dim]
        feeds[vi.name] = (rng.uniform(-1, 1, shape) if dtype.kind == "f"
                          else np.zeros(shape)).astype(dtype)
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(probe.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        values = sess.run(missing, feeds)
    except Exception:
        return model
    for name, v in zip(missing, values):
        v = np.asarray(v)
        model.graph.value_info.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape))
    return model


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)


def _fix_inputs(model, input_shapes: Mapping[str, tuple]):
    """Pins symbolic/unknown input dims (to 1 unless given) so shape inference is static."""
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        want = input_shapes.get(vi.name)
        if want is not None and len(want) != len(dims):
            raise OnnxError(f"input {vi.name} has rank {len(dims)}, not {len(want)}")
        for k, d in enumerate(dims):
            if want is not None:
                d.ClearField("dim_param")
                d.dim_value = int(want[k])
            elif not d.HasField("dim_value"):
                d.ClearField("dim_param")
                d.dim_value = 1
    return model


class _Importer:
    def __init__(self, model, opset: int):
        from onnx import numpy_helper
        self.model, self.opset, self.g = model, opset, model.graph
        self.b = GraphBuilder()
        self.refs: dict[str, Ref] = {}                  # ONNX tensor name -> IR tensor
        self.weights: dict[str, np.ndarray] = {}
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        self.initializers = frozenset(self.consts)
        self.shapes: dict[str, tuple] = {}
        self.types: dict[str, int] = {}
        self.made: dict[str, Spelling] = {}            # constant -> the node that computed it
        self.const_inputs: dict[str, ConstInput] = {}  # one record per constant, shared
        self.via: dict[str, tuple] = {}                # name -> pass-through Spellings to it
        for vi in list(self.g.input) + list(self.g.value_info) + list(self.g.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
                self.shapes[vi.name] = tuple(d.dim_value for d in tt.shape.dim)
            self.types[vi.name] = tt.elem_type
        for name, v in self.consts.items():
            self.shapes[name] = v.shape

    # -- tensors --------------------------------------------------------------------------------
    def ref(self, name: str) -> Ref:
        """The IR tensor for an ONNX name; float constants become weight leaves on first use."""
        if name not in self.refs:
            if name not in self.consts:
                raise OnnxError(f"tensor {name!r} is used before it is produced")
            v = self.consts[name]
            self.weights[name] = v
            self.refs[name] = self.b.weight(name, v.shape)
            self._mark(self.refs[name].node, Leaf(_elem(v.dtype), self.made.get(name)))
        return self.refs[name]

    def _mark(self, node_id: int, origin) -> None:
        self.b.nodes[node_id] = dataclasses.replace(self.b.nodes[node_id], origin=origin)

    def shape_of(self, name: str) -> tuple:
        if name in self.refs:
            return self.b.shape(self.refs[name])
        if name in self.shapes:
            return self.shapes[name]
        raise OnnxError(f"cannot infer a static shape for tensor {name!r}; export the model with "
                        "fixed input sizes")

    def is_float(self, name: str) -> bool:
        if name in self.consts:
            return self.consts[name].dtype.kind == "f"
        return self.types.get(name, _FLOAT) in (1, 10, 11, 16)  # float, f16, double, bf16

    def add(self, op: str, *xs: Ref, **params):
        return self.b.add(op, *xs, **params)

    # -- the walk -------------------------------------------------------------------------------
    def run(self) -> tuple[Graph, dict[str, np.ndarray]]:
        for vi in self.g.input:
            if vi.name not in self.consts:
                self.refs[vi.name] = self.b.input(vi.name, self.shape_of(vi.name))
                self._mark(self.refs[vi.name].node, Leaf(self.types.get(vi.name, _FLOAT)))
        for pos, node in enumerate(self.g.node):
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                try:
                    self.consts[node.output[0]] = _constant_value(node)
                    self.shapes[node.output[0]] = self.consts[node.output[0]].shape
                    self._folded(pos, node, ())
                    continue
                except Exception:  # an odd Constant: keep it as an opaque node
                    pass
            if node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx"):
                try:  # input sizes are fixed: shapes are constants, and so is what they feed
                    shape = self.shape_of(node.input[0])
                    a = _attrs(node)
                    v = (np.array(shape[a.get("start", 0):a.get("end", len(shape))], np.int64)
                         if node.op_type == "Shape" else np.array(int(np.prod(shape)), np.int64))
                    self.consts[node.output[0]], self.shapes[node.output[0]] = v, v.shape
                    x = node.input[0]
                    self._folded(pos, node, (x if x in self.refs else self._const_input(x),))
                    continue
                except OnnxError:
                    pass
            snapshot = (set(self.b.nodes), dict(self.refs), dict(self.weights))
            try:
                outs = self.convert(node)
            except (ShapeError, _Unsupported, KeyError, IndexError, TypeError, ValueError):
                outs = None
            if outs is None:  # roll back what a failed conversion half-built, then pass through
                for i in set(self.b.nodes) - snapshot[0]:
                    del self.b.nodes[i]
                self.refs, self.weights = snapshot[1], snapshot[2]
                outs = self.opaque(node)
            self._remember(pos, node, sorted(i for i in set(self.b.nodes) - snapshot[0]
                                             if self.b.nodes[i].op not in LEAVES), outs)
            if all(r is None for r in outs):  # folded
                self._folded(pos, node, tuple(self._const_input(x) if x else None
                                              for x in node.input))
            for name, r in zip(node.output, outs):
                if name and r is not None:
                    self.refs[name] = r
        outputs = []
        for vi in self.g.output:
            if vi.name not in self.refs and vi.name not in self.consts:
                raise OnnxError(f"graph output {vi.name!r} is never produced")
            outputs.append(self.ref(vi.name))
        live = _live_nodes(self.b.nodes, outputs)
        for i in set(self.b.nodes) - live:
            del self.b.nodes[i]
        names = {n.p["name"] for n in self.b.nodes.values() if n.op == "weight"}
        self.b.origin = self._model_origin()
        return self.b.build(outputs), {k: v for k, v in self.weights.items() if k in names}

    # -- what export needs to write the file back as it was -------------------------------------
    def _remember(self, pos: int, node, members: list[int], outs: list) -> None:
        """Records on the IR nodes `members` (what `node` was imported as) the ONNX node
        itself, or for a pass-through node (Identity) the name it gives its input's tensor.
        A conversion that does not read the ONNX inputs one to one (it skipped an input, or
        reached behind one) gets no record: its nodes are always written as IR ops."""
        if not members:
            if outs and outs[0] is not None and node.input and outs[0] == self.refs.get(
                    node.input[0]) and all(r is None for r in outs[1:]):
                sp = self._spelling(pos, node, {}, [])
                if sp is not None:
                    self.via[node.output[0]] = self.via.get(node.input[0], ()) + (sp,)
            return
        role = {i: m for m, i in enumerate(members)}
        first: dict[Ref, int] = {}           # tensor -> the first ONNX input that names it
        for k, x in enumerate(node.input):
            if x and x in self.refs:
                first.setdefault(self.refs[x], k)
        wiring = []
        for i in members:
            row = []
            for r in self.b.nodes[i].inputs:
                if r.node in role:
                    row.append(("member", role[r.node], r.index))
                elif r in first:
                    row.append(("in", first[r]))
                else:
                    return
            wiring.append(tuple(row))
        read = {w[1] for row in wiring for w in row if w[0] == "in"}
        outputs = []
        for j, name in enumerate(node.output):
            r = outs[j] if j < len(outs) else None
            if not name or r is None:
                outputs.append(None)
            elif r.node in role:
                outputs.append((role[r.node], r.index))
            else:
                return
        sp = self._spelling(pos, node, first, read, len(members), tuple(wiring),
                            tuple(outputs))
        if sp is not None:
            for m, i in enumerate(members):
                self._mark(i, Spelled(sp, m))

    def _spelling(self, pos, node, first, read, members=0, wiring=(), outputs=()):
        """The Spelling of `node`; None when one of its inputs is neither a tensor that the
        members read (see `_remember`) nor a constant."""
        inputs, via = [], []
        for k, x in enumerate(node.input):
            r = self.refs.get(x) if x else None
            if not x:
                inputs.append(None)
            elif not members and k == 0:      # a pass-through's input: the tensor it renames
                inputs.append(0)
            elif r is not None and first.get(r) in read:
                inputs.append(first[r])
            elif x in self.consts:
                inputs.append(self._const_input(x))
            else:
                return None
            via.append(self.via.get(x, ()) if isinstance(inputs[-1], int) else ())
        return Spelling(pos, node.SerializeToString(), members, wiring, tuple(inputs),
                        tuple(via), outputs)

    def _folded(self, pos: int, node, inputs: tuple) -> None:
        """Records the node that computed constants at import (see `ConstInput`)."""
        sp = Spelling(pos, node.SerializeToString(), 0, (), inputs, (), ())
        for o in node.output:
            if o:
                self.made[o] = sp

    def _const_input(self, name: str) -> ConstInput:
        if name not in self.const_inputs:
            from onnx import numpy_helper
            v = self.consts[name]
            big = name in self.initializers and v.dtype.kind == "f" and v.size > SMALL_CONSTANT
            self.const_inputs[name] = ConstInput(
                name, None if big else numpy_helper.from_array(v, name).SerializeToString(),
                self.made.get(name))
        return self.const_inputs[name]

    def _model_origin(self) -> ModelOrigin:
        shell = type(self.model)()
        shell.CopyFrom(self.model)
        for part in ("node", "initializer", "sparse_initializer", "value_info", "input",
                     "output"):
            shell.graph.ClearField(part)
        inputs = tuple((vi.name, self.types.get(vi.name, _FLOAT), self.shape_of(vi.name))
                       for vi in self.g.input if vi.name not in self.consts)
        outputs = tuple((vi.name, vi.type.tensor_type.elem_type or _FLOAT,
                         self.via.get(vi.name, ())) for vi in self.g.output)
        names = {vi.name for vi in list(self.g.input) + list(self.g.output)}
        names.update(self.initializers)
        names.update(x for n in self.g.node for x in list(n.input) + list(n.output))
        names.discard("")
        return ModelOrigin(shell.SerializeToString(), inputs, outputs, frozenset(names))


    def convert(self, node) -> list[Ref] | None:
        if node.domain not in ("", "ai.onnx"):
            return None
        fn = _CONVERTERS.get(node.op_type)
        if fn is None:
            return None
        params = _param_inputs(node)
        if not all(self.is_float(x) for x in node.input if x and x not in params):
            return None
        return fn(self, node, _attrs(node))

    def opaque(self, node) -> list[Ref]:
        from onnx import numpy_helper
        present = [x for x in node.input if x]
        if all(x not in self.refs and x in self.consts for x in present):
            try:   # computable from constants alone: fold it now
                values = _eval_node(node, {x: self.consts[x] for x in present},
                                    self._opset_for(node.domain))
            except Exception:
                # onnx's reference evaluator has gaps (GatherElements over 64 positions or
                # more, in BERT): keep the node, with its first input as a weight leaf so that
                # it has one, and let onnxruntime run it
                if not present:
                    raise OnnxError(f"cannot evaluate {node.op_type} node {node.name!r}, "
                                    "which has no inputs") from None
                self.ref(present[0])
            else:
                for name, v in zip(node.output, values):
                    self.consts[name] = v
                    self.shapes[name] = v.shape
                return [None] * len(node.output)
        dyn: list[Ref] = []
        slots: list[Any] = []
        for x in node.input:
            if not x:
                slots.append("")
            elif x not in self.refs and x in self.consts and not (
                    self.consts[x].dtype.kind == "f" and self.consts[x].ndim > 0):
                slots.append(numpy_helper.from_array(self.consts[x], x).SerializeToString().hex())
            else:
                slots.append(len(dyn))
                dyn.append(self.ref(x))
        r = self.b.add("opaque", *dyn, **self._opaque_params(node, slots, node.output))
        return [r] if isinstance(r, Ref) else list(r)

    def _opaque_params(self, node, slots, outs) -> dict:
        shapes = tuple(self.shape_of(o) if o else () for o in outs)
        types = tuple(self.types.get(o, _FLOAT) for o in outs)
        attrs = tuple(sorted((a.name, _attr_value(a)) for a in node.attribute))
        extra = (("@domain", node.domain), ("@opset", self._opset_for(node.domain)),
                 ("@out_types", types), ("@slots", tuple(slots)))
        return {"op_type": node.op_type, "attrs": attrs + extra, "out_shapes": shapes}

    def _opset_for(self, domain: str) -> int:
        if domain in ("", "ai.onnx"):
            return self.opset
        return next((o.version for o in self.model.opset_import if o.domain == domain), 1)


def _live_nodes(nodes, outputs) -> set[int]:
    """Ids of the nodes the outputs depend on (dead branches are dropped)."""
    live, stack = set(), [o.node for o in outputs]
    while stack:
        i = stack.pop()
        if i not in live:
            live.add(i)
            stack.extend(r.node for r in nodes[i].inputs)
    return live


class _Unsupported(Exception):
    """Settings the IR cannot express: the node becomes opaque."""


def _need(cond: bool) -> None:
    if not cond:
        raise _Unsupported


def _eval_node(node, feeds: Mapping[str, np.ndarray], opset: int = EXPORT_OPSET) -> list:
    """Evaluates one ONNX node on constant inputs with onnx's reference evaluator."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
    g = helper.make_graph([node], "fold", ins, outs)
    opsets = [helper.make_opsetid("", opset if node.domain in ("", "ai.onnx") else EXPORT_OPSET)]
    if node.domain not in ("", "ai.onnx"):
        opsets.append(helper.make_opsetid(node.domain, 1))
    m = helper.make_model(g, opset_imports=opsets)
    return [np.asarray(v) for v in ReferenceEvaluator(m).run(None, dict(feeds))]


def _constant_value(node) -> np.ndarray:
    return _eval_node(node, {})[0]


def _elem(dtype) -> int:
    from onnx import helper
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _attrs(node) -> dict[str, Any]:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _attr_value(a):
    from onnx import AttributeProto as A
    if a.type == A.INT:
        return int(a.i)
    if a.type == A.FLOAT:
        return float(a.f)
    if a.type == A.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == A.INTS:
        return tuple(int(v) for v in a.ints)
    if a.type == A.FLOATS:
        return tuple(float(v) for v in a.floats)
    return ("@proto", a.SerializeToString().hex())


def _param_inputs(node) -> set[str]:
    """Inputs that are read as parameters (shapes, sizes), not as data."""
    if node.op_type in ("Reshape", "Split", "Squeeze", "Unsqueeze"):
        return set(node.input[1:])
    return set()


# -- converters: (importer, node, attrs) -> output refs --------------------------------------------
_CONVERTERS: dict[str, Any] = {}


def _conv(*names):
    def deco(fn):
        for n in names:
            _CONVERTERS[n] = fn
        return fn
    return deco


_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf"}


@_conv(*_UNARY)
def _convert_unary(im, node, a):
    return [im.add(_UNARY[node.op_type], im.ref(node.input[0]))]


@_conv("Gelu")
def _convert_gelu(im, node, a):
    _need(a.get("approximate", b"none") in (b"none", "none"))
    return [im.add("gelu", im.ref(node.input[0]))]


@_conv("LayerNormalization")
def _convert_layernorm(im, node, a):
    xs = im.shape_of(node.input[0])
    _need(int(a.get("axis", -1)) % len(xs) == len(xs) - 1 and len(node.input) == 3
          and node.input[2] and len([o for o in node.output if o]) == 1 and node.output[0])
    _need(int(a.get("stash_type", 1)) == 1)
    return [im.add("layernorm", *(im.ref(x) for x in node.input), axis=-1,
                   eps=float(a.get("epsilon", 1e-5)))]


@_conv("Identity", "Dropout")
def _convert_identity(im, node, a):
    _need(len([o for o in node.output if o]) == 1)
    return [im.ref(node.input[0])]


def _padding_of(kh, kw, pads, stride) -> str:
    """Our "valid"/"same" for explicit ONNX pads (t, l, b, r), or _Unsupported."""
    t, l, b, r = pads
    pt, pb, pl, pr = _pads(kh, kw, "same", stride)
    if (t, b, l, r) == (pt, pb, pl, pr):  # a 1x1 kernel is "same" (TASO's rules say so)
        return "same"
    if (t, l, b, r) == (0, 0, 0, 0):
        return "valid"
    _need((t, b, l, r) == (pt, pb, pl, pr))
    return "same"


def _explicit_pads(a, in_hw, k, stride) -> tuple:
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        return tuple(a.get("pads", (0, 0, 0, 0)))
    if auto == "VALID":
        return (0, 0, 0, 0)
    pads = []
    for d in range(2):
        out = -(-in_hw[d] // stride[d])
        total = max((out - 1) * stride[d] + k[d] - in_hw[d], 0)
        small = total // 2
        pads.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])


@_conv("Conv")
def _convert_conv(im, node, a):
    x, w = node.input[0], node.input[1]
    xs, ws = im.shape_of(x), im.shape_of(w)
    _need(len(xs) == 4 and all(d == 1 for d in a.get("dilations", (1, 1))))
    stride = tuple(a.get("strides", (1, 1)))
    pads = _explicit_pads(a, xs[2:], ws[2:], stride)
    padding = _padding_of(ws[2], ws[3], pads, stride)
    y = im.add("conv2d", im.ref(x), im.ref(w), stride=stride, padding=padding,
               groups=int(a.get("group", 1)))
    _need(im.b.shape(y) == im.shape_of(node.output[0]))
    if len(node.input) > 2 and node.input[2]:
        y = im.add("bias_add", y, im.ref(node.input[2]), axis=1)
    return [y]


@_conv("MaxPool", "AveragePool")
def _convert_pool(im, node, a):
    xs = im.shape_of(node.input[0])
    _need(len(xs) == 4 and len([o for o in node.output if o]) == 1)
    _need(all(d == 1 for d in a.get("dilations", (1, 1))))
    k = tuple(a["kernel_shape"])
    stride = tuple(a.get("strides", (1, 1)))
    pads = _explicit_pads(a, xs[2:], k, stride)
    padding = _padding_of(k[0], k[1], pads, stride)
    kind = "max" if node.op_type == "MaxPool" else "avg"
    _need(kind == "max" or padding == "valid" or a.get("count_include_pad", 0) == 1)
    y = im.add(f"pool_{kind}", im.ref(node.input[0]), kernel=k, stride=stride, padding=padding)
    _need(im.b.shape(y) == im.shape_of(node.output[0]))  # ceil_mode and friends
    return [y]


@_conv("GlobalAveragePool")
def _convert_gap(im, node, a):
    xs = im.shape_of(node.input[0])
    _need(len(xs) == 4)
    return [im.add("pool_global_avg", im.ref(node.input[0]))]


@_conv("BatchNormalization")
def _convert_bn(im, node, a):
    _need(not a.get("training_mode", 0) and len([o for o in node.output if o]) == 1)
    return [im.add("batchnorm", *(im.ref(x) for x in node.input[:5]),
                   eps=float(a.get("epsilon", 1e-5)))]


@_conv("Softmax")
def _convert_softmax(im, node, a):
    rank = len(im.shape_of(node.input[0]))
    return [im.add("softmax", im.ref(node.input[0]), axis=int(a.get("axis", -1)) % rank)]


@_conv("MatMul")
def _convert_matmul(im, node, a):
    an, bn = node.input
    sa, sb = im.shape_of(an), im.shape_of(bn)
    if len(sa) == len(sb) >= 2 and sa[:-2] == sb[:-2]:
        return [im.add("matmul", im.ref(an), im.ref(bn))]
    # (..., K) @ (K, N): flatten the leading dims, multiply, restore them
    _need(len(sa) > 2 and len(sb) == 2)
    flat = im.add("reshape", im.ref(an), shape=(int(np.prod(sa[:-1])), sa[-1]))
    y = im.add("matmul", flat, im.ref(bn))
    return [im.add("reshape", y, shape=sa[:-1] + (sb[1],))]


@_conv("Gemm")
def _convert_gemm(im, node, a):
    _need(a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0)
    an, bn = node.input[0], node.input[1]
    x = im.ref(an)
    if a.get("transA", 0):
        x = im.add("transpose", x, perm=(1, 0))
    # a transposed or reshaped weight stays a transpose/reshape of the original initializer
    # (free: computable from weights alone), so that an untouched Gemm is written back as the
    # Gemm it was, reading its own initializers
    w = im.add("transpose", im.ref(bn), perm=(1, 0)) if a.get("transB", 0) else im.ref(bn)
    y = im.add("matmul", x, w)
    if len(node.input) > 2 and node.input[2]:
        cn = node.input[2]
        n_out = im.b.shape(y)[1]
        cs = im.shape_of(cn)
        if cs == (n_out,):
            y = im.add("bias_add", y, im.ref(cn), axis=1)
        elif cs == (1, n_out):
            y = im.add("bias_add", y, im.add("reshape", im.ref(cn), shape=(n_out,)), axis=1)
        else:
            _need(cs == im.b.shape(y))
            y = im.add("ewadd", y, im.ref(cn))
    return [y]


@_conv("Add", "Mul")
def _convert_binary(im, node, a):
    an, bn = node.input
    sa, sb = im.shape_of(an), im.shape_of(bn)
    if sa == sb:
        return [im.add("ewadd" if node.op_type == "Add" else "ewmul", im.ref(an), im.ref(bn))]
    if sa != im.shape_of(node.output[0]):
        an, bn, sa, sb = bn, an, sb, sa           # the full-shape operand first
    _need(sa == im.shape_of(node.output[0]))
    if node.op_type == "Mul" and int(np.prod(sb)) == 1:
        s = im.ref(bn) if sb == () else im.add("reshape", im.ref(bn), shape=())
        return [im.add("scalar_mul", im.ref(an), s)]
    _need(node.op_type == "Add")
    axis = _bias_axis(sa, sb)
    b = im.ref(bn)
    if len(sb) != 1:
        src = im.b.nodes[b.node]   # undo our own export's Reshape of a bias vector
        if src.op == "reshape" and im.b.shape(src.inputs[0]) == (sa[axis],):
            b = src.inputs[0]
        else:
            b = im.add("reshape", b, shape=(sa[axis],))
    return [im.add("bias_add", im.ref(an), b, axis=axis)]


def _bias_axis(sa: tuple, sb: tuple) -> int:
    """The one axis along which `sb` broadcasts onto `sa` as a vector, or _Unsupported."""
    sb = (1,) * (len(sa) - len(sb)) + tuple(sb)
    _need(len(sb) == len(sa))
    axes = [k for k, d in enumerate(sb) if d != 1]
    _need(len(axes) == 1 and sb[axes[0]] == sa[axes[0]])
    return axes[0]


@_conv("Concat")
def _convert_concat(im, node, a):
    rank = len(im.shape_of(node.input[0]))
    return [im.add("concat", *(im.ref(x) for x in node.input), axis=int(a["axis"]) % rank)]


@_conv("Split")
def _convert_split(im, node, a):
    xs = im.shape_of(node.input[0])
    axis = int(a.get("axis", 0)) % len(xs)
    sizes = tuple(im.shape_of(o)[axis] for o in node.output)
    _need(len(sizes) >= 2)
    return list(im.add("split", im.ref(node.input[0]), axis=axis, sizes=sizes))


@_conv("Transpose")
def _convert_transpose(im, node, a):
    rank = len(im.shape_of(node.input[0]))
    perm = tuple(a.get("perm", tuple(reversed(range(rank)))))
    return [im.add("transpose", im.ref(node.input[0]), perm=perm)]


@_conv("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _convert_reshape_like(im, node, a):
    return [im.add("reshape", im.ref(node.input[0]), shape=im.shape_of(node.output[0]))]
