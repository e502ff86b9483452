/*
 * wv_common.cuh -- shared device helpers for the wavelet CUDA kernels.
 *
 * Self-contained on purpose: NVRTC has no standard headers, so no <cstdint>;
 * our own fixed-width typedefs instead. The Python loader (wavelet/cuda/_module.py)
 * *concatenates* this file in front of every .cu source before compiling, because
 * CuPy's kernel cache hashes the source text, not the files it #includes. The .cu
 * files therefore do not #include it; tools/check_kernels.py and the nvcc test
 * compile the same concatenation.
 *
 * Every helper is __host__ __device__ so the per-thread kernel bodies can also be
 * compiled as plain C++ by the CPU emulation harness (tests/test_gpu_kernels_emulated.py),
 * which checks their logic against the C core on machines without a GPU.
 *
 * Integer ops only: CuPy compiles with -ftz=true, so no float arithmetic ever
 * touches weight bits.
 */
#ifndef WV_COMMON_CUH
#define WV_COMMON_CUH

typedef unsigned long long wv_u64;
typedef long long wv_i64;
typedef unsigned int wv_u32;
typedef unsigned short wv_u16;
typedef unsigned char wv_u8;

#define WV_U64_MAX 0xFFFFFFFFFFFFFFFFULL
#define WV_BV_BLOCK_BITS 2048ULL /* must equal wavelet.h (tested) */
#define WV_BV_SEL_SAMPLE 4096ULL /* must equal WV_BV_SEL_SAMPLE in wavelet_c/wavelet.h (tested) */

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define WV_HD __host__ __device__ __forceinline__
#else /* CPU emulation harness: plain C++ */
#define WV_HD static inline
#endif

#ifdef __CUDA_ARCH__
#define WV_LDG(p) __ldg(p)
#else
#define WV_LDG(p) (*(p))
#endif

WV_HD unsigned wv_popc64(wv_u64 x) {
#ifdef __CUDA_ARCH__
    return (unsigned)__popcll(x);
#else
    return (unsigned)__builtin_popcountll(x);
#endif
}

WV_HD unsigned wv_popc32(wv_u32 x) {
#ifdef __CUDA_ARCH__
    return (unsigned)__popc(x);
#else
    return (unsigned)__builtin_popcount(x);
#endif
}

/* Position of the r-th (0-based) set bit of x; requires r < popcount(x).
 * Branch-light halving search with popcounts (6 steps). */
WV_HD unsigned wv_select64(wv_u64 x, unsigned r) {
    unsigned pos = 0;
    unsigned h = 32;
#pragma unroll
    for (int s = 0; s < 6; s++) {
        wv_u64 m = (h == 64) ? WV_U64_MAX : ((1ULL << h) - 1ULL);
        unsigned c = wv_popc64(x & m);
        if (r >= c) {
            r -= c;
            x >>= h;
            pos += h;
        }
        h >>= 1;
    }
    return pos;
}

/* 32 bits of `words` starting at bit g (bits at or past nwords*64 read as 0). */
WV_HD wv_u32 wv_bits32(const wv_u64 *words, wv_u64 nwords, wv_u64 g) {
    wv_u64 w = g >> 6;
    unsigned sh = (unsigned)(g & 63);
    wv_u64 x = (w < nwords) ? (WV_LDG(words + w) >> sh) : 0ULL;
    if (sh > 32 && w + 1 < nwords)
        x |= WV_LDG(words + w + 1) << (64 - sh);
    return (wv_u32)x;
}

/* ---- bitvector (layout: wavelet_c/wavelet.h; algorithms mirror wv_bv_impl.h) ---- */

/* ones in [0, 2048*b) */
WV_HD wv_u64 wv_bv_block_rank(const wv_u64 *blocks, const wv_u64 *super, wv_u64 b) {
    return WV_LDG(super + (b >> 21)) + (WV_LDG(blocks + b) & 0xFFFFFFFFULL);
}

/* rank1(i), 0 <= i <= nbits (trusted). One index entry + one 64-byte line. */
WV_HD wv_u64 wv_bv_rank1(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                         wv_u64 i) {
    wv_u64 b = i >> 11;
    wv_u64 e = WV_LDG(blocks + b);
    wv_u64 r = WV_LDG(super + (b >> 21)) + (e & 0xFFFFFFFFULL);
    unsigned sub = (unsigned)(i >> 9) & 3;
    wv_u64 c0 = (e >> 32) & 0x3FF, c1 = (e >> 42) & 0x3FF, c2 = (e >> 52) & 0x3FF;
    r += (sub > 0 ? c0 : 0) + (sub > 1 ? c1 : 0) + (sub > 2 ? c2 : 0);
    const wv_u64 *w = words + ((i >> 9) << 3);
    unsigned nw = (unsigned)(i >> 6) & 7;
    for (unsigned k = 0; k < nw; k++)
        r += wv_popc64(WV_LDG(w + k));
    unsigned off = (unsigned)i & 63;
    if (off)
        r += wv_popc64(WV_LDG(w + nw) & ((1ULL << off) - 1ULL));
    return r;
}

