"""GPU check: run the gpu tests, then print a throughput table (H200 targets).

    python asv_bench/gpu_check.py [--skip-tests] [--log2n 30] [--log2w 27]
    python asv_bench/gpu_check.py --dry-run    # host-side preparation only (no CuPy, no GPU)

Installs nothing beyond the project: if CuPy is missing it runs
``pip install -e ".[test,cuda]"``. Measures, on the same device in the same run:
  * device-to-device copy GB/s (the ceiling),
  * batch access / rank1 / select1 queries per second on a 2^30-bit vector
    (random uint64 queries, results consumed),
  * bulk decode GB/s of output: wavelet matrix -> uint8 symbols, and the fused
    decode to fp32 / bf16 bit patterns (exponent WM with 6 levels + raw bits),
  * Huffman wavelet tree over the exponent codes of 2^27 bf16/fp32 "weights"
    (FloatCodec parts): batch access/rank/select queries per second, bulk decode
    of the codes (GB/s of uint8 output), the fused decode to bf16/fp32 words and
    the standalone merge (wavelet.cuda.merge_float_fields), in GB/s of output.
Targets: decode >= 50% of copy GB/s; access/rank >= 1e9 queries/s.
Every timing is CUDA-event based, median of several repetitions. < 5 minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ensure_cupy():
    if importlib.util.find_spec("cupy") is None:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-e", ".[test,cuda]"],
                              cwd=ROOT)


def _time(cp, fn, reps=7):
    fn()  # warm-up (compile, caches)
    ts = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(cp.cuda.get_elapsed_time(a, b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def weight_parts(ne: int, exp_bits: int, mant_bits: int, seed: int = 0):
    """Host side (numpy + the C core only): ne normal "weights" as bf16 (8, 7) or fp32
    (8, 23) words and their FloatCodec parts (codes, table, planes, top), checked
    bit-exact through wavelet.merge_float_fields."""
    import numpy as np

    import wavelet

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(ne, dtype=np.float32) * np.float32(0.02)).view(np.uint32)
    W = 1 + exp_bits + mant_bits
    words = (w >> np.uint32(32 - W)).astype(np.uint16 if W == 16 else np.uint32)
    u = words.astype(np.uint32)
    field = (u >> np.uint32(mant_bits)) & np.uint32((1 << exp_bits) - 1)
    present = np.flatnonzero(np.bincount(field, minlength=1 << exp_bits))  # no sort: fast
    lut = np.zeros(1 << exp_bits, np.uint8)
    lut[present] = np.arange(present.size)
    table, codes = present, lut[field]
    raw = (u & np.uint32((1 << mant_bits) - 1)) | ((u >> np.uint32(W - 1)) << np.uint32(mant_bits))
    nfull, rem = divmod(mant_bits + 1, 8)
    assert rem == 0, "bf16/fp32 splits have whole byte planes"
    planes = np.empty((nfull, ne), np.uint8)
    for p in range(nfull):
        planes[p] = (raw >> np.uint32(8 * p)) & np.uint32(0xFF)
    codes = codes.reshape(-1).astype(np.uint8)
    table = table.astype(np.uint16)
    chk = np.empty(min(ne, 1 << 16), words.dtype)
    wavelet.merge_float_fields(codes[: chk.size], table, exp_bits, mant_bits,
                               np.ascontiguousarray(planes[:, : chk.size]), None, chk)
    assert np.array_equal(chk, words[: chk.size]), "C merge != words"
    return words, codes, table, planes


def dry_run(log2w: int = 16) -> int:
    """Everything but the device: parts, tree build, derived tables, the report."""
    import numpy as np

    import wavelet
    from wavelet._gpu_wavelet_tree import tree_tables

    ne = 1 << log2w
    rows = []
    for name, e, m in (("bf16", 8, 7), ("fp32", 8, 23)):
        t = time.time()
        words, codes, table, planes = weight_parts(ne, e, m)
        wt = wavelet.WaveletTree(codes, shape="huffman")
        tab, nodes = tree_tables(wt)
        assert nodes is not None, "exponent trees must take the level-by-level decode"
        assert np.array_equal(wt.extract(), codes)
        bits = wt.space()["code_bits_per_symbol"]
        rows.append((f"host prep {name} (2^{log2w})", f"{time.time() - t:9.2f} s",
                     f"{wt.nsymbols} codes, {bits:.2f} bits/code, {nodes[1][-1]} nodes"))
    _print_rows(rows)
    return 0


def _print_rows(rows):
    print()
    print(f"{'measurement':40s} {'result':>16s}  note")
    print("-" * 84)
    for a, b, c in rows:
        print(f"{a:40s} {b:>16s}  {c}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--log2n", type=int, default=30, help="bitvector size (bits), log2")
    ap.add_argument("--log2w", type=int, default=27, help="weights for the tree part, log2")
    ap.add_argument("--dry-run", action="store_true", help="host-side parts only (no GPU)")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.dry_run:
        sys.path.insert(0, str(ROOT))
        return dry_run(min(args.log2w, 20))
    _ensure_cupy()
    sys.path.insert(0, str(ROOT))
    rc = 0
    if not args.skip_tests:
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                              "no:cacheprovider", "tests/test_gpu_device.py",
                              "tests/test_gpu_kernels_compile.py",
                              "tests/test_gpu_kernels_emulated.py"], cwd=ROOT, timeout=200)
        print(f"gpu tests: {'passed' if rc == 0 else f'FAILED (rc={rc})'}", flush=True)
    import cupy as cp
    import numpy as np

    import wavelet
    from wavelet.cuda import DeviceBitVector, DeviceWaveletMatrix
    from wavelet.cuda import _module as m

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    print(f"device: {props['name'].decode()}  CuPy {cp.__version__}  "
          f"NVRTC {'.'.join(map(str, cp.cuda.nvrtc.getVersion()))}", flush=True)
    rows = []

    # ---- copy ceiling ---------------------------------------------------------
    nbytes = 1 << 30
    src = cp.empty(nbytes, dtype=cp.uint8)
    dst = cp.empty_like(src)
    t = _time(cp, lambda d=dst, s=src: d.__setitem__(Ellipsis, s))
    copy_gbs = nbytes / t / 1e9
    rows.append(("d2d copy (1 GiB)", f"{copy_gbs:9.1f} GB/s", "ceiling"))
    del src, dst

    # ---- bitvector batch queries ------------------------------------------------
    n = 1 << args.log2n
    rng = np.random.default_rng(0)
    words = cp.random.randint(0, 2**63, size=n // 64, dtype=cp.int64).view(cp.uint64)
    words ^= words << 1  # random-looking, about half ones
    bv = wavelet.BitVector.from_words(words.get(), n)
    d: DeviceBitVector = bv.to_device()
    nq = 1 << 26
    q = cp.asarray(rng.integers(0, n, nq, dtype=np.uint64))
    k = cp.asarray(rng.integers(0, bv.count(1), nq, dtype=np.uint64))
    for name, fn, arg in (("access", d.access, q), ("rank1", d.rank1, q),
                          ("select1", d.select1, k)):
        t = _time(cp, lambda fn=fn, arg=arg: fn(arg, check=False), reps=5)
        qps = nq / t
        target = ">= 1e9" if name != "select1" else "-"
        ok = "" if target == "-" else (" ok" if qps >= 1e9 else " BELOW")
        rows.append((f"{name} batch, 2^{args.log2n} bits", f"{qps / 1e9:9.2f} Gq/s",
                     target + ok))
        # spot-check a few answers against the C core
        s = rng.integers(0, nq, 1000)
        got = fn(arg[cp.asarray(s)]).get()
        exp = getattr(bv, name)(arg.get()[s])
        assert np.array_equal(got, exp), f"{name}: GPU != CPU"
    del d, words, q, k

    # ---- bulk decode --------------------------------------------------------------
    ne = 1 << 28  # elements
    L = 6
    seq = cp.asarray(np.minimum(rng.geometric(0.3, ne) - 1, (1 << L) - 1).astype(np.uint8))
    # build the levels on the GPU with a stable partition (test helper semantics)
    lv_words, zeros, cur = [], [], seq.astype(cp.uint8)
    for lv in range(L):
        b = ((cur >> (L - 1 - lv)) & 1).astype(cp.bool_)
        lv_words.append(cp.packbits(b, bitorder="little"))
        zeros.append(int(ne - int(b.sum())))
        cur = cp.concatenate([cur[~b], cur[b]])
    del cur
    bvs = [wavelet.BitVector.from_words(w.get().view(np.uint64), ne) for w in lv_words]
    del lv_words
    wm = DeviceWaveletMatrix.from_levels(bvs)
    out = cp.empty(ne, dtype=cp.uint8)
    t = _time(cp, lambda wm=wm, out=out: wm.decode(out=out), reps=5)
    assert bool((out == seq).all()), "decode mismatch"
    gbs = ne / t / 1e9
    rows.append((f"WM decode -> uint8 (L={L}, 2^28)", f"{gbs:9.1f} GB/s",
                 f"{100 * gbs / copy_gbs:5.1f}% of copy (target 50%)"))
    for fmt, (wdt, e, m_) in (("float32", ("uint32", 8, 23)), ("bfloat16", ("uint16", 8, 7))):
        ob = np.dtype(wdt).itemsize
        planes = cp.random.randint(0, 256, ne * ((m_ + 1) // 8), dtype=cp.uint8)
        o = cp.empty(ne, dtype=wdt)
        table = cp.arange(100, 100 + (1 << L), dtype=cp.uint16)
        t = _time(cp, lambda p=planes, o=o, e=e, m_=m_, tb=table, wm=wm: wm.decode_float(
            tb, e, m_, p, out=o, check=False), reps=5)
        gbs = ne * ob / t / 1e9
        rows.append((f"WM decode_float -> {fmt}", f"{gbs:9.1f} GB/s",
                     f"{100 * gbs / copy_gbs:5.1f}% of copy (target 50%)"))
        del planes, o
    del wm, out, seq

    # ---- Huffman wavelet tree over exponent codes (FloatCodec parts) ----------------
    from wavelet.cuda import merge_float_fields

    nw = 1 << args.log2w
    for name, e, m_ in (("bf16", 8, 7), ("fp32", 8, 23)):
        words, codes, table, planes = weight_parts(nw, e, m_)
        t1 = time.time()
        wt = wavelet.WaveletTree(codes, shape="huffman")
        build_s = time.time() - t1
        dwt = wt.to_device()
        assert dwt.bulk_decode
        cbits = wt.space()["code_bits_per_symbol"]
        if name == "bf16":  # queries and the plain decode once (both formats: same exponents)
            nq = 1 << 24
            q = cp.asarray(rng.integers(0, nw, nq, dtype=np.uint64))
            syms = np.unique(codes)
            c = cp.asarray(syms[rng.integers(0, syms.size, nq)].astype(np.uint64))
            counts = np.bincount(codes, minlength=int(syms.max()) + 1)
            kk = cp.asarray((rng.random(nq) * counts[c.get()]).astype(np.uint64))
            for qn, fn in (("access", lambda d=dwt, q=q: d.access(q, check=False)),
                           ("rank", lambda d=dwt, c=c, q=q: d.rank(c, q, check=False)),
                           ("select", lambda d=dwt, c=c, k=kk: d.select(c, k, check=False))):
                t = _time(cp, fn, reps=3)
                rows.append((f"WT {qn} batch (huffman, 2^{args.log2w})",
                             f"{nq / t / 1e9:9.3f} Gq/s", f"{cbits:.2f} bits/code"))
            s_ = rng.integers(0, nq, 1000)
            qq = q.get()[s_]
            assert np.array_equal(dwt.access(qq).get(), wt.access(qq)), "WT access != CPU"
            assert np.array_equal(dwt.rank(c.get()[s_], qq).get(), wt.rank(c.get()[s_], qq))
            out8 = cp.empty(nw, dtype=cp.uint8)
            t = _time(cp, lambda d=dwt, o=out8: d.decode(out=o), reps=5)
            assert np.array_equal(out8.get(), codes), "WT decode mismatch"
            gbs = nw / t / 1e9
            rows.append(("WT huffman decode -> uint8 codes", f"{gbs:9.1f} GB/s",
                         f"{100 * gbs / copy_gbs:5.1f}% of copy; {nw / t / 1e9:.1f} G codes/s"))
            del out8, q, c, kk
        dplanes = cp.asarray(planes)
        dcodes = cp.asarray(codes)
        o = cp.empty(nw, dtype=words.dtype)
        t = _time(cp, lambda d=dwt, tb=table, e=e, m_=m_, p=dplanes, o=o: d.decode_float(
            tb, e, m_, p, out=o, check=False), reps=5)
        assert np.array_equal(o.get(), words), f"fused {name} decode != words"
        gbs = nw * words.itemsize / t / 1e9
        rows.append((f"WT fused decode_float -> {name}", f"{gbs:9.1f} GB/s",
                     f"{100 * gbs / copy_gbs:5.1f}% of copy (target 50%); build {build_s:.0f} s"))
        t = _time(cp, lambda c=dcodes, tb=table, e=e, m_=m_, p=dplanes, o=o: merge_float_fields(
            c, tb, e, m_, p, None, o, check=False), reps=5)
        assert np.array_equal(o.get(), words), f"merge {name} != words"
        gbs = nw * words.itemsize / t / 1e9
        rows.append((f"merge_float_fields -> {name}", f"{gbs:9.1f} GB/s",
                     f"{100 * gbs / copy_gbs:5.1f}% of copy (codes already decoded)"))
        del dwt, dplanes, dcodes, o
    _print_rows(rows)
    print(f"\ntotal {time.time() - t0:.0f} s; kernels: {', '.join(sorted(m.KERNELS))}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
