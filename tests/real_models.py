"""Real models of our own, built at test time with random weights and exported to ONNX.

`SUITE` names each model; `build(name, size)` returns `(onnx.ModelProto, feeds)`: the model as
`torch.onnx.export` writes it (the TorchScript exporter, `dynamo=False`, opset 17, eval mode, so
BatchNorm after a conv is folded into the conv's bias as in real exports, and constants folded),
with static input shapes and random weights from a fixed seed, and feeds of the dtypes the
model declares (float32 images; int64 `input_ids` and `attention_mask` for text models).

The classic CNNs are written here in plain torch with torchvision's architectures (its wheel does
not load beside the CPU build of torch); the transformers come from Hugging Face `transformers`
with random-weight configs (eager attention), wrapped so that forward takes its inputs
positionally in a fixed order and returns one tensor (the last hidden state or the logits).

Sizes: "full" is the real architecture and dimensions at batch 1 (224x224 images, sequences of
128 tokens); "small" is the same architecture family with tiny widths and depths and small inputs
(32x32 images, 16 tokens, hidden 32), for tests: all of them build and run in seconds.

BatchNorm running statistics, norm affines and ConvNeXt's layer scales are randomised too
(torch's defaults -- mean 0, var 1, scale 1e-6 -- would make folding trivial and residual
branches vanish), so that a wrong rewrite shows in the outputs.

    from real_models import SUITE, build     # tests/ on sys.path, as pytest puts it
    model, feeds = build("resnet18", "small")

torch and transformers are imported inside the functions only.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np

SIZES = ("full", "small")
SEED = 0
OPSET = 17


@dataclass(frozen=True)
class RealModel:
    name: str
    description: str       # what it is, one line
    family: str            # "cnn", "vision transformer", "text"
    make: Callable         # size -> (torch module, {input name: np.ndarray}, output name)
    full_note: str = ""    # how "full" departs from the released model, if it does
    requires: tuple = ("torch",)   # the packages `build` imports


# ------------------------------------------------------------------------------------------------
# helpers


def _nn():
    import torch
    from torch import nn
    return torch, nn


def _image(size: str, full: int = 224, small: int = 32, channels: int = 3) -> dict:
    hw = full if size == "full" else small
    rng = np.random.default_rng(SEED + 1)
    return {"image": rng.standard_normal((1, channels, hw, hw)).astype(np.float32)}


def _text(seq: int, vocab: int, mask: bool = True, extra: dict | None = None) -> dict:
    """input_ids in [0, vocab), and an attention mask with its last quarter padded out."""
    rng = np.random.default_rng(SEED + 2)
    feeds = {"input_ids": rng.integers(0, vocab, (1, seq)).astype(np.int64)}
    if mask:
        m = np.ones((1, seq), np.int64)
        m[:, seq - seq // 4:] = 0
        feeds["attention_mask"] = m
    feeds.update(extra or {})
    return feeds


def _randomize(module) -> None:
    """Random BatchNorm statistics and affines, LayerNorm affines and layer scales (seeded)."""
    torch, nn = _nn()
    g = torch.Generator().manual_seed(SEED + 3)

    def u(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(u(m.running_var.shape, 0.5, 1.5))
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and \
                    getattr(m, "weight", None) is not None:
                m.weight.copy_(u(m.weight.shape, 0.5, 1.5))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if hasattr(m, "layer_scale") and isinstance(m.layer_scale, nn.Parameter):
                m.layer_scale.copy_(u(m.layer_scale.shape, 0.1, 0.5))


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _c(channels: int, size: str, div: int = 8, least: int = 2) -> int:
    """A channel count at `size`: as is at full, divided by `div` at small."""
    return channels if size == "full" else max(least, channels // div)


# ------------------------------------------------------------------------------------------------
# CNNs in plain torch (torchvision's definitions)


def _resnet(size: str, bottleneck: bool, layers: tuple):
    torch, nn = _nn()

    class Basic(nn.Module):
        expansion = 1

        def __init__(self, inp, planes, stride=1, down=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.relu, self.downsample = nn.ReLU(inplace=True), down

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + idt)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inp, planes, stride=1, down=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inp, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu, self.downsample = nn.ReLU(inplace=True), down

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + idt)

    block = Bottleneck if bottleneck else Basic
    width, classes = (64, 1000) if size == "full" else (8, 10)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = width
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._layer(width, layers[0])
            self.layer2 = self._layer(width * 2, layers[1], 2)
            self.layer3 = self._layer(width * 4, layers[2], 2)
            self.layer4 = self._layer(width * 8, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(width * 8 * block.expansion, classes)

        def _layer(self, planes, blocks, stride=1):
            down = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                wide = planes * block.expansion
                down = nn.Sequential(nn.Conv2d(self.inplanes, wide, 1, stride, bias=False),
                                     nn.BatchNorm2d(wide))
            out = [block(self.inplanes, planes, stride, down)]
            self.inplanes = planes * block.expansion
            out += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*out)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet(), _image(size), "logits"


def resnet18(size):
    return _resnet(size, False, (2, 2, 2, 2) if size == "full" else (1, 1, 1, 1))


def resnet50(size):
    return _resnet(size, True, (3, 4, 6, 3) if size == "full" else (1, 1, 1, 1))


def squeezenet1_1(size):
    torch, nn = _nn()

    class Fire(nn.Module):
        def __init__(self, inp, sq, e1, e3):
            super().__init__()
            self.squeeze = nn.Conv2d(inp, sq, 1)
            self.expand1x1 = nn.Conv2d(sq, e1, 1)
            self.expand3x3 = nn.Conv2d(sq, e3, 3, padding=1)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.act(self.squeeze(x))
            return torch.cat([self.act(self.expand1x1(x)), self.act(self.expand3x3(x))], 1)

    c = lambda v: _c(v, size)  # noqa: E731
    classes = 1000 if size == "full" else 10

    def fire(i, s, e):
        return Fire(c(i), c(s), c(e), c(e))
    features = nn.Sequential(
        nn.Conv2d(3, c(64), 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(64, 16, 64), fire(128, 16, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(128, 32, 128), fire(256, 32, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(256, 48, 192), fire(384, 48, 192), fire(384, 64, 256), fire(512, 64, 256))
    classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(c(512), classes, 1),
                               nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1))
    return nn.Sequential(features, classifier), _image(size), "logits"


def googlenet(size):
    """Inception v1 (torchvision's GoogLeNet in eval mode: no auxiliary heads), with the paper's
    5x5 convolutions in the third branch (torchvision writes 3x3 there)."""
    torch, nn = _nn()

    class BasicConv(nn.Sequential):
        def __init__(self, inp, out, k, stride=1, padding=0):
            super().__init__(nn.Conv2d(inp, out, k, stride, padding, bias=False),
                             nn.BatchNorm2d(out, eps=0.001), nn.ReLU(inplace=True))

    c = lambda v: _c(v, size)  # noqa: E731

    class Inception(nn.Module):
        def __init__(self, inp, c1, c3r, c3, c5r, c5, pp):
            super().__init__()
            inp, c1, c3r, c3, c5r, c5, pp = map(c, (inp, c1, c3r, c3, c5r, c5, pp))
            self.branch1 = BasicConv(inp, c1, 1)
            self.branch2 = nn.Sequential(BasicConv(inp, c3r, 1), BasicConv(c3r, c3, 3, padding=1))
            self.branch3 = nn.Sequential(BasicConv(inp, c5r, 1), BasicConv(c5r, c5, 5, padding=2))
            self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                         BasicConv(inp, pp, 1))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x),
                              self.branch4(x)], 1)

    classes = 1000 if size == "full" else 10
    net = nn.Sequential(
        BasicConv(3, c(64), 7, 2, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
        BasicConv(c(64), c(64), 1), BasicConv(c(64), c(192), 3, padding=1),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Inception(480, 192, 96, 208, 16, 48, 64), Inception(512, 160, 112, 224, 24, 64, 64),
        Inception(512, 128, 128, 256, 24, 64, 64), Inception(512, 112, 144, 288, 32, 64, 64),
        Inception(528, 256, 160, 320, 32, 128, 128), nn.MaxPool2d(2, 2, ceil_mode=True),
        Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1), nn.Dropout(0.2), nn.Linear(c(1024), classes))
    return net, _image(size), "logits"


def densenet121(size):
    torch, nn = _nn()
    growth, blocks, init, bn_size = ((32, (6, 12, 24, 16), 64, 4) if size == "full"
                                     else (4, (2, 2, 2, 2), 8, 2))

    class DenseLayer(nn.Module):
        def __init__(self, inp):
            super().__init__()
            self.norm1, self.relu1 = nn.BatchNorm2d(inp), nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(inp, bn_size * growth, 1, bias=False)
            self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

        def forward(self, features):
            x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
            return self.conv2(self.relu2(self.norm2(x)))

    class DenseBlock(nn.ModuleList):
        def forward(self, x):
            features = [x]
            for layer in self:
                features.append(layer(features))
            return torch.cat(features, 1)

    class DenseNet(nn.Module):
        def __init__(self):
            super().__init__()
            mods = [nn.Conv2d(3, init, 7, 2, 3, bias=False), nn.BatchNorm2d(init),
                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
            ch = init
            for i, n in enumerate(blocks):
                mods.append(DenseBlock([DenseLayer(ch + k * growth) for k in range(n)]))
                ch += n * growth
                if i != len(blocks) - 1:
                    mods += [nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                             nn.Conv2d(ch, ch // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
                    ch //= 2
            mods.append(nn.BatchNorm2d(ch))
            self.features = nn.Sequential(*mods)
            self.classifier = nn.Linear(ch, 1000 if size == "full" else 10)

        def forward(self, x):
            x = torch.relu(self.features(x))
            return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1))

    return DenseNet(), _image(size), "logits"


def mobilenet_v2(size):
    torch, nn = _nn()
    width, last, classes = (1.0, 1280, 1000) if size == "full" else (0.25, 64, 10)
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
    if size != "full":
        settings = [(t, c, min(n, 2), s) for t, c, n, s in settings]

    def cbr(inp, out, k=3, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(inp, out, k, stride, (k - 1) // 2, groups=groups,
                                       bias=False), nn.BatchNorm2d(out), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, inp, out, stride, t):
            super().__init__()
            hidden = int(round(inp * t))
            self.use_res = stride == 1 and inp == out
            layers = [cbr(inp, hidden, 1)] if t != 1 else []
            layers += [cbr(hidden, hidden, 3, stride, hidden),
                       nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    inp = _make_divisible(32 * width)
    feats = [cbr(3, inp, stride=2)]
    for t, c, n, s in settings:
        out = _make_divisible(c * width)
        for i in range(n):
            feats.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
            inp = out
    feats.append(cbr(inp, last, 1))
    net = nn.Sequential(nn.Sequential(*feats), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1),
                        nn.Dropout(0.2), nn.Linear(last, classes))
    return net, _image(size), "logits"


def _vgg_like(features, flat, hidden, classes, pool):
    torch, nn = _nn()
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(pool), nn.Flatten(1),
                         nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(hidden, classes))


def vgg11(size):
    """VGG-11 (configuration A, no BatchNorm)."""
    torch, nn = _nn()
    layers, inp = [], 3
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(inp, _c(v, size), 3, padding=1), nn.ReLU(inplace=True)]
            inp = _c(v, size)
    full = size == "full"
    pool = (7, 7) if full else (1, 1)
    net = _vgg_like(nn.Sequential(*layers), inp * pool[0] * pool[1], 4096 if full else 64,
                    1000 if full else 10, pool)
    return net, _image(size), "logits"


def alexnet(size):
    torch, nn = _nn()
    c = lambda v: _c(v, size)  # noqa: E731
    features = nn.Sequential(
        nn.Conv2d(3, c(64), 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c(64), c(192), 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c(192), c(384), 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c(384), c(256), 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c(256), c(256), 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    full = size == "full"
    pool = (6, 6) if full else (1, 1)
    # torchvision's classifier: dropout first, then the two 4096 layers
    net = nn.Sequential(features, nn.AdaptiveAvgPool2d(pool), nn.Flatten(1), nn.Dropout(0.5),
                        nn.Linear(c(256) * pool[0] * pool[1], 4096 if full else 64),
                        nn.ReLU(inplace=True), nn.Dropout(0.5),
                        nn.Linear(4096 if full else 64, 4096 if full else 64),
                        nn.ReLU(inplace=True), nn.Linear(4096 if full else 64,
                                                         1000 if full else 10))
    return net, _image(size, small=64), "logits"


def convnext_tiny(size):
    torch, nn = _nn()
    F = nn.functional
    dims, depths, classes = (((96, 192, 384, 768), (3, 3, 9, 3), 1000) if size == "full"
                             else ((8, 16, 32, 64), (1, 1, 2, 1), 10))

    class LayerNorm2d(nn.LayerNorm):
        def forward(self, x):
            x = x.permute(0, 2, 3, 1)
            x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
            return x.permute(0, 3, 1, 2)

    class CNBlock(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), \
                nn.Linear(4 * dim, dim)
            self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)

        def forward(self, x):
            y = self.dwconv(x).permute(0, 2, 3, 1)
            y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))).permute(0, 3, 1, 2)
            return x + self.layer_scale * y       # stochastic depth: identity in eval

    mods = [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))]
    for i, (d, n) in enumerate(zip(dims, depths)):
        mods.append(nn.Sequential(*[CNBlock(d) for _ in range(n)]))
        if i + 1 < len(dims):
            mods.append(nn.Sequential(LayerNorm2d(d, eps=1e-6), nn.Conv2d(d, dims[i + 1], 2, 2)))
    net = nn.Sequential(nn.Sequential(*mods), nn.AdaptiveAvgPool2d(1),
                        LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                        nn.Linear(dims[-1], classes))
    return net, _image(size), "logits"


def vit_b_16(size):
    """torchvision's ViT in plain torch: patch conv, class token, learned positions, pre-norm
    encoder layers with nn.MultiheadAttention, the class token's head."""
    torch, nn = _nn()
    full = size == "full"
    image, patch, layers, hidden, heads, mlp, classes = (
        (224, 16, 12, 768, 12, 3072, 1000) if full else (32, 8, 2, 32, 2, 64, 10))
    seq = (image // patch) ** 2 + 1

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
            self.self_attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(), nn.Dropout(0.0),
                                     nn.Linear(mlp, hidden), nn.Dropout(0.0))

        def forward(self, x):
            y = self.ln_1(x)
            y, _ = self.self_attention(y, y, y, need_weights=False)
            x = x + y
            return x + self.mlp(self.ln_2(x))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_proj = nn.Conv2d(3, hidden, patch, patch)
            self.class_token = nn.Parameter(0.02 * torch.randn(1, 1, hidden))
            self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, seq, hidden))
            self.layers = nn.Sequential(*[Block() for _ in range(layers)])
            self.ln = nn.LayerNorm(hidden, eps=1e-6)
            self.head = nn.Linear(hidden, classes)

        def forward(self, x):
            x = self.conv_proj(x).reshape(1, hidden, seq - 1).permute(0, 2, 1)
            x = torch.cat([self.class_token.expand(1, -1, -1), x], 1) + self.pos_embedding
            return self.head(self.ln(self.layers(x))[:, 0])

    return ViT(), _image(size, small=image), "logits"


