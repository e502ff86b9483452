"""dnn_adapter codecs and RAS: bit-exact round trips (integer views), properties, no mutation."""

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dnn_adapter import codecs as C  # noqa: E402
from dnn_adapter._bits import bits_of  # noqa: E402
from dnn_adapter.ras import RAS, RASError  # noqa: E402

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
INTV = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def ibits(t):
    return t.contiguous().view(INTV[t.element_size()])


def specials(dt):
    vals = [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e-40, -1e-45, 6e-8, 1.0]
    t = torch.tensor(vals, dtype=torch.float64).to(dt)
    # a NaN with a non-default payload
    b = ibits(t).clone()
    b[0] = b[0] | 1
    return b.view(dt)


def assert_exact(x, y):
    assert x.dtype == y.dtype and x.shape == y.shape
    assert torch.equal(ibits(x), ibits(y))


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("cid", ["float", "raw", "sparse", "dict"])
@pytest.mark.parametrize("form", ["block", "element"])
def test_roundtrip_specials(dt, cid, form):
    torch.manual_seed(0)
    x = torch.randn(40, 30).to(dt)
    x.view(-1)[:9] = specials(dt)
    if cid == "sparse":
        x[torch.rand(40, 30) < 0.7] = 0
    if cid == "dict":
        x = torch.randint(-3, 4, (40, 30)).to(dt) * 0.5
        x.view(-1)[:9] = specials(dt)
    codec = C.get_codec({"id": cid, "form": form} if cid != "raw" else cid)
    enc = codec.encode(x)
    assert_exact(codec.decode(enc), x)
    out = torch.empty_like(x)
    assert codec.decode(enc, out=out) is out
    assert_exact(out, x)
    if enc.ras:
        assert enc.form == form


def test_fp32_split_is_8_plus_24_bits():
    x = torch.randn(64, 64)
    enc = C.FloatCodec(max_joint_bits=0).encode(x)
    assert enc.arrays["raw"].shape == (3, 4096) and "raw_top" not in enc.arrays
    enc16 = C.FloatCodec(max_joint_bits=0).encode(x.half())
    assert enc16.arrays["raw"].shape == (1, 4096) and enc16.arrays["raw_top"].size == 4096 * 3 // 8
    encb = C.FloatCodec(max_joint_bits=0).encode(x.bfloat16())
    assert encb.arrays["raw"].shape == (1, 4096)


def test_numpy_input_output():
    a = np.random.default_rng(0).standard_normal((50, 20)).astype(np.float32)
    enc = C.encode_best(a)
    b = C.decode(enc)
    assert isinstance(b, np.ndarray) and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("dt", [torch.int8, torch.uint8, torch.int64, torch.bool])
def test_integer_tensors(dt):
    x = torch.randint(0, 2 if dt == torch.bool else 5, (100, 30)).to(dt)
    enc = C.encode_best(x)
    assert enc.codec_id in ("dict", "sparse")
    assert torch.equal(C.decode(enc), x)


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions.*:UserWarning")
def test_quantized_tensors():
    torch.manual_seed(0)
    qs = [
        torch.quantize_per_tensor(torch.randn(256, 256), 0.2, 3, torch.qint8),
        torch.quantize_per_channel(
            torch.randn(256, 256),
            torch.rand(256, dtype=torch.float64) + 0.1,
            torch.randint(0, 10, (256,)),
            0,
            torch.quint8,
        ),
    ]
    for q in qs:
        enc = C.encode_best(q)
        assert enc.codec_id in ("dict", "sparse") and "quant" in enc.meta
        got = C.decode(enc)
        assert got.qscheme() == q.qscheme() and torch.equal(got.int_repr(), q.int_repr())
        again = C.prepare(enc)(None)
        assert again.qscheme() == q.qscheme() and torch.equal(again.int_repr(), q.int_repr())
        if q.qscheme() == torch.per_tensor_affine:
            assert got.q_scale() == q.q_scale() and got.q_zero_point() == q.q_zero_point()
        else:
            assert torch.equal(got.q_per_channel_scales(), q.q_per_channel_scales())
            assert torch.equal(got.q_per_channel_zero_points(), q.q_per_channel_zero_points())


@pytest.mark.parametrize("cid", ["float", "dict", "sparse", "raw"])
def test_encode_does_not_mutate(cid):
    x = torch.randn(64, 64)
    x[x.abs() < 1] = 0
    x.view(-1)[:9] = specials(torch.float32)
    before = hashlib.sha256(x.numpy().tobytes()).hexdigest()
    copy = x.clone()
    enc = C.get_codec(cid).encode(x)
    C.get_codec(cid).decode(enc)
    C.encode_best(x)
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == before
    assert torch.equal(ibits(x), ibits(copy))


def test_choice_prefers_smallest():
    torch.manual_seed(0)
    dense = torch.randn(256, 256)
    assert C.encode_best(dense).codec_id == "float"
    sparse = dense.clone()
    sparse[torch.rand(256, 256) < 0.9] = 0
    assert C.encode_best(sparse).codec_id == "sparse"
    q = torch.randint(-8, 8, (256, 256)).float() / 8
    assert C.encode_best(q).codec_id == "dict"
    e = C.encode_best(dense)
    assert e.nbytes < dense.numel() * 4


