"""The compact rank/select index (index="compact", format 1.2): same answers as the numpy
oracle and as the fast index, for BitVector, WaveletMatrix and WaveletTree, on every ISA
level; serialization keeps the kind; a damaged kind word is rejected; the GPU upload gets
the fast index."""

import pickle
import struct

import numpy as np
import pytest
from _bv_oracle import check_all
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_bitvector_serialize import _refresh_crcs

import wavelet
from wavelet import BitVector, WaveletError, WaveletMatrix, WaveletTree

# word (64), sub-block (4096), block (16384) and select-sample (65536) edges of the compact
# index, and the fast index's (512, 2048) for good measure
EDGE_LENGTHS = [0, 1, 63, 64, 65, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 12287,
                12288, 12289, 16383, 16384, 16385, 32768, 32769, 49153, 65537]


@pytest.mark.parametrize("n", EDGE_LENGTHS)
@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 0.98, 1.0])
def test_edge_lengths(isa, n, density):
    rng = np.random.default_rng(n * 1000 + int(density * 100))
    bits = rng.random(n) < density
    bv = BitVector(bits, index="compact")
    assert bv.index == "compact"
    check_all(bv, bits)


@settings(max_examples=60)
@given(hnp.arrays(np.bool_, st.integers(0, 40000)), st.integers(0, 2))
def test_property_random_bits(bits, level):
    level = min(level, wavelet.build_info()["isa_max"])
    old = wavelet.set_isa_level(level)
    try:
        check_all(BitVector(bits, index="compact"), bits)
        words = BitVector(bits).words
        assert BitVector.from_words(words, bits.size, index="compact") == BitVector(bits)
    finally:
        wavelet.set_isa_level(old)


def test_select_samples_and_long_runs(isa):
    # several select samples (every 65536th one/zero) and long gaps between ones, where
    # select binary-searches over many blocks
    rng = np.random.default_rng(3)
    for density in (1.0, 0.5, 0.001):
        bits = rng.random(300_000) < density
        check_all(BitVector(bits, index="compact"), bits)
    n = 3_000_000
    bits = np.zeros(n, dtype=bool)
    bits[[0, 5, 100_000, 2_000_000, n - 1]] = True
    check_all(BitVector(bits, index="compact"), bits)
    check_all(BitVector(~bits, index="compact"), ~bits)


def test_beyond_one_compact_superblock(isa):
    # compact superblocks hold 2**25 bits: relative counts restart there
    n = (1 << 25) * 2 + 20_000
    rng = np.random.default_rng(11)
    ones = np.unique(np.concatenate([
        rng.integers(0, n, 50_000),
        np.arange((1 << 25) - 70_000, (1 << 25) + 70_000),  # dense around the first edge
        np.arange(2 * (1 << 25) - 5000, n),
    ]))
    bits = np.zeros(n, dtype=bool)
    bits[ones] = True
    bv = BitVector(bits, index="compact")
    q = np.concatenate([rng.integers(0, n + 1, 200_000),
                        np.arange((1 << 25) - 20_000, (1 << 25) + 20_000), [n, 0]])
    np.testing.assert_array_equal(bv.rank1(q), np.searchsorted(ones, q))
    k = np.concatenate([rng.integers(0, ones.size, 100_000), [0, ones.size - 1]])
    np.testing.assert_array_equal(bv.select1(k), ones[k])
    zeros_k = rng.integers(0, n - ones.size, 100_000)
    got = bv.select0(zeros_k)
    assert not bits[got].any()
    np.testing.assert_array_equal(got - np.searchsorted(ones, got), zeros_k)
    assert bv.space()["overhead_pct"] < 0.55


def test_space_and_kinds():
    bits = np.random.default_rng(0).random(1 << 22) < 0.5
    f, c = BitVector(bits), BitVector(bits, index="compact")
    assert f.index == "fast" and c.index == "compact" and f == c
    assert c.space()["overhead_pct"] < 0.5 < 4.0 < f.space()["overhead_pct"] < 4.7
    with pytest.raises(ValueError, match="index must be one of"):
        BitVector(bits, index="small")
    with pytest.raises(ValueError, match="index must be one of"):
        WaveletTree([1, 2], index=1)
    with pytest.raises(ValueError, match="index must be one of"):
        WaveletMatrix([1, 2], index=None)


def test_serialization_keeps_the_kind(tmp_path):
    bits = np.random.default_rng(1).random(100_000) < 0.3
    bv = BitVector(bits, index="compact")
    for back in (BitVector.from_bytes(bv.to_bytes()), pickle.loads(pickle.dumps(bv, 5))):
        assert back.index == "compact"
        check_all(back, bits)
    p = tmp_path / "c.wvlt"
    bv.save(p)
    m = BitVector.load(p, mmap=True)
    assert m.index == "compact" and m == bv
    # a fast vector keeps the 1.1 meta (two words), so 1.1 readers still read it
    data = BitVector(bits).to_bytes()
    assert struct.unpack_from("<I", data, 28)[0] == 2
    assert struct.unpack_from("<I", bv.to_bytes(), 28)[0] == 3


