"""WaveletTree (balanced and Huffman) against numpy oracles, on every ISA level."""

import math

import _wv_oracle as O
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wavelet import WaveletTree

SHAPES = ["balanced", "huffman"]


def _check_all(wt, seq):
    seq = np.asarray(seq)
    n = seq.size
    assert len(wt) == n
    np.testing.assert_array_equal(wt.extract(), seq)
    if n == 0:
        return
    np.testing.assert_array_equal(wt.access(np.arange(n)), seq)
    for i in {0, n // 3, n - 1}:
        assert wt[i] == seq[i] and wt.access(i) == seq[i]
    vals = np.unique(seq)
    for c in list(vals[:5]) + list(vals[-3:]):
        c = int(c)
        pos = np.flatnonzero(seq == c)
        idx = np.array(sorted({0, n // 2, n}), dtype=np.uint64)
        np.testing.assert_array_equal(wt.rank(c, idx), [O.rank(seq, c, int(i)) for i in idx])
        np.testing.assert_array_equal(wt.select(c, np.arange(pos.size)), pos)
        with pytest.raises(IndexError):
            wt.select(c, pos.size)
    # a symbol that does not occur: rank 0, select raises
    absent = int(vals[-1]) + 1 if int(vals[-1]) < np.iinfo(seq.dtype).max else None
    if absent is not None:
        assert wt.rank(absent, n) == 0
    l, r = n // 4, max(n // 4, (3 * n) // 4)
    np.testing.assert_array_equal(wt.extract(l, r), seq[l:r])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 65, 511, 512, 513, 2047, 2048, 2049, 5000])
def test_edge_lengths(shape, n):
    rng = np.random.default_rng(n)
    for dt, hi in [(np.uint8, 256), (np.uint16, 1000), (np.uint32, 2**32), (np.uint64, 2**64)]:
        seq = (
            rng.integers(0, hi, n, dtype=dt, endpoint=False)
            if hi < 2**64
            else rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        )
        for lv in O.isa_levels():
            with O.isa(lv):
                _check_all(WaveletTree(seq, shape=shape), seq)


@pytest.mark.parametrize("shape", SHAPES)
def test_skewed_and_special(shape):
    rng = np.random.default_rng(1)
    cases = [
        np.zeros(1, np.uint8),
        np.full(3000, 7, np.uint8),
        np.full(100, 2**64 - 1, np.uint64),
        np.array([2**64 - 1, 0] * 50, np.uint64),
        np.array([2**32 - 1, 5, 2**32 - 1], np.uint32),
        rng.geometric(0.3, 20000).astype(np.uint16),  # very skewed (Huffman codes of many lengths)
        np.frombuffer(b"abracadabra" * 300, dtype=np.uint8).copy(),
    ]
    for seq in cases:
        for lv in O.isa_levels():
            with O.isa(lv):
                _check_all(WaveletTree(seq, shape=shape), seq)


@given(
    hnp.arrays(np.uint16, st.integers(0, 700), elements=st.integers(0, 40)), st.sampled_from(SHAPES)
)
def test_property_all_queries(seq, shape):
    _check_all(WaveletTree(seq, shape=shape), seq)


@given(st.binary(max_size=500), st.text(max_size=200))
def test_bytes_and_str_inputs(b, s):
    wt = WaveletTree(b, shape="huffman")
    assert wt.extract().dtype == np.uint8 and wt.extract().tobytes() == b
    wt2 = WaveletTree(s)
    assert wt2.to_str() == s


def test_huffman_size_near_entropy():
    rng = np.random.default_rng(2)
    for p in (0.5, 0.2, 0.05):
        seq = rng.geometric(p, 200_000).astype(np.uint16)
        wt = WaveletTree(seq, shape="huffman")
        _, cnt = np.unique(seq, return_counts=True)
        prob = cnt / cnt.sum()
        h0 = float(-(prob * np.log2(prob)).sum())
        sp = wt.space()
        # level bits are sum f_c len_c <= n (H0 + 1); total adds the ~4.7% bitvector index
        level_bits = sum(
            int(c) * wt.code_lengths()[int(v)] for v, c in zip(*np.unique(seq, return_counts=True))
        )
        assert level_bits <= seq.size * (h0 + 1)
        assert 8 * wt.nbytes <= seq.size * (h0 + 1) * 1.06 + 8 * 64 * 64 + 8 * 20 * cnt.size, sp
        bal = WaveletTree(seq, shape="balanced")
        assert wt.nbytes <= bal.nbytes
        assert max(wt.code_lengths().values()) <= 32
        assert math.isfinite(h0)


def test_length_limited_codes():
    # Fibonacci frequencies give the deepest Huffman trees; the limit must hold
    # (30 symbols with Fibonacci counts: an unlimited Huffman code would be 29 bits deep)
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    seq = np.repeat(np.arange(30, dtype=np.uint16), fib)
    np.random.default_rng(4).shuffle(seq)
    for lim in (5, 12, 20, 32):
        if (np.unique(seq).size - 1).bit_length() > lim:
            continue
        wt = WaveletTree(seq, shape="huffman", max_code_len=lim)
        assert max(wt.code_lengths().values()) <= lim
        np.testing.assert_array_equal(wt.extract(), seq)


def test_extract_into_out_and_errors():
    seq = np.random.default_rng(3).integers(0, 50, 10_000).astype(np.uint8)
    wt = WaveletTree(seq, shape="huffman")
    out = np.empty(5000, np.uint8)
    res = wt.extract(100, 5100, out=out)
    assert res is out or np.shares_memory(res, out)
    np.testing.assert_array_equal(out, seq[100:5100])
    with pytest.raises((ValueError, TypeError)):
        wt.extract(0, 10, out=np.empty(9, np.uint8))
    with pytest.raises((ValueError, TypeError)):
        wt.extract(0, 10, out=np.empty(10, np.float32))
    with pytest.raises(IndexError):
        wt.extract(5, 3)
    with pytest.raises(IndexError):
        wt.extract(0, 10_001)
    with pytest.raises(IndexError):
        wt.access(10_000)
    with pytest.raises(IndexError):
        wt.rank(3, 10_001)
    with pytest.raises(ValueError):
        WaveletTree(seq, shape="octagonal")
    with pytest.raises(ValueError):
        WaveletTree(np.array([1, -2, 3]))
    with pytest.raises(TypeError):
        WaveletTree(np.array([1.5, 2.0]))
    with pytest.raises(ValueError):
        WaveletTree(np.array([1, 9]), alphabet_size=5)


# ---- bulk extract: nodes whose children are all leaves are filled from their bits -------------
@pytest.mark.parametrize("level", O.isa_levels())
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
@given(data=st.data())
def test_extract_ranges_small_alphabets(level, dtype, data):
    """Extract of any range, on trees/matrices with few symbols (so internal nodes with two
    leaf children, or one, are common), lengths across 64, the maximal symbol included."""
    from wavelet import WaveletMatrix

    top = int(np.iinfo(dtype).max)
    nsym = data.draw(st.integers(1, 8))
    alphabet = data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 7, 100, top - 1, top]),
                                  min_size=nsym, max_size=nsym, unique=True))
    n = data.draw(st.one_of(st.integers(0, 140), st.integers(1000, 5000)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    p = rng.dirichlet(np.full(len(alphabet), 0.4))
    seq = np.asarray(alphabet, dtype=np.uint64)[rng.choice(len(alphabet), n, p=p)].astype(dtype)
    l = data.draw(st.integers(0, n))
    r = data.draw(st.integers(l, n))
    with O.isa(level):
        for s in (WaveletTree(seq, shape="huffman"), WaveletTree(seq, shape="balanced"),
                  WaveletMatrix(seq)):
            np.testing.assert_array_equal(s.extract(), seq)
            np.testing.assert_array_equal(s.extract(l, r), seq[l:r])
