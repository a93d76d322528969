"""NasRNN at TASO's dimensions (hidden 512, length 5): the NAS-discovered recurrent cell.

Each step computes eight `x @ Wi + h @ Ui` combinations (eight matmuls share x, eight share h:
the pattern TASO merges into one wide matmul) and mixes them with relu/sigmoid/tanh, ewadd and
ewmul exactly as TASO's nasrnn.py.
"""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(hidden=512, length=5, batch=1),
    "small": dict(hidden=128, length=3, batch=1),
    "tiny": dict(hidden=8, length=2, batch=1),
}


def _cell(net: Net, h, x):
    hid = net.shape(h)[1]
    t = [net.op("ewadd", net.op("matmul", x, net.weight("w_x", (net.shape(x)[1], hid))),
                net.op("matmul", h, net.weight("w_h", (hid, hid)))) for _ in range(8)]
    f = lambda name, a: net.op(name, a)  # noqa: E731
    add = lambda a, b: net.op("ewadd", a, b)  # noqa: E731
    mul = lambda a, b: net.op("ewmul", a, b)  # noqa: E731
    m0 = add(f("relu", t[0]), f("sigmoid", t[3]))
    m1 = add(f("sigmoid", t[1]), f("tanh", t[2]))
    m2 = mul(f("sigmoid", t[4]), f("tanh", t[5]))
    m3 = mul(f("sigmoid", t[6]), f("relu", t[7]))
    m4 = add(f("sigmoid", m1), f("tanh", m2))
    m5 = mul(f("tanh", m0), f("tanh", m3))
    m6 = mul(f("tanh", m4), f("tanh", m5))
    return f("tanh", m6)


def build(size="full") -> Graph:
    c = config(SIZES, size)
    net = Net()
    h = net.input("h0", (c.batch, c.hidden))
    for step in range(c.length):
        h = _cell(net, h, net.input(f"x{step}", (c.batch, c.hidden)))
    return net.build(h)
