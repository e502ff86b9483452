/*
 * bitvector.cu -- batch access/rank/select and range extract on the GPU twin
 * of wavelet.BitVector. The device arrays are the very sections of the
 * serialized form (WRDS, BLKS, SUPR, SEL1, SEL0; layout in wavelet_c/wavelet.h),
 * uploaded as they are.
 *
 * wv_common.cuh is prepended by the loader (see its header comment).
 *
 * One thread per query, grid-stride loops (any n, any grid). Queries are
 * range-checked on the device: an out-of-range query never reads out of
 * bounds, gets the result WV_U64_MAX (0xFF for access), and its index is
 * atomicMin'ed into *bad (initialised to WV_U64_MAX by the caller), so the
 * caller can raise IndexError for the first bad query, as the C core does.
 *
 * Cost: rank = one 8-byte index entry (the index is 3% of the bits, so it
 * stays in L2 for vectors up to ~10^10 bits) + one 64-byte line of bits;
 * access = one 8-byte load; select = a sample, a binary search over index
 * entries, one line.
 */

#define WV_TID() ((wv_u64)blockIdx.x * blockDim.x + threadIdx.x)
#define WV_NTHREADS() ((wv_u64)gridDim.x * blockDim.x)

extern "C" __global__ void wv_bv_access_k(const wv_u64 *words, wv_u64 nbits, const wv_u64 *q,
                                          wv_u64 n, wv_u8 *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < n; t += WV_NTHREADS()) {
        wv_u64 i = q[t];
        if (i >= nbits) {
            out[t] = 0xFF;
            atomicMin(bad, t);
            continue;
        }
        out[t] = (wv_u8)((WV_LDG(words + (i >> 6)) >> (i & 63)) & 1ULL);
    }
}

/* ONE=1: rank1(i) (ones in [0, i)); ONE=0: rank0(i). 0 <= i <= nbits. */
template <int ONE>
__global__ void wv_bv_rank_k(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                             wv_u64 nbits, const wv_u64 *q, wv_u64 n, wv_u64 *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < n; t += WV_NTHREADS()) {
        wv_u64 i = q[t];
        if (i > nbits) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 r = wv_bv_rank1(words, blocks, super, i);
        out[t] = ONE ? r : i - r;
    }
}

/* ONE=1: select1(k) (position of the k-th one, 0-based), k < ones;
 * ONE=0: select0 over zeros, k < nbits - ones. samp = SEL1 or SEL0. */
template <int ONE>
__global__ void wv_bv_select_k(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                               const wv_u64 *samp, wv_u64 nwords, wv_u64 nblocks, wv_u64 count,
                               const wv_u64 *q, wv_u64 n, wv_u64 *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < n; t += WV_NTHREADS()) {
        wv_u64 k = q[t];
        if (k >= count) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 b = wv_bv_find_block(blocks, super, samp, nblocks, k, ONE);
        out[t] = wv_bv_select_in_block(words, blocks, super, nwords, b, k, ONE);
    }
}

/* Bits [l, l+m) unpacked, one byte (0 or 1) per bit: out[j] = bit l+j.
 * The caller checks l + m <= nbits. Consecutive threads read the same word
 * (broadcast) and write consecutive bytes (coalesced). */
extern "C" __global__ void wv_bv_extract_bits_k(const wv_u64 *words, wv_u64 l, wv_u64 m,
                                                wv_u8 *out) {
    for (wv_u64 j = WV_TID(); j < m; j += WV_NTHREADS()) {
        wv_u64 i = l + j;
        out[j] = (wv_u8)((WV_LDG(words + (i >> 6)) >> (i & 63)) & 1ULL);
    }
}

/* Bits [l, l+m) packed into ceil(m/64) words, re-based to bit 0 (same
 * little-endian bit order as WRDS; padding bits past m are zero). */
extern "C" __global__ void wv_bv_extract_words_k(const wv_u64 *words, wv_u64 nwords, wv_u64 l,
                                                 wv_u64 m, wv_u64 *out) {
    wv_u64 nout = (m + 63) >> 6;
    for (wv_u64 k = WV_TID(); k < nout; k += WV_NTHREADS()) {
        wv_u64 g = l + (k << 6);
        wv_u64 w = g >> 6;
        unsigned sh = (unsigned)(g & 63);
        wv_u64 x = WV_LDG(words + w) >> sh;
        if (sh && w + 1 < nwords)
            x |= WV_LDG(words + w + 1) << (64 - sh);
        wv_u64 left = m - (k << 6);
        if (left < 64)
            x &= (1ULL << left) - 1ULL;
        out[k] = x;
    }
}

/* Explicit instantiations (nvcc --ptx emits only these; NVRTC resolves the same
 * names through name_expressions). Keep in sync with wavelet/cuda/_module.py. */
template __global__ void wv_bv_rank_k<0>(const wv_u64 *, const wv_u64 *, const wv_u64 *, wv_u64,
                                         const wv_u64 *, wv_u64, wv_u64 *, wv_u64 *);
template __global__ void wv_bv_rank_k<1>(const wv_u64 *, const wv_u64 *, const wv_u64 *, wv_u64,
                                         const wv_u64 *, wv_u64, wv_u64 *, wv_u64 *);
template __global__ void wv_bv_select_k<0>(const wv_u64 *, const wv_u64 *, const wv_u64 *,
                                           const wv_u64 *, wv_u64, wv_u64, wv_u64,
                                           const wv_u64 *, wv_u64, wv_u64 *, wv_u64 *);
template __global__ void wv_bv_select_k<1>(const wv_u64 *, const wv_u64 *, const wv_u64 *,
                                           const wv_u64 *, wv_u64, wv_u64, wv_u64,
                                           const wv_u64 *, wv_u64, wv_u64 *, wv_u64 *);