def test_config_json_and_registry():
    import json

    for cid, cls in C.registry.items():
        codec = cls()
        cfg = codec.get_config()
        assert json.loads(json.dumps(cfg)) == cfg and cfg["id"] == cid
        assert C.get_codec(cfg).get_config() == cfg
    with pytest.raises(C.CodecError):
        C.get_codec("nope")


def test_flatten_roundtrip():
    x = torch.randn(30, 40)
    x[x.abs() < 1] = 0
    enc = C.encode_best(x)
    tree, bufs = enc.flatten()
    enc2 = C.Encoded.unflatten(tree, {k: v.copy() for k, v in bufs.items()})
    assert_exact(C.decode(enc2), x)


# ---- RAS -----------------------------------------------------------------------------------
def test_ras_figure1_text():
    s = torch.tensor([[0.5, 0.0, 0.0, -1.25], [0.0, 0.0, 3.0, 0.0]])
    assert C.FloatCodec("block").encode(s).to_text() == "<B> [0.5 0 0 -1.25] [0 0 3 0] #"
    assert C.FloatCodec("element").encode(s).to_text() == "<E> |0.5 0 0 -1.25|0 0 3 0| #"
    one_row = C.SparseCodec("block", max_rows_per_block=1)
    assert one_row.encode(s).to_text() == "<B> [(0,0.5) (2,-1.25)] [(2,3)] #"
    # by default rows share a block where the delimiter would cost more than it saves
    assert C.SparseCodec("block").encode(s).to_text() == "<B> [(0,0.5) (2,-1.25) (2,3)] #"
    assert "<B>" in repr(C.FloatCodec("block").encode(s))


@pytest.mark.parametrize("form", ["block", "element"])
def test_ras_retrieval(form):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 7, 60)
    r = RAS.build(codes, 7, form, 12)
    assert r.form == form and len(r) == 60 and r.nblocks == 5
    assert np.array_equal(r.decode(), codes)
    for j in range(5):
        assert np.array_equal(r.block(j), codes[12 * j : 12 * j + 12])
    for i in range(60):
        assert r.get(i) == codes[i]
    seq = r.symbols()
    assert seq[0] == (8 if form == "block" else 7) and seq[-1] == 10
    assert np.count_nonzero(seq == 9) == 5
    lengths = np.array([3, 0, 10, 7])
    r2 = RAS.build(codes[:20], 7, form, lengths)
    assert np.array_equal(r2.decode(), codes[:20])
    assert np.array_equal(r2.block_lengths(), lengths)
    assert [r2.get(i) for i in range(20)] == codes[:20].tolist()
    assert r2.block(1).size == 0
    meta, parts = r2.to_parts()
    r3 = RAS.from_parts(meta, parts)
    assert np.array_equal(r3.decode(), codes[:20])


# ---- hypothesis ------------------------------------------------------------------------------
_special_bits = st.sampled_from(
    [
        0,
        0x80000000,
        0x7F800000,
        0xFF800000,
        0x7FC00001,
        0xFFFFFFFF,
        0x00000001,
        0x807FFFFF,
        0x3F800000,
    ]
)


@st.composite
def tensors(draw):
    n = draw(st.integers(0, 300))
    rows = draw(st.sampled_from([1, 2, 3, 5]))
    kind = draw(st.sampled_from(["any", "few", "sparse"]))
    if kind == "any":
        el = st.one_of(st.integers(0, 2**32 - 1), _special_bits)
    elif kind == "few":
        el = st.sampled_from(
            draw(
                st.lists(
                    st.one_of(st.integers(0, 2**32 - 1), _special_bits), min_size=1, max_size=5
                )
            )
        )
    else:
        el = st.one_of(st.just(0), st.just(0), st.just(0), _special_bits, st.integers(0, 2**32 - 1))
    vals = draw(st.lists(el, min_size=n * rows, max_size=n * rows))
    b = np.array(vals, dtype=np.uint32).reshape(rows, n) if n else np.zeros((rows, 0), np.uint32)
    dt = draw(st.sampled_from(FLOATS))
    t = torch.from_numpy(b.view(np.int32).copy()).view(torch.float32)
    if dt != torch.float32:  # reinterpret the low bits as the narrower/wider type
        size = torch.empty(0, dtype=dt).element_size()
        t = torch.from_numpy(
            b.astype(np.uint64)
            .astype({2: np.uint16, 8: np.uint64}[size])
            .view({2: np.int16, 8: np.int64}[size])
            .copy()
        ).view(dt)
    return t


@settings(deadline=None)
@given(
    tensors(),
    st.sampled_from(["float", "dict", "sparse", "raw"]),
    st.sampled_from(["block", "element"]),
)
def test_property_roundtrip(x, cid, form):
    codec = C.get_codec({"id": cid, "form": form} if cid != "raw" else cid)
    copy = x.clone()
    try:
        enc = codec.encode(x)
    except C.CodecError:
        return  # not applicable (e.g. too many values for dict, not sparse)
    assert_exact(codec.decode(enc), x)
    assert torch.equal(ibits(x), ibits(copy))
    u, _, _ = bits_of(x)
    assert enc.meta["crc32"] == C.crc32(u)
    # a prepared decoder (parts checked once): same bits, call after call, into a tensor
    # (the workspace path) and into a numpy bit view
    dec = C.prepare(enc)
    for _ in range(2):
        out = torch.full_like(x, 3.0) if x.is_floating_point() else torch.zeros_like(x)
        assert dec(out) is out
        assert_exact(out, x)
    ub = np.zeros(x.numel(), dtype=u.dtype)
    dec(ub)
    np.testing.assert_array_equal(ub, u.reshape(-1))
    with pytest.raises((ValueError, TypeError)):
        dec(torch.empty(x.numel() + 1, dtype=x.dtype))


