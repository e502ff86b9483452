/*
 * huffman.c -- length-limited Huffman code lengths for the Huffman-shaped
 * wavelet tree (canonical codes are assigned from the lengths by
 * wavelet_tree.c).
 *
 * Lengths come from the classic two-queue Huffman construction over the
 * frequencies sorted ascending (van Leeuwen, 1976: O(sigma) after the sort);
 * when the longest code exceeds maxlen, the lengths are clamped to maxlen and
 * the Kraft inequality is restored by lengthening the least frequent codes
 * that are still shorter than maxlen, then codes are shortened again,
 * most frequent first, while the Kraft sum allows it (the heuristic of
 * zlib/brotli-style encoders; at most a fraction of a bit per symbol worse
 * than optimal package-merge on real data).
 */
#include <stdlib.h>
#include <string.h>

#include "wavelet.h"

int wv_huffman_lengths(const uint64_t *freq, uint64_t nsyms, uint32_t maxlen, uint8_t *lens) {
    if ((!freq || !lens) && nsyms)
        return WV_EINVAL;
    if (maxlen < 1 || maxlen > WV_WT_MAX_LEVELS || nsyms > (UINT64_C(1) << 32))
        return WV_EINVAL;
    if (nsyms > (UINT64_C(1) << maxlen))
        return WV_EINVAL;
    if (nsyms == 0)
        return WV_OK;
    if (nsyms == 1) {
        lens[0] = 1;
        return WV_OK;
    }
    for (uint64_t i = 0; i < nsyms; i++)
        if (freq[i] == 0)
            return WV_EINVAL;
    size_t m = (size_t)nsyms;
    uint32_t *ord = malloc(m * sizeof *ord);
    uint64_t *w = malloc(2 * m * sizeof *w);
    uint32_t *parent = malloc(2 * m * sizeof *parent);
    uint32_t *depth = malloc(2 * m * sizeof *depth);
    if (!ord || !w || !parent || !depth) {
        free(ord), free(w), free(parent), free(depth);
        return WV_ENOMEM;
    }
    for (size_t i = 0; i < m; i++)
        ord[i] = (uint32_t)i;
    {
        /* sort indices by (freq, index) with a simple merge sort on pairs */
        uint64_t *key = w; /* reuse as scratch: key[i] = freq, ord = index */
        for (size_t i = 0; i < m; i++)
            key[i] = freq[i];
        uint32_t *tmpo = parent;
        uint64_t *tmpk = (uint64_t *)depth; /* depth has 2m uint32 = m uint64 */
        for (size_t width = 1; width < m; width *= 2) {
            for (size_t lo = 0; lo < m; lo += 2 * width) {
                size_t mid = lo + width < m ? lo + width : m;
                size_t hi = lo + 2 * width < m ? lo + 2 * width : m;
                size_t a = lo, b = mid, k = lo;
                while (a < mid && b < hi) {
                    if (key[b] < key[a]) {
                        tmpk[k] = key[b], tmpo[k++] = ord[b++];
                    } else {
                        tmpk[k] = key[a], tmpo[k++] = ord[a++];
                    }
                }
                while (a < mid)
                    tmpk[k] = key[a], tmpo[k++] = ord[a++];
                while (b < hi)
                    tmpk[k] = key[b], tmpo[k++] = ord[b++];
            }
            memcpy(key, tmpk, m * sizeof *key);
            memcpy(ord, tmpo, m * sizeof *ord);
        }
    }
    /* two-queue Huffman: leaves 0..m-1 (sorted weights in w[0..m)), internal
     * nodes m..2m-2 created in nondecreasing weight order */
    size_t li = 0, ii = m, nn = m;
    for (size_t k = 0; k + 1 < m; k++) {
        uint64_t pick[2];
        size_t who[2];
        for (int h = 0; h < 2; h++) {
            if (li < m && (ii >= nn || w[li] <= w[ii])) {
                who[h] = li;
                pick[h] = w[li++];
            } else {
                who[h] = ii;
                pick[h] = w[ii++];
            }
        }
        w[nn] = pick[0] + pick[1];
        parent[who[0]] = (uint32_t)nn;
        parent[who[1]] = (uint32_t)nn;
        nn++;
    }
    depth[nn - 1] = 0;
    for (size_t k = nn - 1; k-- > 0;)
        depth[k] = depth[parent[k]] + 1;
    /* depth[i] for sorted position i; clamp and fix the Kraft sum */
    uint64_t cap = UINT64_C(1) << maxlen, K = 0;
    for (size_t i = 0; i < m; i++) {
        if (depth[i] > maxlen)
            depth[i] = maxlen;
        K += UINT64_C(1) << (maxlen - depth[i]);
    }
    /* lengthen the least frequent codes shorter than maxlen (ascending freq) */
    while (K > cap) {
        for (size_t i = 0; i < m && K > cap; i++) {
            if (depth[i] < maxlen) {
                depth[i]++;
                K -= UINT64_C(1) << (maxlen - depth[i]);
            }
        }
    }
    /* shorten the most frequent codes while the sum allows it */
    for (size_t i = m; i-- > 0;) {
        while (depth[i] > 1 && K + (UINT64_C(1) << (maxlen - depth[i])) <= cap) {
            K += UINT64_C(1) << (maxlen - depth[i]);
            depth[i]--;
        }
    }
    for (size_t i = 0; i < m; i++)
        lens[ord[i]] = (uint8_t)depth[i];
    free(ord), free(w), free(parent), free(depth);
    return WV_OK;
}
