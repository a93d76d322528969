"""ResNet-50 and ResNeXt-50 (32x4d): bottleneck blocks; ResNeXt's 3x3 convs are grouped."""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(image=224, base=64, blocks=(3, 4, 6, 3), batch=1, classes=1000, groups=32,
                 group_width=4, batchnorm=False),
    "small": dict(image=64, base=16, blocks=(1, 2, 2, 1), batch=1, classes=100, groups=8,
                  group_width=4, batchnorm=False),
    "tiny": dict(image=32, base=4, blocks=(1, 1, 1, 1), batch=1, classes=10, groups=2,
                 group_width=2, batchnorm=False),
}


def _bottleneck(net: Net, x, mid: int, out: int, stride: int, groups: int):
    y = net.conv_relu(x, mid, 1)
    y = net.conv_relu(y, mid, 3, stride=stride, groups=groups)
    y = net.conv(y, out, 1)
    if stride != 1 or net.shape(x)[1] != out:
        x = net.conv(x, out, 1, stride=stride)
    return net.op("relu", net.op("ewadd", x, y))


def _build(c, next_mid) -> Graph:
    net = Net(batchnorm=c.batchnorm)
    x = net.input("image", (c.batch, 3, c.image, c.image))
    x = net.conv_relu(x, c.base, 7, stride=2)
    x = net.pool("max", x, 3, 2)
    for stage, blocks in enumerate(c.blocks):
        out = c.base * 4 * 2 ** stage
        for i in range(blocks):
            mid, groups = next_mid(stage)
            x = _bottleneck(net, x, mid, out, 2 if (i == 0 and stage > 0) else 1, groups)
    return net.build(net.classifier(x, c.classes))


def build_resnet50(size="full") -> Graph:
    c = config(SIZES, size)
    return _build(c, lambda stage: (c.base * 2 ** stage, 1))


def build_resnext50(size="full") -> Graph:
    """32 groups of width 4 in the first stage, doubling per stage (32x4d)."""
    c = config(SIZES, size)
    return _build(c, lambda stage: (c.groups * c.group_width * 2 ** stage, c.groups))
