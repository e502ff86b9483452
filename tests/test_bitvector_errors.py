"""Bad input to BitVector gives a clear exception, never a crash or a wrong answer."""

import numpy as np
import pytest

from wavelet import BitVector, WaveletError


@pytest.fixture
def bv():
    return BitVector(np.array([1, 0, 1, 1, 0], dtype=bool))


def test_out_of_range_positions(bv):
    with pytest.raises(IndexError, match="access"):
        bv.access(5)
    with pytest.raises(IndexError):
        bv[5]
    with pytest.raises(IndexError):
        bv[-6]
    with pytest.raises(IndexError, match="rank1"):
        bv.rank1(6)
    with pytest.raises(IndexError, match="rank0"):
        bv.rank0(-1)
    with pytest.raises(IndexError, match="select1"):
        bv.select1(3)
    with pytest.raises(IndexError, match="select0"):
        bv.select0(2)
    with pytest.raises(IndexError, match=r"query #2"):
        bv.rank1(np.array([0, 1, 6], dtype=np.uint64))
    with pytest.raises(IndexError, match="negative"):
        bv.rank1(np.array([0, -1]))
    with pytest.raises(IndexError):
        bv.select1(np.array([0, 1, 2, 3]))
    with pytest.raises(IndexError):
        bv.access(np.array([5]))
    with pytest.raises(IndexError):
        bv.rank1(2**64 - 1)


def test_empty_vector_queries():
    e = BitVector([])
    assert len(e) == 0 and e.rank1(0) == 0 and e.count() == 0
    for f in (e.select0, e.select1, e.access):
        with pytest.raises(IndexError):
            f(0)


def test_wrong_types(bv):
    with pytest.raises(TypeError):
        bv.rank1(1.5)
    with pytest.raises(TypeError):
        bv.rank1("3")
    with pytest.raises(TypeError):
        bv.rank1(True)
    with pytest.raises(TypeError):
        bv.rank1(np.array([1.0, 2.0]))
    with pytest.raises(TypeError):
        bv.rank1(np.array([True]))
    with pytest.raises(ValueError):
        bv.rank(2, 1)
    with pytest.raises(ValueError):
        bv.count(3)


def test_bad_constructor_input():
    with pytest.raises(ValueError, match="0 or 1"):
        BitVector([0, 2])
    with pytest.raises(ValueError, match="0 or 1"):
        BitVector(np.array([-1, 0]))
    with pytest.raises(TypeError):
        BitVector(np.array([0.5, 1.0]))
    with pytest.raises(TypeError):
        BitVector("0101")
    with pytest.raises(ValueError, match="1-D"):
        BitVector(np.zeros((2, 2), dtype=bool))
    with pytest.raises(TypeError, match="uint64"):
        BitVector.from_words(np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match="uint64"):
        BitVector.from_words(np.zeros(2, dtype=">u8"))
    with pytest.raises(ValueError, match="cannot hold"):
        BitVector.from_words(np.zeros(2, dtype=np.uint64), 200)
    with pytest.raises(ValueError, match="past nbits"):
        BitVector.from_words(np.array([0b1000], dtype=np.uint64), 3)


def test_from_words_copies_and_does_not_mutate():
    w = np.array([0b1011, 2**63], dtype=np.uint64)
    before = w.copy()
    bv = BitVector.from_words(w)
    w[0] = 0  # the structure owns a copy
    assert bv.rank1(4) == 3
    np.testing.assert_array_equal(w[1:], before[1:])


def test_strided_and_unaligned_queries_are_handled():
    bv = BitVector(np.ones(1000, dtype=bool))
    q = np.arange(0, 200, dtype=np.uint64)[::3]  # non-contiguous: copied, correct
    np.testing.assert_array_equal(bv.rank1(q), q)
    raw = np.zeros(8 * 11 + 1, dtype=np.uint8)[1:].view(np.uint64)  # misaligned
    assert not raw.flags.aligned
    np.testing.assert_array_equal(bv.rank1(raw), np.zeros(11, dtype=np.uint64))


def test_internal_checks_reject_bad_arrays():
    from wavelet._core import buf, wbuf

    with pytest.raises(TypeError, match="numpy"):
        buf([1, 2, 3])
    with pytest.raises(TypeError, match="dtype"):
        buf(np.zeros(3, dtype=np.float64))
    with pytest.raises(TypeError, match="dtype"):
        buf(np.zeros(3, dtype=">u8"))
    with pytest.raises(ValueError, match="contiguous"):
        buf(np.zeros(6, dtype=np.uint64)[::2])
    with pytest.raises(ValueError, match="aligned"):
        buf(np.zeros(8 * 3 + 1, dtype=np.uint8)[1:].view(np.uint64))
    ro = np.zeros(3, dtype=np.uint64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        wbuf(ro)


def test_wavelet_error_is_value_error():
    assert issubclass(WaveletError, ValueError)
