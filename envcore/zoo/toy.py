"""A tiny model for tests: every pattern the optimizer looks for, in a dozen ops.

Two convs share an input (mergeable), each is followed by an unfused relu, the branches are
concatenated; two matmuls share an input; an elementwise tail joins the results.
"""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(channels=8, image=8, hidden=16, batch=2),
    "small": dict(channels=4, image=6, hidden=8, batch=1),
    "tiny": dict(channels=2, image=4, hidden=4, batch=1),
}


def build(size="full") -> Graph:
    c = config(SIZES, size)
    net = Net()
    img = net.input("image", (c.batch, c.channels, c.image, c.image))
    a = net.conv_relu(img, c.channels, 3)
    b = net.conv_relu(img, c.channels, 3)
    y = net.op("concat", a, b, axis=1)
    y = net.pool("avg", y, 3, 1)
    flat = net.op("reshape", y, shape=(c.batch, 2 * c.channels * c.image * c.image))
    p = net.linear(flat, c.hidden, bias=False)
    q = net.linear(flat, c.hidden, bias=False)
    out = net.op("ewadd", net.op("relu", p), net.op("tanh", q))
    return net.build(out)
