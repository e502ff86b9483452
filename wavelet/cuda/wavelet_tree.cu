/*
 * wavelet_tree.cu -- GPU twin of wavelet.WaveletTree (balanced or Huffman-shaped,
 * canonical prefix codes; C core: wavelet_c/wavelet_tree.c, wv_wt_impl.h).
 *
 * wv_common.cuh is prepended by the loader. The device arrays are the very
 * sections of the serialized form (docs/format.md, kind 3): the level bitvector
 * (WRDS BLKS SUPR SEL1 SEL0; level d at bit off[d], nact[d] bits: the elements
 * whose code is longer than d, ordered by their code prefix of length d) and the
 * code tables SYMS SKEY SPOS. Two small derived tables are built once at upload:
 *
 *   tab[6][WV_WT_T]  per level d: off, base = rank1(off), nact, and per code
 *                    length: first code, count, first canonical index (the
 *                    C core's wv_wt_t fields);
 *   node[V][WV_WT_NW] the internal nodes, level by level in prefix order: active
 *                    range [s, e) in their level, rank1(s), zeros before e,
 *                    each child (a leaf's canonical index, or the child node's
 *                    index), flags (leaf bits, depth) and the code prefix.
 *
 * Point queries (access/rank/select) run one thread per query and mirror the C
 * core step by step (three ranks per level for access, as wt_access_u).
 *
 * Bulk decode (extract of [l, r), the whole tree, or decode fused with float
 * reassembly) is LEVEL BY LEVEL, bottom-up, one launch per level, the scheme the
 * wavelet-matrix decode uses (wavelet_matrix.cu), generalised to nodes:
 *     V_d[j] = leaf value                       if the child of j's node taken
 *                                               by bit j is a leaf,
 *            = V_{d+1}[child position of j]     otherwise,
 * with child position rank0-in-node (bit 0) or zeros-of-node + rank1-in-node
 * (bit 1). V_0 is the sequence (or, fused, the float words). Why level by level
 * rather than a warp per output segment walking the tree top-down with per-node
 * cursors: (1) every pass is a pair of coalesced streams (the level's bits and
 * V_d, written) plus two monotone gathers from V_{d+1} (the 0-child and
 * 1-child runs of each node), so each pass runs at memory bandwidth with no warp
 * collectives, shared memory or divergence on code length; a top-down walker
 * serialises one dependent bit-read per level per element, diverges on code
 * length inside a warp (a warp waits for its longest code), and keeps one
 * cursor and one cached word per node: with 30-60 nodes for exponent streams the
 * working set spills L1 and its reads become scattered sector reads from
 * several node streams. (2) Lanes never communicate, so the CPU emulation
 * harness (tests/test_gpu_kernels_emulated.py) checks these exact kernels
 * bit-for-bit against the C core. Cost: level d moves nact[d] elements, i.e.
 * n * (mean code length) in total: for an exponent stream (mean code length
 * ~2.5-3.5 bits) with uint8 canonical indices, ~2 B per element per pass
 * (write V_d + gather V_{d+1}) plus the bits, then the fused last pass
 * (codes never reach memory) reads the raw planes and writes the words.
 *
 * A pass works on the "compact" coordinates of its level: node v's elements of
 * interest are active positions [A_v, A_v + C_v), stored at [O_v, O_v + C_v) of
 * the level's buffer (for the whole tree A = O = s, C = e - s; for a sub-range,
 * wv_wt_plan_k computes A and C, and O is their per-level exclusive prefix sum).
 * Each warp takes WV_WT_SEG consecutive compact positions, each lane every 32nd
 * one: a lane finds its node by binary search once, takes one full rank, then
 * advances 32 positions at a time adding the popcount of the 32 bits it just
 * consumed (one or two word loads shared by the whole warp).
 */

