"""Inception-v3 (torchvision's layout): parallel branches over one input, joined by concat; the
branches' leading 1x1 convs share that input, and 1x7/7x1 and 1x3/3x1 factorised convs."""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(image=299, width=1.0, repeats=(3, 4, 2), batch=1, classes=1000),
    "small": dict(image=75, width=0.25, repeats=(2, 2, 1), batch=1, classes=100),
    "tiny": dict(image=75, width=0.0625, repeats=(1, 1, 1), batch=1, classes=10),
}


def build(size="full") -> Graph:
    c = config(SIZES, size)
    ch = lambda n: max(1, round(n * c.width))  # noqa: E731
    net = Net()
    cr = lambda x, co, k, stride=1, padding="same": net.conv_relu(  # noqa: E731
        x, ch(co), k, stride=stride, padding=padding)
    cat = lambda *xs: net.op("concat", *xs, axis=1)  # noqa: E731
    avg_branch = lambda x, co: cr(net.pool("avg", x, 3, 1), co, 1)  # noqa: E731

    def block_a(x, pool_features):
        b5 = cr(cr(x, 48, 1), 64, 5)
        b3 = cr(cr(cr(x, 64, 1), 96, 3), 96, 3)
        return cat(cr(x, 64, 1), b5, b3, avg_branch(x, pool_features))

    def block_b(x):  # grid reduction 35 -> 17
        b3dbl = cr(cr(cr(x, 64, 1), 96, 3), 96, 3, 2, "valid")
        return cat(cr(x, 384, 3, 2, "valid"), b3dbl, net.pool("max", x, 3, 2, "valid"))

    def block_c(x, c7):
        b7 = cr(cr(cr(x, c7, 1), c7, (1, 7)), 192, (7, 1))
        b7dbl = cr(x, c7, 1)
        for co, k in ((c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))):
            b7dbl = cr(b7dbl, co, k)
        return cat(cr(x, 192, 1), b7, b7dbl, avg_branch(x, 192))

    def block_d(x):  # grid reduction 17 -> 8
        b3 = cr(cr(x, 192, 1), 320, 3, 2, "valid")
        b7 = cr(cr(cr(cr(x, 192, 1), 192, (1, 7)), 192, (7, 1)), 192, 3, 2, "valid")
        return cat(b3, b7, net.pool("max", x, 3, 2, "valid"))

    def block_e(x):
        b3 = cr(x, 384, 1)
        b3dbl = cr(cr(x, 448, 1), 384, 3)
        return cat(cr(x, 320, 1), cat(cr(b3, 384, (1, 3)), cr(b3, 384, (3, 1))),
                   cat(cr(b3dbl, 384, (1, 3)), cr(b3dbl, 384, (3, 1))), avg_branch(x, 192))

    x = net.input("image", (c.batch, 3, c.image, c.image))
    x = cr(x, 32, 3, 2, "valid")
    x = cr(x, 32, 3, 1, "valid")
    x = cr(x, 64, 3)
    x = net.pool("max", x, 3, 2, "valid")
    x = cr(x, 80, 1)
    x = cr(x, 192, 3, 1, "valid")
    x = net.pool("max", x, 3, 2, "valid")
    ra, rc, re = c.repeats
    for i in range(ra):
        x = block_a(x, 32 if i == 0 else 64)
    x = block_b(x)
    for i in range(rc):
        x = block_c(x, (128, 160, 160, 192)[min(i, 3)])
    x = block_d(x)
    for _ in range(re):
        x = block_e(x)
    return net.build(net.classifier(x, c.classes))
