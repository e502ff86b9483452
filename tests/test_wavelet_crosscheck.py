"""Cross-check against the `wavelet-matrix` package from PyPI (Rust) on random data."""

import numpy as np
import pytest

from wavelet import WaveletMatrix, WaveletTree

wm_pkg = pytest.importorskip("wavelet_matrix")


@pytest.mark.parametrize("seed", range(4))
def test_against_wavelet_matrix_package(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    hi = int(rng.choice([2, 17, 256, 70_000, 2**31]))
    seq = rng.integers(0, hi, n).astype(np.uint32)
    ref = wm_pkg.WaveletMatrix(seq.tolist())
    ours = WaveletMatrix(seq)
    wt = WaveletTree(seq, shape="huffman")
    for _ in range(200):
        i = int(rng.integers(0, n))
        c = int(seq[int(rng.integers(0, n))])
        j = int(rng.integers(0, n + 1))
        assert ours.access(i) == ref.access(i) == wt.access(i)
        assert ours.rank(c, j) == ref.rank(c, j) == wt.rank(c, j)
        k = int(rng.integers(0, ours.rank(c, n)))
        assert ours.select(c, k) == ref.select(c, k + 1) == wt.select(c, k)  # ref is 1-based
        l = int(rng.integers(0, n))
        r = int(rng.integers(l + 1, n + 1))
        kk = int(rng.integers(0, r - l))
        assert ours.quantile(l, r, kk) == ref.quantile(l, r, kk + 1)
        lo, up = sorted(int(v) for v in rng.integers(0, hi + 1, 2))
        up += lo == up  # the package requires lower < upper
        assert ours.range_freq(l, r, lo, up) == ref.range_freq(l, r, lo, up)
        x = int(rng.integers(0, hi + 1))
        assert ours.prev_value(l, r, x) == ref.prev_value(l, r, x)
        assert ours.next_value(l, r, x) == ref.next_value(l, r, x)
    l, r = 0, n
    vals, cnts = ours.range_list(l, r, 0, hi)
    rl = ref.range_list(l, r, 0, hi)
    assert [(int(v), int(c)) for v, c in zip(vals, cnts)] == [(d["value"], d["count"]) for d in rl]
    tv, tc = ours.top_k(l, r, 5)
    rt = ref.topk(l, r, 5)
    assert sorted(int(c) for c in tc) == sorted(d["count"] for d in rt)
