/*
 * wavelet_matrix.cu -- bulk decode of a wavelet matrix, and reassembly of
 * float weights from an exponent stream plus raw sign/mantissa bits.
 *
 * wv_common.cuh is prepended by the loader.
 *
 * Wavelet matrix (Claude, Navarro, Ordonez, "The wavelet matrix: An efficient
 * wavelet tree for large alphabets", Information Systems 47, 2015): L levels of
 * n bits; level 0 holds the most significant bit of every value in sequence
 * order; level l+1 holds bit (L-2-l) of the values in the order obtained by a
 * stable partition of level l by its bit (zeros first). z_l = zeros in level l.
 * An element at position j of level l moves to
 *     dest_l(j) = rank0_l(j)              if B_l[j] == 0
 *               = z_l + rank1_l(j)        if B_l[j] == 1.
 *
 * Bulk decode, bottom-up, one launch per level (L launches):
 *     W_{L-1}[j] = B_{L-1}[j]
 *     W_l[j]     = (B_l[j] << (L-1-l)) | W_{l+1}[dest_l(j)]
 * and W_0 is the sequence. Each pass streams the bits and W_l, and gathers
 * W_{l+1} from two monotone streams (zeros and ones), so every access is
 * coalesced; a pass costs ~ (2*sizeof(SymT) + 1/8) bytes of traffic per
 * element and is bandwidth-bound. Each warp owns segments of 2048 positions
 * (one rank block); each lane takes one position of every 32-bit chunk and
 * carries the running rank1 itself (no shuffles, no shared memory: lanes are
 * independent, which is what lets the CPU harness emulate the kernel).
 *
 * A level is addressed as bits [off, off+n) of a bitvector (words, blocks,
 * super, nwords), so both layouts work: one bitvector per level (off = 0) or
 * all levels concatenated in one bitvector (off = l*n).
 *
 * The last pass (level 0) can be fused with float reassembly
 * (wv_wm_level_float_k), so the exponent stream never goes to memory.
 */

#define WV_TID() ((wv_u64)blockIdx.x * blockDim.x + threadIdx.x)
#define WV_NTHREADS() ((wv_u64)gridDim.x * blockDim.x)
#define WV_SEG 2048ULL /* positions per warp segment */

/* ---- float reassembly ------------------------------------------------------
 * Bit packing (shared with dnn_adapter's float codec):
 *   exponent stream: one symbol per element (the biased exponent field; or,
 *     with a LUT, an index into lut[] which holds the exponent field).
 *   raw stream: a little-endian bit stream of R = 1 + MBITS bits per element;
 *     element j occupies stream bits [j*R, (j+1)*R), stream bit s is
 *     (raw[s >> 3] >> (s & 7)) & 1; within the R bits, bits 0..MBITS-1 are the
 *     mantissa and bit MBITS is the sign. Hence fp32: R = 24, 3 bytes per
 *     element (little-endian 24-bit ints); bf16: R = 8, one byte per element;
 *     fp16: R = 11, bit-packed. Length: ceil(n*R/8) bytes.
 *   output: the IEEE bit pattern (sign << (EBITS+MBITS)) | (exp << MBITS) | mant
 *     as uint32 (fp32) or uint16 (bf16, fp16); view it as the float type.
 * Integer ops only (CuPy forces -ftz=true: float ops would flush subnormals). */
template <int MBITS>
WV_HD wv_u32 wv_raw_bits(const wv_u8 *raw, wv_u64 nraw, wv_u64 j) {
    const int R = 1 + MBITS;
    if (R == 8)
        return raw[j];
    wv_u64 s = j * (wv_u64)R;
    wv_u64 b = s >> 3;
    unsigned sh = (unsigned)(s & 7);
    const int nb = (R + 7 + 7) / 8; /* bytes that can hold R bits at any bit offset */
    wv_u32 v = 0;
#pragma unroll
    for (int k = 0; k < nb; k++)
        if (b + k < nraw)
            v |= (wv_u32)raw[b + k] << (8 * k);
    return (v >> sh) & ((1u << R) - 1u);
}

