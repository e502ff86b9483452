"""Run the real CUDA kernel sources on the CPU, checked against the C core.

The kernels are grid-stride loops whose threads never communicate (no shared
memory, barriers or shuffles), so compiling the same source text the loader
compiles (wavelet.cuda._module.source) as plain C++, with a few shims
(__global__, threadIdx, atomicMin, ...), and running every thread of a small
grid one after another gives exactly the GPU's results. This checks the kernel
*logic* bit-for-bit on machines without a GPU; the gpu-marked tests repeat the
checks on a device. Needs a C++ compiler (skips otherwise).
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import wavelet
from wavelet.cuda import _module

_spec = importlib.util.spec_from_file_location(
    "_gpu_util_emu", Path(__file__).with_name("_gpu_util.py")
)
_gu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gu)

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler on PATH")

SHIM = r"""
struct wv_emu_dim3 { unsigned x, y, z; };
static wv_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
static inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    unsigned long long o = *p; if (v < o) *p = v; return o;
}
#define EMU_GRID(G, B, CALL)                                                  \
    do {                                                                      \
        gridDim.x = (G); blockDim.x = (B);                                    \
        for (unsigned b_ = 0; b_ < (G); b_++)                                 \
            for (unsigned t_ = 0; t_ < (B); t_++) {                           \
                blockIdx.x = b_; threadIdx.x = t_; CALL;                      \
            }                                                                 \
    } while (0)
