"""Files without the rank/select index (``store_index=False``, format 1.3): every structure
reads back with the same index it was written with (rebuilt from the bits, byte-identical
to what ``store_index=True`` writes), answers the same queries, is smaller by the index's
bytes; damaged bits, one counts or word counts are rejected with a WaveletError."""

import pickle
import struct

import numpy as np
import pytest
from _bv_oracle import check_all
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_bitvector_serialize import _refresh_crcs

from wavelet import BitVector, WaveletError, WaveletMatrix, WaveletTree, _format

LENGTHS = [0, 1, 63, 64, 65, 4095, 4096, 4097, 16385, 65537]


def _sections(data: bytes) -> dict:
    return dict(_format.parse(data)[2])


@pytest.mark.parametrize("index", ["fast", "compact"])
@pytest.mark.parametrize("n", LENGTHS)
def test_bitvector_round_trip(n, index):
    bits = np.random.default_rng(n).random(n) < 0.37
    bv = BitVector(bits, index=index)
    full, bare = bv.to_bytes(), bv.to_bytes(store_index=False)
    assert set(_sections(bare)) == {"WRDS"}
    assert len(bare) < len(full)
    back = BitVector.from_bytes(bare)
    assert back.index == index and back == bv
    assert back.to_bytes() == full  # the rebuilt index is the stored one
    check_all(back, bits)


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.uint16, st.integers(0, 3000), elements=st.integers(0, 300)),
    st.sampled_from(["fast", "compact"]),
    st.sampled_from(["matrix", "balanced", "huffman"]),
)
def test_sequences_round_trip(a, index, what):
    s = (WaveletMatrix(a, index=index) if what == "matrix"
         else WaveletTree(a, what, index=index))
    cls = type(s)
    bare = s.to_bytes(store_index=False)
    assert set(_sections(bare)) & {"BLKS", "SUPR", "SEL1", "SEL0"} == set()
    back = cls.from_bytes(bare)
    assert back.to_bytes() == s.to_bytes()
    assert np.array_equal(back.extract(0, len(a)) if len(a) else np.empty(0, a.dtype), a)
    if len(a):
        c = int(a[len(a) // 2])
        assert back.rank(c, len(a)) == int(np.count_nonzero(a == c))
        assert back.select(c, 0) == int(np.flatnonzero(a == c)[0])


def test_save_load_mmap_and_sizes(tmp_path):
    a = np.random.default_rng(3).integers(0, 40, 200_000).astype(np.uint8)
    wt = WaveletTree(a, "huffman", index="compact")
    p, q = tmp_path / "full.wvlt", tmp_path / "bare.wvlt"
    wt.save(p)
    wt.save(q, store_index=False)
    assert p.stat().st_size - q.stat().st_size >= wt.index_nbytes
    assert wt.index_nbytes > 0
    back = WaveletTree.load(q, mmap=True)
    assert np.array_equal(back.extract(0, a.size), a)
    # pickle keeps the index (a process hand-off should not redo O(n) work)
    assert pickle.loads(pickle.dumps(back, 5)).to_bytes() == wt.to_bytes()
    # format 1.3 is written
    assert struct.unpack_from("<H", q.read_bytes(), 10)[0] == 3


def _patch_meta(data: bytes, word: int, value: int) -> bytes:
    d = bytearray(data)
    struct.pack_into("<Q", d, 64 + 8 * word, value)
    return bytes(_refresh_crcs(d))


def _patch_section(data: bytes, tag: str, fn) -> bytes:
    d = bytearray(data)
    nsec, nmeta = struct.unpack_from("<II", d, 24)
    for s in range(nsec):
        at = 64 + 8 * nmeta + 32 * s
        if d[at : at + 4] == tag.encode():
            off, nbytes = struct.unpack_from("<QQ", d, at + 8)
            w = np.frombuffer(bytes(d[off : off + nbytes]), dtype="<u8").copy()
            fn(w)
            d[off : off + nbytes] = w.tobytes()
    return bytes(_refresh_crcs(d))


def test_corrupt_bitvector_without_index():
    bits = np.random.default_rng(5).random(1000) < 0.5
    bare = BitVector(bits, index="compact").to_bytes(store_index=False)
    ones = int(bits.sum())
    with pytest.raises(WaveletError, match="ones"):
        BitVector.from_bytes(_patch_meta(bare, 1, ones - 1))
    with pytest.raises(WaveletError, match="cannot hold"):
        BitVector.from_bytes(_patch_meta(bare, 0, 2000))  # more bits than words

    def pad(w):
        w[-1] |= np.uint64(1) << np.uint64(63)  # 1000 bits: bit 1000 + 24 is padding

    with pytest.raises(WaveletError, match="corrupt"):
        BitVector.from_bytes(_patch_section(bare, "WRDS", pad))


@pytest.mark.parametrize("what", ["matrix", "huffman"])
def test_corrupt_sequences_without_index(what):
    a = (np.arange(5000) * 7919) % 23
    s = WaveletMatrix(a, index="compact") if what == "matrix" else WaveletTree(
        a, "huffman", index="compact")
    bare = s.to_bytes(store_index=False)
    cls = type(s)
    meta = _format.parse(bare)[1]
    ones_at = 6 if what == "matrix" else 9
    with pytest.raises(WaveletError, match="ones"):
        cls.from_bytes(_patch_meta(bare, ones_at, int(meta[ones_at]) + 1))

    def flip(w):
        w[0] ^= np.uint64(1)

    with pytest.raises(WaveletError):  # the one count no longer matches the bits
        cls.from_bytes(_patch_section(bare, "WRDS", flip))
    # some index sections but not all: rejected, not half-rebuilt
    full = s.to_bytes()
    secs = dict(_format.parse(full)[2])
    secs.pop("SEL0")
    with pytest.raises(WaveletError, match="sections|missing"):
        cls._from_parts(meta, secs)
