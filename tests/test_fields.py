"""wavelet.merge_float_fields against a numpy reference, for every float layout."""

import numpy as np
import pytest
from hypothesis import given
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


def _encode_gaps(rows, L, esc):
    """Reference encoder: (seq with a delimiter after each row, table, extra bits)."""
    syms, extra_bits, nblocks = [], [], len(rows)
    for r in rows:
        prev = -1
        for p in r:
            g = p - prev - 1
            prev = p
            if esc is not None and g >= esc:
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
    seq, table, delim, extra, nblocks = _encode_gaps(rows, L, esc)
    npos = sum(len(r) for r in rows)
    pos = wavelet.gap_positions(seq, table, delim, L, nblocks, npos, esc=esc, extra=extra)
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