template <typename OutT, int EBITS, int MBITS>
WV_HD OutT wv_float_bits(wv_u32 e, wv_u32 v) {
    wv_u32 mant = v & ((1u << MBITS) - 1u);
    wv_u32 sign = (v >> MBITS) & 1u;
    e &= (1u << EBITS) - 1u;
    return (OutT)((sign << (EBITS + MBITS)) | (e << MBITS) | mant);
}

/* out[j] = float bits from (exp[j], raw element j), j < n. */
template <typename SymT, typename OutT, int EBITS, int MBITS>
__global__ void wv_float_merge_k(const SymT *exp, const wv_u8 *raw, wv_u64 nraw,
                                 const wv_u32 *lut, int has_lut, wv_u64 n, OutT *out) {
    for (wv_u64 j = WV_TID(); j < n; j += WV_NTHREADS()) {
        wv_u32 e = (wv_u32)exp[j];
        if (has_lut)
            e = lut[e];
        out[j] = wv_float_bits<OutT, EBITS, MBITS>(e, wv_raw_bits<MBITS>(raw, nraw, j));
    }
}

/* ---- one wavelet-matrix level pass ------------------------------------------
 * Computes W_l[j] for all j < n into out (see the header). has_next = 0 for the
 * last level (next is then not read). blockDim.x must be a multiple of 32. */
template <typename SymT>
__global__ void wv_wm_level_k(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                              wv_u64 nwords, wv_u64 off, wv_u64 n, wv_u64 z, unsigned shift,
                              const SymT *next, int has_next, SymT *out) {
    unsigned lane = threadIdx.x & 31u;
    wv_u64 warp = WV_TID() >> 5, nwarps = WV_NTHREADS() >> 5;
    wv_u64 r1_off = wv_bv_rank1(words, blocks, super, off);
    wv_u32 lt = (1u << lane) - 1u; /* lanes below this one */
    for (wv_u64 p0 = warp * WV_SEG; p0 < n; p0 += nwarps * WV_SEG) {
        wv_u64 r1 = wv_bv_rank1(words, blocks, super, off + p0) - r1_off;
        wv_u64 pend = p0 + WV_SEG < n ? p0 + WV_SEG : n;
        for (wv_u64 p = p0; p < pend; p += 32) {
            wv_u32 chunk = wv_bits32(words, nwords, off + p);
            if (pend - p < 32)
                chunk &= (1u << (unsigned)(pend - p)) - 1u;
            wv_u64 j = p + lane;
            if (j < pend) {
                wv_u32 bit = (chunk >> lane) & 1u;
                wv_u64 ob = wv_popc32(chunk & lt);
                wv_u64 dest = bit ? z + r1 + ob : (p - r1) + (lane - ob);
                SymT v = (SymT)((SymT)bit << shift);
                if (has_next)
                    v |= next[dest];
                out[j] = v;
            }
            r1 += wv_popc32(chunk);
        }
    }
}

/* The level-0 pass fused with float reassembly: out[j] = float bits of
 * (exponent symbol W_0[j], raw element j). next is W_1 (uint8 symbols). */
template <typename OutT, int EBITS, int MBITS>
__global__ void wv_wm_level_float_k(const wv_u64 *words, const wv_u64 *blocks,
                                    const wv_u64 *super, wv_u64 nwords, wv_u64 off, wv_u64 n,
                                    wv_u64 z, unsigned shift, const wv_u8 *next, int has_next,
                                    const wv_u32 *lut, int has_lut, const wv_u8 *raw,
                                    wv_u64 nraw, OutT *out) {
    unsigned lane = threadIdx.x & 31u;
    wv_u64 warp = WV_TID() >> 5, nwarps = WV_NTHREADS() >> 5;
    wv_u64 r1_off = wv_bv_rank1(words, blocks, super, off);
    wv_u32 lt = (1u << lane) - 1u;
    for (wv_u64 p0 = warp * WV_SEG; p0 < n; p0 += nwarps * WV_SEG) {
        wv_u64 r1 = wv_bv_rank1(words, blocks, super, off + p0) - r1_off;
        wv_u64 pend = p0 + WV_SEG < n ? p0 + WV_SEG : n;
        for (wv_u64 p = p0; p < pend; p += 32) {
            wv_u32 chunk = wv_bits32(words, nwords, off + p);
            if (pend - p < 32)
                chunk &= (1u << (unsigned)(pend - p)) - 1u;
            wv_u64 j = p + lane;
            if (j < pend) {
                wv_u32 bit = (chunk >> lane) & 1u;
                wv_u64 ob = wv_popc32(chunk & lt);
                wv_u64 dest = bit ? z + r1 + ob : (p - r1) + (lane - ob);
                wv_u32 e = bit << shift;
                if (has_next)
                    e |= next[dest];
                if (has_lut)
                    e = lut[e];
                out[j] = wv_float_bits<OutT, EBITS, MBITS>(e, wv_raw_bits<MBITS>(raw, nraw, j));
            }
            r1 += wv_popc32(chunk);
        }
    }
}

