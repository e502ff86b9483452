"""Serialization of BitVector: round trips, mmap, pickle 5, fixtures, hostile input."""

import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wavelet import BitVector, WaveletError, _format

FIXTURES = Path(__file__).parent / "fixtures"


def _bits(n=5000, p=0.3, seed=0):
    return np.random.default_rng(seed).random(n) < p


@given(hnp.arrays(np.bool_, st.integers(0, 3000)))
def test_roundtrip_bytes_and_pickle(bits):
    bv = BitVector(bits)
    assert BitVector.from_bytes(bv.to_bytes()) == bv
    for proto in (2, 4, 5):
        assert pickle.loads(pickle.dumps(bv, protocol=proto)) == bv


def test_pickle5_out_of_band_buffers():
    bv = BitVector(_bits())
    buffers = []
    data = pickle.dumps(bv, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 5  # words + 4 index arrays travel out of band
    assert len(data) < 400  # the pickle itself holds no bulk data
    back = pickle.loads(data, buffers=buffers)
    assert back == bv and back.rank1(4000) == bv.rank1(4000)


def test_save_load_mmap(tmp_path):
    bits = _bits(100_000)
    bv = BitVector(bits)
    p = tmp_path / "bv.wvt"
    bv.save(p)
    assert [x.name for x in tmp_path.iterdir()] == ["bv.wvt"]  # no temp file left
    for mm in (False, True):
        b2 = BitVector.load(p, mmap=mm)
        assert b2 == bv
        np.testing.assert_array_equal(
            b2.rank1(np.arange(0, 100_001, 997)), bv.rank1(np.arange(0, 100_001, 997))
        )
    b3 = BitVector.load(p, mmap=True)
    assert not b3.words.flags.writeable
    assert b3.words.base is not None  # a view into the mapping, not a copy


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "bv.wvt"
    BitVector([1, 0, 1]).save(p)
    original = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        BitVector([0, 0, 0, 0]).save(p)
    assert p.read_bytes() == original
    assert [x.name for x in tmp_path.iterdir()] == ["bv.wvt"]


def test_format_header_fields():
    data = BitVector([1, 1, 0]).to_bytes()
    assert data[:8] == b"\x89WVLT\r\n\x1a"
    major, minor, kind = struct.unpack_from("<HHH", data, 8)
    assert (major, minor, kind) == (1, 3, 1)  # container version 1.3
    assert struct.unpack_from("<Q", data, 16)[0] == len(data)
    assert len(data) % 64 == 0


def test_committed_fixture_still_decodes():
    # tests/fixtures/bitvector_v1.bin was written by format version 1.0; it must keep loading.
    bv = BitVector.load(FIXTURES / "bitvector_v1.bin")
    expect = np.array([(i * 7919) % 13 < 4 for i in range(10_000)])
    np.testing.assert_array_equal(bv.to_numpy(), expect)
    assert bv.select1(100) == np.flatnonzero(expect)[100]


def test_truncated_and_trailing():
    data = BitVector(_bits()).to_bytes()
    for cut in (0, 1, 8, 63, 64, 100, len(data) - 64, len(data) - 1):
        with pytest.raises(WaveletError):
            BitVector.from_bytes(data[:cut])
    with pytest.raises(WaveletError, match="trailing"):
        BitVector.from_bytes(data + b"\0" * 64)
    with pytest.raises(WaveletError, match="max_bytes"):
        BitVector.from_bytes(data, max_bytes=100)


def test_empty_file(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    for mm in (False, True):
        with pytest.raises(WaveletError, match="truncated"):
            BitVector.load(p, mmap=mm)


def test_every_single_bit_flip_in_header_is_caught():
    data = bytearray(BitVector(_bits(3000)).to_bytes())
    hlen = struct.unpack_from("<Q", data, 40)[0]
    for byte in range(hlen):
        for bit in (0, 7):
            d = bytearray(data)
            d[byte] ^= 1 << bit
            with pytest.raises(WaveletError):
                BitVector.from_bytes(bytes(d))


def _refresh_crcs(d: bytearray) -> bytearray:
    """Recompute every CRC so only the structural validator stands in the way."""
    nsec, nmeta = struct.unpack_from("<II", d, 24)
    for s in range(nsec):
        at = 64 + 8 * nmeta + 32 * s
        off, nbytes = struct.unpack_from("<QQ", d, at + 8)
        if off + nbytes <= len(d):
            struct.pack_into("<I", d, at + 24, zlib.crc32(bytes(d[off : off + nbytes])))
    hlen = struct.unpack_from("<Q", d, 40)[0]
    h = bytearray(d[:hlen])
    struct.pack_into("<I", h, 32, 0)
    struct.pack_into("<I", d, 32, zlib.crc32(h))
    return d


def test_hostile_index_with_valid_checksums():
    bv = BitVector(_bits(50_000))
    data = bytearray(bv.to_bytes())
    meta, secs = bv._to_parts()
    kind, m, parsed = _format.parse(bytes(data))
    # locate each section and corrupt one entry with checksums recomputed
    nsec, nmeta = struct.unpack_from("<II", data, 24)
    for s in range(nsec):
        at = 64 + 8 * nmeta + 32 * s
        off = struct.unpack_from("<Q", data, at + 8)[0]
        d = bytearray(data)
        d[off + 1] ^= 0x40
        with pytest.raises(WaveletError):
            BitVector.from_bytes(bytes(_refresh_crcs(d)))
    # meta: claim more ones than there are
    d = bytearray(data)
    struct.pack_into("<Q", d, 64 + 8, bv.count() + 1)
    with pytest.raises(WaveletError):
        BitVector.from_bytes(bytes(_refresh_crcs(d)))
    # meta: huge length
    d = bytearray(data)
    struct.pack_into("<Q", d, 64, 2**63)
    with pytest.raises(WaveletError):
        BitVector.from_bytes(bytes(_refresh_crcs(d)))
    # kind mismatch is named
    with pytest.raises(WaveletError):
        _format.from_buffer(bytes(data), expect=int)


def test_unpickle_rejects_bad_buffers():
    bv = BitVector(_bits())
    fn, (kind, meta, tags, dtypes, bufs) = bv.__reduce_ex__(4)
    bad = list(bufs)
    bad[1] = bad[1][:-8]
    with pytest.raises(WaveletError):
        fn(kind, meta, tags, dtypes, bad)
    with pytest.raises(WaveletError):
        fn(99, meta, tags, dtypes, bufs)


FUZZ_SCRIPT = r"""
import random, struct, sys, zlib
sys.path.insert(0, sys.argv[3])
from test_bitvector_serialize import _refresh_crcs
import numpy as np
from wavelet import BitVector, WaveletError
rng = random.Random(int(sys.argv[1]))
n_iter = int(sys.argv[2])
seeds = [BitVector(np.random.default_rng(s).random(n) < p).to_bytes()
         for s, (n, p) in enumerate([(0, .5), (1, 1.), (700, .5), (5000, .1), (20000, .9)])]
ok = bad = 0
for it in range(n_iter):
    d = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.6 and d:
            i = rng.randrange(len(d)); d[i] = rng.randrange(256)
        elif op < 0.75:
            d = d[:rng.randrange(len(d) + 1)]
        elif op < 0.9 and len(d) >= 96:
            i = 64 + 8 * rng.randrange(4); struct.pack_into("<Q", d, i, rng.choice(
                [0, 1, 2**32, 2**63, 2**64 - 1, rng.randrange(2**20)]))
        else:
            d += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
    if rng.random() < 0.7 and len(d) >= 64:
        try:
            d = _refresh_crcs(d)
        except struct.error:
            pass
    try:
        bv = BitVector.from_bytes(bytes(d))
    except WaveletError:
        bad += 1
        continue
    # accepted: it must then be fully consistent
    bits = bv.to_numpy()
    assert bv.rank1(len(bv)) == int(bits.sum())
    if bv.count():
        assert bv.select1(bv.count() - 1) == np.flatnonzero(bits)[-1]
    ok += 1
print("accepted", ok, "rejected", bad)
"""


def test_fuzz_mutated_files_in_subprocess():
    # A crash (segfault, abort) in the child fails this test instead of killing pytest.
    n_iter = 3000 if os.environ.get("CI") else 800
    r = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, "12345", str(n_iter), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rejected" in r.stdout
