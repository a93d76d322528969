"""ViT-Base/16: 16x16 patches of a 224 image, 12 layers, hidden 768, 12 heads, MLP 3072."""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(image=224, patch=16, layers=12, hidden=768, heads=12, mlp=3072, batch=1,
                 classes=1000),
    "small": dict(image=64, patch=16, layers=2, hidden=128, heads=4, mlp=512, batch=1,
                  classes=100),
    "tiny": dict(image=16, patch=8, layers=1, hidden=16, heads=2, mlp=32, batch=1, classes=10),
}


def build(size="full") -> Graph:
    c = config(SIZES, size)
    net = Net()
    img = net.input("image", (c.batch, 3, c.image, c.image))
    # patch embedding: one strided conv, then (B, D, P) -> (B, P, D)
    p = net.conv(img, c.hidden, k=c.patch, stride=c.patch, padding="valid")
    n = (c.image // c.patch) ** 2
    tokens = net.op("transpose", net.op("reshape", p, shape=(c.batch, c.hidden, n)),
                    perm=(0, 2, 1))
    cls = net.weight("cls_token", (c.batch, 1, c.hidden))
    tokens = net.op("concat", cls, tokens, axis=1)                       # (B, 1+P, D)
    tokens = net.op("ewadd", tokens, net.weight("pos_embed", (c.batch, n + 1, c.hidden)))
    seq = n + 1
    x = net.op("reshape", tokens, shape=(c.batch * seq, c.hidden))
    for _ in range(c.layers):
        x = net.encoder_layer(x, c.batch, seq, c.heads, c.mlp, gelu=True)
    x = net.op("reshape", x, shape=(c.batch, seq, c.hidden))
    head, _ = net.op("split", x, axis=1, sizes=(1, n))                   # the class token
    return net.build(net.linear(net.op("reshape", head, shape=(c.batch, c.hidden)), c.classes))
