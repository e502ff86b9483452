"""wavelet.merge_float_fields against a numpy reference, for every float layout."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import wavelet

# (word dtype, exponent bits, mantissa bits): fp16, bf16, fp32, fp64
LAYOUTS = [(np.uint16, 5, 10), (np.uint16, 8, 7), (np.uint32, 8, 23), (np.uint64, 11, 52)]


def split(words, e_bits, m_bits):
    """Reference encoder: exponent codes + table, byte planes, bit-packed top."""
    W = 8 * words.itemsize
    w = words.astype(np.uint64)
    exp = (w >> np.uint64(m_bits)) & np.uint64((1 << e_bits) - 1)
    table, codes = np.unique(exp, return_inverse=True)
    raw = (w & np.uint64((1 << m_bits) - 1)) | ((w >> np.uint64(W - 1)) << np.uint64(m_bits))
    nfull, rem = divmod(m_bits + 1, 8)
    planes = (
        np.stack(
            [((raw >> np.uint64(8 * p)) & np.uint64(0xFF)).astype(np.uint8) for p in range(nfull)]
        )
        if nfull
        else np.zeros((0, w.size), np.uint8)
    )
    top = None
    if rem:
        t = ((raw >> np.uint64(8 * nfull)) & np.uint64((1 << rem) - 1)).astype(np.uint8)
        bits = np.unpackbits(t[:, None], axis=1, bitorder="little")[:, :rem].reshape(-1)
        top = np.packbits(bits, bitorder="little")
    ctype = np.uint8 if table.size <= 256 else np.uint16
    return codes.astype(ctype), table.astype(np.uint16), np.ascontiguousarray(planes), top


@pytest.mark.parametrize("dt,e,m", LAYOUTS)
@given(data=st.data())
def test_roundtrip_random_bit_patterns(dt, e, m, data):
    words = data.draw(hnp.arrays(dt, st.integers(0, 300)))
    codes, table, planes, top = split(words, e, m)
    out = np.empty_like(words)
    if words.size == 0:
        table = np.zeros(1, np.uint16)
    wavelet.merge_float_fields(codes, table, e, m, planes, top, out)
    np.testing.assert_array_equal(out, words)


def test_special_values_fp32():
    vals = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38, 1.0], dtype=np.float32
    ).view(np.uint32)
    vals = np.concatenate([vals, np.array([0x7FC00001, 0xFFBFFFFF], dtype=np.uint32)])
    codes, table, planes, top = split(vals, 8, 23)
    out = np.empty_like(vals)
    wavelet.merge_float_fields(codes, table, 8, 23, planes, top, out)
    np.testing.assert_array_equal(out, vals)


def test_bad_input_is_rejected():
    words = np.arange(100, dtype=np.uint32) * 12345
    codes, table, planes, top = split(words, 8, 23)
    out = np.empty_like(words)
    bad = codes.copy()
    bad[7] = table.size  # code outside the table
    with pytest.raises(wavelet.WaveletError):
        wavelet.merge_float_fields(bad, table, 8, 23, planes, top, out)
    with pytest.raises(wavelet.WaveletError):
        wavelet.merge_float_fields(codes, table | np.uint16(0x100), 8, 23, planes, top, out)
    with pytest.raises(ValueError):
        wavelet.merge_float_fields(codes, table, 8, 22, planes, top, out)  # 1+8+22 != 32
    with pytest.raises(ValueError):
        wavelet.merge_float_fields(codes, table, 8, 23, planes[:, :50], top, out)
    with pytest.raises(TypeError):
        wavelet.merge_float_fields(codes.astype(np.int32), table, 8, 23, planes, top, out)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        wavelet.merge_float_fields(codes, table, 8, 23, planes, top, ro)


# ---- wider "exponent" fields, strided codes, sub-ranges ----------------------------------


@pytest.mark.parametrize("dt,e,m", LAYOUTS)
@given(data=st.data())
def test_joint_exponent_mantissa_field(dt, e, m, data):
    """The table may carry the exponent plus the top k mantissa bits (field e + k)."""
    k = data.draw(st.integers(0, min(8, 16 - e, m)))
    words = data.draw(hnp.arrays(dt, st.integers(1, 300)))
    codes, table, planes, top = split(words, e + k, m - k)
    out = np.empty_like(words)
    wavelet.merge_float_fields(codes, table, e + k, m - k, planes, top, out)
    np.testing.assert_array_equal(out, words)


@pytest.mark.parametrize("dt,e,m", LAYOUTS)
@given(data=st.data())
def test_rows_with_separators_and_subranges(dt, e, m, data):
    """Codes with one separator per row (a RAS) and any sub-range [start, start+count)."""
    k = data.draw(st.integers(0, 3))
    words = data.draw(hnp.arrays(dt, st.integers(1, 5000)))
    n = words.size
    codes, table, planes, top = split(words, e + k, m - k)
    start = data.draw(st.integers(0, n - 1))
    count = data.draw(st.integers(0, n - start))
    bl = data.draw(st.integers(1, max(1, count)))
    gap = data.draw(st.integers(0, 3))
    # lay the range's codes out in rows of bl, each followed by `gap` junk entries
    rng = codes[start : start + count]
    nrows = -(-count // bl) if count else 0
    lay = np.full(nrows * (bl + gap), 0xFF, dtype=codes.dtype)
    for r in range(nrows):
        seg = rng[r * bl : (r + 1) * bl]
        lay[r * (bl + gap) : r * (bl + gap) + seg.size] = seg
    if lay.size == 0:
        lay = np.zeros(1, codes.dtype)
    out = np.empty(count, dtype=words.dtype)
    wavelet.merge_float_fields(
        lay, table, e + k, m - k, planes, top, out, block_len=bl, block_stride=bl + gap,
        start=start, total=n,
    )
    np.testing.assert_array_equal(out, words[start : start + count])


def test_range_and_row_errors():
    words = np.arange(1000, dtype=np.uint32) * 7919
    codes, table, planes, top = split(words, 8, 23)
    out = np.empty(100, np.uint32)
    with pytest.raises(ValueError, match="outside"):
        wavelet.merge_float_fields(codes[:100], table, 8, 23, planes, top, out, start=950,
                                   total=1000)
    with pytest.raises(ValueError, match="too short"):
        wavelet.merge_float_fields(codes[:100], table, 8, 23, planes, top, out, block_len=10,
                                   block_stride=11, start=0, total=1000)
    with pytest.raises(ValueError, match="block_len"):
        wavelet.merge_float_fields(codes[:100], table, 8, 23, planes, top, out, block_len=10,
                                   block_stride=5, total=1000)
    with pytest.raises(ValueError, match="planes"):
        wavelet.merge_float_fields(codes[:100], table, 8, 23, planes, top, out, total=999)
    # a separator (junk code) inside a row is caught as corrupt data, not read out of range
    lay = np.concatenate([codes[:100], [np.uint8(250)]]).astype(np.uint8)
    with pytest.raises(wavelet.WaveletError):
        wavelet.merge_float_fields(lay[1:], table, 8, 23, planes, top, out, block_len=100,
                                   block_stride=100, start=1, total=1000)
    with pytest.raises(ValueError):  # table entry wider than the field
        wavelet.merge_float_fields(codes, table, 17, 14, planes, top, np.empty(1000, np.uint32))


# ---- gap_positions ---------------------------------------------------------------------------


def _encode_gaps(rows, L, esc, rice=None):
    """Reference encoder: (seq with a delimiter after each row, table, extra bits); with
    *rice* the symbols are the quotients ``g >> rice`` and the low bits go to extra."""
    syms, extra_bits, nblocks = [], [], len(rows)
    for r in rows:
        prev = -1
        for p in r:
            g = p - prev - 1
            prev = p
            if rice:
                syms.append(g >> rice)
                extra_bits += [g >> t & 1 for t in range(rice)]
            elif esc is not None and g >= esc:
                v = g - esc + 1
                b = v.bit_length() - 1
                syms.append(esc + b)
                extra_bits += [(v - (1 << b)) >> t & 1 for t in range(b)]
            else:
                syms.append(g)
        syms.append(None)
    table = np.array(sorted({s for s in syms if s is not None}) or [0], dtype=np.uint64)
    index = {int(s): i for i, s in enumerate(table)}
    delim = table.size + 2
    seq = np.array([delim if s is None else index[s] for s in syms], dtype=np.uint16)
    extra = np.packbits(np.array(extra_bits, dtype=np.uint8), bitorder="little")
    return seq, table, delim, extra, nblocks


@given(data=st.data())
def test_gap_positions_against_python(data):
    L = data.draw(st.integers(1, 5000))
    nb = data.draw(st.integers(0, 6))
    rows = [
        sorted(data.draw(st.sets(st.integers(0, L - 1), max_size=min(L, 40)))) for _ in range(nb)
    ]
    esc = data.draw(st.sampled_from([None, 0, 1, 3, 64]))
    rice = data.draw(st.sampled_from([None, 1, 2, 5, 13])) if esc is None else None
    seq, table, delim, extra, nblocks = _encode_gaps(rows, L, esc, rice)
    npos = sum(len(r) for r in rows)
    pos = wavelet.gap_positions(seq, table, delim, L, nblocks, npos, esc=esc, extra=extra,
                                rice=rice)
    want = [j * L + p for j, r in enumerate(rows) for p in r]
    assert pos.dtype == np.int64 and pos.tolist() == want


def test_gap_positions_rejects_corrupt_streams():
    rows = [[0, 5, 900], [], [3, 4000]]
    seq, table, delim, extra, nb = _encode_gaps(rows, 5000, 16)
    ok = dict(esc=16, extra=extra)
    assert wavelet.gap_positions(seq, table, delim, 5000, nb, 5, **ok).tolist() == [
        0, 5, 900, 10003, 14000]
    bad_calls = [
        lambda: wavelet.gap_positions(seq, table, delim, 5000, nb, 4, **ok),  # count
        lambda: wavelet.gap_positions(seq, table, delim, 5000, nb + 1, 5, **ok),  # blocks
        lambda: wavelet.gap_positions(seq, table, delim, 3000, nb, 5, **ok),  # past block
        lambda: wavelet.gap_positions(seq, table, delim, 5000, nb, 5, esc=16,
                                      extra=extra[:-1]),  # escape bits run out
        lambda: wavelet.gap_positions(seq, table, delim, 5000, nb, 5, esc=16,
                                      extra=np.concatenate([extra, [0]]).astype(np.uint8)),
        lambda: wavelet.gap_positions(np.where(seq == delim, delim + 1, seq).astype(np.uint16),
                                      table, delim, 5000, nb, 5, **ok),  # unknown code
        lambda: wavelet.gap_positions(seq, table, delim, 5000, nb, 5, esc=0, extra=extra),
    ]
    for f in bad_calls:
        with pytest.raises(wavelet.WaveletError):
            f()
    with pytest.raises(ValueError):
        wavelet.gap_positions(seq, table, 0, 5000, nb, 5, **ok)  # delimiter is an operand code
    with pytest.raises(TypeError):
        wavelet.gap_positions(seq.astype(np.int16), table, delim, 5000, nb, 5, **ok)


@given(data=st.data())
def test_gap_scatter_against_numpy(data):
    """gap_scatter == zeros + out[gap_positions(...)] = vals, for every value width."""
    L = data.draw(st.integers(1, 3000))
    nb = data.draw(st.integers(0, 5))
    rows = [
        sorted(data.draw(st.sets(st.integers(0, L - 1), max_size=min(L, 40)))) for _ in range(nb)
    ]
    esc = data.draw(st.sampled_from([None, 0, 1, 3, 64]))
    rice = data.draw(st.sampled_from([None, 1, 4])) if esc is None else None
    seq, table, delim, extra, nblocks = _encode_gaps(rows, L, esc, rice)
    if data.draw(st.booleans()):
        seq = seq.astype(np.uint8) if int(seq.max(initial=0)) < 256 else seq
    npos = sum(len(r) for r in rows)
    dt = data.draw(st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]))
    vals = data.draw(hnp.arrays(dt, npos))
    pos = wavelet.gap_positions(seq, table, delim, L, nblocks, npos, esc=esc, extra=extra,
                                rice=rice)
    assert pos.tolist() == [j * L + p for j, r in enumerate(rows) for p in r]
    want = np.zeros(nblocks * L, dt)
    want[pos] = vals
    out = np.full(nblocks * L, 7, dt)  # junk: the scatter zeroes it first
    assert wavelet.gap_scatter(seq, table, delim, L, nblocks, vals, out, esc=esc,
                               extra=extra, rice=rice) is out
    np.testing.assert_array_equal(out, want)


def test_gap_rice_rejects_corrupt_streams():
    rows = [[0, 5, 900], [], [3, 4000]]
    seq, table, delim, extra, nb = _encode_gaps(rows, 5000, None, 6)
    ok = dict(rice=6, extra=extra)
    assert wavelet.gap_positions(seq, table, delim, 5000, nb, 5, **ok).tolist() == [
        0, 5, 900, 10003, 14000]
    vals = np.arange(1, 6, dtype=np.uint16)
    bad_calls = [
        dict(rice=6, extra=extra[:-1]),  # low bits run out
        dict(rice=6, extra=np.concatenate([extra, [0]]).astype(np.uint8)),  # bits left over
        dict(rice=7, extra=extra),  # other width: offsets / bit counts do not match
    ]
    for kw in bad_calls:
        with pytest.raises(wavelet.WaveletError):
            wavelet.gap_positions(seq, table, delim, 5000, nb, 5, **kw)
        guard = np.full(nb * 5000 + 2, 9, np.uint16)
        with pytest.raises(wavelet.WaveletError):
            wavelet.gap_scatter(seq, table, delim, 5000, nb, vals, guard[1:-1], **kw)
        assert guard[0] == 9 and guard[-1] == 9
    huge = np.array([2**63, 1], dtype=np.uint64)  # (q << r) overflows: corrupt, no wrap
    with pytest.raises(wavelet.WaveletError):
        wavelet.gap_positions(np.array([0, 3], np.uint16), huge, 3, 5000, 1, 1, rice=2,
                              extra=np.zeros(1, np.uint8))
    for kw in (dict(rice=57), dict(rice=-1), dict(rice=2, esc=4)):
        with pytest.raises(ValueError):
            wavelet.gap_positions(seq, table, delim, 5000, nb, 5, extra=extra, **kw)


def test_gap_scatter_rejects_corrupt_streams_within_bounds():
    """Every corrupt stream raises, and nothing is written outside out (guard words)."""
    rows = [[0, 5, 900], [], [3, 4000]]
    seq, table, delim, extra, nb = _encode_gaps(rows, 5000, 16)
    vals = np.arange(1, 6, dtype=np.uint32)
    ok = dict(esc=16, extra=extra)

    def run(L=5000, nblocks=nb, v=vals, s=seq, **kw):
        buf = np.full(nblocks * L + 64, 0xDEADBEEF, np.uint32)
        out = buf[32:-32]
        try:
            return wavelet.gap_scatter(s, table, delim, L, nblocks, v, out, **(kw or ok))
        finally:
            assert (buf[:32] == 0xDEADBEEF).all() and (buf[-32:] == 0xDEADBEEF).all()

    got = run()
    assert np.flatnonzero(got).tolist() == [0, 5, 900, 10003, 14000]
    bad = [
        dict(v=vals[:4]),  # count
        dict(nblocks=nb + 1),  # blocks
        dict(L=3000),  # an offset past its block: never written
        dict(L=901),
        dict(esc=16, extra=extra[:-1]),  # escape bits run out
        dict(s=np.where(seq == delim, delim + 1, seq).astype(np.uint16)),  # unknown code
        dict(esc=0, extra=extra),
    ]
    for kw in bad:
        with pytest.raises(wavelet.WaveletError):
            run(**kw)
    with pytest.raises(TypeError):  # vals and out of different dtypes
        wavelet.gap_scatter(seq, table, delim, 5000, nb, vals.astype(np.uint16),
                            np.zeros(nb * 5000, np.uint32), **ok)
    with pytest.raises(ValueError):  # out of the wrong size
        wavelet.gap_scatter(seq, table, delim, 5000, nb, vals, np.zeros(10, np.uint32), **ok)


# ---- lookup ----------------------------------------------------------------------------------


@given(data=st.data())
def test_lookup_rows_against_numpy(data):
    width = data.draw(st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]))
    cw = data.draw(st.sampled_from([np.uint8, np.uint16]))
    table = data.draw(hnp.arrays(width, st.integers(1, 256 if cw == np.uint8 else 300)))
    count = data.draw(st.integers(0, 3000))
    bl = data.draw(st.integers(1, max(1, count)))
    gap = data.draw(st.integers(0, 2))
    codes = data.draw(hnp.arrays(cw, count, elements=st.integers(0, table.size - 1)))
    nrows = -(-count // bl) if count else 0
    lay = np.full(max(1, nrows * (bl + gap)), np.iinfo(cw).max, dtype=cw)
    for r in range(nrows):
        seg = codes[r * bl : (r + 1) * bl]
        lay[r * (bl + gap) : r * (bl + gap) + seg.size] = seg
    out = np.empty(count, dtype=width)
    wavelet.lookup(lay, table, out, block_len=bl, block_stride=bl + gap)
    np.testing.assert_array_equal(out, table[codes])
    if count:
        plain = np.empty(count, dtype=width)
        np.testing.assert_array_equal(wavelet.lookup(codes, table, plain), table[codes])


def test_lookup_errors():
    table = np.arange(5, dtype=np.uint32)
    with pytest.raises(wavelet.WaveletError):
        wavelet.lookup(np.array([1, 5], np.uint8), table, np.empty(2, np.uint32))
    with pytest.raises(TypeError):
        wavelet.lookup(np.array([1, 2], np.uint8), table, np.empty(2, np.uint16))
    with pytest.raises(ValueError, match="too short"):
        wavelet.lookup(np.array([1, 2, 3], np.uint8), table, np.empty(3, np.uint32),
                       block_len=2, block_stride=3)
    with pytest.raises(ValueError):
        wavelet.lookup(np.array([1], np.uint8), table, np.empty(2, np.uint32))


# ---- small tables (<= 64 entries, 8-bit codes): the SSSE3 byte-table path -----------------
# Run at every ISA level: level 0 is the portable C, >= 1 the SSSE3 kernel (where present).
from _wv_oracle import isa, isa_levels  # noqa: E402

SMALL = [(np.uint16, 5, 10), (np.uint16, 8, 7), (np.uint32, 8, 23)]


def small_alphabet_words(data, dt, e, m):
    """Words whose e-bit field takes at most 128 distinct values (the byte-table kernels: one
    vpermb up to 64, vpermi2b up to 128); n crosses 16, 64 and 2048."""
    W = 8 * np.dtype(dt).itemsize
    nvals = data.draw(st.one_of(st.integers(1, min(64, 1 << e)), st.integers(1, min(128, 1 << e))))
    vals = data.draw(st.lists(st.integers(0, (1 << e) - 1), min_size=nvals, max_size=nvals,
                              unique=True))
    n = data.draw(st.one_of(st.integers(0, 70), st.integers(2030, 4200)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    field = np.asarray(vals, np.uint64)[rng.integers(0, nvals, n)]
    rest = rng.integers(0, 1 << 62, n, dtype=np.uint64) & np.uint64((1 << W) - 1)
    rest &= ~(np.uint64((1 << e) - 1) << np.uint64(m))
    return (rest | (field << np.uint64(m))).astype(dt)


@pytest.mark.parametrize("level", isa_levels())
@pytest.mark.parametrize("dt,e,m", SMALL)
@given(data=st.data())
def test_small_tables_every_isa_level(level, dt, e, m, data):
    k = data.draw(st.integers(0, min(3, 16 - e, m)))
    words = small_alphabet_words(data, dt, e + k, m - k)
    n = words.size
    codes, table, planes, top = split(words, e + k, m - k)
    if n == 0:
        table = np.zeros(1, np.uint16)
    start = data.draw(st.integers(0, n))
    count = data.draw(st.integers(0, n - start))
    bl = data.draw(st.sampled_from([max(1, count), 16, 17, 100, 2049]))
    gap = data.draw(st.integers(0, 2))
    rng = codes[start : start + count]
    nrows = -(-count // bl) if count else 0
    lay = np.full(max(1, nrows * (bl + gap)), 0xFF, dtype=codes.dtype)
    for r in range(nrows):
        seg = rng[r * bl : (r + 1) * bl]
        lay[r * (bl + gap) : r * (bl + gap) + seg.size] = seg
    out = np.empty(count, dtype=words.dtype)
    with isa(level):
        wavelet.merge_float_fields(
            lay, table, e + k, m - k, planes, top, out, block_len=bl, block_stride=bl + gap,
            start=start, total=n,
        )
        np.testing.assert_array_equal(out, words[start : start + count])
        whole = np.empty_like(words)
        wavelet.merge_float_fields(codes, table, e + k, m - k, planes, top, whole)
        np.testing.assert_array_equal(whole, words)


@pytest.mark.parametrize("level", isa_levels())
@pytest.mark.parametrize("dt,e,m", SMALL)
@pytest.mark.parametrize("where", [0, 15, 16, 63, 64, 1000, 2047, 2048, 2999])
@pytest.mark.parametrize("bad_code", ["next", "in_subtable", "255"])
@pytest.mark.parametrize("nfield", [10, 100])
def test_small_tables_reject_bad_codes(level, dt, e, m, where, bad_code, nfield):
    """A code outside the table is caught in the vector part and in the scalar tail (tables
    of up to 64 entries and of more)."""
    gen = np.random.default_rng(where)
    n = 3000
    if nfield == 10:
        field = np.asarray([1, 2, 3, 5, 7, 11, 13, 17, 19, 23][: min(10, 1 << e)], np.uint64)
    else:
        field = np.arange(min(nfield, 1 << e), dtype=np.uint64)
    W = 8 * np.dtype(dt).itemsize
    rest = gen.integers(0, 1 << 62, n, dtype=np.uint64) & np.uint64((1 << W) - 1)
    rest &= ~(np.uint64((1 << e) - 1) << np.uint64(m))
    field = field[gen.integers(0, field.size, n)] % np.uint64(1 << e)
    words = (rest | (field << np.uint64(m))).astype(dt)
    codes, table, planes, top = split(words, e, m)
    bad = codes.copy()
    in_sub = 15 if table.size < 15 else 63 if table.size < 63 else 127
    bad[where] = {"next": table.size, "in_subtable": in_sub, "255": 255}[bad_code]
    out = np.empty_like(words)
    with isa(level):
        with pytest.raises(wavelet.WaveletError):
            wavelet.merge_float_fields(bad, table, e, m, planes, top, out)
        wavelet.merge_float_fields(codes, table, e, m, planes, top, out)
        np.testing.assert_array_equal(out, words)


@pytest.mark.parametrize("level", isa_levels())
@given(data=st.data())
def test_lookup_small_tables_every_isa_level(level, data):
    width = data.draw(st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]))
    table = data.draw(hnp.arrays(width, st.integers(1, 128)))
    count = data.draw(st.one_of(st.integers(0, 70), st.integers(2030, 4200)))
    bl = data.draw(st.sampled_from([max(1, count), 16, 33, 2049]))
    gap = data.draw(st.integers(0, 2))
    seed = data.draw(st.integers(0, 2**32 - 1))
    codes = np.random.default_rng(seed).integers(0, table.size, count).astype(np.uint8)
    nrows = -(-count // bl) if count else 0
    lay = np.full(max(1, nrows * (bl + gap)), 0xFF, dtype=np.uint8)
    for r in range(nrows):
        seg = codes[r * bl : (r + 1) * bl]
        lay[r * (bl + gap) : r * (bl + gap) + seg.size] = seg
    out = np.empty(count, dtype=width)
    with isa(level):
        wavelet.lookup(lay, table, out, block_len=bl, block_stride=bl + gap)
        np.testing.assert_array_equal(out, table[codes])
        if count > 20:
            bad = codes.copy()
            bad[data.draw(st.integers(0, count - 1))] = data.draw(
                st.sampled_from([table.size, 63, 255]).filter(lambda c: c >= table.size)
            )
            with pytest.raises(wavelet.WaveletError):
                wavelet.lookup(bad, table, np.empty(count, dtype=width))


# ---- fused tree decode: WaveletTree.decode_float / decode_lookup -----------------------------


def _ras_layout(codes, lead, block, tail, k, rng):
    """Tree symbols: `lead` non-operands, rows of `block` codes each followed by a
    delimiter (block > 0), then `tail` end markers; non-operands use symbols >= k."""
    parts = [rng.integers(k, k + 3, lead)]
    if block:
        for r in range(0, codes.size, block):
            parts += [codes[r : r + block], [k + 1]]
    else:
        parts.append(codes)
    parts.append(rng.integers(k, k + 3, tail))
    return np.concatenate([np.asarray(p, np.int64) for p in parts]).astype(np.uint16)


def _operand_positions(N, lead, block):
    p = np.arange(N)
    q = p - lead
    keep = q >= 0
    if block:
        keep &= (q % (block + 1)) != block
    return p[keep]


@pytest.mark.parametrize("level", isa_levels())
@pytest.mark.parametrize("dt,e,m", LAYOUTS)
@given(data=st.data())
def test_tree_decode_float_matches_merge(level, dt, e, m, data):
    k_bits = data.draw(st.integers(0, min(2, 16 - e, m)))
    words = small_alphabet_words(data, dt, e + k_bits, m - k_bits)
    n = words.size
    codes, table, planes, top = split(words, e + k_bits, m - k_bits)
    if n == 0:
        table = np.zeros(1, np.uint16)
    lead = data.draw(st.integers(0, 2))
    block = data.draw(st.sampled_from([0, 1, 7, 1024, max(n, 1)]))
    shape = data.draw(st.sampled_from(["huffman", "balanced"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    sym = _ras_layout(codes.astype(np.int64), lead, block, data.draw(st.integers(0, 2)),
                      table.size, rng)
    wt = wavelet.WaveletTree(sym, shape=shape)
    N = len(wt)
    start = data.draw(st.integers(0, N))
    stop = data.draw(st.integers(start, N))
    pos = _operand_positions(N, lead, block)
    elems = np.flatnonzero((pos >= start) & (pos < stop))
    elems = elems[elems < n]
    with isa(level):
        got = wt.decode_float(table, e + k_bits, m - k_bits, planes, top, start=start,
                              stop=stop, lead=lead, block=block, nelems=n)
    np.testing.assert_array_equal(got, words[elems])
    look = wt.decode_lookup(table, start=start, stop=stop, lead=lead, block=block, nelems=n)
    np.testing.assert_array_equal(look, table[codes[elems]])


def test_tree_decode_across_chunks_and_errors():
    """Ranges over the C decode's 64K-position chunks, rows cut by chunk ends; errors."""
    gen = np.random.default_rng(5)
    n, block = 200_003, 3001
    words = (gen.integers(0, 1 << 16, n) | (gen.integers(100, 130, n) << 23)).astype(np.uint32)
    words |= (gen.integers(0, 2, n) << 31).astype(np.uint32)
    codes, table, planes, top = split(words, 8, 23)
    sym = _ras_layout(codes.astype(np.int64), 1, block, 1, table.size, gen)
    wt = wavelet.WaveletTree(sym, shape="huffman")
    N = len(wt)
    pos = _operand_positions(N, 1, block)
    for start, stop in [(0, N), (1, N - 1), (65535, 65537 * 2 + 5), (3002, 3003), (70000, N)]:
        elems = np.flatnonzero((pos >= start) & (pos < stop))
        elems = elems[elems < n]
        out = np.empty(elems.size, np.uint32)
        wt.decode_float(table, 8, 23, planes, None, out=out, start=start, stop=stop, lead=1,
                        block=block, nelems=n)
        np.testing.assert_array_equal(out, words[elems])
    with pytest.raises(wavelet.WaveletError):  # operand codes beyond a short table
        wt.decode_float(table[:-1], 8, 23, planes, None, lead=1, block=block, nelems=n)
    with pytest.raises(ValueError, match="nelems"):
        wt.decode_float(table, 8, 23, planes, None, lead=1, block=block, nelems=N)
    with pytest.raises(ValueError, match="planes"):
        wt.decode_float(table, 8, 23, planes[:, :-1], None, lead=1, block=block, nelems=n)
    with pytest.raises(IndexError):
        wt.decode_float(table, 8, 23, planes, None, start=5, stop=N + 1, lead=1, block=block,
                        nelems=n)
    with pytest.raises(ValueError):
        wt.decode_float(table, 8, 22, planes, None, lead=1, block=block, nelems=n)
    with pytest.raises(ValueError):  # out of the wrong size
        wt.decode_float(table, 8, 23, planes, None, out=np.empty(n - 1, np.uint32), lead=1,
                        block=block, nelems=n)
    with pytest.raises(TypeError):
        wt.decode_float(table.astype(np.uint32), 8, 23, planes, None, lead=1, block=block,
                        nelems=n)
    with pytest.raises(wavelet.WaveletError):
        wt.decode_lookup(table[:3], lead=1, block=block, nelems=n)
    wide = wavelet.WaveletTree(np.array([0, 70000, 1], np.uint32))
    with pytest.raises(ValueError):  # symbols wider than 16 bits cannot be codes
        wide.decode_lookup(np.arange(3, dtype=np.uint8))