def shufflenet_v2(size):
    """ShuffleNet V2 x1.0: channel split, two branches, channel shuffle."""
    torch, nn = _nn()
    repeats, chans, classes = (((4, 8, 4), (24, 116, 232, 464, 1024), 1000) if size == "full"
                               else ((1, 2, 1), (8, 16, 32, 64, 128), 10))

    def shuffle(x, groups=2):
        b, c, h, w = x.shape
        return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)

    def dw(c, stride):
        return nn.Sequential(nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c))

    def pw(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    class Unit(nn.Module):
        def __init__(self, inp, out, stride):
            super().__init__()
            self.stride, bf = stride, out // 2
            self.branch1 = nn.Sequential(dw(inp, stride), pw(inp, bf)) if stride > 1 else None
            self.branch2 = nn.Sequential(pw(inp if stride > 1 else bf, bf), dw(bf, stride),
                                         pw(bf, bf))

        def forward(self, x):
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), 1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), 1)
            return shuffle(out)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(3, chans[0], 3, 2, 1, bias=False),
                                       nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True))
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages, inp = [], chans[0]
            for n, out in zip(repeats, chans[1:4]):
                stages.append(nn.Sequential(Unit(inp, out, 2), *[Unit(out, out, 1)
                                                                 for _ in range(n - 1)]))
                inp = out
            self.stages = nn.Sequential(*stages)
            self.conv5 = pw(inp, chans[-1])
            self.fc = nn.Linear(chans[-1], classes)

        def forward(self, x):
            x = self.conv5(self.stages(self.maxpool(self.conv1(x))))
            return self.fc(x.mean([2, 3]))

    return Net(), _image(size), "logits"