#define WV_TID() ((wv_u64)blockIdx.x * blockDim.x + threadIdx.x)
#define WV_NTHREADS() ((wv_u64)gridDim.x * blockDim.x)
#define WV_WT_SEG 2048ULL /* compact positions per warp segment */

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define WV_DEV __device__ __forceinline__
#define WV_DEVM __device__ __forceinline__ /* member functions */
#else
#define WV_DEV static inline
#define WV_DEVM inline
#endif

/* derived tables (built by wavelet/_gpu_wavelet_tree.py; keep in sync) */
#define WV_WT_T 34 /* columns per tab row: levels / code lengths 0..33 */
#define WV_WT_OFF 0
#define WV_WT_BASE 1
#define WV_WT_NACT 2
#define WV_WT_FIRST 3
#define WV_WT_CNT 4
#define WV_WT_IDX 5
#define WV_WT_TAB(row, d) WV_LDG(tab + (row) * WV_WT_T + (d))

#define WV_WT_NW 8 /* u64 per node record */
#define WV_WT_N_S 0
#define WV_WT_N_E 1
#define WV_WT_N_R1S 2 /* rank1 at s, relative to the level */
#define WV_WT_N_R0E 3 /* e - rank1(e): the 1-child starts at r0e + rank1(s) - rank1(s) */
#define WV_WT_N_CH0 4 /* leaf canonical index, or child node index */
#define WV_WT_N_CH1 5
#define WV_WT_N_FLAGS 6 /* bit 0 / 1: child 0 / 1 is a leaf (or empty); bits 8-15 depth */
#define WV_WT_N_PRE 7   /* code prefix (depth bits) */

/* ones in [0, p) of level d (active coordinates) */
WV_HD wv_u64 wv_wt_r1(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                      const wv_u64 *tab, unsigned d, wv_u64 p) {
    return wv_bv_rank1(words, blocks, super, WV_WT_TAB(WV_WT_OFF, d) + p) -
           WV_WT_TAB(WV_WT_BASE, d);
}

/* ---- point queries (mirror wv_wt_impl.h) ----------------------------------------- */

/* canonical index of the symbol at i < n */
WV_HD wv_u64 wv_wt_access_ci(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                             const wv_u64 *tab, unsigned L, wv_u64 n, wv_u64 i) {
    wv_u64 s = 0, e = n, p = i, pre = 0;
    for (unsigned d = 0; d < L; d++) {
        wv_u64 g = WV_WT_TAB(WV_WT_OFF, d) + p;
        unsigned b = (unsigned)(WV_LDG(words + (g >> 6)) >> (g & 63)) & 1u;
        wv_u64 rs = wv_wt_r1(words, blocks, super, tab, d, s);
        wv_u64 re = wv_wt_r1(words, blocks, super, tab, d, e);
        wv_u64 rp = wv_wt_r1(words, blocks, super, tab, d, p);
        wv_u64 z = (e - s) - (re - rs), ns, ne, np;
        if (b) {
            ns = s + z;
            ne = e;
            np = s + z + (rp - rs);
        } else {
            ns = s;
            ne = s + z;
            np = p - (rp - rs);
        }
        pre = (pre << 1) | b;
        unsigned len = d + 1;
        if (pre - WV_WT_TAB(WV_WT_FIRST, len) < WV_WT_TAB(WV_WT_CNT, len))
            return WV_WT_TAB(WV_WT_IDX, len) + pre - WV_WT_TAB(WV_WT_FIRST, len);
        wv_u64 c = WV_WT_TAB(WV_WT_NACT, d) - WV_WT_TAB(WV_WT_NACT, d + 1);
        s = ns - c;
        e = ne - c;
        p = np - c;
    }
    return 0; /* unreachable on a validated structure */
}

