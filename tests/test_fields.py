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
