"""BitVector access/rank/select against a numpy oracle (cumsum / flatnonzero)."""

import numpy as np
import pytest
from _bv_oracle import check_all
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import wavelet
from wavelet import BitVector

# lengths around word (64), sub-block (512), block (2048) and sample edges
EDGE_LENGTHS = [
    0,
    1,
    2,
    63,
    64,
    65,
    127,
    128,
    511,
    512,
    513,
    1023,
    2047,
    2048,
    2049,
    4095,
    4096,
    4097,
    6143,
    6144,
    6145,
    8191,
    8192,
    8193,
    16385,
]


@pytest.mark.parametrize("n", EDGE_LENGTHS)
@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 0.98, 1.0])
def test_edge_lengths(isa, n, density):
    rng = np.random.default_rng(n * 1000 + int(density * 100))
    bits = rng.random(n) < density
    check_all(BitVector(bits), bits)


def test_exhaustive_small_sizes(isa):
    # every length 0..2100 with a random pattern (crosses every word/sub-block/block edge)
    rng = np.random.default_rng(7)
    for n in range(0, 2101):
        bits = rng.random(n) < rng.random()
        check_all(BitVector(bits), bits)


def test_select_samples_boundaries(isa):
    # many ones: select samples every 8192 ones; exercise samples and the binary search
    for density in (1.0, 0.5, 0.001):
        rng = np.random.default_rng(3)
        bits = rng.random(200_000) < density
        check_all(BitVector(bits), bits)


def test_long_runs(isa):
    # long gaps between ones: binary search over many blocks between samples
    n = 3_000_000
    bits = np.zeros(n, dtype=bool)
    bits[[0, 5, 100_000, 2_000_000, n - 1]] = True
    check_all(BitVector(bits), bits)
    bits2 = ~bits
    check_all(BitVector(bits2), bits2)


@given(hnp.arrays(np.bool_, st.integers(0, 5000)))
def test_property_random_bits(bits):
    for level in range(wavelet.build_info()["isa_max"] + 1):
        old = wavelet.set_isa_level(level)
        try:
            check_all(BitVector(bits), bits)
        finally:
            wavelet.set_isa_level(old)


@given(st.lists(st.booleans(), max_size=300), st.data())
def test_property_constructors_agree(bits, data):
    arr = np.array(bits, dtype=bool)
    a = BitVector(bits)
    b = BitVector(arr)
    c = BitVector(arr.astype(np.int64))
    padded = np.concatenate([arr, np.zeros((-arr.size) % 64, dtype=bool)])
    words = np.packbits(padded, bitorder="little").view("<u8").astype(np.uint64)
    d = BitVector.from_words(words, arr.size)
    assert a == b == c == d
    i = data.draw(st.integers(0, arr.size))
    assert a.rank1(i) == int(arr[:i].sum())


def test_bytes_are_packed_lsb_first():
    bv = BitVector(b"\x01\x80")
    assert len(bv) == 16
    assert bv.to_numpy().tolist() == [1] + [0] * 14 + [1]


def test_batch_shapes_and_types():
    bits = np.random.default_rng(0).random(1000) < 0.3
    bv = BitVector(bits)
    q = np.arange(12, dtype=np.int32).reshape(3, 4)
    r = bv.rank1(q)
    assert r.shape == (3, 4) and r.dtype == np.uint64
    assert bv.rank1([1, 2, 3]).tolist() == [int(bits[:i].sum()) for i in (1, 2, 3)]
    assert bv.rank1(np.array([], dtype=np.int64)).shape == (0,)
    assert bv.access(q).dtype == np.uint8
    assert bv[-1] == bits[-1]
    np.testing.assert_array_equal(bv[10:20], bits[10:20])
    assert list(BitVector([1, 0, 1])) == [True, False, True]


def test_space_overhead_within_target():
    bits = np.random.default_rng(1).random(1 << 22) < 0.5
    bv = BitVector(bits)
    sp = bv.space()
    assert sp["overhead_pct"] <= 6.25
    assert bv.size_bits() == 8 * bv.nbytes
    assert "BitVector(nbits=4194304" in repr(bv)


def test_equality_and_hash():
    a, b = BitVector([1, 0]), BitVector([1, 0])
    assert a == b and a != BitVector([1, 1]) and a != BitVector([1, 0, 0])
    assert (a == 3) is False
    with pytest.raises(TypeError):
        hash(a)


def test_queries_release_gil_and_are_thread_safe():
    import threading

    bits = np.random.default_rng(2).random(1 << 20) < 0.5
    bv = BitVector(bits)
    q = np.random.default_rng(3).integers(0, bits.size, 100_000).astype(np.uint64)
    expect = bv.rank1(q)
    errors = []

    def work():
        for _ in range(5):
            if not np.array_equal(bv.rank1(q), expect):
                errors.append("mismatch")

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
