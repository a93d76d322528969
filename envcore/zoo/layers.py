"""Building blocks the zoo's models share: a GraphBuilder that names its weights, plus layers.

Layers emit the unfused form real frameworks export (conv, then relu; matmul, then bias_add) so
the optimizer, not the builder, finds the fusions.  Batchnorm is left out by default: like TASO's
models these are inference graphs whose batchnorms are folded into the conv weights.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping

from envcore.graph import Graph, GraphBuilder, Ref


def config(sizes: Mapping[str, dict], size: str | Mapping) -> SimpleNamespace:
    """The named size ("full", "small", "tiny") or explicit dims overriding "full"."""
    if isinstance(size, str):
        if size not in sizes:
            raise ValueError(f"unknown size {size!r} (known: {', '.join(sizes)})")
        return SimpleNamespace(**sizes[size])
    unknown = set(size) - set(sizes["full"])
    if unknown:
        raise ValueError(f"unknown size knob(s) {sorted(unknown)} (known: {sorted(sizes['full'])})")
    return SimpleNamespace(**{**sizes["full"], **size})


def pair(k) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else tuple(k)


class Net:
    """GraphBuilder plus layer helpers; every weight gets a unique, readable name."""

    def __init__(self, batchnorm: bool = False):
        self.b = GraphBuilder()
        self.batchnorm = batchnorm
        self._count: dict[str, int] = {}

    # -- leaves -------------------------------------------------------------------------------
    def input(self, name: str, shape) -> Ref:
        return self.b.input(name, tuple(shape))

    def weight(self, kind: str, shape) -> Ref:
        k = self._count.get(kind, 0)
        self._count[kind] = k + 1
        return self.b.weight(f"{kind}{k}", tuple(shape))

    def shape(self, x: Ref) -> tuple[int, ...]:
        return self.b.shape(x)

    def op(self, name: str, *xs: Ref, **params):
        return self.b.add(name, *xs, **params)

    def build(self, *outputs: Ref) -> Graph:
        return self.b.build(outputs)

    # -- convolutional layers -----------------------------------------------------------------
    def conv(self, x: Ref, co: int, k=1, stride=1, groups: int = 1, padding: str = "same") -> Ref:
        kh, kw = pair(k)
        ci = self.shape(x)[1]
        w = self.weight("conv", (co, ci // groups, kh, kw))
        y = self.op("conv2d", x, w, stride=pair(stride), padding=padding, groups=groups)
        if self.batchnorm:
            y = self.op("batchnorm", y, *(self.weight(f"bn_{p}", (co,))
                                          for p in ("scale", "bias", "mean", "var")))
        return y

    def conv_relu(self, x: Ref, co: int, k=1, stride=1, groups: int = 1,
                  padding: str = "same") -> Ref:
        return self.op("relu", self.conv(x, co, k, stride, groups, padding))

    def pool(self, kind: str, x: Ref, k=3, stride=1, padding: str = "same") -> Ref:
        return self.op(f"pool_{kind}", x, kernel=pair(k), stride=pair(stride), padding=padding)

    def global_avg_pool(self, x: Ref) -> Ref:
        """(N, C, H, W) -> (N, C): average over the whole map, then drop the 1x1."""
        n, c, h, w = self.shape(x)
        return self.op("reshape", self.op("pool_global_avg", x), shape=(n, c))

    # -- dense layers -------------------------------------------------------------------------
    def linear(self, x: Ref, dout: int, bias: bool = True) -> Ref:
        """x (..., din) @ W (din, dout) [+ b]; x must be 2-D (our matmul does not broadcast)."""
        din = self.shape(x)[-1]
        y = self.op("matmul", x, self.weight("fc", (din, dout)))
        return self.op("bias_add", y, self.weight("fc_b", (dout,)),
                       axis=len(self.shape(y)) - 1) if bias else y

    def classifier(self, x: Ref, classes: int) -> Ref:
        return self.linear(self.global_avg_pool(x), classes)

    def attention(self, x: Ref, batch: int, seq: int, heads: int) -> Ref:
        """Multi-head self-attention on x (batch*seq, d): Q, K, V projections share x."""
        d = self.shape(x)[1]
        dk = d // heads

        def split_heads(t: Ref, perm) -> Ref:  # (b*s, d) -> (b*h, s, dk) or (b*h, dk, s)
            t = self.op("reshape", t, shape=(batch, seq, heads, dk))
            t = self.op("transpose", t, perm=perm)
            last = (seq, dk) if perm[-1] == 3 else (dk, seq)
            return self.op("reshape", t, shape=(batch * heads,) + last)

        q = split_heads(self.linear(x, d), (0, 2, 1, 3))
        k = split_heads(self.linear(x, d), (0, 2, 3, 1))
        v = split_heads(self.linear(x, d), (0, 2, 1, 3))
        logits = self.op("matmul", q, k)
        logits = self.op("scalar_mul", logits, self.weight("attn_scale", ()))  # 1/sqrt(dk)
        probs = self.op("softmax", logits, axis=2)
        ctx = self.op("matmul", probs, v)                                        # (b*h, s, dk)
        ctx = self.op("reshape", ctx, shape=(batch, heads, seq, dk))
        ctx = self.op("transpose", ctx, perm=(0, 2, 1, 3))
        ctx = self.op("reshape", ctx, shape=(batch * seq, d))
        return self.linear(ctx, d)

    def encoder_layer(self, x: Ref, batch: int, seq: int, heads: int, ffn: int,
                      gelu: bool = False) -> Ref:
        """Transformer block (no layernorm: the IR has none, as in TASO's BERT)."""
        d = self.shape(x)[1]
        x = self.op("ewadd", x, self.attention(x, batch, seq, heads))
        h = self.linear(x, ffn)
        if gelu:  # x * sigmoid(1.702 x), the sigmoid approximation of GELU
            h = self.op("ewmul", h, self.op("sigmoid", self.op(
                "scalar_mul", h, self.weight("gelu_k", ()))))
        else:
            h = self.op("relu", h)
        return self.op("ewadd", x, self.linear(h, d))
