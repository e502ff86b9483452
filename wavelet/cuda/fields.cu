/*
 * fields.cu -- device twin of wavelet.merge_float_fields (C: wavelet_c/fields.c):
 * rebuild fixed-width words from exponent codes, a code -> field table and the
 * raw sign/mantissa bits in dnn_adapter's FloatCodec layout (byte planes plus a
 * bit-packed remainder; see wv_float_raw / wv_float_word in wv_common.cuh).
 *
 * wv_common.cuh is prepended by the loader.
 *
 * General (exp_bits, mant_bits) with 1 + exp_bits + mant_bits = 8 * sizeof(OutT):
 * the IEEE split, or a wider "exponent" field holding the top mantissa bits too.
 * The caller checks the table (every entry < 2^exp_bits) and the part sizes; a
 * code >= ntable is data corruption: that element gets 0 and its index is
 * atomicMin'ed into *bad (initialised to 2^64-1), like the C core's WV_ECORRUPT.
 *
 * One thread per element, grid-stride; the byte planes and the output are read
 * and written coalesced (consecutive lanes, consecutive bytes), the table (at
 * most 64K entries, usually < 64) stays in L1. Traffic per element: code width +
 * (M+1)/8 + word width bytes, all streamed: the kernel is bandwidth-bound.
 */

#define WV_TID() ((wv_u64)blockIdx.x * blockDim.x + threadIdx.x)
#define WV_NTHREADS() ((wv_u64)gridDim.x * blockDim.x)

template <typename CodeT, typename OutT>
__global__ void wv_float_fields_k(const CodeT *codes, wv_u64 n, const wv_u16 *table,
                                  wv_u64 ntable, unsigned mant_bits, const wv_u8 *planes,
                                  unsigned nplanes, const wv_u8 *top, unsigned rem, OutT *out,
                                  wv_u64 *bad) {
    const unsigned wbits = 8u * (unsigned)sizeof(OutT);
    for (wv_u64 i = WV_TID(); i < n; i += WV_NTHREADS()) {
        wv_u64 c = (wv_u64)codes[i];
        if (c >= ntable) {
            out[i] = 0;
            atomicMin(bad, i);
            continue;
        }
        wv_u64 raw = wv_float_raw(planes, nplanes, top, rem, n, i);
        out[i] = (OutT)wv_float_word(raw, (wv_u64)WV_LDG(table + c), mant_bits, wbits);
    }
}

/* Explicit instantiations; keep in sync with wavelet/cuda/_module.py (tested). */
#define WV_INST_FIELDS(C, O)                                                                   \
    template __global__ void wv_float_fields_k<C, O>(const C *, wv_u64, const wv_u16 *,        \
                                                     wv_u64, unsigned, const wv_u8 *,          \
                                                     unsigned, const wv_u8 *, unsigned, O *,   \
                                                     wv_u64 *);
WV_INST_FIELDS(wv_u8, wv_u16)
WV_INST_FIELDS(wv_u8, wv_u32)
WV_INST_FIELDS(wv_u8, wv_u64)
WV_INST_FIELDS(wv_u16, wv_u16)
WV_INST_FIELDS(wv_u16, wv_u32)
WV_INST_FIELDS(wv_u16, wv_u64)
