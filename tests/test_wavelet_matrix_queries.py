"""WaveletMatrix queries against a naive numpy oracle, on every ISA level."""

import _wv_oracle as O  # noqa: N812
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wavelet import WaveletMatrix

DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int32, np.int64]


@st.composite
def seqs(draw, max_len=700):
    dt = draw(st.sampled_from(DTYPES))
    top = draw(st.sampled_from([1, 2, 5, 16, 255, 2**16 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1]))
    top = min(top, int(np.iinfo(dt).max))
    elems = st.integers(0, top)
    # small alphabets drawn from a few values so runs and repeats are common
    pool = draw(st.lists(elems, min_size=1, max_size=8))
    n = draw(st.integers(0, max_len))
    idx = draw(hnp.arrays(np.int64, n, elements=st.integers(0, len(pool) - 1)))
    return np.asarray(pool, dtype=dt)[idx]


@st.composite
def seq_and_range(draw):
    s = draw(seqs())
    n = s.size
    l = draw(st.integers(0, n))
    r = draw(st.integers(l, n))
    return s, l, r


@given(seqs())
def test_access_extract(seq):
    for lv in O.isa_levels():
        with O.isa(lv):
            wm = WaveletMatrix(seq)
            assert len(wm) == seq.size
            assert wm.dtype == seq.dtype
            np.testing.assert_array_equal(wm.extract(), seq)
            np.testing.assert_array_equal(wm.access(np.arange(seq.size)), seq)
            if seq.size:
                assert wm.access(seq.size - 1) == int(seq[-1])
                assert wm[-1] == int(seq[-1])


@given(seq_and_range())
def test_partial_extract(args):
    seq, l, r = args
    for lv in O.isa_levels():
        with O.isa(lv):
            wm = WaveletMatrix(seq)
            np.testing.assert_array_equal(wm.extract(l, r), seq[l:r])
            out = np.empty(r - l, dtype=seq.dtype)
            assert wm.extract(l, r, out=out) is out
            np.testing.assert_array_equal(out, seq[l:r])
            np.testing.assert_array_equal(wm[l:r], seq[l:r])


@given(seqs(), st.data())
def test_rank_select(seq, data):
    syms = [int(v) for v in np.unique(seq)] + [0, 1, 2**64 - 1]
    for lv in O.isa_levels():
        with O.isa(lv):
            wm = WaveletMatrix(seq)
            for _ in range(5):
                c = data.draw(st.sampled_from(syms))
                i = data.draw(st.integers(0, seq.size))
                assert wm.rank(c, i) == O.rank(seq, c, i)
                k = data.draw(st.integers(0, seq.size + 1))
                ref = O.select(seq, c, k)
                if ref is None:
                    with pytest.raises(IndexError):
                        wm.select(c, k)
                else:
                    assert wm.select(c, k) == ref
            if seq.size:
                cs = seq[: min(seq.size, 50)]
                ks = np.array([O.rank(seq, int(c), seq.size) - 1 for c in cs])
                ref = [O.select(seq, int(c), int(k)) for c, k in zip(cs, ks)]
                np.testing.assert_array_equal(wm.select(cs, ks), ref)
                ii = np.arange(cs.size)
                np.testing.assert_array_equal(
                    wm.rank(cs, ii), [O.rank(seq, int(c), int(i)) for c, i in zip(cs, ii)]
                )
                np.testing.assert_array_equal(
                    wm.rank(int(cs[0]), ii), [O.rank(seq, int(cs[0]), int(i)) for i in ii]
                )


@given(seq_and_range(), st.data())
def test_range_queries(args, data):
    seq, l, r = args
    vals = [int(v) for v in np.unique(seq)] + [0, 1, 3, 2**32, 2**64 - 1]
    for lv in O.isa_levels():
        with O.isa(lv):
            wm = WaveletMatrix(seq)
            if r > l:
                k = data.draw(st.integers(0, r - l - 1))
                assert wm.quantile(l, r, k) == O.quantile(seq, l, r, k)
            with pytest.raises(IndexError):
                wm.quantile(l, r, r - l)
            x = data.draw(st.sampled_from(vals))
            assert wm.count_less(l, r, x) == O.count_less(seq, l, r, x)
            lo, hi = sorted((data.draw(st.sampled_from(vals)), data.draw(st.sampled_from(vals))))
            assert wm.range_freq(l, r, lo, hi) == O.range_freq(seq, l, r, lo, hi)
            v, c = wm.range_list(l, r, lo, hi)
            assert list(zip(v.tolist(), c.tolist())) == O.range_list(seq, l, r, lo, hi)
            assert wm.prev_value(l, r, x) == O.prev_value(seq, l, r, x)
            assert wm.next_value(l, r, x) == O.next_value(seq, l, r, x)
            k = data.draw(st.integers(0, 5))
            tv, tc = wm.top_k(l, r, k)
            ref = sorted(O.range_list(seq, l, r, 0, 2**64), key=lambda t: (-t[1], t[0]))[:k]
            assert list(zip(tv.tolist(), tc.tolist())) == ref