/* canonical index of symbol c (binary search of SKEY), or ~0 if absent */
WV_HD wv_u64 wv_wt_find(const wv_u64 *skey, const wv_u32 *spos, wv_u64 nsyms, wv_u64 c) {
    wv_u64 lo = 0, hi = nsyms;
    while (lo < hi) {
        wv_u64 mid = lo + (hi - lo) / 2;
        if (WV_LDG(skey + mid) < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < nsyms && WV_LDG(skey + lo) == c)
        return WV_LDG(spos + lo);
    return WV_U64_MAX;
}

/* code and length of canonical index ci */
WV_HD unsigned wv_wt_code(const wv_u64 *tab, unsigned L, wv_u64 ci, wv_u64 *code) {
    unsigned len = 1;
    while (len < L && ci >= WV_WT_TAB(WV_WT_IDX, len) + WV_WT_TAB(WV_WT_CNT, len))
        len++;
    *code = WV_WT_TAB(WV_WT_FIRST, len) + (ci - WV_WT_TAB(WV_WT_IDX, len));
    return len;
}

template <typename OutT>
__global__ void wv_wt_access_k(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                               const wv_u64 *tab, unsigned L, wv_u64 n, const wv_u64 *syms,
                               const wv_u64 *q, wv_u64 nq, OutT *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < nq; t += WV_NTHREADS()) {
        wv_u64 i = q[t];
        if (i >= n) {
            out[t] = (OutT)WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        out[t] = (OutT)WV_LDG(syms + wv_wt_access_ci(words, blocks, super, tab, L, n, i));
    }
}

/* occurrences of c[t] in [0, i[t]); i > n is a bad query; absent symbols: 0 */
extern "C" __global__ void wv_wt_rank_k(const wv_u64 *words, const wv_u64 *blocks,
                                        const wv_u64 *super, const wv_u64 *tab, unsigned L,
                                        wv_u64 n, const wv_u64 *skey, const wv_u32 *spos,
                                        wv_u64 nsyms, const wv_u64 *cq, const wv_u64 *q,
                                        wv_u64 nq, wv_u64 *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < nq; t += WV_NTHREADS()) {
        wv_u64 i = q[t];
        if (i > n) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 ci = wv_wt_find(skey, spos, nsyms, cq[t]);
        if (ci == WV_U64_MAX) {
            out[t] = 0;
            continue;
        }
        wv_u64 code;
        unsigned len = wv_wt_code(tab, L, ci, &code);
        wv_u64 s = 0, e = n, p = i, res = 0;
        for (unsigned d = 0; d < len; d++) {
            unsigned b = (unsigned)(code >> (len - 1 - d)) & 1u;
            wv_u64 rs = wv_wt_r1(words, blocks, super, tab, d, s);
            wv_u64 re = wv_wt_r1(words, blocks, super, tab, d, e);
            wv_u64 rp = wv_wt_r1(words, blocks, super, tab, d, p);
            wv_u64 z = (e - s) - (re - rs), ns, ne, np;
            if (b) {
                ns = s + z;
                ne = e;
                np = s + z + (rp - rs);
            } else {
                ns = s;
                ne = s + z;
                np = p - (rp - rs);
            }
            if (d + 1 == len) {
                res = np - ns;
                break;
            }
            wv_u64 c = WV_WT_TAB(WV_WT_NACT, d) - WV_WT_TAB(WV_WT_NACT, d + 1);
            s = ns - c;
            e = ne - c;
            p = np - c;
        }
        out[t] = res;
    }
}

