"""SqueezeNet 1.1: fire modules whose 1x1 and 3x3 expand convs share the squeeze output."""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(image=224, width=1.0, batch=1, classes=1000),
    "small": dict(image=64, width=0.25, batch=1, classes=100),
    "tiny": dict(image=32, width=0.0625, batch=1, classes=10),
}
# (squeeze, expand) channels of the fire modules, None marks a 3x3/2 max pool
_PLAN = [(16, 64), (16, 64), None, (32, 128), (32, 128), None,
         (48, 192), (48, 192), (64, 256), (64, 256)]


def _fire(net: Net, x, squeeze: int, expand: int):
    s = net.conv_relu(x, squeeze, 1)
    return net.op("concat", net.conv_relu(s, expand, 1), net.conv_relu(s, expand, 3), axis=1)


def build(size="full") -> Graph:
    c = config(SIZES, size)
    ch = lambda n: max(1, round(n * c.width))  # noqa: E731
    net = Net()
    x = net.input("image", (c.batch, 3, c.image, c.image))
    x = net.conv_relu(x, ch(64), 3, stride=2, padding="valid")
    x = net.pool("max", x, 3, 2, "valid")
    for step in _PLAN:
        x = net.pool("max", x, 3, 2, "valid") if step is None else _fire(net, x, *map(ch, step))
    x = net.conv_relu(x, c.classes, 1)                    # the classifier conv
    n, k, h, w = net.shape(x)
    x = net.op("pool_avg", x, kernel=(h, w), stride=(1, 1), padding="valid")
    return net.build(net.op("reshape", x, shape=(n, k)))
