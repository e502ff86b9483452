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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wavelet
from wavelet._gpu_wavelet_tree import NACT, count_operands, tree_tables
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
void emu_wm_level_u16(unsigned G, unsigned B, P w, P bl, P su, wv_u64 nw, wv_u64 off, wv_u64 n,
                      wv_u64 z, unsigned sh, const wv_u16 *nx, int has, wv_u16 *o) {
    EMU_GRID(G, B, wv_wm_level_k<wv_u16>(w, bl, su, nw, off, n, z, sh, nx, has, o));
}
void emu_wm_level_u32(unsigned G, unsigned B, P w, P bl, P su, wv_u64 nw, wv_u64 off, wv_u64 n,
                      wv_u64 z, unsigned sh, const wv_u32 *nx, int has, wv_u32 *o) {
    EMU_GRID(G, B, wv_wm_level_k<wv_u32>(w, bl, su, nw, off, n, z, sh, nx, has, o));
}
void emu_wm_access_u32(unsigned G, unsigned B, P lv, unsigned L, wv_u64 n, P q, wv_u64 nq,
                       wv_u32 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_wm_access_k<wv_u32>(lv, L, n, q, nq, o, bad));
}
void emu_wm_extract_u32(unsigned G, unsigned B, P lv, unsigned L, wv_u64 l, wv_u64 m,
                        wv_u32 *o) {
    EMU_GRID(G, B, wv_wm_extract_k<wv_u32>(lv, L, l, m, o));
}
void emu_wm_rank(unsigned G, unsigned B, P lv, unsigned L, wv_u64 n, P c, P q, wv_u64 nq,
                 wv_u64 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_wm_rank_k(lv, L, n, c, q, nq, o, bad));
}
void emu_wm_select(unsigned G, unsigned B, P lv, unsigned L, wv_u64 n, P c, P q, wv_u64 nq,
                   wv_u64 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_wm_select_k(lv, L, n, c, q, nq, o, bad));
}
#define EMU_WMF(NAME, S, O)                                                                    \
void emu_wmf_##NAME(unsigned G, unsigned B, P w, P bl, P su, wv_u64 nw, wv_u64 off, wv_u64 n,  \
                    wv_u64 z, unsigned sh, const S *nx, int has, const wv_u16 *tab,            \
                    wv_u64 nt, unsigned mb, const wv_u8 *pl, unsigned np, const wv_u8 *top,    \
                    unsigned rem, O *o, wv_u64 *bad) {                                         \
    EMU_GRID(G, B, (wv_wm_level_float_k<S, O>(w, bl, su, nw, off, n, z, sh, nx, has, tab, nt, \
                                               mb, pl, np, top, rem, o, bad)));               \
}
EMU_WMF(u8_u16, wv_u8, wv_u16)
EMU_WMF(u8_u32, wv_u8, wv_u32)
EMU_WMF(u8_u64, wv_u8, wv_u64)
EMU_WMF(u16_u16, wv_u16, wv_u16)
EMU_WMF(u16_u32, wv_u16, wv_u32)
EMU_WMF(u16_u64, wv_u16, wv_u64)
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