/* position of the k[t]-th (0-based) occurrence of c[t]; bad if there is none */
extern "C" __global__ void wv_wt_select_k(const wv_u64 *words, const wv_u64 *blocks,
                                          const wv_u64 *super, const wv_u64 *sel1,
                                          const wv_u64 *sel0, wv_u64 nwords, wv_u64 nblocks,
                                          const wv_u64 *tab, unsigned L, wv_u64 n,
                                          const wv_u64 *skey, const wv_u32 *spos, wv_u64 nsyms,
                                          const wv_u64 *cq, const wv_u64 *q, wv_u64 nq,
                                          wv_u64 *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < nq; t += WV_NTHREADS()) {
        wv_u64 k = q[t];
        wv_u64 ci = wv_wt_find(skey, spos, nsyms, cq[t]);
        if (ci == WV_U64_MAX || k >= n) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 code;
        unsigned len = wv_wt_code(tab, L, ci, &code);
        wv_u64 S[32], RS[32]; /* len <= WV_WT_MAX_LEVELS = 32 */
        wv_u64 s = 0, e = n, ns = 0, ne = 0;
        for (unsigned d = 0; d < len; d++) {
            unsigned b = (unsigned)(code >> (len - 1 - d)) & 1u;
            wv_u64 gs = wv_bv_rank1(words, blocks, super, WV_WT_TAB(WV_WT_OFF, d) + s);
            wv_u64 rs = gs - WV_WT_TAB(WV_WT_BASE, d);
            wv_u64 re = wv_wt_r1(words, blocks, super, tab, d, e);
            wv_u64 z = (e - s) - (re - rs);
            S[d] = s;
            RS[d] = gs;
            if (b) {
                ns = s + z;
                ne = e;
            } else {
                ns = s;
                ne = s + z;
            }
            if (d + 1 < len) {
                wv_u64 c = WV_WT_TAB(WV_WT_NACT, d) - WV_WT_TAB(WV_WT_NACT, d + 1);
                s = ns - c;
                e = ne - c;
            }
        }
        if (k >= ne - ns) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 p = k;
        for (unsigned d = len; d-- > 0;) {
            unsigned b = (unsigned)(code >> (len - 1 - d)) & 1u;
            wv_u64 start = WV_WT_TAB(WV_WT_OFF, d) + S[d];
            wv_u64 gk = b ? RS[d] + p : (start - RS[d]) + p;
            wv_u64 blk = wv_bv_find_block(blocks, super, b ? sel1 : sel0, nblocks, gk, (int)b);
            p = wv_bv_select_in_block(words, blocks, super, nwords, blk, gk, (int)b) - start;
        }
        out[t] = p;
    }
}

/* ---- bulk decode ------------------------------------------------------------------- */

/* Sub-range plan: for every internal node v, the active positions [A_v, A_v + C_v)
 * of its level that hold elements of [l, r). One thread per node, walking from the
 * root along v's code prefix (2 ranks per level); nodes do not depend on each
 * other, so there is a single launch. */
extern "C" __global__ void wv_wt_plan_k(const wv_u64 *words, const wv_u64 *blocks,
                                        const wv_u64 *super, const wv_u64 *tab,
                                        const wv_u64 *node, wv_u64 nnodes, wv_u64 l, wv_u64 r,
                                        wv_u64 *A, wv_u64 *C) {
    for (wv_u64 v = WV_TID(); v < nnodes; v += WV_NTHREADS()) {
        const wv_u64 *rec = node + v * WV_WT_NW;
        unsigned depth = (unsigned)(WV_LDG(rec + WV_WT_N_FLAGS) >> 8) & 0xFFu;
        wv_u64 pre = WV_LDG(rec + WV_WT_N_PRE);
        wv_u64 u = 0, a = l, b = r;
        for (unsigned d = 0; d < depth; d++) {
            unsigned bit = (unsigned)(pre >> (depth - 1 - d)) & 1u;
            const wv_u64 *ur = node + u * WV_WT_NW;
            wv_u64 ra = wv_wt_r1(words, blocks, super, tab, d, a);
            wv_u64 rb = wv_wt_r1(words, blocks, super, tab, d, b);
            if (bit) {
                a = WV_LDG(ur + WV_WT_N_R0E) + ra;
                b = WV_LDG(ur + WV_WT_N_R0E) + rb;
            } else {
                a = a - ra + WV_LDG(ur + WV_WT_N_R1S);
                b = b - rb + WV_LDG(ur + WV_WT_N_R1S);
            }
            wv_u64 c = WV_WT_TAB(WV_WT_NACT, d) - WV_WT_TAB(WV_WT_NACT, d + 1);
            a -= c;
            b -= c;
            u = WV_LDG(ur + WV_WT_N_CH0 + bit);
        }
        A[v] = a;
        C[v] = b - a;
    }
}

