"""NasNet-A as in TASO's nasnet_a.py: stacks of normal cells and a reduction cell, built from
separable convs (depthwise conv then 1x1), pools and pairwise ewadds, joined by concat."""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(image=224, channels=128, stages=3, cells=5, batch=1),
    "small": dict(image=64, channels=32, stages=2, cells=2, batch=1),
    "tiny": dict(image=32, channels=4, stages=1, cells=1, batch=1),
}


def build(size="full") -> Graph:
    c = config(SIZES, size)
    net = Net()
    add = lambda a, b: net.op("ewadd", a, b)  # noqa: E731

    def squeeze(x, co):
        return net.conv_relu(x, co, 1)

    def fit(cur, x):  # bring `x` to cur's channels (and resolution)
        if net.shape(x)[2] == net.shape(cur)[2]:
            return squeeze(x, net.shape(cur)[1])
        return net.conv_relu(x, net.shape(cur)[1], 3, stride=2)

    def sep(x, co, k, stride=1):  # separable conv: depthwise k x k, then pointwise 1x1
        y = net.conv(x, co, k, stride=stride, groups=net.shape(x)[1])
        return net.conv(y, co, 1)

    avg = lambda x, s=1: net.pool("avg", x, 3, s)  # noqa: E731
    mx = lambda x, s=1: net.pool("max", x, 3, s)  # noqa: E731

    def normal_cell(prev, cur, co):
        cur = squeeze(cur, co)
        prev = fit(cur, prev)
        pairs = [(sep(cur, co, 3), cur), (sep(prev, co, 3), sep(cur, co, 3)),
                 (avg(cur), prev), (avg(prev), avg(prev)), (sep(prev, co, 3), sep(prev, co, 3))]
        return net.op("concat", *(add(a, b) for a, b in pairs), axis=1)

    def reduction_cell(prev, cur, co):
        cur = squeeze(cur, co)
        prev = fit(cur, prev)
        o0 = add(sep(prev, co, 7, 2), sep(cur, co, 5, 2))
        o1 = add(mx(cur, 2), sep(prev, co, 7, 2))
        o2 = add(avg(cur, 2), sep(prev, co, 5, 2))
        o3 = add(mx(o0), o1)
        o4 = add(avg(o0), o1)
        return net.op("concat", o0, o1, o2, o3, o4, axis=1)

    x = net.input("image", (c.batch, 3, c.image, c.image))
    x = net.conv_relu(x, 64 if c.channels >= 64 else c.channels, 7, stride=2)
    x = net.pool("max", x, 3, 2)
    co = c.channels
    for _ in range(c.stages):
        prev = cur = x
        for _ in range(c.cells):
            prev, cur = cur, normal_cell(prev, cur, co)
        co *= 2
        x = reduction_cell(prev, cur, co)
    return net.build(x)