def efficientnet_b0(size):
    """EfficientNet-B0: MBConv blocks with squeeze-and-excitation and SiLU."""
    torch, nn = _nn()
    full = size == "full"
    width = 1.0 if full else 0.25
    cfg = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
           (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
    if not full:
        cfg = [(e, k, s, i, o, min(n, 2)) for e, k, s, i, o, n in cfg]
    ch = lambda v: _make_divisible(v * width)  # noqa: E731

    def cbs(i, o, k=1, stride=1, groups=1, act=True):
        mods = [nn.Conv2d(i, o, k, stride, (k - 1) // 2, groups=groups, bias=False),
                nn.BatchNorm2d(o)]
        return nn.Sequential(*mods, nn.SiLU(inplace=True)) if act else nn.Sequential(*mods)

    class SE(nn.Module):
        def __init__(self, c, sq):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, sq, 1), nn.Conv2d(sq, c, 1)

        def forward(self, x):
            s = nn.functional.adaptive_avg_pool2d(x, 1)
            return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))

    class MBConv(nn.Module):
        def __init__(self, e, k, stride, i, o):
            super().__init__()
            hidden = _make_divisible(i * e)
            self.use_res = stride == 1 and i == o
            layers = [cbs(i, hidden)] if hidden != i else []
            layers += [cbs(hidden, hidden, k, stride, hidden), SE(hidden, max(1, i // 4)),
                       cbs(hidden, o, act=False)]
            self.block = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.block(x) if self.use_res else self.block(x)

    mods = [cbs(3, ch(32), 3, 2)]
    for e, k, s, i, o, n in cfg:
        for j in range(n):
            mods.append(MBConv(e, k, s if j == 0 else 1, ch(i) if j == 0 else ch(o), ch(o)))
    last = 4 * ch(320)
    mods.append(cbs(ch(320), last))
    net = nn.Sequential(nn.Sequential(*mods), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                        nn.Dropout(0.2), nn.Linear(last, 1000 if full else 10))
    return net, _image(size), "logits"


# ------------------------------------------------------------------------------------------------
# Hugging Face transformers, random weights


def _hf_wrap(model, inputs: tuple, field: str):
    """A module whose forward takes `inputs` positionally, in that order, and returns the
    model output's `field` (one tensor)."""
    torch, nn = _nn()

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            out = self.model(**dict(zip(inputs, args)))
            return getattr(out, field)

    return Wrapped()


SMALL_TEXT = dict(hidden=32, layers=2, heads=2, ff=64, vocab=100, seq=16)
FULL_SEQ = 128


def _text_dims(size):
    if size == "full":
        return FULL_SEQ
    return SMALL_TEXT["seq"]


def bert(size):
    """BertModel, bert-base-uncased's configuration (no pooler): the last hidden state."""
    import transformers as tf
    s = SMALL_TEXT
    kw = {} if size == "full" else dict(hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                                        num_attention_heads=s["heads"], intermediate_size=s["ff"],
                                        vocab_size=s["vocab"], max_position_embeddings=64)
    cfg = tf.BertConfig(**kw)
    cfg._attn_implementation = "eager"
    model = tf.BertModel(cfg, add_pooling_layer=False)
    inputs = ("input_ids", "attention_mask")
    return (_hf_wrap(model, inputs, "last_hidden_state"), _text(_text_dims(size), cfg.vocab_size),
            "last_hidden_state")


def distilbert(size):
    """DistilBertModel, distilbert-base-uncased's configuration: the last hidden state."""
    import transformers as tf
    s = SMALL_TEXT
    kw = {} if size == "full" else dict(dim=s["hidden"], n_layers=s["layers"], n_heads=s["heads"],
                                        hidden_dim=s["ff"], vocab_size=s["vocab"],
                                        max_position_embeddings=64)
    cfg = tf.DistilBertConfig(**kw)
    cfg._attn_implementation = "eager"
    model = tf.DistilBertModel(cfg)
    inputs = ("input_ids", "attention_mask")
    return (_hf_wrap(model, inputs, "last_hidden_state"), _text(_text_dims(size), cfg.vocab_size),
            "last_hidden_state")


def gpt2(size):
    """GPT2Model, gpt2 (124M)'s configuration, use_cache=False: the last hidden state.  (Not
    GPT2LMHeadModel: its export writes the tied embedding twice, once transposed for the head,
    652 MB at full size.)"""
    import transformers as tf
    s = SMALL_TEXT
    kw = {} if size == "full" else dict(n_embd=s["hidden"], n_layer=s["layers"], n_head=s["heads"],
                                        vocab_size=s["vocab"], n_positions=64,
                                        bos_token_id=s["vocab"] - 1, eos_token_id=s["vocab"] - 1)
    cfg = tf.GPT2Config(use_cache=False, **kw)
    cfg._attn_implementation = "eager"
    model = tf.GPT2Model(cfg)
    inputs = ("input_ids", "attention_mask")
    return (_hf_wrap(model, inputs, "last_hidden_state"), _text(_text_dims(size), cfg.vocab_size),
            "last_hidden_state")


def t5(size):
    """T5Model (encoder and decoder), t5-small's configuration, use_cache=False: the decoder's
    last hidden state, from input_ids, attention_mask and decoder_input_ids."""
    import transformers as tf
    s = SMALL_TEXT
    kw = {} if size == "full" else dict(d_model=s["hidden"], d_kv=s["hidden"] // s["heads"],
                                        d_ff=s["ff"], num_layers=s["layers"],
                                        num_heads=s["heads"], vocab_size=s["vocab"],
                                        relative_attention_num_buckets=8,
                                        relative_attention_max_distance=16)
    if size == "full":   # t5-small
        kw = dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8, vocab_size=32128)
    cfg = tf.T5Config(use_cache=False, **kw)
    cfg._attn_implementation = "eager"
    model = tf.T5Model(cfg)
    seq = _text_dims(size)
    rng = np.random.default_rng(SEED + 4)
    dec = {"decoder_input_ids": rng.integers(0, cfg.vocab_size, (1, seq)).astype(np.int64)}
    inputs = ("input_ids", "attention_mask", "decoder_input_ids")
    return (_hf_wrap(model, inputs, "last_hidden_state"), _text(seq, cfg.vocab_size, extra=dec),
            "last_hidden_state")


def hf_vit(size):
    """ViTModel, google/vit-base-patch16-224's configuration (no pooler): the last hidden
    state, from pixel_values."""
    import transformers as tf
    kw = {} if size == "full" else dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, image_size=32, patch_size=8)
    cfg = tf.ViTConfig(**kw)
    cfg._attn_implementation = "eager"
    model = tf.ViTModel(cfg, add_pooling_layer=False)
    feeds = _image(size)
    feeds = {"pixel_values": feeds["image"]}
    return _hf_wrap(model, ("pixel_values",), "last_hidden_state"), feeds, "last_hidden_state"


