"""64-bit lengths: a vector longer than one 2^32-bit superblock (512 MiB of bits).

Slow and memory-hungry (about 0.6 GiB), so opt-in: WAVELET_SLOW_TESTS=1.
"""

import os

import numpy as np
import pytest

from wavelet import BitVector

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("WAVELET_SLOW_TESTS"), reason="set WAVELET_SLOW_TESTS=1"),
]


def test_beyond_one_superblock(isa):
    n = (1 << 32) + 5000
    words = np.zeros((n + 63) // 64, dtype=np.uint64)
    rng = np.random.default_rng(5)
    # dense patches around the superblock edge, sparse elsewhere
    words[: 1 << 10] = rng.integers(0, 2**63, 1 << 10, dtype=np.uint64)
    edge = (1 << 32) // 64
    words[edge - 100 : edge + 50] = rng.integers(0, 2**63, 150, dtype=np.uint64)
    words[edge + 60] = 1 << 7
    bv = BitVector.from_words(words, n)
    ones_before_edge = int(sum(int(w).bit_count() for w in words[:edge]))
    assert bv.rank1(1 << 32) == ones_before_edge
    total = ones_before_edge + int(sum(int(w).bit_count() for w in words[edge:]))
    assert bv.count() == total and bv.rank1(n) == total
    assert bv.select1(total - 1) == (edge + 60) * 64 + 7
    # positions around the edge, checked against popcounts of the words
    for p in [(1 << 32) - 3000, (1 << 32) - 1, (1 << 32) + 1, (1 << 32) + 64 * 50 + 3]:
        w, b = divmod(p, 64)
        expect = (
            ones_before_edge - int(sum(int(x).bit_count() for x in words[w:edge]))
            if w < edge
            else ones_before_edge + int(sum(int(x).bit_count() for x in words[edge:w]))
        )
        expect += (int(words[w]) & ((1 << b) - 1)).bit_count()
        assert bv.rank1(p) == expect
        k = bv.rank1(p)
        if k < total:
            assert bv.select1(k) >= p
    assert bv.select0(n - total - 1) == n - 1
