"""Fused kernels vs dense PyTorch and torch.sparse CSR: one table, ratios from one run.

Layers: Linear 4096x4096 (``y = x W^T``) and a Conv2d 256->256, 3x3, padding 1 on 14x14
maps (sparse: our direct convolution, no ``unfold``; 0%: im2col, ``unfold`` then the
256 x 2304 weight as a matrix, as the fused forward does), with unstructured
random pruning at 0/90/95/97% sparsity (Gaussian weights, std 0.02), batch 1 and 8, float32,
one thread everywhere (``torch.set_num_threads(1)``; our kernels are single-threaded).

Columns (milliseconds per call, medians of interleaved repeated runs, so machine noise hits
every method alike):

* ``dense``: PyTorch eager (``F.linear`` / ``F.conv2d``) on the dense weight;
* ``csr``: ``torch.sparse`` CSR (``W_csr @ X``; for conv, on the unfolded input);
* ``fused``: ours, from the compressed form on every call (extract the RAS streams, then
  the C kernel; at 0% the element-wise float encoding and the decode-and-multiply kernel);
* ``cached``: ours with the decoded O(nnz) CSR form kept between calls (sparse only; for
  conv, the same direct convolution reading the CSR arrays);
* ``x dense`` / ``x csr``: speedups as ratios (``dense / ours``; > 1 means we are faster).

Run: ``python asv_bench/kernels_table.py [--reps N] [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from dnn_adapter._kernels_api import FusedWeight, isa_level
from dnn_adapter.codecs import FloatCodec, encode_best


def _weight(shape, sp, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.02
    if sp:
        w = torch.where(torch.rand(*shape, generator=g) < sp, 0.0, w)
    return w


def _encode(w, sp):
    if sp == 0:
        return FloatCodec("element", max_joint_bits=0).encode(w)  # as wrap(fused=True) stores
    fusable = {"id": "sparse", "joint": False, "max_rows_per_block": 1, "value_joint_bits": 0,
               "extra_bits_min_gain": 0.01}  # as wrap(fused=True) encodes (wrapping._fusable)
    return encode_best(w, form="element", candidates=[fusable], verify=True)


def _time(fns: dict, reps: int) -> dict:
    ts = {k: [] for k in fns}
    for f in fns.values():  # warm up (first call builds caches)
        f()
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in ts.items()}


def _linear_case(sp, batch, reps):
    w = _weight((4096, 4096), sp)
    x = torch.randn(batch, 4096, generator=torch.Generator().manual_seed(1))
    enc = _encode(w, sp)
    fw = FusedWeight(enc)
    csr_t = w.to_sparse_csr()
    fns = {
        "dense": lambda: F.linear(x, w),
        "csr": lambda: (csr_t @ x.t()).t(),
        "fused": lambda: fw.matmul_t(x.t().contiguous().numpy()),
    }
    if fw.sparse:
        ours = fw.to_csr()
        fns["cached"] = lambda: ours.matmul_t(x.t().contiguous().numpy())
    ref = (w.double() @ x.double().t()).numpy()
    got = fw.matmul_t(x.t().contiguous().numpy())
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-6
    return _time(fns, reps), enc.nbytes / (w.numel() * 4)


def _conv_case(sp, batch, reps):
    w = _weight((256, 256, 3, 3), sp)
    x = torch.randn(batch, 256, 14, 14, generator=torch.Generator().manual_seed(1))
    enc = _encode(w, sp)
    fw = FusedWeight(enc)
    csr_t = w.reshape(256, -1).to_sparse_csr()

    def cols_t():
        c = F.unfold(x, 3, padding=1)  # B x 2304 x 196
        return c.permute(1, 0, 2).reshape(c.shape[1], -1).contiguous()

    def to_out(y):  # 256 x (B*196) -> B x 256 x 14 x 14
        return y.reshape(256, batch, 14, 14).permute(1, 0, 2, 3)

    fns = {
        "dense": lambda: F.conv2d(x, w, padding=1),
        "csr": lambda: to_out(csr_t @ cols_t()),
        "fused": (
            (lambda: to_out(torch.from_numpy(fw.conv2d(x.numpy(), (3, 3), (1, 1)))))
            if fw.sparse
            else (lambda: to_out(torch.from_numpy(fw.matmul_t(cols_t().numpy()))))
        ),
    }
    if fw.sparse:
        ours = fw.to_csr()
        fns["cached"] = lambda: to_out(torch.from_numpy(ours.conv2d(x.numpy(), (3, 3), (1, 1))))
    ref = F.conv2d(x.double(), w.double(), padding=1)
    got = fns["fused"]().double()
    assert (got - ref).abs().max() <= 1e-4 * ref.abs().max() + 1e-6
    return _time(fns, reps), enc.nbytes / (w.numel() * 4)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="95% only, 5 reps")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sps = [0.95] if a.quick else [0.0, 0.9, 0.95, 0.97]
    reps = 5 if a.quick else a.reps
    print(f"# fused kernels (ISA level {isa_level()}), 1 thread, medians of {reps} runs")
    hdr = (
        "| layer | sparsity | batch | CR | dense ms | csr ms | fused ms | cached ms "
        "| fused x dense | fused x csr | cached x dense | cached x csr |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for name, case in (("Linear 4096x4096", _linear_case), ("Conv 256x256x3x3 @14x14", _conv_case)):
        for sp in sps:
            for batch in (1, 8):
                t, ratio = case(sp, batch, reps)
                c = t.get("cached")
                cells = [
                    name, f"{sp:.0%}", str(batch), f"{1 / ratio:.2f}",
                    f"{t['dense']:.3f}", f"{t['csr']:.3f}", f"{t['fused']:.3f}",
                    f"{c:.3f}" if c else "-",
                    f"{t['dense'] / t['fused']:.2f}", f"{t['csr'] / t['fused']:.2f}",
                    f"{t['dense'] / c:.2f}" if c else "-", f"{t['csr'] / c:.2f}" if c else "-",
                ]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
