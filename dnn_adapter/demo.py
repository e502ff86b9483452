"""The demo: train a small CNN on scikit-learn's digits, prune and quantize copies, compress all
three, check outputs are identical and accuracy unchanged, print the report tables."""

from __future__ import annotations

import copy
import os
import tempfile
import time

import torch

from .io import load, save
from .models import DigitsCNN
from .reporting import report
from .wrapping import WrapConfig, unwrap, wrap


def digits_data(seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    ntr = int(0.8 * len(y))
    return x[perm[:ntr]], y[perm[:ntr]], x[perm[ntr:]], y[perm[ntr:]]


def train_digits_cnn(epochs: int = 8, seed: int = 0, width: int = 32):
    """A DigitsCNN trained in a few seconds; returns (model, test_x, test_y)."""
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits_data(seed)
    model = DigitsCNN(width)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(ytr))
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), xte, yte


def prune_copy(model, amount: float = 0.8, finetune_epochs: int = 2, seed: int = 0):
    """Magnitude pruning per conv/linear weight (smallest |w| set to +0.0), then a short
    fine-tune with the masks held fixed."""
    m = copy.deepcopy(model)
    masks = {}
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                w = mod.weight
                k = int(amount * w.numel())
                thr = w.abs().flatten().kthvalue(max(k, 1)).values
                masks[mod] = w.abs() > thr
                w.copy_(torch.where(masks[mod], w, torch.zeros_like(w)))
    if finetune_epochs:
        xtr, ytr, _, _ = digits_data(seed)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        m.train()
        for _ in range(finetune_epochs):
            for i in range(0, len(ytr), 64):
                loss = torch.nn.functional.cross_entropy(m(xtr[i : i + 64]), ytr[i : i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for mod, mk in masks.items():
                        mod.weight.copy_(torch.where(mk, mod.weight, torch.zeros_like(mod.weight)))
        m.eval()
    return m


def quantize_copy(model, levels: int = 16):
    """Uniform per-tensor weight quantization to *levels* values (kept as float32)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                w = mod.weight
                lo, hi = w.min(), w.max()
                step = (hi - lo) / (levels - 1)
                w.copy_(torch.round((w - lo) / step) * step + lo)
    return m


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(epochs: int = 8, out=print) -> int:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t0 = time.perf_counter()
    base, xte, yte = train_digits_cnn(epochs)
    out(
        f"trained DigitsCNN on sklearn digits in {time.perf_counter() - t0:.1f}s "
        f"(test accuracy {accuracy(base, xte, yte):.4f})"
    )
    variants = {
        "dense fp32": base,
        "pruned 80%": prune_copy(base),
        "quantized 16 levels": quantize_copy(base),
    }
    sample = xte[:1]
    ok = True
    summary = []
    with tempfile.TemporaryDirectory() as td:
        for name, model in variants.items():
            with torch.no_grad():
                ref = model(xte)
            acc0 = accuracy(model, xte, yte)
            cfg = WrapConfig(min_numel=256)
            rep = report(model, sample, cfg)
            w = wrap(copy.deepcopy(model), cfg, sample_input=sample)
            with torch.no_grad():
                same_stream = torch.equal(w(xte), ref)
            path = os.path.join(td, "m.dnnz")
            save(w, path)
            fresh = load(path, DigitsCNN(model.features[0].out_channels).eval(), mode="cached")
            with torch.no_grad():
                same_cached = torch.equal(fresh(xte), ref)
            acc1 = accuracy(w, xte, yte)
            back = unwrap(w)
            exact = all(
                torch.equal(a.view(torch.int32), b.view(torch.int32))
                for a, b in zip(
                    model.state_dict().values(), back.state_dict().values(), strict=True
                )
                if a.dtype == torch.float32
            )
            ok &= same_stream and same_cached and exact and acc0 == acc1
            out(
                f"\n== {name}: accuracy {acc0:.4f} -> {acc1:.4f}; outputs identical: "
                f"streaming {same_stream}, loaded+cached {same_cached}; weights bit-exact "
                f"{exact}; file {os.path.getsize(path):,} bytes"
            )
            out(rep.to_text())
            summary.append((name, rep.bytes_before, rep.bytes_after, rep.cr))
    out("\nsummary (weights of all layers; CR = bytes before / after):")
    for name, b, a, cr in summary:
        out(f"  {name:<22} {b:>9,} -> {a:>9,} bytes   CR {cr:.3f}")
    out(f"\nall checks {'passed' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
