"""BERT encoder at TASO's dimensions: 8 layers, hidden 1024, 16 heads, seq 64, batch 16."""
from __future__ import annotations

from envcore.graph import Graph
from envcore.zoo.layers import Net, config

SIZES = {
    "full": dict(layers=8, hidden=1024, heads=16, seq=64, batch=16, ffn=4096),
    "small": dict(layers=2, hidden=256, heads=4, seq=32, batch=2, ffn=1024),
    "tiny": dict(layers=1, hidden=16, heads=2, seq=4, batch=2, ffn=32),
}


def build(size="full") -> Graph:
    c = config(SIZES, size)
    net = Net()
    x = net.input("x", (c.batch * c.seq, c.hidden))   # token embeddings, (batch*seq, hidden)
    for _ in range(c.layers):
        x = net.encoder_layer(x, c.batch, c.seq, c.heads, c.ffn)
    return net.build(x)
