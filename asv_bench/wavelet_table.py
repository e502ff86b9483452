"""Print the wavelet matrix / tree benchmark table on real data.

Data: the CPython standard library's .py sources concatenated (bytes, ~32 MB; ``--mb``
caps it) and the word ids of that text by frequency rank (an integer sequence with a
real, Zipf-like distribution). Reference: the ``wavelet-matrix`` package from PyPI
(Rust), measured in the same run. It has no batch API, so its per-query cost is a
Python loop over its scalar methods (fewer queries; the per-query time is what
counts). Ours are the numpy-in/numpy-out batch forms. Timings interleave ours and
theirs and report the median of the repeats.

    python asv_bench/wavelet_table.py [--mb 32] [--queries 200000] [--ref-queries 20000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import wavelet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from wavelet._demo import stdlib_text  # noqa: E402


def _t(fn):
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def h0(seq: np.ndarray) -> float:
    _, c = np.unique(seq, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def word_ids(text: bytes) -> np.ndarray:
    words = re.findall(rb"[A-Za-z_][A-Za-z0-9_]*", text)
    uniq, inv, cnt = np.unique(np.array(words, dtype=object), return_inverse=True,
                               return_counts=True)
    rank = np.empty(uniq.size, dtype=np.uint32)
    rank[np.argsort(-cnt, kind="stable")] = np.arange(uniq.size, dtype=np.uint32)
    return rank[inv]


def bench(name, seq, nq, nref, repeats, ref_mod):
    rng = np.random.default_rng(1)
    n = seq.size
    t_build, wm = _t(lambda: wavelet.WaveletMatrix(seq))
    t_wt, wt = _t(lambda: wavelet.WaveletTree(seq, shape="huffman"))
    t_bal, bal = _t(lambda: wavelet.WaveletTree(seq, shape="balanced"))
    ref = None
    t_ref = float("nan")
    if ref_mod is not None:
        t_ref, ref = _t(lambda: ref_mod.WaveletMatrix(seq.tolist()))
    H = h0(seq)
    sigma = int(np.unique(seq).size)
    print(f"\n### {name}: n = {n:,}, sigma = {sigma:,}, log2 sigma = {np.log2(sigma):.2f}, "
          f"H0 = {H:.3f} bits")
    print("| structure | build s | vs package | bits/symbol | vs H0 |")
    print("|---|---|---|---|---|")
    for label, t, s in [("WaveletMatrix", t_build, wm), ("WaveletTree balanced", t_bal, bal),
                        ("WaveletTree huffman", t_wt, wt)]:
        bps = 8 * s.nbytes / n
        sp = f"{t_ref / t:.1f}x faster" if ref is not None else "-"
        print(f"| {label} | {t:.2f} | {sp} | {bps:.3f} | {bps / H:.3f}x |")
    if ref is not None:
        print(f"| wavelet-matrix package | {t_ref:.2f} | 1x | n/a | n/a |")
    # queries
    pos = rng.integers(0, n, nq).astype(np.uint64)
    syms = seq[rng.integers(0, n, nq)].astype(np.uint64)
    ipos = rng.integers(0, n + 1, nq).astype(np.uint64)
    cnt_of = {}
    kk = np.empty(nq, dtype=np.uint64)
    tot = wm.rank(syms, np.full(nq, n, dtype=np.uint64))
    kk[:] = (rng.random(nq) * tot).astype(np.uint64)
    ls = rng.integers(0, n, nq).astype(np.uint64)
    rs = np.minimum(ls + rng.integers(1, 1000, nq).astype(np.uint64), n).astype(np.uint64)
    qk = (rng.random(nq) * (rs - ls)).astype(np.uint64)
    lo = syms
    hi = syms + np.uint64(max(1, sigma // 10))
    ops = {
        "access": (lambda: wm.access(pos), lambda: wt.access(pos),
                   lambda r, m: [r.access(int(i)) for i in pos[:m]]),
        "rank": (lambda: wm.rank(syms, ipos), lambda: wt.rank(syms, ipos),
                 lambda r, m: [r.rank(int(c), int(i)) for c, i in zip(syms[:m], ipos[:m])]),
        "select": (lambda: wm.select(syms, kk), lambda: wt.select(syms, kk),
                   lambda r, m: [r.select(int(c), int(k) + 1) for c, k in zip(syms[:m], kk[:m])]),
        "quantile": (lambda: wm.quantile(ls, rs, qk), None,
                     lambda r, m: [r.quantile(int(a), int(b), int(k) + 1)
                                   for a, b, k in zip(ls[:m], rs[:m], qk[:m])]),
        "range_freq": (lambda: wm.range_freq(ls, rs, lo, hi), None,
                       lambda r, m: [r.range_freq(int(a), int(b), int(x), int(y))
                                     for a, b, x, y in zip(ls[:m], rs[:m], lo[:m], hi[:m])]),
    }
    del cnt_of
    print("\n| query (ns/query) | WaveletMatrix batch | WaveletTree huffman batch "
          "| package (scalar loop) | WM speedup |")
    print("|---|---|---|---|---|")
    for op, (f_wm, f_wt, f_ref) in ops.items():
        a, b, c = [], [], []
        for _ in range(repeats):
            a.append(_t(f_wm)[0] / nq * 1e9)
            if f_wt is not None:
                b.append(_t(f_wt)[0] / nq * 1e9)
            if ref is not None:
                c.append(_t(lambda f_ref=f_ref: f_ref(ref, nref))[0] / nref * 1e9)
        ma = statistics.median(a)
        mb = f"{statistics.median(b):.0f}" if b else "n/a"
        mc = statistics.median(c) if c else float("nan")
        print(f"| {op} | {ma:.0f} | {mb} | {mc:.0f} | {mc / ma:.1f}x |")
    # extract
    out = np.empty(n, dtype=seq.dtype)
    ex = {"WaveletMatrix": [], "WaveletTree huffman": [], "WaveletTree balanced": [],
          "package values()": []}
    for _ in range(repeats):
        ex["WaveletMatrix"].append(_t(lambda: wm.extract(0, n, out=out))[0])
        ex["WaveletTree huffman"].append(_t(lambda: wt.extract(0, n, out=out))[0])
        ex["WaveletTree balanced"].append(_t(lambda: bal.extract(0, n, out=out))[0])
        if ref is not None and hasattr(ref, "values"):
            ex["package values()"].append(_t(lambda: ref.values())[0])
    assert np.array_equal(wt.extract(), seq) and np.array_equal(wm.extract(), seq)
    print("\n| whole-sequence extract | MB/s of output | symbols/s |")
    print("|---|---|---|")
    for k, v in ex.items():
        if v:
            t = statistics.median(v)
            print(f"| {k} | {n * seq.itemsize / t / 1e6:.0f} | {n / t / 1e6:.0f} M |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=32)
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--ref-queries", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    try:
        import wavelet_matrix as ref_mod
    except ImportError:
        ref_mod = None
        print("(wavelet-matrix package not installed: reference columns empty)")
    text = stdlib_text(int(a.mb * 2**20))
    data = np.frombuffer(text, dtype=np.uint8)
    print(f"kernels: {wavelet.build_info()['isa_level_name']}; {a.queries} queries per batch, "
          f"{a.ref_queries} for the package; median of {a.repeats}")
    bench(f"stdlib bytes ({len(text) / 1e6:.1f} MB)", data, a.queries, a.ref_queries, a.repeats,
          ref_mod)
    ids = word_ids(text)
    bench("stdlib word ids by frequency rank", ids, a.queries, a.ref_queries, a.repeats, ref_mod)


if __name__ == "__main__":
    main()
