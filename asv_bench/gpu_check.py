"""GPU check: run the gpu tests, then print a throughput table (H200 targets).

    python asv_bench/gpu_check.py [--skip-tests] [--log2n 30]

Installs nothing beyond the project: if CuPy is missing it runs
``pip install -e ".[test,cuda]"``. Measures, on the same device in the same run:
  * device-to-device copy GB/s (the ceiling),
  * batch access / rank1 / select1 queries per second on a 2^30-bit vector
    (random uint64 queries, results consumed),
  * bulk decode GB/s of output: wavelet matrix -> uint8 symbols, and the fused
    decode to fp32 / bf16 bit patterns (exponent WM with 6 levels + raw bits).
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--log2n", type=int, default=30, help="bitvector size (bits), log2")
    args = ap.parse_args(argv)
    t0 = time.time()
    _ensure_cupy()
    sys.path.insert(0, str(ROOT))
    rc = 0
    if not args.skip_tests:
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                              "no:cacheprovider", "tests/test_gpu_device.py",
                              "tests/test_gpu_kernels_compile.py"], cwd=ROOT, timeout=180)
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
    t = _time(cp, lambda: wm.decode(out=out), reps=5)
    assert bool((out == seq).all()), "decode mismatch"
    gbs = ne / t / 1e9
    rows.append((f"WM decode -> uint8 (L={L}, 2^28)", f"{gbs:9.1f} GB/s",
                 f"{100 * gbs / copy_gbs:5.1f}% of copy (target 50%)"))
    for fmt, ob, rb in (("float32", 4, 3), ("bfloat16", 2, 1)):
        raw = cp.random.randint(0, 256, ne * rb, dtype=cp.uint8)
        o = cp.empty(ne, dtype=cp.uint32 if ob == 4 else cp.uint16)
        lut = cp.arange(100, 100 + (1 << L), dtype=cp.uint32)
        t = _time(cp, lambda raw=raw, o=o, fmt=fmt, lut=lut: wm.decode_float(raw, fmt, lut=lut,
                                                                        out=o), reps=5)
        gbs = ne * ob / t / 1e9
        rows.append((f"WM decode_float -> {fmt}", f"{gbs:9.1f} GB/s",
                     f"{100 * gbs / copy_gbs:5.1f}% of copy (target 50%)"))
        del raw, o
    print()
    print(f"{'measurement':40s} {'result':>16s}  note")
    print("-" * 84)
    for a, b, c in rows:
        print(f"{a:40s} {b:>16s}  {c}")
    print(f"\ntotal {time.time() - t0:.0f} s; kernels: {', '.join(sorted(m.KERNELS))}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
