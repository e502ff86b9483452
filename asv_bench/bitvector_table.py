"""Print the BitVector benchmark table (issue: foundation).

For 2^28 random bits (default) at densities 50% and 5%: build time, bytes and
overhead, and ns per query of batch rank1 / select1 / access over 1M random
queries, beside the numpy reference measured in the same run (rank = lookup
in a cumsum array, select = lookup in a flatnonzero array, access = fancy
indexing: the O(n)-word-space equivalents). Timings are interleaved
(ours, numpy, ours, ...) and the median of the repeats is reported.

    python asv_bench/bitvector_table.py [--log2n 28] [--queries 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import wavelet


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _measure(n: int, p: float, nq: int, repeats: int, rng, index: str = "fast") -> dict:
    words = np.zeros(n // 64, dtype=np.uint64)
    # random bits with density p, generated in chunks to bound memory
    chunk = min(1 << 24, n)
    for s in range(0, n, chunk):
        b = rng.random(chunk) < p
        words[s // 64 : (s + chunk) // 64] = np.packbits(b, bitorder="little").view("<u8")
    t_build = [_time(lambda: wavelet.BitVector.from_words(words, n, index=index))
               for _ in range(3)]
    bv = wavelet.BitVector.from_words(words, n, index=index)
    bits_u8 = bv.to_numpy().view(np.uint8)
    t0 = time.perf_counter()
    csum = np.concatenate([[0], np.cumsum(bits_u8, dtype=np.uint32)])
    ones = np.flatnonzero(bits_u8).astype(np.uint64)
    t_np_build = time.perf_counter() - t0
    qr = rng.integers(0, n + 1, nq).astype(np.uint64)
    qs = rng.integers(0, bv.count(), nq).astype(np.uint64)
    qa = rng.integers(0, n, nq).astype(np.uint64)
    np.testing.assert_array_equal(bv.rank1(qr[:1000]), csum[qr[:1000]])
    np.testing.assert_array_equal(bv.select1(qs[:1000]), ones[qs[:1000]])
    ops = {
        "rank1": (lambda: bv.rank1(qr), lambda: csum[qr]),
        "select1": (lambda: bv.select1(qs), lambda: ones[qs]),
        "access": (lambda: bv.access(qa), lambda: bits_u8[qa]),
    }
    res = {}
    for name, (ours, ref) in ops.items():
        a, b = [], []
        for _ in range(repeats):
            a.append(_time(ours))
            b.append(_time(ref))
        res[name] = (statistics.median(a) / nq * 1e9, statistics.median(b) / nq * 1e9)
    sp = bv.space()
    return {
        "density": p,
        "n": n,
        "build_s": statistics.median(t_build),
        "np_build_s": t_np_build,
        "bytes": sp["total_bytes"],
        "overhead_pct": sp["overhead_pct"],
        "np_bytes": bits_u8.nbytes + csum.nbytes + ones.nbytes,
        **{f"{k}_ns": v[0] for k, v in res.items()},
        **{f"np_{k}_ns": v[1] for k, v in res.items()},
    }


def run(log2n: int, nq: int, repeats: int, densities=(0.5, 0.05), isa=None,
        index: str = "fast") -> list[dict]:
    if isa is not None:
        wavelet.set_isa_level(isa)
    rng = np.random.default_rng(42)
    n = 1 << log2n
    rows = []
    for p in densities:
        rows.append(_measure(n, p, nq, repeats, rng, index))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log2n", type=int, default=28)
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--isa", type=int, default=None, help="force a kernel level (0 = portable)")
    ap.add_argument("--index", default="fast", choices=["fast", "compact"],
                    help="rank/select index kind")
    a = ap.parse_args(argv)
    rows = run(a.log2n, a.queries, a.repeats, isa=a.isa, index=a.index)
    info = wavelet.build_info()
    print(
        f"BitVector, n = 2^{a.log2n} random bits, {a.queries} random queries per batch, "
        f"median of {a.repeats}; kernels: {info['isa_level_name']}; index: {a.index}"
    )
    print(
        "| density | build s (numpy ref) | MB ours (numpy ref) | overhead % "
        "| rank1 ns (numpy) | select1 ns (numpy) | access ns (numpy) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['density']:.0%} | {r['build_s']:.3f} ({r['np_build_s']:.3f}) "
            f"| {r['bytes'] / 2**20:.1f} ({r['np_bytes'] / 2**20:.0f}) | {r['overhead_pct']:.2f} "
            f"| {r['rank1_ns']:.1f} ({r['np_rank1_ns']:.1f}) "
            f"| {r['select1_ns']:.1f} ({r['np_select1_ns']:.1f}) "
            f"| {r['access_ns']:.1f} ({r['np_access_ns']:.1f}) |"
        )


if __name__ == "__main__":
    main()