# ------------------------------------------------------------------------------------------------
# the suite


def _suite() -> dict[str, RealModel]:
    rows = [
        ("resnet18", "ResNet-18: basic residual blocks (2,2,2,2), BatchNorm folded into convs",
         "cnn", resnet18, ""),
        ("resnet50", "ResNet-50: bottleneck residual blocks (3,4,6,3)", "cnn", resnet50, ""),
        ("squeezenet1_1", "SqueezeNet 1.1: Fire modules (squeeze 1x1, expand 1x1 + 3x3, concat)",
         "cnn", squeezenet1_1, ""),
        ("googlenet", "GoogLeNet / Inception v1: four-branch inception blocks, no aux heads",
         "cnn", googlenet, "the paper's 5x5 convs in the third branch (torchvision has 3x3)"),
        ("densenet121", "DenseNet-121: dense blocks (6,12,24,16), growth 32, pre-activation BN",
         "cnn", densenet121, ""),
        ("mobilenet_v2", "MobileNetV2: inverted residuals, depthwise convs, ReLU6",
         "cnn", mobilenet_v2, ""),
        ("vgg11", "VGG-11 (config A): eight 3x3 convs, 4096-wide classifier", "cnn", vgg11,
         "133M parameters: a 531 MB file at full size"),
        ("alexnet", "AlexNet: 11x11/5x5/3x3 convs, 4096-wide classifier", "cnn", alexnet, ""),
        ("convnext_tiny", "ConvNeXt-T: 7x7 depthwise conv, LayerNorm, MLP, layer scale",
         "cnn", convnext_tiny, ""),
        ("shufflenet_v2", "ShuffleNet V2 x1.0: channel split, two branches, channel shuffle",
         "cnn", shufflenet_v2, ""),
        ("efficientnet_b0", "EfficientNet-B0: MBConv with squeeze-and-excitation, SiLU",
         "cnn", efficientnet_b0, ""),
        ("vit_b_16", "ViT-B/16 in plain torch (torchvision's): nn.MultiheadAttention encoder",
         "vision transformer", vit_b_16, ""),
        ("hf_vit", "HF ViTModel, vit-base-patch16-224 config: last hidden state",
         "vision transformer", hf_vit, ""),
        ("bert", "HF BertModel, bert-base config, seq 128: last hidden state", "text", bert, ""),
        ("distilbert", "HF DistilBertModel, distilbert-base config, seq 128: last hidden state",
         "text", distilbert, ""),
        ("gpt2", "HF GPT2Model, gpt2 (124M) config, seq 128, no cache: last hidden state",
         "text", gpt2, "GPT2Model, not GPT2LMHeadModel: the head's export copies the tied "
         "embedding transposed (652 MB)"),
        ("t5", "HF T5Model (encoder + decoder), t5-small config, seq 128: decoder hidden state",
         "text", t5, "t5-small (60M), not t5-base"),
    ]
    hf = {"hf_vit", "bert", "distilbert", "gpt2", "t5"}
    return {name: RealModel(name, desc, fam, make, note,
                            ("torch", "transformers") if name in hf else ("torch",))
            for name, desc, fam, make, note in rows}