def _wm_table(wm):
    """The 10-column level table of DeviceWaveletMatrix.from_host, with host pointers."""
    meta, secs = wm._to_parts()
    n, L, nbits, ones = int(meta[0]), int(meta[1]), int(meta[-2]), int(meta[-1])
    a = {t: np.ascontiguousarray(x) for t, x in secs}
    bv = wavelet.BitVector._from_parts((nbits, ones), a)
    stride = -(-n // 512) * 512
    rows = []
    for lv in range(L):
        off = lv * stride
        r1 = bv.rank1(off)
        rows.append([a["WRDS"].ctypes.data, a["BLKS"].ctypes.data, a["SUPR"].ctypes.data,
                     a["WRDS"].size, off, (n - (bv.rank1(off + n) - r1)), r1,
                     a["SEL1"].ctypes.data, a["SEL0"].ctypes.data, a["BLKS"].size])
    return np.array(rows, np.uint64).reshape(-1), a, L


def test_wm_decode_wide_and_access(emu):
    rng = np.random.default_rng(5)
    n, L = 9000, 20
    seq = rng.integers(0, 1 << L, n, dtype=np.uint64)
    levels, zeros = _gu.wm_levels(seq, L)
    got, descs = _emu_decode(emu, levels, zeros, n, True, wide=True)
    np.testing.assert_array_equal(got, seq.astype(np.uint32))
    wm = wavelet.WaveletMatrix(seq.astype(np.uint32))
    table, keep, L = _wm_table(wm)
    q = np.concatenate([rng.integers(0, n, 2000, dtype=np.uint64), np.array([n], np.uint64)])
    out = np.empty(q.size, np.uint32)
    bad = np.full(1, 2**64 - 1, np.uint64)
    emu.emu_wm_access_u32(GRID, BLOCK, _p(table), ctypes.c_uint(L), U64(n), _p(q), U64(q.size),
                          _p(out), _p(bad))
    np.testing.assert_array_equal(out[:-1], seq[q[:-1]].astype(np.uint32))
    assert int(bad[0]) == q.size - 1


WM_SIZES = [0, 1, 63, 64, 65, 2047, 2048, 2049, 4096 + 77, 9000]


@pytest.mark.parametrize("n", WM_SIZES)
@pytest.mark.parametrize("sigma", [1, 2, 5, 300, 1 << 20])
def test_wm_rank_select_extract(emu, n, sigma):
    """Rank/select/range-extract kernels vs the C core, on the host layout."""
    rng = np.random.default_rng(n * 7 + sigma)
    seq = rng.integers(0, sigma, n, dtype=np.uint64).astype(np.uint32)
    wm = wavelet.WaveletMatrix(seq)
    table, keep, L = _wm_table(wm)
    bad = np.full(1, 2**64 - 1, np.uint64)
    syms = np.concatenate([rng.integers(0, sigma, 300), [0, sigma - 1, sigma, 2**40]]
                          ).astype(np.uint64)
    pos = rng.integers(0, n + 1, syms.size, dtype=np.uint64)
    out = np.empty(syms.size, np.uint64)
    emu.emu_wm_rank(GRID, BLOCK, _p(table), ctypes.c_uint(L), U64(n), _p(syms), _p(pos),
                    U64(syms.size), _p(out), _p(bad))
    np.testing.assert_array_equal(out, wm.rank(syms, pos))
    assert int(bad[0]) == 2**64 - 1
    # select: every occurrence that exists, plus misses (flagged, first one reported)
    if n:
        c = seq[rng.integers(0, n, 300)].astype(np.uint64)
        k = np.array([rng.integers(0, wm.rank(int(x), n)) for x in c], np.uint64)
        out = np.empty(c.size, np.uint64)
        emu.emu_wm_select(GRID, BLOCK, _p(table), ctypes.c_uint(L), U64(n), _p(c), _p(k),
                          U64(c.size), _p(out), _p(bad))
        np.testing.assert_array_equal(out, wm.select(c, k))
        assert int(bad[0]) == 2**64 - 1
        c2 = np.array([c[0], c[0], 2**40], np.uint64)
        k2 = np.array([0, wm.rank(int(c[0]), n), 0], np.uint64)
        emu.emu_wm_select(GRID, BLOCK, _p(table), ctypes.c_uint(L), U64(n), _p(c2), _p(k2),
                          U64(3), _p(out), _p(bad))
        assert int(bad[0]) == 1
    for lo, hi in [(0, n), (n // 3, n - n // 5), (n - 1, n), (0, 0)]:
        if 0 <= lo <= hi <= n:
            o = np.empty(hi - lo, np.uint32)
            emu.emu_wm_extract_u32(GRID, BLOCK, _p(table), ctypes.c_uint(L), U64(lo),
                                   U64(hi - lo), _p(o))
            np.testing.assert_array_equal(o, seq[lo:hi])


# ---- float fields (dnn_adapter FloatCodec layout) ----------------------------------------

# (exp_bits, mant_bits): IEEE fp16/bf16/fp32/fp64 and widened "exponent" fields
SPLITS = [(5, 10), (8, 7), (8, 23), (11, 52), (10, 21), (9, 6), (12, 3), (13, 18)]
_WORD = {16: np.uint16, 32: np.uint32, 64: np.uint64}


def _float_words(E, M, n, rng):
    """Random words: weight-like fields for most, raw random patterns (subnormals,
    inf, NaN payloads, -0.0) for the rest."""
    W = 1 + E + M
    bits = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, n, dtype=np.uint64)
    if W < 64:
        bits &= np.uint64((1 << W) - 1)
    mid = 1 << (E - 1)
    f = rng.integers(mid - 12, mid + 1, n, dtype=np.uint64)
    keep = rng.random(n) < 0.2
    fmask = np.uint64(((1 << E) - 1) << M)
    bits = np.where(keep, bits, (bits & ~fmask) | (f << np.uint64(M)))
    specials = [0, 1 << (W - 1), 1, (1 << (E + M)) - 1, ((1 << E) - 1) << M,
                (((1 << E) - 1) << M) | 1]
    bits[: min(n, 6)] = specials[: min(n, 6)]
    return bits.astype(_WORD[W])


def _codec_parts(words, E, M):
    """FloatCodec parts of words: (codes, table, planes, top) as dnn_adapter builds them."""
    W = 1 + E + M
    u = words.astype(np.uint64)
    field = (u >> np.uint64(M)) & np.uint64((1 << E) - 1)
    table, codes = np.unique(field, return_inverse=True)
    assert table.size <= 65536
    raw = (u & np.uint64((1 << M) - 1)) | ((u >> np.uint64(W - 1)) << np.uint64(M))
    nfull, rem = divmod(M + 1, 8)
    planes = np.empty((nfull, u.size), np.uint8)
    for p in range(nfull):
        planes[p] = (raw >> np.uint64(8 * p)) & np.uint64(0xFF)
    top = None
    if rem:
        t = ((raw >> np.uint64(8 * nfull)) & np.uint64((1 << rem) - 1)).astype(np.uint8)
        bits = np.unpackbits(t[:, None], axis=1, bitorder="little")[:, :rem]
        top = np.packbits(bits.reshape(-1), bitorder="little")
    cdt = np.uint8 if table.size <= 256 else np.uint16
    return codes.reshape(-1).astype(cdt), table.astype(np.uint16), planes, top


def _c(x):  # pointer or a valid dummy
    return _p(x) if x is not None and x.size else _p(np.zeros(8, np.uint8))


@pytest.mark.parametrize("E,M", SPLITS)
@pytest.mark.parametrize("n", [1, 7, 33, 3000])
def test_fields_kernel_vs_c_core(emu_wt, E, M, n):
    rng = np.random.default_rng(n + E)
    words = _float_words(E, M, n, rng)
    codes, table, planes, top = _codec_parts(words, E, M)
    ref = np.empty(n, words.dtype)
    wavelet.merge_float_fields(codes, table, E, M, planes, top, ref)
    np.testing.assert_array_equal(ref, words)
    W = 1 + E + M
    for cdt in (np.uint8, np.uint16):
        if table.size > 256 and cdt == np.uint8:
            continue
        c = codes.astype(cdt)
        out = np.empty(n, words.dtype)
        bad = np.full(1, 2**64 - 1, np.uint64)
        fn = getattr(emu_wt, f"emu_ff_{'u8' if cdt == np.uint8 else 'u16'}_u{W}")
        nplanes, rem = divmod(M + 1, 8)
        fn(GRID, BLOCK, _p(c), U64(n), _p(table), U64(table.size), ctypes.c_uint(M),
           _c(planes), ctypes.c_uint(nplanes), _c(top), ctypes.c_uint(rem), _p(out), _p(bad))
        np.testing.assert_array_equal(out, ref)
        assert int(bad[0]) == 2**64 - 1
    # a code outside the table: flagged (first index), element zeroed; C says corrupt
    c = codes.astype(np.uint16)
    c[n // 2] = table.size
    out = np.empty(n, words.dtype)
    bad = np.full(1, 2**64 - 1, np.uint64)
    nplanes, rem = divmod(M + 1, 8)
    getattr(emu_wt, f"emu_ff_u16_u{W}")(GRID, BLOCK, _p(c), U64(n), _p(table), U64(table.size),
                                        ctypes.c_uint(M), _c(planes), ctypes.c_uint(nplanes),
                                        _c(top), ctypes.c_uint(rem), _p(out), _p(bad))
    assert int(bad[0]) == n // 2 and out[n // 2] == 0
    with pytest.raises(wavelet.WaveletError):
        wavelet.merge_float_fields(c, table, E, M, planes, top, np.empty(n, words.dtype))


@pytest.mark.parametrize("E,M", [(8, 7), (8, 23), (5, 10), (11, 52), (10, 21)])
@pytest.mark.parametrize("n", [1, 100, 5000])
def test_wm_fused_float(emu, E, M, n):
    """Exponent codes in a wavelet matrix (host layout), level passes, then the fused
    level-0 float kernel: bit-exact against the C merge."""
    rng = np.random.default_rng(n * 3 + M)
    words = _float_words(E, M, n, rng)
    codes, table, planes, top = _codec_parts(words, E, M)
    wm = wavelet.WaveletMatrix(codes)
    meta, secs = wm._to_parts()
    a = {t: np.ascontiguousarray(x) for t, x in secs}
    L = int(meta[1])
    stride = -(-n // 512) * 512
    bv = wavelet.BitVector._from_parts((int(meta[-2]), int(meta[-1])), a)
    zeros = [n - (bv.rank1(lv * stride + n) - bv.rank1(lv * stride)) for lv in range(L)]
    S = np.uint8 if L <= 8 else np.uint16
    sn = "u8" if S == np.uint8 else "u16"
    lvl = getattr(emu, f"emu_wm_level_{sn}")
    nxt = None
    for lv in range(L - 1, 0, -1):
        o = np.empty(n, S)
        lvl(GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]), U64(a["WRDS"].size),
            U64(lv * stride), U64(n), U64(zeros[lv]), ctypes.c_uint(L - 1 - lv),
            _p(nxt if nxt is not None else o), ctypes.c_int(nxt is not None), _p(o))
        nxt = o
    W = 1 + E + M
    out = np.empty(n, words.dtype)
    bad = np.full(1, 2**64 - 1, np.uint64)
    nplanes, rem = divmod(M + 1, 8)
    getattr(emu, f"emu_wmf_{sn}_u{W}")(
        GRID, BLOCK, _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"]), U64(a["WRDS"].size), U64(0),
        U64(n), U64(zeros[0]), ctypes.c_uint(L - 1), _c(nxt), ctypes.c_int(nxt is not None),
        _p(table), U64(table.size), ctypes.c_uint(M), _c(planes), ctypes.c_uint(nplanes),
        _c(top), ctypes.c_uint(rem), _p(out), _p(bad))
    np.testing.assert_array_equal(out, words)
    assert int(bad[0]) == 2**64 - 1


# ---- wavelet tree ------------------------------------------------------------------------

WT_WRAP = r"""
typedef const wv_u64 *P;
#define LP P w, P bl, P su, wv_u64 nw, wv_u64 off, wv_u64 base, P node, P A, P O, P C,       \
           wv_u64 v0, wv_u64 v1, wv_u64 cn
#define LA w, bl, su, nw, off, base, node, A, O, C, v0, v1, cn
extern "C" {
void emu_wt_access(unsigned G, unsigned B, P w, P bl, P su, P tab, unsigned L, wv_u64 n, P syms,
                   P q, wv_u64 nq, wv_u64 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_wt_access_k<wv_u64>(w, bl, su, tab, L, n, syms, q, nq, o, bad));
}
void emu_wt_rank(unsigned G, unsigned B, P w, P bl, P su, P tab, unsigned L, wv_u64 n, P skey,
                 const wv_u32 *spos, wv_u64 ns, P c, P q, wv_u64 nq, wv_u64 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_wt_rank_k(w, bl, su, tab, L, n, skey, spos, ns, c, q, nq, o, bad));
}
void emu_wt_select(unsigned G, unsigned B, P w, P bl, P su, P s1, P s0, wv_u64 nw, wv_u64 nb,
                   P tab, unsigned L, wv_u64 n, P skey, const wv_u32 *spos, wv_u64 ns, P c, P q,
                   wv_u64 nq, wv_u64 *o, wv_u64 *bad) {
    EMU_GRID(G, B, wv_wt_select_k(w, bl, su, s1, s0, nw, nb, tab, L, n, skey, spos, ns, c, q, nq,
                                  o, bad));
}
void emu_wt_plan(unsigned G, unsigned B, P w, P bl, P su, P tab, P node, wv_u64 nn, wv_u64 l,
                 wv_u64 r, wv_u64 *A, wv_u64 *C) {
    EMU_GRID(G, B, wv_wt_plan_k(w, bl, su, tab, node, nn, l, r, A, C));
}
#define EMU_WTL(I)                                                                             \
void emu_wt_level_##I(unsigned G, unsigned B, LP, const wv_##I *nx, wv_##I *o) {               \
    EMU_GRID(G, B, (wv_wt_level_k<wv_##I>(LA, nx, o)));                                        \
}
EMU_WTL(u8)
EMU_WTL(u16)
EMU_WTL(u32)
#define EMU_WTS(I, O)                                                                          \
void emu_wt_sym_##I##_##O(unsigned G, unsigned B, LP, const wv_##I *nx, P syms, wv_##O *o) {   \
    EMU_GRID(G, B, (wv_wt_level_sym_k<wv_##I, wv_##O>(LA, nx, syms, o)));                      \
}
EMU_WTS(u8, u64)
EMU_WTS(u16, u64)
EMU_WTS(u32, u64)
#define EMU_WTF(I, O)                                                                          \
void emu_wt_float_##I##_##O(unsigned G, unsigned B, LP, const wv_##I *nx, P syms,              \
                            const wv_u16 *tab, wv_u64 nt, unsigned mb, const wv_u8 *pl,        \
                            unsigned np, const wv_u8 *top, unsigned rem, wv_u64 nel,           \
                            wv_u64 pos0, wv_u64 lead, wv_u64 blk, wv_u64 e0, wv_##O *o,        \
                            wv_u64 *bad) {                                                     \
    EMU_GRID(G, B, (wv_wt_level_float_k<wv_##I, wv_##O>(LA, nx, syms, tab, nt, mb, pl, np,     \
                                                        top, rem, nel, pos0, lead, blk, e0, o, \
                                                        bad)));                                \
}
EMU_WTF(u8, u16)
EMU_WTF(u8, u32)
EMU_WTF(u8, u64)
EMU_WTF(u16, u16)
EMU_WTF(u16, u32)
EMU_WTF(u16, u64)
#define EMU_FF(C, O)                                                                           \
void emu_ff_##C##_##O(unsigned G, unsigned B, const wv_##C *c, wv_u64 n, const wv_u16 *tab,    \
                      wv_u64 nt, unsigned mb, const wv_u8 *pl, unsigned np, const wv_u8 *top,  \
                      unsigned rem, wv_##O *o, wv_u64 *bad) {                                  \
    EMU_GRID(G, B, (wv_float_fields_k<wv_##C, wv_##O>(c, n, tab, nt, mb, pl, np, top, rem, o,  \
                                                      bad)));                                  \
}
EMU_FF(u8, u16)
EMU_FF(u8, u32)
EMU_FF(u8, u64)
EMU_FF(u16, u16)
EMU_FF(u16, u32)
EMU_FF(u16, u64)
}
"""


@pytest.fixture(scope="module")
def emu_wt(tmp_path_factory):
    d = tmp_path_factory.mktemp("emu_wt")
    src = d / "emu_wt.cpp"
    ff = _module.source("fields.cu").split('#line 1 "fields.cu"', 1)[1]
    for mac in ("WV_TID", "WV_NTHREADS"):
        ff = ff.replace(f"#define {mac}()", f"#undef {mac}\n#define {mac}()", 1)
    src.write_text(SHIM + _module.source("wavelet_tree.cu") + "\n" + ff + WT_WRAP)
    so = d / "emu_wt.so"
    r = subprocess.run(
        [CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-w", "-o", str(so), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return ctypes.CDLL(str(so))


class _EmuTree:
    """DeviceWaveletTree's orchestration (derived tables, plan, level passes), on the
    CPU with the emulated kernels and numpy arrays in place of CuPy ones."""

    def __init__(self, emu, wt, max_nodes=None):
        self.emu, self.wt = emu, wt
        meta, secs = wt._device_parts()
        self.a = {t: np.ascontiguousarray(x) for t, x in secs}
        self.n, self.L, self.sigma = int(meta[0]), int(meta[1]), int(meta[2])
        self.tab, nodes = tree_tables(wt, max_nodes)
        self.tabf = np.ascontiguousarray(self.tab.reshape(-1))
        self.node, self.lvstart = nodes if nodes is not None else (None, None)
        self.idx = "u8" if self.sigma <= 256 else "u16" if self.sigma <= 65536 else "u32"

    def bv(self):
        a = self.a
        return _p(a["WRDS"]), _p(a["BLKS"]), _p(a["SUPR"])

    def access(self, q):
        out = np.empty(q.size, np.uint64)
        bad = np.full(1, 2**64 - 1, np.uint64)
        self.emu.emu_wt_access(GRID, BLOCK, *self.bv(), _p(self.tabf), ctypes.c_uint(self.L),
                               U64(self.n), _p(self.a["SYMS"]), _p(q), U64(q.size), _p(out),
                               _p(bad))
        return out, int(bad[0])

    def rank(self, c, q):
        out = np.empty(q.size, np.uint64)
        bad = np.full(1, 2**64 - 1, np.uint64)
        a = self.a
        self.emu.emu_wt_rank(GRID, BLOCK, *self.bv(), _p(self.tabf), ctypes.c_uint(self.L),
                             U64(self.n), _c(a["SKEY"]), _c(a["SPOS"]), U64(self.sigma), _p(c),
                             _p(q), U64(q.size), _p(out), _p(bad))
        return out, int(bad[0])

    def select(self, c, k):
        out = np.empty(k.size, np.uint64)
        bad = np.full(1, 2**64 - 1, np.uint64)
        a = self.a
        self.emu.emu_wt_select(GRID, BLOCK, *self.bv(), _p(a["SEL1"]), _p(a["SEL0"]),
                               U64(a["WRDS"].size), U64(a["BLKS"].size), _p(self.tabf),
                               ctypes.c_uint(self.L), U64(self.n), _c(a["SKEY"]), _c(a["SPOS"]),
                               U64(self.sigma), _p(c), _p(k), U64(k.size), _p(out), _p(bad))
        return out, int(bad[0])

    def plan(self, l, r):
        node = self.node
        nn = int(self.lvstart[-1])
        if l == 0 and r == self.n:
            A = np.ascontiguousarray(node[:, 0])
            return A, A.copy(), np.ascontiguousarray(node[:, 1] - node[:, 0])
        A = np.empty(nn, np.uint64)
        C = np.empty(nn, np.uint64)
        self.emu.emu_wt_plan(GRID, BLOCK, *self.bv(), _p(self.tabf), _p(node), U64(nn), U64(l),
                             U64(r), _p(A), _p(C))
        excl = np.cumsum(C) - C
        lvs = np.repeat(self.lvstart[:-1], np.diff(self.lvstart))
        return A, excl - excl[lvs], C

    def run(self, l, r, final):
        """Level passes as DeviceWaveletTree._run_levels; final(common0, next)."""
        A, O, C = self.plan(l, r)
        self._keep = (A, O, C)
        L, m, tab, a = self.L, r - l, self.tab, self.a
        nact = [int(x) for x in tab[NACT, : L + 1]]
        full = l == 0 and r == self.n
        cap = (lambda d: nact[d]) if full else (lambda d: m)
        dt = {"u8": np.uint8, "u16": np.uint16, "u32": np.uint32}[self.idx]
        bufs = [None, None]
        if L > 1:
            bufs[1] = np.zeros(max(cap(1), 1), dt)
            bufs[0] = np.zeros(max(cap(2), 1), dt) if L > 2 else bufs[1]

        def common(d):
            return (*self.bv(), U64(a["WRDS"].size), U64(int(tab[0, d])), U64(int(tab[1, d])),
                    _p(self.node), _p(A), _p(O), _p(C), U64(int(self.lvstart[d])),
                    U64(int(self.lvstart[d + 1])), U64(nact[d] - nact[d + 1]))

        lvk = getattr(self.emu, f"emu_wt_level_{self.idx}")
        for d in range(L - 1, 0, -1):
            dst = bufs[d & 1]
            nxt = bufs[(d + 1) & 1] if d + 1 < L else dst
            lvk(GRID, BLOCK, *common(d), _p(nxt), _p(dst))
        final(common(0), _p(bufs[1]) if L > 1 else _p(a["WRDS"]))

    def extract(self, l, r):
        out = np.zeros(r - l, np.uint64)
        if r > l:
            fn = getattr(self.emu, f"emu_wt_sym_{self.idx}_u64")
            self.run(l, r, lambda cm, nx: fn(GRID, BLOCK, *cm, nx, _p(self.a["SYMS"]), _p(out)))
        return out

    def decode_float(self, table, E, M, planes, top, nel, l, r, lead=0, block=0):
        W = 1 + E + M
        nplanes, rem = divmod(M + 1, 8)
        e0 = min(count_operands(l, lead, block), nel)
        e1 = min(count_operands(r, lead, block), nel)
        out = np.zeros(e1 - e0, _WORD[W])
        bad = np.full(1, 2**64 - 1, np.uint64)
        fn = getattr(self.emu, f"emu_wt_float_{self.idx}_u{W}")
        self.run(l, r, lambda cm, nx: fn(
            GRID, BLOCK, *cm, nx, _p(self.a["SYMS"]), _p(table), U64(table.size),
            ctypes.c_uint(M), _c(planes), ctypes.c_uint(nplanes), _c(top), ctypes.c_uint(rem),
            U64(nel), U64(l), U64(lead), U64(block), U64(e0), _p(out), _p(bad)))
        return out, int(bad[0])


def _check_tree(emu_wt, seq, shape, ranges=None, nq=400, seed=0):
    wt = wavelet.WaveletTree(seq, shape=shape)
    t = _EmuTree(emu_wt, wt)
    n = len(wt)
    rng = np.random.default_rng(seed)
    ref = wt.extract().astype(np.uint64)
    # access (+ one out-of-range query, flagged)
    q = np.concatenate([rng.integers(0, max(n, 1), nq if n else 0, dtype=np.uint64),
                        np.array([n], np.uint64)])
    got, bad = t.access(q)
    np.testing.assert_array_equal(got[:-1], ref[q[:-1]])
    assert bad == q.size - 1
    # rank over present and absent symbols, i in [0, n]
    skey = t.a["SKEY"]
    extra = [0, min(int(skey.max(initial=0)) + 1, 2**64 - 1), 2**64 - 1, 12345]
    cand = np.concatenate([skey, np.array(extra, np.uint64)])
    c = cand[rng.integers(0, cand.size, nq)]
    i = rng.integers(0, n + 1, nq, dtype=np.uint64)
    got, bad = t.rank(c, i)
    np.testing.assert_array_equal(got, wt.rank(c, i))
    assert bad == 2**64 - 1
    # select: existing occurrences, then one miss (flagged)
    if n:
        c = ref[rng.integers(0, n, nq)]
        k = np.array([rng.integers(0, wt.rank(int(x), n)) for x in c], np.uint64)
        got, bad = t.select(c, k)
        np.testing.assert_array_equal(got, wt.select(c, k))
        assert bad == 2**64 - 1
        got, bad = t.select(np.array([c[0], c[0]], np.uint64),
                            np.array([0, wt.rank(int(c[0]), n)], np.uint64))
        assert bad == 1 and got[0] == wt.select(int(c[0]), 0)
    # bulk extract: whole tree and sub-ranges (plan kernel + compact passes)
    if t.node is not None and n:
        default = [(0, n), (1, n), (n // 3, n - n // 4), (n - 1, n), (n // 2, n // 2)]
        for lo, hi in ranges or default:
            if 0 <= lo <= hi <= n:
                np.testing.assert_array_equal(t.extract(lo, hi), ref[lo:hi], err_msg=f"{lo},{hi}")
    return wt, t


TREE_SIZES = [1, 2, 63, 64, 65, 2047, 2048, 2049, 4095, 4096, 4097, 9001]


@pytest.mark.parametrize("shape", ["balanced", "huffman"])
@pytest.mark.parametrize("n", TREE_SIZES)
def test_tree_queries_and_extract(emu_wt, shape, n):
    rng = np.random.default_rng(n)
    seq = np.minimum(rng.geometric(0.35, n) - 1, 40).astype(np.uint16)  # skewed, ~15 symbols
    _check_tree(emu_wt, seq, shape, seed=n)


@pytest.mark.parametrize("shape", ["balanced", "huffman"])
def test_tree_edge_alphabets(emu_wt, shape):
    _check_tree(emu_wt, np.zeros(5000, np.uint8), shape)  # alphabet 1
    _check_tree(emu_wt, np.full(3000, 2**64 - 1, np.uint64), shape)  # maximal symbol
    _check_tree(emu_wt, np.array([2**64 - 1, 0, 2**64 - 2] * 700, np.uint64), shape)
    _check_tree(emu_wt, np.full(100, 127, np.int8), shape)  # signed dtype, max value
    wt = wavelet.WaveletTree(np.zeros(0, np.uint8), shape=shape)  # empty
    t = _EmuTree(emu_wt, wt)
    got, bad = t.access(np.array([0], np.uint64))
    assert bad == 0
    got, bad = t.rank(np.array([0], np.uint64), np.array([0], np.uint64))
    assert bad == 2**64 - 1 and got[0] == 0
    got, bad = t.select(np.array([0], np.uint64), np.array([0], np.uint64))
    assert bad == 0


def test_tree_large_alphabets(emu_wt):
    """u16 and u32 canonical-index buffers (sigma > 256, > 65536)."""
    rng = np.random.default_rng(3)
    seq = rng.integers(0, 3000, 20000, dtype=np.uint32)
    for shape in ("balanced", "huffman"):
        _, t = _check_tree(emu_wt, seq, shape)
        assert t.idx == "u16"
    seq = rng.permutation(np.arange(70000, dtype=np.uint32) * 7)[:70000]
    _, t = _check_tree(emu_wt, seq, "balanced", ranges=[(0, 70000), (100, 69000)], nq=100)
    assert t.idx == "u32"


def test_tree_node_cap(emu_wt):
    wt = wavelet.WaveletTree(np.arange(300, dtype=np.uint16), shape="balanced")
    tab, nodes = tree_tables(wt, max_nodes=10)
    assert nodes is None
    tab2, nodes2 = tree_tables(wt)
    # codes 0..299 of length 9: depth d has ceil(300 / 2^(9-d)) internal nodes
    want = sum(-(-300 // 2 ** (9 - d)) for d in range(9))
    assert np.array_equal(tab, tab2) and nodes2[1][-1] == want == 303


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seq=st.lists(st.integers(0, 20), min_size=1, max_size=5000),
       shape=st.sampled_from(["balanced", "huffman"]), data=st.data())
def test_tree_hypothesis(emu_wt, seq, shape, data):
    seq = np.array(seq, np.uint8)
    n = seq.size
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    _check_tree(emu_wt, seq, shape, ranges=[(0, n), (lo, hi)], nq=50)


@pytest.mark.parametrize("E,M", [(8, 7), (8, 23), (5, 10), (11, 52), (10, 21)])
@pytest.mark.parametrize("n", [1, 64, 2049, 6000])
def test_tree_fused_float(emu_wt, E, M, n):
    """Huffman tree of exponent codes -> float words in the level-0 pass, bit-exact
    against the C merge; whole tree and sub-ranges."""
    rng = np.random.default_rng(n + M)
    words = _float_words(E, M, n, rng)
    codes, table, planes, top = _codec_parts(words, E, M)
    ref = np.empty(n, words.dtype)
    wavelet.merge_float_fields(codes, table, E, M, planes, top, ref)
    t = _EmuTree(emu_wt, wavelet.WaveletTree(codes, shape="huffman"))
    for lo, hi in [(0, n), (n // 3, n - n // 5), (n - 1, n)]:
        if 0 <= lo < hi <= n:
            got, bad = t.decode_float(table, E, M, planes, top, n, lo, hi)
            np.testing.assert_array_equal(got, ref[lo:hi])
            assert bad == 2**64 - 1
    if table.size < 2:
        return
    # a table one entry short: the code of the largest symbol is now outside it
    got, bad = t.decode_float(table[:-1], E, M, planes, top, n, 0, n)
    assert bad != 2**64 - 1
    with pytest.raises(wavelet.WaveletError):
        wavelet.merge_float_fields(codes, table[:-1], E, M, planes, top, ref.copy())


@pytest.mark.parametrize("block", [1, 3, 64, 100])
def test_tree_fused_float_ras_layout(emu_wt, block):
    """A dnn_adapter RAS: FLAG c c c DELIM c c c DELIM ... END in one Huffman tree; the
    fused decode skips flag, delimiters and the end marker."""
    E, M = 8, 7
    rng = np.random.default_rng(block)
    nb = 37
    n = nb * block
    words = _float_words(E, M, n, rng)
    codes, table, planes, top = _codec_parts(words, E, M)
    k = table.size
    seq = np.empty(n + nb + 2, np.uint16)
    seq[0], seq[-1] = k + 1, k + 3
    body = seq[1:-1].reshape(nb, block + 1)
    body[:, :block] = codes.reshape(nb, block)
    body[:, block] = k + 2
    t = _EmuTree(emu_wt, wavelet.WaveletTree(seq, shape="huffman"))
    got, bad = t.decode_float(table, E, M, planes, top, n, 0, seq.size, lead=1, block=block)
    np.testing.assert_array_equal(got, words)
    assert bad == 2**64 - 1
    # one block, located as the adapter does (select on the delimiter), then decoded
    j = nb // 2
    wt = t.wt
    s0 = int(wt.select(k + 2, j - 1)) + 1
    s1 = int(wt.select(k + 2, j))
    got, bad = t.decode_float(table, E, M, planes, top, n, s0, s1, lead=1, block=block)
    np.testing.assert_array_equal(got, words[j * block:(j + 1) * block])
    assert bad == 2**64 - 1
