"""Decode speed of dnn_adapter's codecs beside zipnn, on the same tensors, in one process.

For each tensor (1M elements: seeded Gaussian weights with std 0.02, a 90%-pruned and a
16-level quantized copy, in fp32/bf16/fp16; and, when its package is installed, trained
MiniLM-L6 weights: the 11.7M-element word embedding and a 0.6M FFN matrix), times our
block-wise decode into a reused buffer on 1 and 2 threads and zipnn's decompression
(1 thread), interleaved, median of --reps runs. "ours" is the prepared decoder
(``codecs.prepare``: parts checked once; what the streaming workspace calls before each
forward); "decode() 1t" is the one-shot ``codecs.decode``, which checks the parts on every
call. GB/s are decoded bytes per second; "vs zipnn" is our prepared 1-thread speed over
zipnn's (>1: we are faster).

Run: python asv_bench/decode_table.py [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

sys.path.insert(0, ".")
from dnn_adapter import codecs as C  # noqa: E402

N = 1 << 20


def tensor(kind, dtype):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(N // 1024, 1024, generator=g) * 0.02
    if kind == "pruned90":
        thr = w.abs().flatten().kthvalue(int(0.9 * w.numel())).values
        w = torch.where(w.abs() > thr, w, torch.zeros(()))
    elif kind == "quant16":
        lo, hi = float(w.min()), float(w.max())
        w = torch.round((w - lo) / (hi - lo) * 15) / 15 * (hi - lo) + lo
    return w.to(dtype)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        from zipnn import ZipNN
    except ImportError:
        ZipNN = None
    rows = []
    cases = [(f"{kind} {str(dtype)[6:]}", tensor(kind, dtype), 1024)
             for kind in ("dense", "pruned90", "quant16")
             for dtype in (torch.float32, torch.bfloat16, torch.float16)]
    from dnn_adapter import packaged

    sd = packaged.load_state_dict("minilm")  # real trained weights, when installed
    if sd is not None:
        for key, short in (("embeddings.word_embeddings.weight", "word emb"),
                           ("encoder.layer.0.intermediate.dense.weight", "ffn1")):
            t = sd[key]
            for dtype in (torch.float32, torch.bfloat16):
                cases.append((f"MiniLM {short} {str(dtype)[6:]}", t.to(dtype), t.shape[1]))
    else:
        print(f"[MiniLM rows skipped: {packaged.PACKAGED['minilm'][2]}]")
    for label, w, block_len in cases:
        dtype = w.dtype
        nbytes = w.numel() * w.element_size()
        enc = C.encode_best(w, block_len=block_len)
        out = torch.empty_like(w)
        z = comp = None
        if ZipNN is not None:
            z = ZipNN(input_format="torch", bytearray_dtype=str(dtype)[6:], threads=1)
            comp = z.compress(w.clone())  # zipnn rewrites its input in place
        run = C.prepare(enc)
        fns = {
            "ours1": lambda run=run, out=out: run(out),
            "ours2": lambda run=run, out=out: run(out),
            "once1": lambda enc=enc, out=out: C.decode(enc, out=out),
        }
        if z is not None:
            fns["zipnn"] = lambda z=z, comp=comp: z.decompress(comp)
        ts = {k: [] for k in fns}
        for _ in range(args.reps):
            for k, f in fns.items():
                C.set_decode_threads(2 if k == "ours2" else 1)
                t0 = time.perf_counter()
                f()
                ts[k].append(time.perf_counter() - t0)
        C.set_decode_threads(1)
        assert torch.equal(out.view(torch.int16 if w.element_size() == 2 else torch.int32),
                           w.view(torch.int16 if w.element_size() == 2 else torch.int32))
        med = {k: statistics.median(v) for k, v in ts.items()}
        row = {
            "tensor": label,
            "codec": enc.describe(),
            "CR": nbytes / enc.nbytes,
            "ours 1t GB/s": nbytes / med["ours1"] / 1e9,
            "ours 2t GB/s": nbytes / med["ours2"] / 1e9,
            "decode() 1t": nbytes / med["once1"] / 1e9,
        }
        if "zipnn" in med:
            row["zipnn CR"] = nbytes / len(comp)
            row["zipnn GB/s"] = nbytes / med["zipnn"] / 1e9
            row["vs zipnn"] = med["zipnn"] / med["ours1"]
        rows.append(row)
    cols = list(rows[0])
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r.get(c, ''):>14.3f}" if isinstance(r.get(c), float)
                         else f"{r.get(c, ''):>14}" for c in cols))


if __name__ == "__main__":
    main()
