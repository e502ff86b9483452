"""The model behind tests/fixtures/dnn_v1.dnnz: weights from integer arithmetic only, so the
same bits come out on every machine and torch version (no RNG, no training)."""

import numpy as np
import torch
from torch import nn


def _det(n: int, salt: int) -> np.ndarray:
    """n float64 values in [-0.1, 0.1) from a multiplicative hash (exact in float64)."""
    i = np.arange(n, dtype=np.uint64) + np.uint64(salt * 1_000_003)
    h = (i * np.uint64(2654435761)) % np.uint64(2**32)
    return (h.astype(np.float64) / 2**32 - 0.5) * 0.2


def fixture_model() -> nn.Module:
    """Dense fp32, 95%-pruned fp32, 8-level quantized fp32, a bf16 embedding and biases."""
    m = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 32))
    emb = nn.Embedding(40, 48).to(torch.bfloat16)
    m.add_module("emb", emb)
    ws = {}
    for j, (name, p) in enumerate(m.named_parameters()):
        a = _det(p.numel(), j).reshape(p.shape)
        if name == "1.weight":  # magnitude-pruned to 95%
            thr = np.quantile(np.abs(a), 0.95)
            a = np.where(np.abs(a) > thr, a, 0.0)
        if name == "2.weight":  # 8 uniform levels
            a = np.round(a / 0.2 * 7) / 7 * 0.2
        ws[name] = torch.from_numpy(a).to(p.dtype)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(ws[name])
    return m


def fixture_model_v2() -> nn.Module:
    """Format 2's fixture: the format-1 model plus float16-valued float32 weights (the narrow
    codec on a whole tensor) and a float32 embedding whose rows 8..119 are float16 values
    (its row split form)."""
    m = fixture_model()
    m.add_module("lin16", nn.Linear(64, 64))
    m.add_module("emb32", nn.Embedding(128, 40))
    with torch.no_grad():
        w = torch.from_numpy(_det(64 * 64, 11).reshape(64, 64)).to(torch.float16)
        m.lin16.weight.copy_(w.to(torch.float32))
        m.lin16.bias.copy_(torch.from_numpy(_det(64, 12)).to(torch.float32))
        e = torch.from_numpy(_det(128 * 40, 13).reshape(128, 40)).to(torch.float32)
        e[8:120] = e[8:120].to(torch.float16).to(torch.float32)
        m.emb32.weight.copy_(e)
    return m


def fixture_model_v4() -> nn.Module:
    """Format 4's fixture: format 2's model plus a Linear pruned the way
    ``torch.nn.utils.prune`` does it (weight times a 0/1 mask), which leaves ``-0.0`` for every
    pruned negative weight: the sparse codec's signed zeros."""
    m = fixture_model_v2()
    m.add_module("negz", nn.Linear(64, 64))
    with torch.no_grad():
        w = torch.from_numpy(_det(64 * 64, 14).reshape(64, 64)).to(torch.float32)
        mask = (w.abs() > 0.08).to(torch.float32)  # keeps about 20%
        m.negz.weight.copy_(w * mask)
        m.negz.bias.copy_(torch.from_numpy(_det(64, 15)).to(torch.float32))
    return m