SUITE: dict[str, RealModel] = _suite()


def export(module, feeds: dict, output: str):
    """`torch.onnx.export` (TorchScript, opset 17, eval, constants folded) of `module` on
    `feeds` (its inputs, in order) -> onnx.ModelProto."""
    import warnings

    import onnx
    import torch
    module.eval()
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    buf = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's eval fast path is one fused aten op that ONNX cannot spell
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buf, input_names=list(feeds), output_names=[output],
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return onnx.load_from_string(buf.getvalue())


def torch_outputs(name: str, size: str = "small"):
    """(module in eval mode, feeds, output name): what `build` exports."""
    import torch
    if name not in SUITE:
        raise KeyError(f"unknown model {name!r} (one of {', '.join(SUITE)})")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r} (one of {', '.join(SIZES)})")
    torch.manual_seed(SEED)
    module, feeds, output = SUITE[name].make(size)
    _randomize(module)
    return module.eval(), feeds, output


def build(name: str, size: str = "small"):
    """(onnx.ModelProto, feeds) of SUITE[name] at `size` ("full" or "small")."""
    module, feeds, output = torch_outputs(name, size)
    return export(module, feeds, output), feeds


def build_with_reference(name: str, size: str = "small"):
    """(onnx.ModelProto, feeds, torch's output on the feeds as np.ndarray): `build`, and what
    the module computes before export, to check the export itself."""
    import torch
    module, feeds, output = torch_outputs(name, size)
    with torch.no_grad():
        want = module(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    return export(module, feeds, output), feeds, want


def parameters(name: str, size: str = "small") -> int:
    """How many parameters the torch module has."""
    module, _, _ = torch_outputs(name, size)
    return sum(p.numel() for p in module.parameters())


__all__ = ["SUITE", "SIZES", "RealModel", "build", "build_with_reference", "export", "parameters",
           "torch_outputs"]