/* One level pass over compact positions [0, M) of level d, M = O[v1-1] + C[v1-1];
 * nodes [v0, v1) are the level's internal nodes. next = V_{d+1} (compact),
 * cnext = leaves at depth d+1 (nact[d] - nact[d+1]). sink.put(t, ci) stores the
 * canonical index ci of compact position t. blockDim.x must be a multiple of 32. */
template <typename IdxT, typename Sink>
WV_DEV void wv_wt_level_body(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                             wv_u64 nwords, wv_u64 off, wv_u64 base, const wv_u64 *node,
                             const wv_u64 *A, const wv_u64 *O, const wv_u64 *C, wv_u64 v0,
                             wv_u64 v1, wv_u64 cnext, const IdxT *next, Sink &sink) {
    unsigned lane = threadIdx.x & 31u;
    wv_u64 warp = WV_TID() >> 5, nwarps = WV_NTHREADS() >> 5;
    wv_u64 M = WV_LDG(O + v1 - 1) + WV_LDG(C + v1 - 1);
    for (wv_u64 t0 = warp * WV_WT_SEG; t0 < M; t0 += nwarps * WV_WT_SEG) {
        wv_u64 t1 = t0 + WV_WT_SEG < M ? t0 + WV_WT_SEG : M;
        wv_u64 t = t0 + lane;
        if (t >= t1)
            continue;
        /* v: the last node with O_v <= t (empty nodes share their successor's O) */
        wv_u64 lo = v0, hi = v1;
        while (hi - lo > 1) {
            wv_u64 mid = lo + (hi - lo) / 2;
            if (WV_LDG(O + mid) <= t)
                lo = mid;
            else
                hi = mid;
        }
        wv_u64 v = lo;
        for (;;) { /* one node per iteration of this loop */
            const wv_u64 *rec = node + v * WV_WT_NW;
            wv_u64 av = WV_LDG(A + v), ov = WV_LDG(O + v), end = ov + WV_LDG(C + v);
            wv_u64 r1s = WV_LDG(rec + WV_WT_N_R1S), r0e = WV_LDG(rec + WV_WT_N_R0E);
            wv_u64 ch0 = WV_LDG(rec + WV_WT_N_CH0), ch1 = WV_LDG(rec + WV_WT_N_CH1);
            unsigned fl = (unsigned)WV_LDG(rec + WV_WT_N_FLAGS);
            /* next[full - sh] for an internal child: its compact position */
            wv_u64 sh0 = (fl & 1u) ? 0 : cnext + WV_LDG(A + ch0) - WV_LDG(O + ch0);
            wv_u64 sh1 = (fl & 2u) ? 0 : cnext + WV_LDG(A + ch1) - WV_LDG(O + ch1);
            wv_u64 j = av + (t - ov);
            wv_u64 r1 = wv_bv_rank1(words, blocks, super, off + j) - base;
            for (;;) {
                wv_u32 chunk = wv_bits32(words, nwords, off + j);
                wv_u64 ci;
                if (chunk & 1u)
                    ci = (fl & 2u) ? ch1 : (wv_u64)next[r0e + r1 - sh1];
                else
                    ci = (fl & 1u) ? ch0 : (wv_u64)next[j - r1 + r1s - sh0];
                sink.put(t, ci);
                t += 32;
                if (t >= t1 || t >= end)
                    break;
                j += 32; /* the 32 bits just read all lie in this node */
                r1 += wv_popc32(chunk);
            }
            if (t >= t1)
                break;
            do
                v++;
            while (WV_LDG(O + v) + WV_LDG(C + v) <= t);
        }
    }
}