@given(seq_and_range())
def test_range_batches(args):
    seq, l, r = args
    xs = np.array([0, 1, 2, 7, 300, 70000], dtype=np.uint64)
    ls, rs = np.full(xs.size, l), np.full(xs.size, r)
    for lv in O.isa_levels():
        with O.isa(lv):
            wm = WaveletMatrix(seq)
            np.testing.assert_array_equal(
                wm.count_less(ls, rs, xs), [O.count_less(seq, l, r, int(x)) for x in xs]
            )
            np.testing.assert_array_equal(
                wm.range_freq(ls, rs, xs // 2, xs), [O.range_freq(seq, l, r, int(x) // 2, int(x)) for x in xs]
            )
            pv, pf = wm.prev_value(ls, rs, xs)
            ref = [O.prev_value(seq, l, r, int(x)) for x in xs]
            assert [int(v) if f else None for v, f in zip(pv, pf)] == ref
            nv, nf = wm.next_value(ls, rs, xs)
            ref = [O.next_value(seq, l, r, int(x)) for x in xs]
            assert [int(v) if f else None for v, f in zip(nv, nf)] == ref
            if r > l:
                ks = np.arange(r - l)[:20]
                np.testing.assert_array_equal(
                    wm.quantile(l, r, ks), np.sort(seq[l:r])[: ks.size]
                )


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 511, 512, 513, 2047, 2048, 2049, 4097])
@pytest.mark.parametrize("top", [0, 1, 255, 2**32 - 1, 2**64 - 1])
def test_boundaries(n, top):
    rng = np.random.default_rng(n + top % 1000)
    seq = rng.integers(0, top, size=n, dtype=np.uint64, endpoint=True)
    if n:
        seq[-1] = top
    for lv in O.isa_levels():
        with O.isa(lv):
            wm = WaveletMatrix(seq)
            np.testing.assert_array_equal(wm.extract(), seq)
            if n:
                assert wm.max_symbol == top
                assert wm.rank(top, n) == int(np.count_nonzero(seq == top))
                assert wm.select(top, 0) == int(np.flatnonzero(seq == top)[0])
                assert wm.quantile(0, n, n - 1) == top


def test_all_equal_and_single():
    for seq in (np.full(3000, 7, np.uint8), np.zeros(1, np.uint16), np.zeros(5000, np.uint64)):
        wm = WaveletMatrix(seq)
        np.testing.assert_array_equal(wm.extract(), seq)
        c = int(seq[0])
        assert wm.rank(c, seq.size) == seq.size
        assert wm.select(c, seq.size - 1) == seq.size - 1
        assert wm.range_list()[0].tolist() == [c]


def test_bytes_and_str():
    wm = WaveletMatrix(b"abracadabra")
    assert wm.dtype == np.uint8 and wm.decode() == b"abracadabra"
    assert wm.rank(ord("a"), 11) == 5
    s = "héllo wörld ✓ 𝄞"
    wt = WaveletMatrix(s)
    assert wt.dtype == np.uint32 and wt.to_str() == s and wt.decode() == s
    assert wt.extract().tolist() == [ord(ch) for ch in s]


def test_against_wavelet_matrix_package():
    wmp = pytest.importorskip("wavelet_matrix")
    rng = np.random.default_rng(1)
    seq = rng.zipf(1.5, 5000) % 1000
    ref = wmp.WaveletMatrix(seq.tolist())
    wm = WaveletMatrix(seq)
    n = seq.size
    for _ in range(200):
        l = int(rng.integers(0, n))
        r = int(rng.integers(l + 1, n + 1))
        i = int(rng.integers(0, n))
        c = int(seq[i])
        assert wm.access(i) == ref.access(i)
        assert wm.rank(c, r) == ref.rank(c, r)
        assert wm.select(c, 0) == ref.select(c, 1)
        k = int(rng.integers(0, r - l))
        assert wm.quantile(l, r, k) == ref.quantile(l, r, k + 1)
        assert wm.range_freq(l, r, 3, 50) == ref.range_freq(l, r, 3, 50)
        assert wm.prev_value(l, r, 40) == ref.prev_value(l, r, 40)
        assert wm.next_value(l, r, 40) == ref.next_value(l, r, 40)
        v, cn = wm.range_list(l, r, 0, 20)
        assert [(a, b) for a, b in zip(v.tolist(), cn.tolist())] == [
            (d["value"], d["count"]) for d in ref.range_list(l, r, 0, 20)
        ]


def test_max_uint64_symbol_is_listed_and_counted():
    # 2**64 - 1 is past any uint64 exclusive bound: hi=None / hi=2**64 must still count it
    top = 2**64 - 1
    seq = np.array([top, 5, top, 0, top], dtype=np.uint64)
    wm = WaveletMatrix(seq)
    v, c = wm.range_list()
    assert list(zip(v.tolist(), c.tolist())) == [(0, 1), (5, 1), (top, 3)]
    assert v.dtype == np.uint64
    v, c = wm.range_list(1, 4, 1, 2**64)
    assert list(zip(v.tolist(), c.tolist())) == [(5, 1), (top, 1)]
    assert wm.range_list(0, 5, 0, top)[0].tolist() == [0, 5]
    tv, tc = wm.top_k(0, 5, 1)
    assert tv.tolist() == [top] and tc.tolist() == [3]
    assert wm.range_freq(0, 5, 1, 2**64) == 4
    assert wm.range_freq(0, 5, 0, top) == 2
    with pytest.raises(ValueError, match="outside"):
        wm.range_freq(0, 5, 0, 2**64 + 1)
    # without the maximal symbol, hi=2**64 changes nothing
    small = WaveletMatrix(np.array([3, 1, 3], dtype=np.uint64))
    assert small.range_list(0, 3, 0, 2**64)[0].tolist() == [1, 3]
