"""File format 5: the header fields a reader derives (dnn_adapter/_derive.py). For every codec
and form, the compact entry expands back to the full one, and a file of it reads back bit for
bit; the float codec's exponent table is uint8 where the field fits."""

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_dnn_codecs import FLOATS, assert_exact, tensors  # noqa: E402

from dnn_adapter import _derive  # noqa: E402
from dnn_adapter import codecs as C  # noqa: E402
from dnn_adapter.io import _decode_entry, _File, _np_dtype_str, compress_state_dict  # noqa: E402
from dnn_adapter.wrapping import WrapConfig  # noqa: E402


def _entry(enc):
    """The version 4 table entry of *enc* (parts widest first, as the writer orders them)."""
    tree, bufs = enc.flatten()
    items = [[p, _np_dtype_str(a), list(a.shape)]
             for p, a in sorted(bufs.items(), key=lambda kv: -kv[1].dtype.itemsize)]
    e = {"kind": "compressed", "requires_grad": False, "tree": tree, "buffers": items,
         "data_crc32": 0}
    return json.loads(json.dumps(e))


def _encodings(x, cid, form):
    if cid is None:
        return [C.encode_best(x, form=form)]
    try:
        return [C.get_codec({"id": cid, "form": form} if cid != "raw" else cid).encode(x)]
    except C.CodecError:
        return []


@settings(deadline=None, max_examples=80)
@given(tensors(), st.sampled_from(["float", "dict", "sparse", "raw", None]),
       st.sampled_from(["block", "element"]), st.sampled_from([None, (3, 3), (1, 2)]))
def test_compact_expands_back(x, cid, form, kernel):
    if kernel is not None and x.numel():  # a conv-shaped weight (grouped short kernels)
        x = x.reshape(-1, 1, 1, 1).repeat(1, 1, *kernel)
    for enc in _encodings(x, cid, form):
        full = _entry(enc)
        compact = _derive.compact(copy.deepcopy(full))
        assert json.loads(json.dumps(compact)) == compact  # plain JSON
        assert _derive.expand(json.loads(json.dumps(compact))) == full
        text = json.dumps(compact, separators=(",", ":"))
        assert len(text) <= len(json.dumps(full, separators=(",", ":")))


@settings(deadline=None, max_examples=25)
@given(tensors(), st.sampled_from(["float", "dict", "sparse", "raw"]),
       st.sampled_from(["block", "element"]))
def test_compact_file_reads_back(tmp_path_factory, x, cid, form):
    path = tmp_path_factory.mktemp("derive") / "t.dnnz"
    cfg = WrapConfig(min_numel=1, codecs=(cid,), verify=False)
    try:
        compress_state_dict({"w": x}, path, config=cfg)
    except C.CodecError:
        return
    f = _File(path)
    try:
        rec = f.header["tensors"]["w"]
        if rec["kind"] == "compressed":
            assert_exact(C.decode(_decode_entry(f, "w", rec)), x)
    finally:
        f.close()


def test_common_codecs_drop_their_buffer_lists():
    """Dense float weights, dictionaries and sparse weights of the usual shapes: the RAS
    sizes and most buffer descriptions are derived."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, 3, 3, generator=g) * 0.05
    q = torch.round(w * 40) / 40
    p = torch.where(w.abs() > 0.08, w, torch.zeros(()))
    for t, want in ((w, "float"), (w.bfloat16(), "float"), (q, "dict"), (p, "sparse")):
        enc = C.encode_best(t, form="block")
        assert enc.codec_id == want
        compact = _derive.compact(_entry(enc))
        for r in compact["tree"]["ras"].values():
            assert {"tags", "block_len"}.isdisjoint(r) and r["wt"][0] is None
        if want != "sparse":
            assert "buffers" not in compact, want
        else:
            assert sum(isinstance(b, str) for b in compact["buffers"]) >= 6


@pytest.mark.parametrize("dt", FLOATS)
def test_float_exponent_table_is_uint8_where_it_fits(dt):
    """The code -> field table of the float codec: uint8 when exponent bits + k <= 8 (every
    k = 0 table of float32/bfloat16/float16), uint16 otherwise; both decode."""
    from dnn_adapter._bits import dtype_info

    g = torch.Generator().manual_seed(1)
    w = torch.randn(256, 256, generator=g) * 0.02
    x = w[w.abs() > w.abs().quantile(0.95)].contiguous().to(dt)  # joint bits pay here
    seen = set()
    for k in range(3):
        enc = C.FloatCodec(max_joint_bits=k).encode(x)
        kk = enc.meta["k"]
        seen.add(kk)
        eb = dtype_info(str(dt).removeprefix("torch.")).exp_bits + kk
        want = np.uint8 if eb <= 8 else np.uint16
        assert enc.arrays["exp_table"].dtype == want, (dt, kk)
        assert_exact(C.decode(enc), x)
        wide = copy.copy(enc)  # a format 4 table (uint16) decodes the same
        wide.arrays = dict(enc.arrays, exp_table=enc.arrays["exp_table"].astype(np.uint16))
        assert_exact(C.decode(wide), x)
    assert len(seen) > 1