template <typename IdxT> struct wv_wt_idx_sink {
    IdxT *out;
    WV_DEVM void put(wv_u64 t, wv_u64 ci) { out[t] = (IdxT)ci; }
};

template <typename OutT> struct wv_wt_sym_sink {
    const wv_u64 *syms;
    OutT *out;
    WV_DEVM void put(wv_u64 t, wv_u64 ci) { out[t] = (OutT)WV_LDG(syms + ci); }
};

/* Tree position p = pos0 + t holds the code of element i (FloatCodec parts), or a
 * symbol that is not an operand: the first `lead` positions (a RAS flag) and, with
 * block > 0, every (block+1)-th symbol after them (a RAS delimiter); elements
 * i >= nel (a RAS end marker) are skipped too. out[i - e0] receives the word. */
template <typename OutT> struct wv_wt_float_sink {
    const wv_u64 *syms;
    const wv_u16 *table;
    wv_u64 ntable;
    unsigned mant_bits;
    const wv_u8 *planes;
    unsigned nplanes;
    const wv_u8 *top;
    unsigned rem;
    wv_u64 nel, pos0, lead, block, e0;
    OutT *out;
    wv_u64 *bad;
    WV_DEVM void put(wv_u64 t, wv_u64 ci) {
        wv_u64 p = pos0 + t;
        if (p < lead)
            return;
        wv_u64 q = p - lead, i = q;
        if (block) {
            wv_u64 per = block + 1, bk, o;
            if ((q >> 32) == 0 && (per >> 32) == 0) { /* 32-bit division: far cheaper */
                wv_u32 q32 = (wv_u32)q, p32 = (wv_u32)per;
                wv_u32 b32 = q32 / p32;
                bk = b32;
                o = q32 - b32 * p32;
            } else {
                bk = q / per;
                o = q - bk * per;
            }
            if (o == block)
                return;
            i = bk * block + o;
        }
        if (i >= nel)
            return;
        wv_u64 c = WV_LDG(syms + ci);
        if (c >= ntable) {
            out[i - e0] = 0;
            atomicMin(bad, p);
            return;
        }
        wv_u64 raw = wv_float_raw(planes, nplanes, top, rem, nel, i);
        out[i - e0] = (OutT)wv_float_word(raw, (wv_u64)WV_LDG(table + c), mant_bits,
                                          8u * (unsigned)sizeof(OutT));
    }
};

#define WV_WT_LEVEL_PARAMS                                                                     \
    const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super, wv_u64 nwords,             \
        wv_u64 off, wv_u64 base, const wv_u64 *node, const wv_u64 *A, const wv_u64 *O,         \
        const wv_u64 *C, wv_u64 v0, wv_u64 v1, wv_u64 cnext
#define WV_WT_LEVEL_ARGS words, blocks, super, nwords, off, base, node, A, O, C, v0, v1, cnext

/* inner levels: canonical indices */
template <typename IdxT>
__global__ void wv_wt_level_k(WV_WT_LEVEL_PARAMS, const IdxT *next, IdxT *out) {
    wv_wt_idx_sink<IdxT> sink = {out};
    wv_wt_level_body<IdxT>(WV_WT_LEVEL_ARGS, next, sink);
}

/* level 0: symbols (SYMS[ci]) in the output type */
template <typename IdxT, typename OutT>
__global__ void wv_wt_level_sym_k(WV_WT_LEVEL_PARAMS, const IdxT *next, const wv_u64 *syms,
                                  OutT *out) {
    wv_wt_sym_sink<OutT> sink = {syms, out};
    wv_wt_level_body<IdxT>(WV_WT_LEVEL_ARGS, next, sink);
}

