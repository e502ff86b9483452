"""Serialization of WaveletMatrix and WaveletTree: round trips, mmap, pickle 5, fixtures,
and hostile files (mutated bytes with recomputed checksums, in a subprocess)."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wavelet import WaveletError, WaveletMatrix, WaveletTree

FIXTURES = Path(__file__).parent / "fixtures"


def _builders():
    return [
        ("wm", WaveletMatrix),
        ("wt-bal", lambda s: WaveletTree(s, shape="balanced")),
        ("wt-huf", lambda s: WaveletTree(s, shape="huffman")),
    ]


@given(hnp.arrays(np.uint16, st.integers(0, 400), elements=st.integers(0, 300)))
def test_roundtrip_bytes_pickle(seq):
    for _, make in _builders():
        s = make(seq)
        for back in (
            type(s).from_bytes(s.to_bytes()),
            pickle.loads(pickle.dumps(s, protocol=5)),
            pickle.loads(pickle.dumps(s, protocol=2)),
        ):
            assert back == s
            np.testing.assert_array_equal(back.extract(), seq)
            if seq.size:
                c = int(seq[0])
                assert back.rank(c, seq.size) == s.rank(c, seq.size)



def test_save_file_mode_is_that_of_a_plain_open(tmp_path):
    """The atomic write (a temporary file, then rename) leaves the mode a plain open would:
    0o666 less the umask for a new file, the old mode for a file it replaces."""
    s = WaveletMatrix(np.arange(100, dtype=np.uint32) % 7)
    old = os.umask(0o022)
    try:
        s.save(tmp_path / "a.wvt")
        os.umask(0o077)
        s.save(tmp_path / "b.wvt")
        (tmp_path / "c.wvt").write_bytes(b"")
        os.chmod(tmp_path / "c.wvt", 0o640)
        s.save(tmp_path / "c.wvt")
    finally:
        os.umask(old)
    assert [(tmp_path / n).stat().st_mode & 0o777 for n in ("a.wvt", "b.wvt", "c.wvt")] == [
        0o644, 0o600, 0o640]
    assert WaveletMatrix.load(tmp_path / "c.wvt") == s

def test_save_load_mmap_and_out_of_band(tmp_path):
    seq = np.random.default_rng(0).integers(0, 1000, 50_000).astype(np.uint32)
    for name, make in _builders():
        s = make(seq)
        p = tmp_path / f"{name}.wvt"
        s.save(p)
        for mm in (False, True):
            b = type(s).load(p, mmap=mm)
            assert b == s and b.rank(7, 40_000) == s.rank(7, 40_000)
        bufs = []
        data = pickle.dumps(s, protocol=5, buffer_callback=bufs.append)
        assert bufs and len(data) < 2000
        assert pickle.loads(data, buffers=bufs) == s
    assert sorted(x.name for x in tmp_path.iterdir()) == ["wm.wvt", "wt-bal.wvt", "wt-huf.wvt"]


def test_kind_mismatch_is_named():
    wm = WaveletMatrix([1, 2, 3])
    with pytest.raises(WaveletError, match="WaveletMatrix"):
        WaveletTree.from_bytes(wm.to_bytes())


def test_fixtures_still_decode():
    # written by format 1.0 (tests/fixtures/make_fixtures.py); they must keep loading
    seq = (np.arange(5000, dtype=np.uint64) * 2654435761) % 97
    for name, cls in [
        ("wavelet_matrix_v1.bin", WaveletMatrix),
        ("wavelet_tree_huffman_v1.bin", WaveletTree),
        ("wavelet_tree_huffman_v1_1.bin", WaveletTree),  # format 1.1: SYMC
    ]:
        s = cls.load(FIXTURES / name)
        np.testing.assert_array_equal(s.extract().astype(np.uint64), seq)


def test_truncations_rejected():
    seq = np.random.default_rng(1).integers(0, 300, 3000).astype(np.uint16)
    for _, make in _builders():
        data = make(seq).to_bytes()
        for cut in (0, 10, 64, 200, len(data) // 2, len(data) - 1):
            with pytest.raises(WaveletError):
                type(make(seq)).from_bytes(data[:cut])


FUZZ = r"""
import random, struct, sys
sys.path.insert(0, sys.argv[3])
from test_bitvector_serialize import _refresh_crcs
import numpy as np
from wavelet import WaveletError, WaveletMatrix, WaveletTree
rng = random.Random(int(sys.argv[1]))
g = np.random.default_rng(0)
seeds = []
for n, hi in [(0, 5), (1, 5), (300, 4), (2000, 300), (5000, 2**40)]:
    s = g.integers(0, hi, n, dtype=np.uint64)
    seeds += [(WaveletMatrix, WaveletMatrix(s).to_bytes(), s),
              (WaveletTree, WaveletTree(s, shape="huffman").to_bytes(), s),
              (WaveletTree, WaveletTree(s).to_bytes(), s)]