/* ---- point access (batch) -----------------------------------------------------
 * One thread per query, top-down through the L levels. Levels are described by
 * a table lv[L][7] of u64: words pointer, blocks pointer, super pointer, nwords,
 * off (bit offset of the level), z (zeros in the level), rank1(off). Queries
 * i >= n give WV_U64_MAX-truncated SymT(~0) and are reported through *bad. */
#define WV_LV 7
template <typename SymT>
__global__ void wv_wm_access_k(const wv_u64 *lv, unsigned L, wv_u64 n, const wv_u64 *q,
                               wv_u64 nq, SymT *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < nq; t += WV_NTHREADS()) {
        wv_u64 pos = q[t];
        if (pos >= n) {
            out[t] = (SymT)WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 v = 0;
        for (unsigned l = 0; l < L; l++) {
            const wv_u64 *d = lv + (wv_u64)l * WV_LV;
            const wv_u64 *words = (const wv_u64 *)d[0];
            const wv_u64 *blocks = (const wv_u64 *)d[1];
            const wv_u64 *super = (const wv_u64 *)d[2];
            wv_u64 g = d[4] + pos;
            wv_u64 bit = (WV_LDG(words + (g >> 6)) >> (g & 63)) & 1ULL;
            v = (v << 1) | bit;
            if (l + 1 < L) {
                wv_u64 r1 = wv_bv_rank1(words, blocks, super, g) - d[6];
                pos = bit ? d[5] + r1 : pos - r1;
            }
        }
        out[t] = (SymT)v;
    }
}

/* Explicit instantiations; keep in sync with wavelet/cuda/_module.py (a test
 * checks both directions). */
#define WV_INST_LEVEL(T)                                                                       \
    template __global__ void wv_wm_level_k<T>(const wv_u64 *, const wv_u64 *, const wv_u64 *,  \
                                              wv_u64, wv_u64, wv_u64, wv_u64, unsigned,        \
                                              const T *, int, T *);
WV_INST_LEVEL(wv_u8)
WV_INST_LEVEL(wv_u16)
WV_INST_LEVEL(wv_u32)
WV_INST_LEVEL(wv_u64)

#define WV_INST_ACCESS(T)                                                                      \
    template __global__ void wv_wm_access_k<T>(const wv_u64 *, unsigned, wv_u64, const wv_u64 *, \
                                               wv_u64, T *, wv_u64 *);
WV_INST_ACCESS(wv_u8)
WV_INST_ACCESS(wv_u16)
WV_INST_ACCESS(wv_u32)
WV_INST_ACCESS(wv_u64)

#define WV_INST_FLOAT(O, E, M)                                                                 \
    template __global__ void wv_wm_level_float_k<O, E, M>(                                     \
        const wv_u64 *, const wv_u64 *, const wv_u64 *, wv_u64, wv_u64, wv_u64, wv_u64,        \
        unsigned, const wv_u8 *, int, const wv_u32 *, int, const wv_u8 *, wv_u64, O *);        \
    template __global__ void wv_float_merge_k<wv_u8, O, E, M>(                                 \
        const wv_u8 *, const wv_u8 *, wv_u64, const wv_u32 *, int, wv_u64, O *);
WV_INST_FLOAT(wv_u32, 8, 23) /* fp32 */
WV_INST_FLOAT(wv_u16, 8, 7)  /* bf16 */
WV_INST_FLOAT(wv_u16, 5, 10) /* fp16 */