/* level 0 fused with float reassembly: the codes never go to memory */
template <typename IdxT, typename OutT>
__global__ void wv_wt_level_float_k(WV_WT_LEVEL_PARAMS, const IdxT *next, const wv_u64 *syms,
                                    const wv_u16 *table, wv_u64 ntable, unsigned mant_bits,
                                    const wv_u8 *planes, unsigned nplanes, const wv_u8 *top,
                                    unsigned rem, wv_u64 nel, wv_u64 pos0, wv_u64 lead,
                                    wv_u64 block, wv_u64 e0, OutT *out, wv_u64 *bad) {
    wv_wt_float_sink<OutT> sink = {syms, table, ntable, mant_bits, planes, nplanes, top, rem,
                                   nel,  pos0,  lead,   block,     e0,     out,     bad};
    wv_wt_level_body<IdxT>(WV_WT_LEVEL_ARGS, next, sink);
}

/* Explicit instantiations; keep in sync with wavelet/cuda/_module.py (tested). */
#define WV_INST_WT_ACCESS(O)                                                                   \
    template __global__ void wv_wt_access_k<O>(const wv_u64 *, const wv_u64 *, const wv_u64 *, \
                                               const wv_u64 *, unsigned, wv_u64,               \
                                               const wv_u64 *, const wv_u64 *, wv_u64, O *,    \
                                               wv_u64 *);
WV_INST_WT_ACCESS(wv_u8)
WV_INST_WT_ACCESS(wv_u16)
WV_INST_WT_ACCESS(wv_u32)
WV_INST_WT_ACCESS(wv_u64)

#define WV_LP                                                                                  \
    const wv_u64 *, const wv_u64 *, const wv_u64 *, wv_u64, wv_u64, wv_u64, const wv_u64 *,    \
        const wv_u64 *, const wv_u64 *, const wv_u64 *, wv_u64, wv_u64, wv_u64
#define WV_INST_WT_LEVEL(I)                                                                    \
    template __global__ void wv_wt_level_k<I>(WV_LP, const I *, I *);
WV_INST_WT_LEVEL(wv_u8)
WV_INST_WT_LEVEL(wv_u16)
WV_INST_WT_LEVEL(wv_u32)

#define WV_INST_WT_SYM(I, O)                                                                   \
    template __global__ void wv_wt_level_sym_k<I, O>(WV_LP, const I *, const wv_u64 *, O *);
WV_INST_WT_SYM(wv_u8, wv_u8)
WV_INST_WT_SYM(wv_u8, wv_u16)
WV_INST_WT_SYM(wv_u8, wv_u32)
WV_INST_WT_SYM(wv_u8, wv_u64)
WV_INST_WT_SYM(wv_u16, wv_u8)
WV_INST_WT_SYM(wv_u16, wv_u16)
WV_INST_WT_SYM(wv_u16, wv_u32)
WV_INST_WT_SYM(wv_u16, wv_u64)
WV_INST_WT_SYM(wv_u32, wv_u8)
WV_INST_WT_SYM(wv_u32, wv_u16)
WV_INST_WT_SYM(wv_u32, wv_u32)
WV_INST_WT_SYM(wv_u32, wv_u64)

#define WV_INST_WT_FLOAT(I, O)                                                                 \
    template __global__ void wv_wt_level_float_k<I, O>(                                        \
        WV_LP, const I *, const wv_u64 *, const wv_u16 *, wv_u64, unsigned, const wv_u8 *,     \
        unsigned, const wv_u8 *, unsigned, wv_u64, wv_u64, wv_u64, wv_u64, wv_u64, O *,        \
        wv_u64 *);
WV_INST_WT_FLOAT(wv_u8, wv_u16)
WV_INST_WT_FLOAT(wv_u8, wv_u32)
WV_INST_WT_FLOAT(wv_u8, wv_u64)
WV_INST_WT_FLOAT(wv_u16, wv_u16)
WV_INST_WT_FLOAT(wv_u16, wv_u32)
WV_INST_WT_FLOAT(wv_u16, wv_u64)
WV_INST_WT_FLOAT(wv_u32, wv_u16)
WV_INST_WT_FLOAT(wv_u32, wv_u32)
WV_INST_WT_FLOAT(wv_u32, wv_u64)
