/*
 * wv_merge.h -- private declarations shared by the wavelet matrix and tree:
 * extract entries and the shuffle tables of the SSSE3 merge kernels.
 */
#ifndef WV_MERGE_H
#define WV_MERGE_H
#include <stdint.h>

/* One node sub-range in the bulk-decode plan (8 uint64 words). */
typedef struct wv_xent {
    uint64_t a, b;   /* sub-range, positions inside the level */
    uint64_t s, e;   /* whole node (wavelet tree only) */
    uint64_t leaf;   /* value to fill for a leaf (any uint64, all-ones included) */
    uint64_t o;      /* offset of this entry's values in its level buffer */
    uint64_t co;     /* offset of the children's values in the next level */
    uint64_t z;      /* zeros in [a, b) (internal entries); WV_XENT_LEAF marks a leaf */
} wv_xent_t;
/* The leaf marker lives in z (a count below 2^63 for internal entries), not in
 * leaf: a leaf's value may be any uint64, 2^64-1 included. */
#define WV_XENT_LEAF UINT64_MAX
#define WV_XENT_INTERNAL 0
/* An internal entry whose existing children are all leaves: leaf = WV_XENT_PAIR, and its
 * values are s (bit 0) or e (bit 1) per bit, with no merge; those leaf children have co = 1
 * (nothing to fill: no one reads them). */
#define WV_XENT_PAIR 1
#define WV_XENT_WORDS 8

extern uint8_t wv_merge_tab8[256 * 8];
extern uint64_t wv_expand8[256]; /* byte k = 0xFF if bit k of the index is set */
extern uint8_t wv_merge_tab16z[256 * 16], wv_merge_tab16o[256 * 16];
extern uint8_t wv_merge_tab32z[16 * 16], wv_merge_tab32o[16 * 16];
void wv_merge_tables_init(void);
int wv_merge_simd_ok(void);
/* AVX-512 F/BW/VBMI2 byte merges usable (x86-64 CPUs that have them) */
int wv_merge512_ok(void);
#endif