@settings(deadline=None, max_examples=20)
@given(tensors())
def test_property_best(x):
    enc = C.encode_best(x)  # verify=True checks exactness
    assert_exact(C.decode(enc), x)


def test_sparse_all_zero_tensor_roundtrips():
    # regression: an all-zero tensor has no positions (found by the ci hypothesis profile)
    from dnn_adapter.codecs import SparseCodec

    for shape in [(2, 1), (4, 8), (1,)]:
        x = torch.zeros(shape)
        enc = SparseCodec().encode(x)
        back = SparseCodec().decode(enc)
        assert torch.equal(back.view(torch.int32), x.view(torch.int32))


# ---- float codec: joint exponent+mantissa symbols, chunked and threaded decode ---------------


@settings(deadline=None)
@given(tensors(), st.integers(0, 3), st.sampled_from(["block", "element"]))
def test_property_float_joint_bits(x, kmax, form):
    """Every joint-bit count round-trips bit for bit (forced: no minimum gain)."""
    if not x.dtype.is_floating_point:
        return
    codec = C.FloatCodec(form=form, max_joint_bits=kmax, joint_min_gain=-1.0)
    enc = codec.encode(x)
    assert 0 <= enc.meta["k"] <= kmax
    assert_exact(codec.decode(enc), x)


def test_joint_bits_chosen_when_exponents_concentrate():
    # the non-zeros of a magnitude-pruned tensor sit in one or two binades: Huffman cannot
    # code the exponent alone below 1 bit, the joint symbol can
    torch.manual_seed(0)
    g = torch.randn(256, 256) * 0.02
    vals = g[g.abs() > g.abs().quantile(0.95)].contiguous()
    enc = C.FloatCodec().encode(vals)
    assert enc.meta["k"] > 0
    plain = C.FloatCodec(max_joint_bits=0).encode(vals)
    assert enc.nbytes < 0.97 * plain.nbytes
    assert_exact(C.FloatCodec().decode(enc), vals)


@pytest.mark.parametrize("per_thread", [7, 1 << 17])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("shape", [(37, 50), (3, 2049), (1, 5000), (4096,), (3, 70001)])
def test_float_chunked_threaded_decode(monkeypatch, per_thread, threads, shape):
    """Rows split over threads, rows longer than the C decode's 64K chunk: same bits."""
    monkeypatch.setattr(C, "_MIN_PER_THREAD", per_thread)
    torch.manual_seed(1)
    x = torch.randn(*shape)
    x.view(-1)[:9] = specials(torch.float32)
    for kmax, gain in [(0, 0.01), (3, -1.0)]:
        codec = C.FloatCodec(max_joint_bits=kmax, joint_min_gain=gain)
        enc = codec.encode(x)
        C.set_decode_threads(threads)
        try:
            out = torch.full_like(x, 7.0)
            codec.decode(enc, out=out)
        finally:
            C.set_decode_threads(1)
        assert_exact(out, x)


def test_float_bad_joint_meta_is_a_codec_error():
    x = torch.randn(8, 8)
    enc = C.FloatCodec().encode(x)
    for bad in [-1, 24, "x", 9]:
        enc.meta["k"] = bad
        with pytest.raises(C.CodecError):
            C.FloatCodec().decode(enc)
    with pytest.raises(ValueError):
        C.set_decode_threads(0)


# ---- sparse codec: escaped long distances ----------------------------------------------------


@settings(deadline=None)
@given(
    st.lists(st.integers(0, 2**40), min_size=0, max_size=200),
    st.sampled_from([0, 1, 4, 16, 256]),
)
def test_gap_escape_roundtrip(gaps, T):
    g = np.array(gaps, dtype=np.int64)
    sym, extra = C._escape_gaps(g, T)
    assert (sym[g < T] == g[g < T]).all() and (sym[g >= T] >= T).all()
    table, codes = C._freq_table(sym.astype(np.uint64))
    enc = C.Encoded("sparse", {"esc": T}, {"gap_table": table, "gap_extra": extra})
    np.testing.assert_array_equal(C.SparseCodec()._gap_values(enc, codes), g)


@pytest.mark.parametrize("density", [0.002, 0.03, 0.3])
@pytest.mark.parametrize("L", [50, 4099, 70000])
def test_sparse_long_rows_escape(density, L):
    torch.manual_seed(2)
    x = torch.randn(3, L)
    x[torch.rand(3, L) >= density] = 0
    x[1] = 0  # an empty row
    x[2, -1] = 1.5  # a non-zero at the very end of a row
    enc = C.SparseCodec().encode(x)
    assert_exact(C.SparseCodec().decode(enc), x)
    if density <= 0.03 and L > 1000:
        # long distances carry raw bits: escaped, or Rice-coded
        assert "esc" in enc.meta or "rice" in enc.meta


