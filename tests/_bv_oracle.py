"""Naive numpy reference for bitvector queries (shared by the bitvector tests)."""

import numpy as np


def oracle(bits: np.ndarray):
    bits = np.asarray(bits, dtype=bool)
    rank1 = np.concatenate([[0], np.cumsum(bits, dtype=np.int64)]).astype(np.uint64)
    rank0 = np.arange(bits.size + 1, dtype=np.uint64) - rank1
    return (
        rank1,
        rank0,
        np.flatnonzero(bits).astype(np.uint64),
        np.flatnonzero(~bits).astype(np.uint64),
    )


def check_all(bv, bits: np.ndarray) -> None:
    """Every query at every position, batch and (sampled) scalar, against the oracle."""
    bits = np.asarray(bits, dtype=bool)
    n = bits.size
    r1, r0, ones, zeros = oracle(bits)
    assert len(bv) == n
    assert bv.count(1) == ones.size and bv.count(0) == zeros.size
    pos = np.arange(n + 1, dtype=np.uint64)
    np.testing.assert_array_equal(bv.rank1(pos), r1)
    np.testing.assert_array_equal(bv.rank0(pos), r0)
    np.testing.assert_array_equal(bv.access(pos[:n]), bits.astype(np.uint8))
    np.testing.assert_array_equal(bv.select1(np.arange(ones.size)), ones)
    np.testing.assert_array_equal(bv.select0(np.arange(zeros.size)), zeros)
    np.testing.assert_array_equal(bv.to_numpy(), bits)
    # scalar forms on a sample of positions (first, last, boundaries)
    probe = sorted(
        {0, n // 2, n, max(n - 1, 0)} | {p for p in (63, 64, 65, 511, 512, 2047, 2048) if p <= n}
    )
    for p in probe:
        assert bv.rank1(p) == r1[p]
        assert bv.rank0(p) == r0[p]
        if p < n:
            assert bv[p] == bits[p]
            assert bv.access(p) == bits[p]
    for k in {0, ones.size // 2, ones.size - 1}:
        if 0 <= k < ones.size:
            assert bv.select1(k) == ones[k]
    for k in {0, zeros.size // 2, zeros.size - 1}:
        if 0 <= k < zeros.size:
            assert bv.select0(k) == zeros[k]