def test_field_decoder_reuse_checks_and_threads():
    """A prepared decoder: same bits as decode_float on every call and sub-range, its out
    checked on every call, usable from threads on disjoint outputs, keeps its parts alive."""
    from concurrent.futures import ThreadPoolExecutor

    gen = np.random.default_rng(11)
    n, block = 50_000, 777
    words = (gen.integers(0, 1 << 10, n) | (gen.integers(3, 20, n) << 10)).astype(np.uint16)
    codes, table, planes, top = split(words, 5, 10)
    sym = _ras_layout(codes.astype(np.int64), 1, block, 1, table.size, gen)
    wt = wavelet.WaveletTree(sym, shape="huffman")
    dec = wt.float_decoder(table.copy(), 5, 10, planes.copy(), top.copy(), lead=1,
                           block=block, nelems=n)
    del table, planes, top  # the decoder holds its parts
    assert isinstance(dec, wavelet.FieldDecoder) and dec.dtype == np.uint16
    out = np.empty(n, np.uint16)
    for _ in range(3):
        out[:] = 0
        assert dec(out) is out
        np.testing.assert_array_equal(out, words)
    N = len(wt)
    cuts = [0, 1, 5000, 5001, 33333, N]
    parts = [(a, b, dec.count(0, a), dec.count(0, b))
             for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    res = np.zeros(n, np.uint16)
    with ThreadPoolExecutor(3) as ex:
        list(ex.map(lambda p: dec(res[p[2]:p[3]], p[0], p[1]), parts))
    np.testing.assert_array_equal(res, words)
    with pytest.raises(TypeError):
        dec(np.empty(n, np.uint32))
    with pytest.raises(ValueError):
        dec(np.empty(n + 1, np.uint16))
    with pytest.raises(ValueError):
        dec(np.empty(2 * n, np.uint16)[::2])
    ro = np.empty(n, np.uint16)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        dec(ro)
    with pytest.raises(IndexError):
        dec(None, 0, N + 1)
    look = wt.lookup_decoder(np.arange(64, dtype=np.uint8) * 3, lead=1, block=block, nelems=n)
    np.testing.assert_array_equal(look(), (codes * 3).astype(np.uint8))


@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_zero_signs_against_numpy(data):
    """The zero words take their top bit from the stream, in order; the others are kept."""
    dt = data.draw(st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]))
    n = data.draw(st.integers(0, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    words = rng.integers(1, np.iinfo(dt).max, n, dtype=dt, endpoint=True)
    words[rng.random(n) < data.draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]))] = 0
    z = np.flatnonzero(words == 0)
    signs = rng.random(z.size) < 0.5
    bits = np.packbits(signs, bitorder="little")
    ref = words.copy()
    ref[z[signs]] = dt(1) << dt(8 * np.dtype(dt).itemsize - 1)
    out = words.copy()
    assert wavelet.zero_signs(out, bits, z.size) is out
    assert np.array_equal(out, ref)
    if z.size:  # one sign short, or one left over
        with pytest.raises(wavelet.WaveletError):
            wavelet.zero_signs(words.copy(), np.packbits(signs[:-1], bitorder="little"),
                               z.size - 1)
        more = np.packbits(np.append(signs, True), bitorder="little")
        with pytest.raises(wavelet.WaveletError):
            wavelet.zero_signs(words.copy(), more, z.size + 1)


def test_zero_signs_bad_arguments():
    out = np.zeros(10, np.uint32)
    bits = np.zeros(2, np.uint8)
    with pytest.raises(ValueError, match="zero_signs: bits holds 2 bytes, expected 1"):
        wavelet.zero_signs(out, bits, 3)
    with pytest.raises(TypeError, match="zero_signs: out has dtype float32"):
        wavelet.zero_signs(out.view(np.float32), bits, 10)
    with pytest.raises(ValueError, match="zero_signs: out must be C-contiguous"):
        wavelet.zero_signs(np.zeros(20, np.uint32)[::2], bits, 10)
    ro = np.zeros(10, np.uint32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="zero_signs: out must be writable"):
        wavelet.zero_signs(ro, bits, 10)
    with pytest.raises(TypeError, match="zero_signs: bits has dtype"):
        wavelet.zero_signs(out, bits.astype(np.uint16), 10)
