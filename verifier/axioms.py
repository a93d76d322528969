"""The operator axioms, as data: the list `AXIOMS`.

Each is an `Axiom` (verifier/axiom.py: patterns, guards, Z3 formula), written in the names of
verifier/notation.py and validated on a domain of verifier/domains.py.  Guards (`where`) keep an
axiom from building ill-shaped terms: unguarded, `concat_ewmul` split products at two different
seams and looped.  The sizes of the terms an axiom creates come from the shape axioms
(verifier/shapes.py).

The list covers TASO's verifier (its 44 axioms and lemmas, translated to this catalogue: split
takes explicit sizes, conv2d takes a stride tuple, padding and activation names, groups) plus the
facts this catalogue needs on top: fused matmul activation, concat associativity, concat of a
split, explicit groups (TASO infers them from channel counts, so its concat-of-convs-is-a-grouped-
conv fact is implicit; here it is `conv_concat_grouped`), and the facts the depth-3 rule set
needs (avg pooling is linear, split of elementwise ops, products with identity constants,
enlarge composition).  TASO's `pool_avg(identity conv kernel) == pool kernel` has no counterpart:
here the identity kernel is (C, C, kh, kw) and the pool kernel is depthwise (C, 1, kh, kw).
"""
from __future__ import annotations

import z3

from envcore.ops import IDEMPOTENT
from verifier.axiom import Axiom
from verifier.domains import RANKS, all_shapes, batch_split, biased, biased_cat, cat, cat3, \
    channel_split, conv, dup_input, enlarge_cat, enlarged, enlarged_twice, ew, geometry, \
    global_pooled, global_pooled_1x1, grouped, matrices, mm, out_split, pooled, pooled_1x1, \
    pooled_ew, split_pairs, splits, square_kernels, square_pairs, square_sizes, twin_groups
from verifier.notation import ACT, AX, BX, KH, KW, N, PAD, S0, S1, SH, SW, G, add, b, bias, c, \
    concat, gap, mat, mul, relu, smul, tr, r, s, t, v, w, x, y, z
from verifier.shapes import SHAPE_AXIOMS
from verifier.terms import Dim, Half, Param, Sum, op


def _conv(a, b, act=ACT, pad=PAD, **kw):
    return op("conv2d", a, b, stride=(SH, SW), padding=pad, activation=act, **kw)


def _pool(kind, a):
    return op(f"pool_{kind}", a, kernel=(KH, KW), stride=(SH, SW), padding=PAD)


def _same_shape(a, b, rank=4):
    return tuple((Dim(a, k), Dim(b, k)) for k in range(rank))


def _same_axes(a, b, axes):
    """Guards that keep an axiom from equating a typed term with an ill-typed one: the
    trigger side's typing alone would let these sizes differ (two kernels of other windows
    whose strided convs happen to agree in size, two inputs that pool to one size ...).
    `verifier.axiom_typing` finds such gaps; `tests/test_axiom_typing.py` keeps them closed."""
    return tuple((Dim(a, k), Dim(b, k)) for k in axes)



def _ones(rank):
    def ax(r):
        return Axiom(f"ones_ewmul_r{r}", f"x * ones = x (rank {r})",
                     mul(x, op("ones", shape=tuple(Dim("x", k) for k in range(r)))), x,
                     ew("x", ranks=(r,)))
    return ax(rank)


def _relu_smul_ones(rank):
    shape = tuple(Param(f"d{k}") for k in range(rank))

    def dom(m):
        for sh in all_shapes(rank, m):
            yield {**{f"d{k}": d for k, d in enumerate(sh)}, "s": ()}
    return Axiom(f"relu_smul_ones_r{rank}", f"relu(ones * s) = ones * relu(s) (rank {rank})",
                 relu(smul(op("ones", shape=shape), s)), smul(op("ones", shape=shape), relu(s)),
                 dom)


def _split(i):
    return op("split", concat(x, y), axis=AX, sizes=(Dim("x", AX), Dim("y", AX)), out=i)