def test_sparse_corrupt_escape_parts(monkeypatch):
    monkeypatch.setattr(C, "_gap_codings", lambda g, **kw: [{"esc": 16}])
    torch.manual_seed(3)
    x = torch.randn(4, 5000)
    x[torch.rand(4, 5000) > 0.01] = 0
    enc = C.SparseCodec().encode(x)
    assert "esc" in enc.meta
    good = enc.arrays["gap_extra"]
    for bad in [good[:-1], np.concatenate([good, [0]]).astype(np.uint8), good.astype(np.int16)]:
        enc.arrays["gap_extra"] = bad
        with pytest.raises(C.CodecError):
            C.SparseCodec().decode(enc)
    enc.arrays["gap_extra"] = good
    enc.meta["esc"] = "x"
    with pytest.raises(C.CodecError):
        C.SparseCodec().decode(enc)
    enc.meta["esc"] = 0  # every symbol then reads as a 60+-bit escape: out of range
    with pytest.raises(C.CodecError):
        C.SparseCodec().decode(enc)


@pytest.mark.parametrize("per_thread", [7, 1 << 17])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("shape", [(37, 50), (1, 5000), (2, 70001)])
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16, torch.int8])
def test_dict_chunked_threaded_decode(monkeypatch, per_thread, threads, shape, dt):
    monkeypatch.setattr(C, "_MIN_PER_THREAD", per_thread)
    torch.manual_seed(4)
    x = (torch.randint(-7, 8, shape).float() * 0.25).to(dt)
    enc = C.DictCodec().encode(x)
    C.set_decode_threads(threads)
    try:
        out = torch.zeros_like(x)
        C.DictCodec().decode(enc, out=out)
    finally:
        C.set_decode_threads(1)
    assert torch.equal(out, x)


def test_dict_rejects_dense_floats_from_a_sample(monkeypatch):
    """A dense float tensor is rejected from a strided sample, before a full np.unique."""
    calls = []
    real = np.unique

    def spy(a, *args, **kw):
        calls.append(np.size(a))
        return real(a, *args, **kw)

    monkeypatch.setattr(C.np, "unique", spy)
    x = torch.randn(256, 1024)
    with pytest.raises(C.NotApplicable):
        C.DictCodec().encode(x)
    assert calls and max(calls) < x.numel() // 4


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_dict_grouped_codes_roundtrip(data):
    """Runs of g values per symbol: bit-exact for every dtype/row length, and chosen when
    few skewed values make single-value Huffman codes wasteful."""
    dt = data.draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.int8,
                                    torch.uint8, torch.float64, torch.int32]))
    rows = data.draw(st.integers(1, 40))
    cols = data.draw(st.sampled_from([1, 2, 3, 4, 6, 8, 16, 24, 100]))
    nlev = data.draw(st.integers(1, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    p = rng.dirichlet(np.full(nlev, 0.3))
    lev = rng.choice(nlev, size=(rows, cols), p=p)
    x = torch.from_numpy(lev.astype(np.int64) - 2).to(dt)
    codec = C.DictCodec(max_group=data.draw(st.sampled_from([1, 2, 4, 8])))
    enc = codec.encode(x)
    g = enc.meta.get("group", 1)
    assert g <= codec.max_group and cols % g == 0
    assert g * x.element_size() <= 8 or enc.meta.get("run_codes") == 1
    assert_exact(codec.decode(enc), x)
    out = torch.full_like(x, 7)
    C.prepare(enc)(out)
    assert_exact(out, x)
    npout = np.zeros(x.numel(), dtype=bits_of(x)[0].dtype)
    C.prepare(enc)(npout)
    assert np.array_equal(npout, bits_of(x)[0].reshape(-1))
    f = codec.prepare_rows(enc)
    if rows >= 8:
        out = torch.zeros_like(x)
        f(out, [rows - 1, 0])
        assert_exact(out[[0, rows - 1]], x[[0, rows - 1]])
    # through the flat form (a file's buffers) and back
    tree, bufs = enc.flatten()
    enc2 = C.Encoded.unflatten(tree, bufs)
    assert_exact(C.decode(enc2), x)


def test_dict_groups_skewed_levels_and_beats_single_codes():
    torch.manual_seed(0)
    w = torch.randn(256, 384) * 0.02
    w[0, :4] = torch.tensor([0.4, -0.3, 0.35, -0.4])  # outliers stretch the level range
    lo, hi = w.min(), w.max()
    q = torch.round((w - lo) / (hi - lo) * 15) / 15 * (hi - lo) + lo  # 16 levels, skewed
    single = C.DictCodec(max_group=1).encode(q)
    grouped = C.DictCodec().encode(q)
    assert grouped.meta.get("group", 1) >= 2
    assert grouped.nbytes < 0.9 * single.nbytes
    assert_exact(C.decode(grouped), q)
    text = C.DictCodec()._to_text(grouped, 12)
    assert text.count("(") >= 3  # operands print as runs of values


def test_dict_bad_group_is_rejected():
    q = torch.tensor([[0.0, 1.0] * 8] * 8)
    enc = C.DictCodec().encode(q)
    for bad in (3, "x", 16):
        e = C.Encoded(enc.codec_id, {**enc.meta, "group": bad}, enc.arrays, enc.ras)
        with pytest.raises(C.CodecError):
            C.decode(e)
    if enc.meta.get("group", 1) > 1:
        e = C.Encoded(enc.codec_id, {**enc.meta, "group": 1}, enc.arrays, enc.ras)
        with pytest.raises(C.CodecError):
            C.decode(e)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_sparse_joint_tuples_roundtrip(data):
    """(distance, value) as one symbol when the non-zeros take few values: bit-exact, and
    the smaller of the two forms is kept."""
    dt = data.draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.int8]))
    rows, cols = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    nval = data.draw(st.integers(1, 20))
    levels = rng.integers(-60, 60, nval)
    mask = rng.random((rows, cols)) < data.draw(st.sampled_from([0.01, 0.05, 0.3, 0.7]))
    x = np.where(mask, rng.choice(levels, (rows, cols)), 0)
    t = torch.from_numpy(x).to(dt)
    try:
        enc = C.SparseCodec().encode(t)
    except C.NotApplicable:
        return
    assert_exact(C.decode(enc), t)
    out = torch.full_like(t, 3)
    C.prepare(enc)(out)
    assert_exact(out, t)
    if enc.meta.get("joint"):
        assert "values" not in enc.children and np.unique(x[x != 0]).size <= 16
        tree, bufs = enc.flatten()
        assert_exact(C.decode(C.Encoded.unflatten(tree, bufs)), t)