def test_damaged_kind_word_is_rejected():
    bits = np.random.default_rng(2).random(50_000) < 0.5
    data = bytearray(BitVector(bits, index="compact").to_bytes())
    for bad in (0, 2, 2**63):  # fast reading of compact arrays, unknown kinds
        d = bytearray(data)
        struct.pack_into("<Q", d, 64 + 16, bad)
        with pytest.raises(WaveletError):
            BitVector.from_bytes(bytes(_refresh_crcs(d)))
    for cls, obj in ((WaveletTree, WaveletTree(np.arange(5000) % 7, "huffman", index="compact")),
                     (WaveletMatrix, WaveletMatrix(np.arange(5000) % 7, index="compact"))):
        d = bytearray(obj.to_bytes())
        nmeta = struct.unpack_from("<I", d, 28)[0]
        struct.pack_into("<Q", d, 64 + 8 * (nmeta - 1), 5)
        with pytest.raises(WaveletError, match="unknown index kind"):
            cls.from_bytes(bytes(_refresh_crcs(d)))


@settings(max_examples=40)
@given(st.data())
def test_trees_and_matrix_agree_with_the_fast_index(data):
    n = data.draw(st.integers(0, 30000))
    sigma = data.draw(st.sampled_from([1, 2, 3, 17, 255, 2**20]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    seq = (rng.zipf(1.5, n) % sigma).astype(np.uint32)
    q = rng.integers(0, n, 200) if n else np.empty(0, np.int64)
    syms = np.unique(seq)[:5] if n else np.array([0])
    for make in (lambda s, ix: WaveletTree(s, "huffman", index=ix),
                 lambda s, ix: WaveletTree(s, "balanced", index=ix),
                 lambda s, ix: WaveletMatrix(s, index=ix)):
        f, c = make(seq, "fast"), make(seq, "compact")
        assert c.index == "compact"
        np.testing.assert_array_equal(c.extract(0, n), seq)
        lo, hi = sorted(data.draw(st.tuples(st.integers(0, n), st.integers(0, n))))
        np.testing.assert_array_equal(c.extract(lo, hi), seq[lo:hi])
        if n:
            np.testing.assert_array_equal(c.access(q), seq[q])
        for s in syms:
            np.testing.assert_array_equal(c.rank(s, q), f.rank(s, q))
            cnt = int((seq == s).sum())
            k = np.arange(cnt)[:: max(1, cnt // 50)]
            np.testing.assert_array_equal(c.select(s, k), np.flatnonzero(seq == s)[k])
        back = type(c).from_bytes(c.to_bytes())
        assert back.index == "compact"
        np.testing.assert_array_equal(back.extract(0, n), seq)


def test_compact_tree_layout_is_tight():
    # 64-bit level alignment and narrowed CNTS/NACT: the level bits are the code bits
    # rounded up per level to a word, not to 512 bits
    seq = np.random.default_rng(6).zipf(1.3, 3000) % 300
    c = WaveletTree(seq, "huffman", index="compact")
    f = WaveletTree(seq, "huffman")
    nact = c._tabs[4]
    L = c._nlevels
    assert int(c._lb.nbits) == sum(-(-int(nact[d]) // 64) * 64 for d in range(L))
    assert int(f._lb.nbits) == sum(-(-int(nact[d]) // 512) * 512 for d in range(L))
    parts = dict(c._to_parts()[1])
    assert parts["CNTS"].dtype.itemsize <= 2 and parts["NACT"].dtype.itemsize <= 2
    assert dict(f._to_parts()[1])["NACT"].dtype == np.uint64  # 1.1 layout kept
    assert c.stored_nbytes < f.stored_nbytes
    back = WaveletTree.from_bytes(c.to_bytes())
    np.testing.assert_array_equal(back.extract(0, seq.size), seq)
    # a wrong kind of table (signed) is rejected
    meta, secs = c._to_parts()
    secs = dict(secs)
    secs["NACT"] = secs["NACT"].astype(np.int16)
    with pytest.raises(WaveletError):
        WaveletTree._from_parts(meta, secs)


def test_device_upload_gets_the_fast_index():
    bits = np.random.default_rng(4).random(70_000) < 0.4
    bv = BitVector(bits, index="compact")
    meta, secs = bv._device_parts()
    fmeta, fsecs = BitVector(bits)._to_parts()
    assert meta == fmeta
    for (t1, a1), (t2, a2) in zip(secs, fsecs, strict=True):
        assert t1 == t2 and np.array_equal(a1, a2)
    seq = np.random.default_rng(5).integers(0, 40, 50_000).astype(np.uint8)
    for c, f in ((WaveletTree(seq, "huffman", index="compact"), WaveletTree(seq, "huffman")),
                 (WaveletMatrix(seq, index="compact"), WaveletMatrix(seq))):
        (m1, s1), (m2, s2) = c._device_parts(), f._device_parts()
        assert list(m1) == list(m2)
        for (t1, a1), (t2, a2) in zip(s1, s2, strict=True):
            assert t1 == t2 and np.array_equal(a1, a2)