/* Block b with before(b) <= k < before(b+1) over ones (one=1) or zeros. */
WV_HD wv_u64 wv_bv_find_block(const wv_u64 *blocks, const wv_u64 *super, const wv_u64 *samp,
                              wv_u64 nblocks, wv_u64 k, int one) {
    wv_u64 j = k / WV_BV_SEL_SAMPLE;
    wv_u64 lo = WV_LDG(samp + j), hi = WV_LDG(samp + j + 1) + 1;
    if (hi > nblocks - 1)
        hi = nblocks - 1;
    while (hi - lo > 8) {
        wv_u64 mid = lo + (hi - lo) / 2;
        wv_u64 c = wv_bv_block_rank(blocks, super, mid);
        if (!one)
            c = mid * WV_BV_BLOCK_BITS - c;
        if (c <= k)
            lo = mid;
        else
            hi = mid;
    }
    while (lo + 1 < hi) {
        wv_u64 c = wv_bv_block_rank(blocks, super, lo + 1);
        if (!one)
            c = (lo + 1) * WV_BV_BLOCK_BITS - c;
        if (c > k)
            break;
        lo++;
    }
    return lo;
}

WV_HD wv_u64 wv_bv_select_in_block(const wv_u64 *words, const wv_u64 *blocks,
                                   const wv_u64 *super, wv_u64 nwords, wv_u64 b, wv_u64 k,
                                   int one) {
    wv_u64 e = WV_LDG(blocks + b);
    wv_u64 before = wv_bv_block_rank(blocks, super, b);
    if (!one)
        before = b * WV_BV_BLOCK_BITS - before;
    wv_u64 r = k - before;
    unsigned sub = 0;
    for (; sub < 3; sub++) {
        wv_u64 c = (e >> (32 + 10 * sub)) & 0x3FF;
        if (!one)
            c = 512 - c;
        if (r < c)
            break;
        r -= c;
    }
    wv_u64 base = b * 32 + sub * 8;
    for (unsigned k2 = 0; k2 < 8 && base + k2 < nwords; k2++) {
        wv_u64 x = WV_LDG(words + base + k2);
        if (!one)
            x = ~x;
        unsigned c = wv_popc64(x);
        if (r < c)
            return b * WV_BV_BLOCK_BITS + sub * 512 + k2 * 64 + wv_select64(x, (unsigned)r);
        r -= c;
    }
    return WV_U64_MAX; /* unreachable on a validated structure */
}

/* ---- float fields (the FloatCodec layout; C reference: wavelet_c/fields.c) -----
 * An element's word (W = 16, 32 or 64 bits) is
 *     sign << (W-1) | field << M | mantissa,        1 + E + M == W,
 * where the M+1 "raw" bits of element i (mantissa in bits 0..M-1, sign at bit M)
 * are stored as nplanes = (M+1) >> 3 byte planes, planes[p*n + i] = raw byte p,
 * plus rem = (M+1) & 7 further bits at bit i*rem of the LSB-first packed `top`.
 * The field (E bits; the IEEE exponent, or a wider exponent+top-mantissa field)
 * comes from a table of uint16 indexed by the element's code. Integer ops only
 * (CuPy forces -ftz=true; no float op ever touches weight bits). */
WV_HD wv_u64 wv_float_raw(const wv_u8 *planes, unsigned nplanes, const wv_u8 *top, unsigned rem,
                          wv_u64 n, wv_u64 i) {
    wv_u64 raw = 0;
    for (unsigned p = 0; p < nplanes; p++)
        raw |= (wv_u64)WV_LDG(planes + (wv_u64)p * n + i) << (8 * p);
    if (rem) {
        wv_u64 s = i * rem;
        unsigned sh = (unsigned)(s & 7);
        unsigned v = (unsigned)WV_LDG(top + (s >> 3)) >> sh;
        if (sh + rem > 8) /* the byte exists: bit s + rem - 1 < n * rem */
            v |= (unsigned)WV_LDG(top + (s >> 3) + 1) << (8 - sh);
        raw |= (wv_u64)(v & ((1u << rem) - 1u)) << (8 * nplanes);
    }
    return raw;
}

WV_HD wv_u64 wv_float_word(wv_u64 raw, wv_u64 field, unsigned mant_bits, unsigned wbits) {
    wv_u64 mmask = (1ULL << mant_bits) - 1ULL;
    return (raw & mmask) | (((raw >> mant_bits) & 1ULL) << (wbits - 1)) | (field << mant_bits);
}

#endif /* WV_COMMON_CUH */