def test_sparse_joint_tuples_beat_separate_streams_and_reject_bad_parts():
    torch.manual_seed(0)
    w = torch.randn(512, 1152) * 0.02
    thr = w.abs().flatten().kthvalue(int(0.95 * w.numel())).values
    p = torch.where(w.abs() > thr, w, torch.zeros(()))
    q = torch.round(p / p.abs().max() * 2) / 2 * p.abs().max()  # 2-bit values
    enc = C.SparseCodec().encode(q)
    assert enc.meta.get("joint") == 1
    sep = C.SparseCodec._joint
    try:
        C.SparseCodec._joint = lambda *a, **k: None
        plain = C.SparseCodec().encode(q)
    finally:
        C.SparseCodec._joint = sep
    assert enc.nbytes < 0.97 * plain.nbytes
    assert_exact(C.decode(enc), q)
    short = {**enc.arrays, "val_table": enc.arrays["val_table"][:-1]}
    bad = C.Encoded(enc.codec_id, enc.meta, short, enc.ras)
    with pytest.raises(C.CodecError):
        C.decode(bad)
    bad = C.Encoded(enc.codec_id, {**enc.meta, "joint": 2}, enc.arrays, enc.ras)
    with pytest.raises(C.CodecError):
        C.decode(bad)


def _assert_decodes_everywhere(enc, t, fill):
    """*enc* gives *t* bit-exactly through decode, prepare into a tensor prefilled with
    *fill*, and its flattened parts unflattened from copies."""
    assert_exact(C.decode(enc), t)
    out = torch.full_like(t, fill)
    C.prepare(enc)(out)
    assert_exact(out, t)
    tree, bufs = enc.flatten()
    assert_exact(C.decode(C.Encoded.unflatten(tree, {k: v.copy() for k, v in bufs.items()})), t)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_sparse_rows_per_block_roundtrip(data):
    """Several rows per RAS block (a power of two dividing the row count, at most
    max_rows_per_block): bit-exact through decode, prepare and the flat parts."""
    rows = data.draw(st.sampled_from([1, 2, 3, 7, 8, 12, 64, 97, 128]))
    cols = data.draw(st.integers(1, 200))
    density = data.draw(st.sampled_from([0.0, 0.002, 0.01, 0.05, 0.4]))
    mx = data.draw(st.sampled_from([1, 2, 8, 64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = np.where(rng.random((rows, cols)) < density, rng.standard_normal((rows, cols)), 0)
    t = torch.from_numpy(x.astype(np.float32))
    try:
        enc = C.SparseCodec(max_rows_per_block=mx).encode(t)
    except C.NotApplicable:
        return
    L = int(enc.meta["block_len"])
    m = L // cols
    assert L == m * cols and rows % m == 0 and m <= mx and m & (m - 1) == 0
    assert enc.ras["gaps"].nblocks == rows // m
    _assert_decodes_everywhere(enc, t, 7.0)


def test_sparse_very_sparse_rows_share_blocks():
    rng = np.random.default_rng(4)
    x = np.where(rng.random((1000, 1280)) < 0.005, rng.standard_normal((1000, 1280)), 0)
    t = torch.from_numpy(x.astype(np.float32))
    grouped = C.SparseCodec().encode(t)
    per_row = C.SparseCodec(max_rows_per_block=1).encode(t)
    assert int(per_row.meta["block_len"]) == 1280
    assert int(grouped.meta["block_len"]) in (2 * 1280, 4 * 1280, 8 * 1280)  # 1000 = 8 * 125
    assert grouped.nbytes < 0.99 * per_row.nbytes  # the float values are most of it
    assert grouped.ras["gaps"].nbytes < 0.9 * per_row.ras["gaps"].nbytes
    assert_exact(C.decode(grouped), t)
    # a prime row count leaves one row per block
    assert int(C.SparseCodec().encode(t[:997]).meta["block_len"]) == 1280
    with pytest.raises(ValueError, match="max_rows_per_block"):
        C.SparseCodec(max_rows_per_block=0)


def test_sparse_joint_value_index_parts():
    """Ternary non-zeros: the values once (val_table) and one small index per tuple code
    (val_index); the old layout (a value per tuple code) still decodes; bad indexes are a
    CodecError."""
    rng = np.random.default_rng(5)
    x = np.where(rng.random((64, 700)) < 0.03, rng.choice([-0.5, 0.5], (64, 700)), 0)
    t = torch.from_numpy(x.astype(np.float32))
    enc = C.SparseCodec().encode(t)
    assert enc.meta.get("joint") == 1 and "val_index" in enc.arrays
    vt, vi = enc.arrays["val_table"], enc.arrays["val_index"]
    assert vt.size == 2 and vi.dtype == np.uint8 and vi.size == enc.ras["gaps"].k
    assert_exact(C.decode(enc), t)
    old = {k: v for k, v in enc.arrays.items() if k != "val_index"}
    old["val_table"] = vt[vi]
    assert_exact(C.decode(C.Encoded(enc.codec_id, enc.meta, old, enc.ras)), t)
    for bad in (vi[:-1], np.full_like(vi, 2), vi.astype(np.int16)):
        e = C.Encoded(enc.codec_id, enc.meta, {**enc.arrays, "val_index": bad}, enc.ras)
        with pytest.raises(C.CodecError, match="val_index"):
            C.decode(e)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_sparse_gap_codings_roundtrip(data):
    """Every distance coding (plain, escapes, Rice with any width) decodes bit-exactly,
    through decode, prepare, to_text, the joint tuples and the fused kernels' tables."""
    rows = data.draw(st.integers(1, 12))
    cols = data.draw(st.integers(1, 3000))
    density = data.draw(st.sampled_from([0.001, 0.01, 0.05, 0.3]))
    coding = data.draw(st.sampled_from([{}, {"esc": 4}, {"esc": 64}, {"rice": 1},
                                        {"rice": 3}, {"rice": 9}, {"rice": 16}]))
    levels = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = np.where(rng.random((rows, cols)) < density,
                 rng.choice([-1.5, 0.25, 3.0], (rows, cols)) if levels
                 else rng.standard_normal((rows, cols)), 0)
    t = torch.from_numpy(x.astype(np.float32))
    orig = C._gap_codings
    C._gap_codings = lambda g, **kw: [dict(coding)]
    try:
        enc = C.SparseCodec(min_zero_fraction=0.0).encode(t)
    finally:
        C._gap_codings = orig
    nz = np.flatnonzero(x)
    if nz.size:
        for key, v in coding.items():
            assert enc.meta.get(key) == v
    _assert_decodes_everywhere(enc, t, 2.0)
    if nz.size and x.size <= 200:
        assert enc.to_text().startswith("<B>")


def test_sparse_rice_chosen_for_random_pruning_and_corrupt_parts_rejected():
    rng = np.random.default_rng(7)
    x = np.where(rng.random((256, 1024)) < 0.05, rng.standard_normal((256, 1024)), 0)
    t = torch.from_numpy(x.astype(np.float32))
    enc = C.SparseCodec().encode(t)
    assert enc.meta.get("rice", 0) >= 2 and "esc" not in enc.meta
    assert_exact(C.decode(enc), t)
    gaps = C.SparseCodec._block_gaps(np.flatnonzero(x), int(enc.meta["block_len"]))[0]
    assert np.array_equal(C.SparseCodec()._gap_values(enc, enc.ras["gaps"].decode()), gaps)
    good = enc.arrays["gap_extra"]
    for bad in [good[:-1], np.concatenate([good, [0]]).astype(np.uint8), good.astype(np.int16)]:
        e = C.Encoded(enc.codec_id, enc.meta, {**enc.arrays, "gap_extra": bad}, enc.ras,
                      enc.children)
        with pytest.raises(C.CodecError):
            C.decode(e)
    r = enc.meta["rice"]
    for meta in ({**enc.meta, "rice": r + 1}, {**enc.meta, "rice": 0},
                 {**enc.meta, "rice": "3"}, {**enc.meta, "rice": True},
                 {**enc.meta, "esc": 8}):
        e = C.Encoded(enc.codec_id, meta, enc.arrays, enc.ras, enc.children)
        with pytest.raises(C.CodecError):
            C.decode(e)


def test_dict_runs_of_codes_for_wide_values():
    """fp32 with three levels: runs of 4 or 8 values do not fit a 64-bit word, so the runs
    hold 1-byte codes and a second lookup maps them to values."""
    torch.manual_seed(2)
    w = torch.randn(256, 1024) * 0.02
    m = w.abs().max()
    q = torch.round(w / m * 1.5) * m + 0.0  # a few levels (no -0.0): mostly 0
    enc = C.DictCodec().encode(q)
    assert enc.meta.get("run_codes") == 1 and enc.meta["group"] >= 4
    assert enc.nbytes < C.DictCodec(max_group=2).encode(q).nbytes
    assert_exact(C.decode(enc), q)
    out = torch.full_like(q, 5.0)
    C.prepare(enc)(out)
    assert_exact(out, q)
    npo = np.zeros(q.numel(), dtype=np.uint32)
    C.prepare(enc)(npo)
    assert np.array_equal(npo, q.numpy().view(np.uint32).reshape(-1))
    rows = C.DictCodec().prepare_rows(enc)
    o = torch.zeros_like(q)
    rows(o, [63, 1])  # few rows: decoded alone
    assert_exact(o[[1, 63]], q[[1, 63]])
    assert (o[0] == 0).all()
    for bad in ({**enc.arrays, "values": enc.arrays["values"][:1]},
                {k: v for k, v in enc.arrays.items() if k != "values"}):
        e = C.Encoded(enc.codec_id, enc.meta, bad, enc.ras)
        with pytest.raises(C.CodecError):
            C.decode(e)


# ---- signed zeros: torch.nn.utils.prune leaves -0.0 where it pruned a negative weight ------
def _signed_zero_tensor(rng, shape, density, neg_frac, dt):
    """Pruned normal values; a fraction *neg_frac* of the pruned elements is -0.0."""
    x = rng.standard_normal(shape)
    keep = rng.random(shape) < density
    zero = np.where(rng.random(shape) < neg_frac, -0.0, 0.0)
    return torch.from_numpy(np.where(keep, x, zero)).to(dt)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_sparse_signed_zeros_roundtrip(data):
    """Zeros of both signs: bit-exact in every float type, form and block grouping, through
    decode, prepare and the flat parts, whichever form the encoder keeps."""
    dt = data.draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16,
                                    torch.float64]))
    rows = data.draw(st.sampled_from([1, 2, 3, 8, 13, 64]))
    cols = data.draw(st.integers(1, 150))
    density = data.draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]))
    neg = data.draw(st.sampled_from([0.0, 0.01, 0.5, 1.0]))
    form = data.draw(st.sampled_from(["block", "element"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t = _signed_zero_tensor(rng, (rows, cols), density, neg, dt)
    try:
        enc = C.SparseCodec(form=form, max_rows_per_block=data.draw(
            st.sampled_from([1, 64]))).encode(t)
    except C.NotApplicable:
        return
    if enc.meta.get("zsign"):
        nzero = int((ibits(t) & ~(torch.ones((), dtype=ibits(t).dtype) << (
            8 * t.element_size() - 1))).eq(0).sum())
        assert enc.arrays["zero_sign"].size == (nzero + 7) // 8
        assert int(enc.meta["nnz"]) == t.numel() - nzero
    _assert_decodes_everywhere(enc, t, 3.0)
    assert_exact(C.decode(C.encode_best(t, form=form)), t)


def test_sparse_signed_zeros_chosen_for_torch_prune():
    """A Linear pruned by torch.nn.utils.prune (weight = orig * mask: half its zeros are
    -0.0) costs about one bit per zero more than the same weights pruned to +0.0, not a
    whole stored value per -0.0 as the plain form does."""
    from torch.nn.utils import prune

    torch.manual_seed(0)
    lin = torch.nn.Linear(512, 512)
    prune.l1_unstructured(lin, "weight", amount=0.9)
    prune.remove(lin, "weight")
    w = lin.weight.detach()
    nneg = int((ibits(w) == torch.iinfo(torch.int32).min).sum())
    assert nneg > 0.3 * w.numel()  # the premise: torch.nn.utils.prune makes -0.0
    enc = C.SparseCodec().encode(w)
    assert enc.meta["zsign"] == 1
    assert_exact(C.decode(enc), w)
    plus = torch.where(w == 0, torch.zeros(()), w)  # the same weights, +0.0 zeros
    base = C.SparseCodec().encode(plus).nbytes
    assert enc.nbytes <= base + (w.numel() - int(enc.meta["nnz"])) / 8 + 64
    plain = C.SparseCodec()._encode_nz(
        ibits(w).numpy().view(np.uint32).reshape(-1), C.dtype_info("float32"), 512,
        np.flatnonzero(ibits(w).numpy().reshape(-1)))
    assert enc.nbytes < 0.4 * plain.nbytes
    # all-positive zeros: no sign part, the plain form
    assert "zsign" not in C.SparseCodec().encode(plus).meta


def test_sparse_signed_zeros_corrupt_parts_rejected():
    rng = np.random.default_rng(3)
    t = _signed_zero_tensor(rng, (40, 50), 0.1, 0.5, torch.float32)
    enc = C.SparseCodec().encode(t)
    assert enc.meta["zsign"] == 1
    nzero = t.numel() - int(enc.meta["nnz"])
    zs = enc.arrays["zero_sign"]
    bad_parts = [
        ({"zsign": 2}, {}),
        ({}, {"zero_sign": zs[:-1]}),
        ({}, {"zero_sign": np.append(zs, np.uint8(0))}),
        ({}, {"zero_sign": zs.astype(np.uint16)}),
        ({"dtype": "int32"}, {}),
    ]
    if nzero % 8:  # set bits past the last zero
        tail = zs.copy()
        tail[-1] |= np.uint8(0x80)
        bad_parts.append(({}, {"zero_sign": tail}))
    nz = enc.arrays.copy()
    nz.pop("zero_sign")
    bad_parts.append(({}, None))
    for meta, arrays in bad_parts:
        arr = nz if arrays is None else {**enc.arrays, **arrays}
        bad = C.Encoded(enc.codec_id, {**enc.meta, **meta}, arr, enc.ras, enc.children)
        with pytest.raises((C.CodecError, TypeError)):
            C.decode(bad)


# ---- block-wise float/dict: short kernels share a block ------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_short_kernels_share_blocks_roundtrip(data):
    """Conv weights whose kernels are shorter than 64 elements: block-wise float and dict
    RAS blocks hold a power of two of whole kernels (at most 128 elements, dividing the
    kernel count); bit-exact through decode, prepare, prepare_rows and the flat parts."""
    rows = data.draw(st.sampled_from([1, 2, 3, 6, 8, 12, 32, 96]))
    kshape = data.draw(st.sampled_from([(1, 1, 1), (1, 3, 3), (3, 3, 3), (1, 5, 5), (2, 7, 7),
                                        (4, 1, 1), (64, 1, 1)]))
    cid = data.draw(st.sampled_from(["float", "dict"]))
    dt = data.draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((rows, *kshape))
    if cid == "dict":
        x = np.round(x * 2) / 2
    t = torch.from_numpy(x).to(dt)
    try:
        enc = C.get_codec({"id": cid, "form": "block"}).encode(t)
    except C.NotApplicable:
        return
    L = int(np.prod(kshape))
    ras = next(iter(enc.ras.values()))
    blk = C.get_codec({"id": cid})._block_len(enc)
    m = blk // L
    assert blk == m * L and rows % m == 0 and m & (m - 1) == 0
    assert m * L <= max(L, 128) and (m == 1 or L < 64)
    assert L >= 64 or 2 * m * L > 128 or rows % (2 * m)  # the largest such group
    assert ras.nblocks == rows // m
    _assert_decodes_everywhere(enc, t, 5.0)
    pr = C.get_codec({"id": cid}).prepare_rows(enc)
    if m > 1:
        assert pr is None
    elif pr is not None:
        out = torch.zeros_like(t)
        pr(out, [rows - 1, 0])
        assert_exact(out[[0, rows - 1]], t[[0, rows - 1]])
    # element-wise and 2-D weights keep one row per block
    e2 = C.get_codec({"id": cid, "form": "element"}).encode(t)
    assert next(iter(e2.ras.values())).nblocks == rows
    e3 = C.get_codec({"id": cid, "form": "block"}).encode(t.reshape(rows, L))
    assert next(iter(e3.ras.values())).nblocks == rows


def test_depthwise_kernels_grouped_are_smaller():
    """A 2-bit depthwise 3x3 layer (the MobileNet-V2 shape): 8 kernels per block cut the
    delimiters, and with them several per cent of the layer."""
    rng = np.random.default_rng(0)
    w = torch.from_numpy(np.round(rng.standard_normal((384, 1, 3, 3)).clip(-1, 1))).float()
    codec = C.get_codec({"id": "dict", "form": "block"})
    grouped = codec.encode(w)
    per_kernel = codec.encode(w, block_len=9)
    assert grouped.ras["codes"].nblocks == 48 and per_kernel.ras["codes"].nblocks == 384
    assert grouped.nbytes < 0.95 * per_kernel.nbytes
    assert_exact(C.decode(grouped), w)


# ---- RAS symbol order as control places ("ctl", file format 5) -------------------------------
@settings(deadline=None, max_examples=60)
@given(st.data())
def test_ras_control_places_round_trip(data):
    """to_parts stores "ctl" (the control symbols' places in the canonical order) instead of
    the SYMC section when the operand codes are in order there, SYMC otherwise; from_parts
    rebuilds the same tree either way. Frequencies are drawn decreasing with the code (as
    the codecs number them), or shuffled (the order then often breaks)."""
    k = data.draw(st.integers(1, 40))
    n = data.draw(st.integers(1, 400))
    weights = np.arange(k, 0, -1, dtype=float) ** data.draw(st.sampled_from([0.0, 1.0, 3.0]))
    if data.draw(st.booleans()):
        weights = weights[np.random.default_rng(data.draw(st.integers(0, 99))).permutation(k)]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    codes = rng.choice(k, size=n, p=weights / weights.sum())
    L = data.draw(st.sampled_from([1, n]))
    r = RAS.build(codes, k, data.draw(st.sampled_from(["block", "element"])), L)
    meta, parts = r.to_parts()
    full_meta, full_parts = dict(meta), dict(parts)
    symc = r.wt._to_parts(store_index=False)[1]
    symc = dict(symc)["SYMC"].astype(np.int64)
    in_order = set(range(k)) <= set(symc.tolist()) and (symc[symc < k] == np.arange(k)).all()
    assert ("ctl" in meta) == bool(in_order) and ("SYMC" in parts) != ("ctl" in meta)
    r2 = RAS.from_parts(json.loads(json.dumps(meta)), parts)
    assert np.array_equal(r2.symbols(), r.symbols())
    if "ctl" in full_meta:  # the places put each control symbol where SYMC had it
        for j, p in enumerate(full_meta["ctl"]):
            assert p == -1 or symc[p] == k + j
        assert sorted(full_parts) == sorted(full_meta["tags"])


def test_ras_bad_control_places_rejected():
    codes = np.repeat(np.arange(5), [40, 20, 10, 5, 1])
    meta, parts = RAS.build(codes, 5, "block", 19).to_parts()
    assert "ctl" in meta
    for bad in ([0, 0, 1, 2], [-2, 1, 2, 3], [1, 2, 3], "x", [1.0, -1, 2, 3], [99, -1, 2, 3],
                [-1, -1, -1, -1]):
        m = dict(meta, ctl=bad)
        with pytest.raises(RASError):
            RAS.from_parts(m, parts)
    with pytest.raises(RASError, match="both"):  # ctl and a SYMC part
        sym = np.arange(8, dtype=np.uint8)
        RAS.from_parts(dict(meta, tags=[*meta["tags"], "SYMC"]), dict(parts, SYMC=sym))