AXIOMS: list[Axiom] = [
    # ewadd and ewmul: associative, commutative, distributive
    Axiom("ewadd_assoc", "ewadd is associative",
          add(x, add(y, z)), add(add(x, y), z), ew("x", "y", "z")),
    Axiom("ewadd_comm", "ewadd is commutative", add(x, y), add(y, x), ew("x", "y")),
    Axiom("ewmul_assoc", "ewmul is associative",
          mul(x, mul(y, z)), mul(mul(x, y), z), ew("x", "y", "z")),
    Axiom("ewmul_comm", "ewmul is commutative", mul(x, y), mul(y, x), ew("x", "y")),
    Axiom("ewmul_ewadd_distrib", "ewmul distributes over ewadd",
          mul(add(x, y), z), add(mul(x, z), mul(y, z)), ew("x", "y", "z")),
    # scalar mul
    Axiom("smul_assoc", "scalar mul is associative",
          smul(smul(x, s), t), smul(x, smul(s, t)), ew("x", scalars="st")),
    Axiom("smul_ewadd", "scalar mul distributes over ewadd",
          smul(add(x, y), s), add(smul(x, s), smul(y, s)), ew("x", "y", scalars="s")),
    Axiom("smul_ewmul", "scalar mul commutes with ewmul",
          smul(mul(x, y), s), mul(x, smul(y, s)), ew("x", "y", scalars="s")),
    Axiom("smul_transpose", "scalar mul commutes with transpose",
          smul(tr(x), s), tr(smul(x, s)), ew("x", ranks=(2,), scalars="s")),
    Axiom("smul_matmul", "scalar mul commutes with matmul",
          smul(mat(x, y), s), mat(x, smul(y, s)), mm("xy", scalars="s")),
    Axiom("smul_matmul_left", "scalar mul moves into a matmul's first argument",
          smul(mat(x, y), s), mat(smul(x, s), y), mm("xy", scalars="s")),
    Axiom("smul_concat", "scalar mul distributes over concat",
          smul(concat(x, y), s), concat(smul(x, s), smul(y, s)),
          cat((("x", "y"),), scalars="s")),
    Axiom("smul_conv_kernel", "a scalar moves from a conv's input to its kernel",
          _conv(smul(x, s), w, groups=G), _conv(x, smul(w, s), groups=G),
          conv(acts=("none", "relu"), more=lambda i, m: ({**j, "s": ()} for j in grouped(i, m)))),
    Axiom("smul_conv_out", "a scalar moves from a conv's output to its input",
          smul(_conv(x, w, act="none", groups=G), s), _conv(smul(x, s), w, act="none", groups=G),
          conv(more=lambda i, m: ({**j, "s": ()} for j in grouped(i, m)))),
    # relu
    Axiom("relu_conv_fuse", "relu after a (grouped) conv is the conv's fused relu",
          relu(_conv(x, w, act="none", groups=G)), _conv(x, w, act="relu", groups=G),
          conv(more=grouped)),
    Axiom("relu_matmul_fuse", "relu after a matmul is the matmul's fused relu",
          relu(mat(x, y)), mat(x, y, act="relu"), mm("xy")),
    # the catalogue's idempotent ops (relu): the property, checked like every other axiom
    *[Axiom(f"{o}_idempotent", f"{o} applied twice is {o} (catalogue: IDEMPOTENT)",
            op(o, op(o, x)), op(o, x), ew("x")) for o in sorted(IDEMPOTENT)],
    Axiom("relu_concat", "relu distributes over concat",
          relu(concat(x, y)), concat(relu(x), relu(y)), cat((("x", "y"),))),
    Axiom("relu_transpose", "relu commutes with transpose",
          relu(tr(x)), tr(relu(x)), ew("x", ranks=(2,))),
    # conv
    Axiom("conv_ewadd_kernel", "conv is linear in its kernel",
          _conv(x, add(w, v), act="none", groups=G),
          add(_conv(x, w, act="none", groups=G), _conv(x, v, act="none", groups=G)),
          conv(more=lambda i, m: ({**j, "v": j["w"]} for j in grouped(i, m))),
          where=_same_shape("w", "v")),
    Axiom("conv_ewadd_input", "conv is linear in its input",
          _conv(add(x, y), w, act="none", groups=G),
          add(_conv(x, w, act="none", groups=G), _conv(y, w, act="none", groups=G)),
          conv(more=lambda i, m: ({**j, "y": j["x"]} for j in grouped(i, m))),
          where=_same_shape("x", "y")),
    Axiom("conv_concat_sum", "a sum of convs is one conv over concatenated channels",
          add(_conv(x, w, act="none"), _conv(y, v, act="none")),
          _conv(concat(x, y, axis=1), concat(w, v, axis=1), act="none"),
          conv(more=channel_split),
          # and, read right to left, the channel seams line up
          where=_same_axes("x", "y", (0, 2, 3)) + _same_axes("w", "v", (0, 2, 3))
          + ((Dim("x", 1), Dim("w", 1)),)),
    Axiom("conv_concat_batch", "convs of two inputs with one kernel concat along the batch",
          concat(_conv(x, w), _conv(y, w), axis=0), _conv(concat(x, y, axis=0), w),
          conv(acts=("none", "relu"), more=batch_split), where=_same_axes("x", "y", (1, 2, 3))),
    Axiom("conv_concat_kernels", "convs of one input with two kernels concat along channels",
          concat(_conv(x, w), _conv(x, v), axis=1), _conv(x, concat(w, v, axis=0)),
          conv(acts=("none", "relu"), more=out_split), where=_same_axes("w", "v", (1, 2, 3))),
    Axiom("conv_concat_grouped", "convs of two inputs with two kernels concat along channels "
          "into one conv with twice the groups",
          concat(_conv(x, w, groups=G), _conv(y, v, groups=G), axis=1),
          _conv(concat(x, y, axis=1), concat(w, v, axis=0), groups=Sum((G, G))),
          conv(acts=("none", "relu"), more=twin_groups),
          where=_same_shape("x", "y") + _same_shape("w", "v")),
    Axiom("conv_concat_same_input", "a conv in 2 groups over an input concatenated with itself "
          "is the plain conv",
          _conv(concat(x, x, axis=1), w, groups=2), _conv(x, w, groups=1),
          conv(acts=("none", "relu"), more=dup_input),
          # read right to left, 2 groups need an even number of output channels
          where=((Dim("w", 0), (Half(Dim("w", 0)), Half(Dim("w", 0)))),)),
    # matmul
    Axiom("matmul_assoc", "matmul is associative",
          mat(x, mat(y, z)), mat(mat(x, y), z), mm("xyz")),
    Axiom("matmul_ewadd", "matmul is linear in its second argument",
          mat(x, add(y, z)), add(mat(x, y), mat(x, z)),
          mm("xy", extra=lambda i, b, n: i.update(z=i["y"]))),
    Axiom("matmul_concat_sum", "a sum of matmuls is one matmul over concatenated operands",
          add(mat(x, y), mat(z, w)), mat(concat(x, z, axis=1), concat(y, w, axis=0)),
          mm("xy", ranks=(2,), extra=lambda i, b, n: [
              i.update(z=(n[0], k), w=(k, n[2])) for k in [max(1, n[1] - 1)]]),
          # read right to left, the seams must line up: typed operands of the one matmul do
          # not make the two products typed (x (2,1), z (2,2) against y (1,1), w (2,1))
          where=((Dim("x", 1), Dim("y", 0)),)),
    Axiom("matmul_concat_cols", "matmul distributes over a concat of columns",
          mat(x, concat(y, z, axis=1)), concat(mat(x, y), mat(x, z), axis=1),
          mm("xy", ranks=(2,), extra=lambda i, b, n: i.update(z=(n[1], n[0])))),
    Axiom("matmul_ewadd_left", "matmul is linear in its first argument",
          mat(add(x, y), z), add(mat(x, z), mat(y, z)),
          mm("xz", extra=lambda i, b, n: i.update(y=i["x"]))),
    Axiom("matmul_concat_rows", "matmul distributes over a concat of rows",
          mat(concat(x, y, axis=0), z), concat(mat(x, z), mat(y, z), axis=0),
          mm("xz", ranks=(2,), extra=lambda i, b, n: i.update(y=(n[2], n[1])))),
    # concat with elementwise ops
    # (the seam guard keeps the right side from splitting a product at two different seams)
    Axiom("concat_ewadd", "concat of sums is the sum of concats",
          concat(add(x, y), add(z, w)), add(concat(x, z), concat(y, w)),
          cat((("x", "z"), ("y", "w"))), where=((Dim("x", AX), Dim("y", AX)),)),
    Axiom("concat_ewmul", "concat of products is the product of concats",
          concat(mul(x, y), mul(z, w)), mul(concat(x, z), concat(y, w)),
          cat((("x", "z"), ("y", "w"))), where=((Dim("x", AX), Dim("y", AX)),)),
    Axiom("concat_assoc", "concat is associative",
          concat(concat(x, y), z), concat(x, concat(y, z)),
          cat3),
    Axiom("concat3_nest", "a three-way concat is two nested concats",
          concat(x, y, z), concat(concat(x, y), z),
          cat3),
    # split
    Axiom("split_concat_0", "splitting a concat at its seam gives its first input",
          _split(0), x, cat((("x", "y"),))),
    Axiom("split_concat_1", "splitting a concat at its seam gives its second input",
          _split(1), y, cat((("x", "y"),))),
    Axiom("concat_split", "concatenating a split's pieces gives the split tensor",
          concat(op("split", x, axis=AX, sizes=(S0, S1), out=0),
                 op("split", x, axis=AX, sizes=(S0, S1), out=1)), x, splits,
          where=(((S0, S1), Dim("x", AX)),)),
    # transpose
    Axiom("transpose_involution", "transposing twice is the identity",
          tr(tr(x)), x, ew("x", ranks=(2,))),
    Axiom("transpose_matmul", "the transpose of a product is the product of transposes",
          tr(mat(x, y)), mat(tr(y), tr(x)), mm("xy", ranks=(2,))),
    Axiom("transpose_concat", "the transpose of a row concat is a column concat",
          tr(concat(x, y, axis=0)), concat(tr(x), tr(y), axis=1),
          cat((("x", "y"),), ranks=(2,), axes=(0,))),
    Axiom("transpose_concat_cols", "the transpose of a column concat is a row concat",
          tr(concat(x, y, axis=1)), concat(tr(x), tr(y), axis=0),
          cat((("x", "y"),), ranks=(2,), axes=(1,))),
    Axiom("transpose_ewadd", "transpose distributes over ewadd",
          tr(add(x, y)), add(tr(x), tr(y)), ew("x", "y", ranks=(2,))),
    Axiom("transpose_ewmul", "transpose distributes over ewmul",
          tr(mul(x, y)), mul(tr(x), tr(y)), ew("x", "y", ranks=(2,))),
    # concat geometry
    Axiom("concat_geometry", "a 2x2 block tensor concats rows-then-columns or columns-then-rows",
          concat(concat(x, y, axis=1), concat(z, w, axis=1), axis=0),
          concat(concat(x, z, axis=0), concat(y, w, axis=0), axis=1), geometry,
          where=((Dim("x", 1), Dim("z", 1)), (Dim("x", 0), Dim("y", 0)))),
    # pooling with concat
    Axiom("pool_avg_concat_channels", "avg pooling distributes over a channel concat",
          concat(_pool("avg", x), _pool("avg", y), axis=1), _pool("avg", concat(x, y, axis=1)),
          pooled(1), where=_same_axes("x", "y", (0, 2, 3))),
    Axiom("pool_avg_concat_batch", "avg pooling distributes over a batch concat",
          concat(_pool("avg", x), _pool("avg", y), axis=0), _pool("avg", concat(x, y, axis=0)),
          pooled(0), where=_same_axes("x", "y", (1, 2, 3))),
    Axiom("pool_max_concat_channels", "max pooling distributes over a channel concat",
          concat(_pool("max", x), _pool("max", y), axis=1), _pool("max", concat(x, y, axis=1)),
          pooled(1), where=_same_axes("x", "y", (0, 2, 3))),
    Axiom("pool_max_concat_batch", "max pooling distributes over a batch concat",
          concat(_pool("max", x), _pool("max", y), axis=0), _pool("max", concat(x, y, axis=0)),
          pooled(0), where=_same_axes("x", "y", (1, 2, 3))),
    # avg pooling is linear
    Axiom("pool_avg_ewadd", "avg pooling distributes over ewadd",
          _pool("avg", add(x, y)), add(_pool("avg", x), _pool("avg", y)), pooled_ew("x", "y"),
          where=_same_shape("x", "y")),
    Axiom("pool_avg_smul", "avg pooling commutes with scalar mul",
          _pool("avg", smul(x, s)), smul(_pool("avg", x), s), pooled_ew("x", scalars="s")),
    Axiom("pool_avg_conv1x1", "avg pooling commutes with a 1x1 conv (channel mixing)",
          op("conv2d", _pool("avg", x), w), _pool("avg", op("conv2d", x, w)), pooled_1x1,
          where=((Dim("w", 2), 1), (Dim("w", 3), 1))),
    # split of elementwise ops
    *[Axiom(f"split_{o}_{i}", f"piece {i} of a split {o} is the {o} of the pieces",
            op("split", op(o, x, y), axis=AX, sizes=(S0, S1), out=i),
            op(o, op("split", x, axis=AX, sizes=(S0, S1), out=i),
               op("split", y, axis=AX, sizes=(S0, S1), out=i)),
            split_pairs)
      for o in ("ewadd", "ewmul") for i in (0, 1)],
    # constants
    Axiom("eye_ewmul_idempotent", "the identity matrix times itself (elementwise) is itself",
          mul(op("eye", shape=(N, N)), op("eye", shape=(N, N))), op("eye", shape=(N, N)),
          square_sizes),
    Axiom("eye_conv_ewmul_idempotent", "the identity kernel times itself (elementwise) is itself",
          mul(op("eye_conv", shape=(N, N, KH, KW)), op("eye_conv", shape=(N, N, KH, KW))),
          op("eye_conv", shape=(N, N, KH, KW)), square_kernels),
    Axiom("diagonal_matmul", "a product of diagonal matrices is their elementwise product",
          mat(mul(x, op("eye", shape=(N, N))), mul(y, op("eye", shape=(N, N)))),
          mul(mul(x, y), op("eye", shape=(N, N))), square_pairs),
    Axiom("diagonal_transpose", "the diagonal of a matrix is the diagonal of its transpose",
          mul(tr(x), op("eye", shape=(N, N))), mul(x, op("eye", shape=(N, N))), square_pairs),
    *[_relu_smul_ones(k) for k in RANKS],
    Axiom("pool_kernel_conv", "a depthwise conv with the pool kernel is avg pooling",
          op("conv2d", x, op("pool_kernel", shape=(Dim("x", 1), 1, KH, KW)), stride=(SH, SW),
             padding=PAD, activation="none", groups=Dim("x", 1)),
          _pool("avg", x), conv()),
    Axiom("eye_conv_identity", "a conv with the identity kernel is the identity",
          op("conv2d", x, op("eye_conv", shape=(Dim("x", 1), Dim("x", 1), KH, KW)),
             stride=(1, 1), padding="same", activation="none"), x,
          conv(kernels=(1, 3), strides=((1, 1),), pads=("same",))),
    Axiom("eye_matmul_right", "x @ I = x",
          mat(x, op("eye", shape=(Dim("x", 1), Dim("x", 1)))), x, matrices),
    Axiom("eye_matmul_left", "I @ x = x",
          mat(op("eye", shape=(Dim("x", 0), Dim("x", 0))), x), x, matrices),
    Axiom("transpose_eye", "the identity matrix is symmetric",
          tr(op("eye", shape=(N, N))), op("eye", shape=(N, N)), square_sizes),
    *[_ones(k) for k in RANKS],
    # enlarge (TASO's commented-out enlarge axioms, for this catalogue's enlarge(w, like))
    Axiom("enlarge_ewadd", "enlarge distributes over ewadd",
          op("enlarge", add(w, v), r), add(op("enlarge", w, r), op("enlarge", v, r)),
          conv(pads=("same",), strides=((1, 1),), more=lambda i, m: (
              {**j, "v": j["w"]} for j in enlarged(i, m))), where=_same_axes("w", "v", (2, 3))),
    Axiom("enlarge_ewmul", "enlarge distributes over ewmul",
          op("enlarge", mul(w, v), r), mul(op("enlarge", w, r), op("enlarge", v, r)),
          conv(pads=("same",), strides=((1, 1),), more=lambda i, m: (
              {**j, "v": j["w"]} for j in enlarged(i, m))), where=_same_axes("w", "v", (2, 3))),
    Axiom("enlarge_smul", "enlarge commutes with scalar mul",
          op("enlarge", smul(w, s), r), smul(op("enlarge", w, r), s),
          conv(pads=("same",), strides=((1, 1),), more=lambda i, m: (
              {**j, "s": ()} for j in enlarged(i, m)))),
    Axiom("enlarge_concat", "enlarge distributes over a concat of kernels (axis 0 or 1)",
          op("enlarge", concat(w, v), r), concat(op("enlarge", w, r), op("enlarge", v, r)),
          enlarge_cat, where=_same_axes("w", "v", (2, 3))),
    Axiom("enlarge_relu", "enlarge commutes with relu (relu(0) = 0)",
          op("enlarge", relu(w), r), relu(op("enlarge", w, r)),
          conv(pads=("same",), strides=((1, 1),), more=enlarged)),
    Axiom("enlarge_enlarge", "enlarging twice is enlarging to the final size",
          op("enlarge", op("enlarge", w, r), v), op("enlarge", w, v), enlarged_twice),
    # bias_add: a conv's or Gemm's bias and the activation fused after it
    Axiom("relu_bias_fuse", "relu after a bias is the bias's fused relu",
          relu(bias(x, b)), bias(x, b, act="relu"), biased()),
    Axiom("bias_concat_along", "biases of a concat's pieces, along its seam, are one bias",
          concat(bias(x, b, act=ACT), bias(y, c, act=ACT), axis=BX),
          bias(concat(x, y, axis=BX), concat(b, c, axis=0), act=ACT), biased_cat(True),
          # read right to left, the bias's seam must be the tensor's
          where=((Dim("x", BX), Dim("b", 0)),)),
    Axiom("bias_concat_across", "one bias on both pieces of a concat (across its seam)",
          concat(bias(x, b, act=ACT), bias(y, b, act=ACT)), bias(concat(x, y), b, act=ACT),
          biased_cat(False)),
    Axiom("bias_bias", "two biases along one axis are one bias of their sum",
          bias(bias(x, b), c, act=ACT), bias(x, add(b, c), act=ACT),
          biased(biases=("b", "c"), acts=("none", "relu"))),
    Axiom("bias_ewadd", "a bias moves from a sum to one of its terms",
          bias(add(x, y), b), add(bias(x, b), y), biased(tensors=("x", "y"))),
    Axiom("smul_bias", "a scalar mul moves into a bias and the tensor it is added to",
          smul(bias(x, b), s), bias(smul(x, s), smul(b, s)), biased(scalars="s")),
    # global average pooling is linear, and commutes with channel mixing
    Axiom("gap_ewadd", "global avg pooling distributes over ewadd",
          gap(add(x, y)), add(gap(x), gap(y)), global_pooled("x", "y"),
          where=_same_shape("x", "y")),
    Axiom("gap_smul", "global avg pooling commutes with scalar mul",
          gap(smul(x, s)), smul(gap(x), s), global_pooled("x", scalars="s")),
    Axiom("gap_concat", "global avg pooling distributes over a batch or channel concat",
          gap(concat(x, y)), concat(gap(x), gap(y)), global_pooled(axes=(0, 1)),
          where=_same_axes("x", "y", (2, 3))),
    Axiom("gap_bias", "global avg pooling commutes with a channel bias",
          gap(bias(x, b, axis=1)), bias(gap(x), b, axis=1), global_pooled("x", bias=True)),
    Axiom("gap_1x1", "global avg pooling of 1x1 images is the identity",
          gap(x), x, global_pooled("x"), where=((Dim("x", 2), 1), (Dim("x", 3), 1))),
    Axiom("gap_conv1x1", "global avg pooling commutes with a 1x1 conv (channel mixing)",
          gap(op("conv2d", x, w, stride=(1, 1), padding=PAD)),
          op("conv2d", gap(x), w, stride=(1, 1), padding=PAD), global_pooled_1x1,
          where=((Dim("w", 2), 1), (Dim("w", 3), 1))),
    # GELU and erf are elementwise: they distribute over concat and commute with transpose
    *[a for o in ("gelu", "erf") for a in (
        Axiom(f"{o}_concat", f"{o} distributes over concat",
              op(o, concat(x, y)), concat(op(o, x), op(o, y)), cat((("x", "y"),))),
        Axiom(f"{o}_transpose", f"{o} commutes with transpose",
              op(o, tr(x)), tr(op(o, x)), ew("x", ranks=(2,))))],
    # enlarge
    Axiom("enlarge_conv", "zero-padding a kernel (centred) does not change a same-padded conv",
          _conv(x, w, pad="same"), _conv(x, op("enlarge", w, r), pad="same"),
          conv(acts=("none", "relu"), pads=("same",), more=enlarged)),
]


BY_NAME = {a.name: a for a in AXIOMS}
assert len(BY_NAME) == len(AXIOMS), "axiom names must be unique"


def compiled() -> list[tuple[str, z3.BoolRef]]:
    """(name, formula) of every axiom, built once per process (Z3 terms are not picklable)."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = [(a.name, a.builder()) for a in AXIOMS + SHAPE_AXIOMS]
    return _COMPILED


_COMPILED = None
