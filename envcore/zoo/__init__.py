"""The model zoo: the models TASO, TENSAT and X-RLflow evaluated, at TASO's dimensions.

`ZOO[name](size=...)` builds one; `size` is "full" (the paper's dimensions), "small", "tiny"
(milliseconds to build and evaluate, for tests) or a dict of explicit dims overriding "full".
Trained parameters are `weight` leaves and model inputs are `input` leaves; there are no trained
values (use `envcore.execute.random_values`).
"""
from __future__ import annotations

from typing import Callable, Mapping

from envcore.graph import Graph
from envcore.zoo import bert, inception, nasnet, nasrnn, resnet, squeezenet, toy, vit

ZOO: dict[str, Callable[..., Graph]] = {
    "bert": bert.build,
    "nasrnn": nasrnn.build,
    "resnet50": resnet.build_resnet50,
    "resnext50": resnet.build_resnext50,
    "inception_v3": inception.build,
    "squeezenet": squeezenet.build,
    "nasnet_a": nasnet.build,
    "vit": vit.build,
    "toy": toy.build,
}
SIZES = ("full", "small", "tiny")


def build(name: str, size: str | Mapping = "full") -> Graph:
    """Builds zoo model `name`; raises KeyError for an unknown name, ValueError for a bad size."""
    try:
        builder = ZOO[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (zoo: {', '.join(ZOO)})") from None
    return builder(size=size)


__all__ = ["ZOO", "SIZES", "build"]