acc = rej = 0
for it in range(int(sys.argv[2])):
    cls, d, ref = rng.choice(seeds)
    d = bytearray(d)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.55 and d:
            i = rng.randrange(len(d)); d[i] = rng.randrange(256)
        elif op < 0.7:
            d = d[:rng.randrange(len(d) + 1)]
        elif len(d) >= 128:
            nmeta = struct.unpack_from("<I", d, 28)[0]
            if 0 < nmeta and 64 + 8 * nmeta <= len(d):
                i = 64 + 8 * rng.randrange(nmeta)
                struct.pack_into("<Q", d, i, rng.choice([0, 1, 2, 63, 64, 65, 2**32, 2**63,
                                                         2**64 - 1, rng.randrange(2**16)]))
    if rng.random() < 0.8 and len(d) >= 64:
        try:
            d = _refresh_crcs(d)
        except struct.error:
            pass
    try:
        s = cls.from_bytes(bytes(d))
    except WaveletError:
        rej += 1
        continue
    # accepted: queries must stay in bounds (values may differ if meta changed consistently)
    n = len(s)
    x = s.extract()
    assert x.size == n
    if n:
        s.access(n - 1); s.rank(int(x[0]), n); s.select(int(x[0]), 0)
    acc += 1
print("accepted", acc, "rejected", rej)
"""


def test_fuzz_hostile_files_in_subprocess():
    n_iter = 3000 if os.environ.get("CI") else 800
    r = subprocess.run(
        [sys.executable, "-c", FUZZ, "7", str(n_iter), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "rejected" in r.stdout


def test_tree_format_1_1_symbol_section():
    """Format 1.1 stores the tree's symbols once (SYMC, smallest width); 1.0 files (three
    tables) still load; repeated symbols in SYMC are rejected."""
    seq = np.array([5, 300, 5, 7, 7, 7, 300, 9], dtype=np.uint32)
    wt = WaveletTree(seq, shape="huffman")
    meta, secs = wt._to_parts()
    tags = dict(secs)
    assert "SYMC" in tags and "SKEY" not in tags and tags["SYMC"].dtype == np.uint16
    back = WaveletTree.from_bytes(wt.to_bytes())
    np.testing.assert_array_equal(back.extract(), seq)
    np.testing.assert_array_equal(back.select(7, [0, 2]), wt.select(7, [0, 2]))
    full_meta, full = wt._device_parts()  # the 1.0 section set is still readable
    old = WaveletTree._from_parts(full_meta, dict(full))
    np.testing.assert_array_equal(old.extract(), seq)
    bad = dict(secs)
    bad["SYMC"] = bad["SYMC"].copy()
    bad["SYMC"][1] = bad["SYMC"][0]
    with pytest.raises(WaveletError, match="repeated symbol"):
        WaveletTree._from_parts(meta, bad)
    bad["SYMC"] = bad["SYMC"].astype(np.int16)
    with pytest.raises(WaveletError):
        WaveletTree._from_parts(meta, bad)
    mixed = dict(secs)
    mixed["SKEY"] = np.sort(tags["SYMC"].astype(np.uint64))
    with pytest.raises(WaveletError, match="unexpected sections"):
        WaveletTree._from_parts(meta, mixed)