"""

WRAP = r"""
typedef const wv_u64 *P;
extern "C" {
void emu_access(unsigned G, unsigned B, P w, wv_u64 nb, P q, wv_u64 n, wv_u8 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_bv_access_k(w, nb, q, n, o, bad));
}
void emu_rank(int one, unsigned G, unsigned B, P w, P bl, P su, wv_u64 nb, P q, wv_u64 n,
              wv_u64 *o, wv_u64 *bad) {
    if (one) EMU_GRID(G, B, wv_bv_rank_k<1>(w, bl, su, nb, q, n, o, bad));
    else EMU_GRID(G, B, wv_bv_rank_k<0>(w, bl, su, nb, q, n, o, bad));
}
void emu_select(int one, unsigned G, unsigned B, P w, P bl, P su, P sa, wv_u64 nw, wv_u64 nbl,
                wv_u64 cnt, P q, wv_u64 n, wv_u64 *o, wv_u64 *bad) {
    if (one) EMU_GRID(G, B, wv_bv_select_k<1>(w, bl, su, sa, nw, nbl, cnt, q, n, o, bad));
    else EMU_GRID(G, B, wv_bv_select_k<0>(w, bl, su, sa, nw, nbl, cnt, q, n, o, bad));
}
void emu_extract_bits(unsigned G, unsigned B, P w, wv_u64 l, wv_u64 m, wv_u8 *o) {
    EMU_GRID(G, B, wv_bv_extract_bits_k(w, l, m, o));
}
void emu_extract_words(unsigned G, unsigned B, P w, wv_u64 nw, wv_u64 l, wv_u64 m, wv_u64 *o) {
    EMU_GRID(G, B, wv_bv_extract_words_k(w, nw, l, m, o));
}
void emu_wm_level_u8(unsigned G, unsigned B, P w, P bl, P su, wv_u64 nw, wv_u64 off, wv_u64 n,
                     wv_u64 z, unsigned sh, const wv_u8 *nx, int has, wv_u8 *o) {
    EMU_GRID(G, B, wv_wm_level_k<wv_u8>(w, bl, su, nw, off, n, z, sh, nx, has, o));
}
void emu_wm_level_u32(unsigned G, unsigned B, P w, P bl, P su, wv_u64 nw, wv_u64 off, wv_u64 n,
                      wv_u64 z, unsigned sh, const wv_u32 *nx, int has, wv_u32 *o) {
    EMU_GRID(G, B, wv_wm_level_k<wv_u32>(w, bl, su, nw, off, n, z, sh, nx, has, o));
}
void emu_wm_access_u32(unsigned G, unsigned B, P lv, unsigned L, wv_u64 n, P q, wv_u64 nq,
                       wv_u32 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_wm_access_k<wv_u32>(lv, L, n, q, nq, o, bad));
}
#define EMU_FLOAT(NAME, O, E, M)                                                               \
void emu_merge_##NAME(unsigned G, unsigned B, const wv_u8 *e, const wv_u8 *raw, wv_u64 nraw,   \
                      const wv_u32 *lut, int hl, wv_u64 n, O *o) {                             \
    EMU_GRID(G, B, (wv_float_merge_k<wv_u8, O, E, M>(e, raw, nraw, lut, hl, n, o)));           \
}                                                                                              \
void emu_fused_##NAME(unsigned G, unsigned B, P w, P bl, P su, wv_u64 nw, wv_u64 off,          \
                      wv_u64 n, wv_u64 z, unsigned sh, const wv_u8 *nx, int has,               \
                      const wv_u32 *lut, int hl, const wv_u8 *raw, wv_u64 nraw, O *o) {        \
    EMU_GRID(G, B, (wv_wm_level_float_k<O, E, M>(w, bl, su, nw, off, n, z, sh, nx, has, lut,  \
                                                  hl, raw, nraw, o)));                         \
}
EMU_FLOAT(float32, wv_u32, 8, 23)
EMU_FLOAT(bfloat16, wv_u16, 8, 7)
EMU_FLOAT(float16, wv_u16, 5, 10)
}
"""

GRID, BLOCK = 3, 64  # small grid: every grid-stride loop wraps several times


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    d = tmp_path_factory.mktemp("emu")
    src = d / "emu.cpp"
    wm = _module.source("wavelet_matrix.cu").split('#line 1 "wavelet_matrix.cu"', 1)[1]
    for mac in ("WV_TID", "WV_NTHREADS"):  # defined again by the second file
        wm = wm.replace(f"#define {mac}()", f"#undef {mac}\n#define {mac}()", 1)
    src.write_text(SHIM + _module.source("bitvector.cu") + "\n" + wm + WRAP)
    so = d / "emu.so"
    r = subprocess.run(
        [CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-w", "-o", str(so), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return ctypes.CDLL(str(so))


def _p(a):
    return a.ctypes.data_as(ctypes.c_void_p)


U64 = ctypes.c_uint64


def _bv_arrays(bv):
    _, secs = bv._to_parts()
    return {t: np.ascontiguousarray(a) for t, a in secs}


SIZES = [0, 1, 63, 64, 65, 511, 512, 513, 2047, 2048, 2049, 4096 + 77, 20000, 70001]


def _random_bv(n, density, seed):
    rng = np.random.default_rng(seed)
    return wavelet.BitVector(rng.random(n) < density)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 0.97, 1.0])
def test_bitvector_queries(emu, n, density):
    bv = _random_bv(n, density, n * 7 + int(density * 100))
    a = _bv_arrays(bv)
    rng = np.random.default_rng(n)
    bad = np.full(1, 2**64 - 1, np.uint64)
    # access
    if n:
        q = rng.integers(0, n, 3000, dtype=np.uint64)
        out = np.empty(q.size, np.uint8)
        emu.emu_access(GRID, BLOCK, _p(a["WRDS"]), U64(n), _p(q), U64(q.size), _p(out), _p(bad))
        np.testing.assert_array_equal(out, bv.access(q))
    # rank, including i == n
    q = np.concatenate([rng.integers(0, n + 1, 3000, dtype=np.uint64), np.array([0, n], np.uint64)])
    for one in (0, 1):
        out = np.empty(q.size, np.uint64)
        emu.emu_rank(one, GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]), U64(n),
                     _p(q), U64(q.size), _p(out), _p(bad))
        np.testing.assert_array_equal(out, bv.rank(one, q))
    # select, all k when small
    for one in (0, 1):
        cnt = bv.count(one)
        if not cnt:
            continue
        q = (np.arange(cnt, dtype=np.uint64) if cnt <= 5000
             else rng.integers(0, cnt, 5000, dtype=np.uint64))
        out = np.empty(q.size, np.uint64)
        samp = a["SEL1"] if one else a["SEL0"]
        emu.emu_select(one, GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]), _p(samp),
                       U64(a["WRDS"].size), U64(a["BLKS"].size), U64(cnt), _p(q), U64(q.size),
                       _p(out), _p(bad))
        np.testing.assert_array_equal(out, bv.select(one, q))
    assert int(bad[0]) == 2**64 - 1


def test_out_of_range_flagged(emu):
    bv = _random_bv(1000, 0.5, 1)
    a = _bv_arrays(bv)
    q = np.array([3, 1000, 5, 1001, 2**64 - 1], np.uint64)
    bad = np.full(1, 2**64 - 1, np.uint64)
    out = np.empty(q.size, np.uint64)
    emu.emu_rank(1, GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]), U64(1000),
                 _p(q), U64(q.size), _p(out), _p(bad))
    assert int(bad[0]) == 3  # rank(1000) is legal: first bad is query #3
    assert out[3] == 2**64 - 1 and out[1] == bv.rank1(1000)
    bad[0] = 2**64 - 1
    out8 = np.empty(q.size, np.uint8)
    emu.emu_access(GRID, BLOCK, _p(a["WRDS"]), U64(1000), _p(q), U64(q.size), _p(out8), _p(bad))
    assert int(bad[0]) == 1 and out8[1] == 255
    bad[0] = 2**64 - 1
    ones = bv.count(1)
    q2 = np.array([0, ones, 1], np.uint64)
    out2 = np.empty(3, np.uint64)
    emu.emu_select(1, GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]), _p(a["SEL1"]),
                   U64(a["WRDS"].size), U64(a["BLKS"].size), U64(ones), _p(q2), U64(3),
                   _p(out2), _p(bad))
    assert int(bad[0]) == 1


@pytest.mark.parametrize("n", [1, 64, 100, 2048, 5000])
def test_extract(emu, n):
    bv = _random_bv(n, 0.4, n)
    a = _bv_arrays(bv)
    ref = bv.to_numpy()
    for lo, hi in [(0, n), (1, n), (n // 3, n - n // 5), (n - 1, n), (0, 0)]:
        if not 0 <= lo <= hi <= n:
            continue
        m = hi - lo
        out = np.empty(m, np.uint8)
        emu.emu_extract_bits(GRID, BLOCK, _p(a["WRDS"]), U64(lo), U64(m), _p(out))
        np.testing.assert_array_equal(out.astype(bool), ref[lo:hi])
        ow = np.empty((m + 63) // 64, np.uint64)
        emu.emu_extract_words(GRID, BLOCK, _p(a["WRDS"]), U64(a["WRDS"].size), U64(lo), U64(m),
                              _p(ow))
        exp = wavelet.BitVector(ref[lo:hi]).words
        np.testing.assert_array_equal(ow, exp)


def _emu_decode(emu, levels, zeros, n, concat: bool, wide: bool):
    """Bottom-up level passes exactly as DeviceWaveletMatrix.decode does."""
    L = len(levels)
    if concat:
        big = wavelet.BitVector(np.concatenate(levels)) if L else None
        descs = [(_bv_arrays(big), lv * n) for lv in range(L)]
    else:
        descs = [(_bv_arrays(wavelet.BitVector(b)), 0) for b in levels]
    dt = np.uint32 if wide else np.uint8
    fn = emu.emu_wm_level_u32 if wide else emu.emu_wm_level_u8
    nxt = None
    for lv in range(L - 1, -1, -1):
        a, off = descs[lv]
        out = np.empty(n, dt)
        fn(GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]), U64(a["WRDS"].size),
           U64(off), U64(n), U64(zeros[lv]), ctypes.c_uint(L - 1 - lv),
           _p(nxt if nxt is not None else out), ctypes.c_int(nxt is not None), _p(out))
        nxt = out
    return nxt, descs


@pytest.mark.parametrize("n", [1, 31, 32, 33, 2047, 2048, 2049, 6000, 40000])
@pytest.mark.parametrize("sigma", [2, 3, 17, 200])
@pytest.mark.parametrize("concat", [False, True])
def test_wm_decode(emu, n, sigma, concat):
    rng = np.random.default_rng(n * 31 + sigma)
    seq = rng.integers(0, sigma, n, dtype=np.uint64)
    L = max(1, int(sigma - 1).bit_length())
    levels, zeros = _gu.wm_levels(seq, L)
    got, _ = _emu_decode(emu, levels, zeros, n, concat, wide=False)
    np.testing.assert_array_equal(got, seq.astype(np.uint8))


def test_wm_decode_wide_and_access(emu):
    rng = np.random.default_rng(5)
    n, L = 9000, 20
    seq = rng.integers(0, 1 << L, n, dtype=np.uint64)
    levels, zeros = _gu.wm_levels(seq, L)
    got, descs = _emu_decode(emu, levels, zeros, n, True, wide=True)
    np.testing.assert_array_equal(got, seq.astype(np.uint32))
    # access kernel over the descriptor table (host pointers in the emulator)
    rows = []
    for lv, (a, off) in enumerate(descs):
        big = wavelet.BitVector.from_words(a["WRDS"], L * n)
        rows.append([a["WRDS"].ctypes.data, a["BLKS"].ctypes.data, a["SUPR"].ctypes.data,
                     a["WRDS"].size, off, zeros[lv], big.rank1(off)])
    table = np.array(rows, np.uint64).reshape(-1)
    q = np.concatenate([rng.integers(0, n, 2000, dtype=np.uint64), np.array([n], np.uint64)])
    out = np.empty(q.size, np.uint32)
    bad = np.full(1, 2**64 - 1, np.uint64)
    emu.emu_wm_access_u32(GRID, BLOCK, _p(table), ctypes.c_uint(L), U64(n), _p(q), U64(q.size),
                          _p(out), _p(bad))
    np.testing.assert_array_equal(out[:-1], seq[q[:-1]].astype(np.uint32))
    assert int(bad[0]) == q.size - 1


FLOATS = {"float32": (np.float32, np.uint32, 8, 23), "bfloat16": (None, np.uint16, 8, 7),
          "float16": (np.float16, np.uint16, 5, 10)}


def _float_bits(fmt, n, rng):
    """Random IEEE bit patterns incl. subnormals, +-0, inf, NaN payloads."""
    _, ut, eb, mb = FLOATS[fmt]
    width = 1 + eb + mb
    bits = rng.integers(0, 1 << width, n, dtype=np.uint64)
    # weight-like exponents for most, keep the raw random ones (specials) for some
    e = rng.integers((1 << (eb - 1)) - 12, (1 << (eb - 1)) + 1, n, dtype=np.uint64)
    keep = rng.random(n) < 0.2
    mask = np.uint64(((1 << eb) - 1) << mb)
    bits = np.where(keep, bits, (bits & ~mask) | (e << np.uint64(mb)))
    specials = [0, 1 << (width - 1), 1, (1 << (eb + mb)) - 1, ((1 << eb) - 1) << mb,
                (((1 << eb) - 1) << mb) | 1]  # +0, -0, min subnormal, max, inf, NaN
    bits[: min(n, 6)] = specials[: min(n, 6)]
    return bits.astype(ut)


@pytest.mark.parametrize("fmt", list(FLOATS))
@pytest.mark.parametrize("n", [1, 7, 33, 3000])
def test_float_merge_and_fused(emu, fmt, n):
    rng = np.random.default_rng(n)
    _, ut, eb, mb = FLOATS[fmt]
    bits = _float_bits(fmt, n, rng)
    e, raw = _gu.float_split(bits, eb, mb)
    lut0 = np.zeros(256, np.uint32)
    out = np.empty(n, ut)
    getattr(emu, f"emu_merge_{fmt}")(GRID, BLOCK, _p(e), _p(raw), U64(raw.size), _p(lut0),
                                     ctypes.c_int(0), U64(n), _p(out))
    np.testing.assert_array_equal(out, bits)
    # with a LUT: exponents mapped to dense symbol ids
    uniq, sym = np.unique(e, return_inverse=True)
    lut = np.zeros(256, np.uint32)
    lut[: uniq.size] = uniq
    sym = sym.astype(np.uint8)
    getattr(emu, f"emu_merge_{fmt}")(GRID, BLOCK, _p(sym), _p(raw), U64(raw.size), _p(lut),
                                     ctypes.c_int(1), U64(n), _p(out))
    np.testing.assert_array_equal(out, bits)
    # fused: wavelet matrix of the symbols, last pass writes float bits
    L = max(1, int(uniq.size - 1).bit_length())
    levels, zeros = _gu.wm_levels(sym, L)
    descs = [(_bv_arrays(wavelet.BitVector(b)), 0) for b in levels]
    nxt = None
    for lv in range(L - 1, 0, -1):
        a, off = descs[lv]
        o = np.empty(n, np.uint8)
        emu.emu_wm_level_u8(GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]),
                            U64(a["WRDS"].size), U64(0), U64(n), U64(zeros[lv]),
                            ctypes.c_uint(L - 1 - lv), _p(nxt if nxt is not None else o),
                            ctypes.c_int(nxt is not None), _p(o))
        nxt = o
    a, _ = descs[0]
    out2 = np.empty(n, ut)
    getattr(emu, f"emu_fused_{fmt}")(GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]),
                                     U64(a["WRDS"].size), U64(0), U64(n), U64(zeros[0]),
                                     ctypes.c_uint(L - 1), _p(nxt if nxt is not None else raw),
                                     ctypes.c_int(nxt is not None), _p(lut), ctypes.c_int(1),
                                     _p(raw), U64(raw.size), _p(out2))
    np.testing.assert_array_equal(out2, bits)
