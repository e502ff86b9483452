"""The narrow codec: float32/float64 tensors whose values are exact in a narrower float format
(float16 / bfloat16 / float32) are stored in it and widened on decode, bit for bit."""

import copy
import hashlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dnn_adapter as D
from dnn_adapter import codecs as C

INTV = {2: torch.int16, 4: torch.int32, 8: torch.int64}
NARROW = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def ibits(t):
    return t.detach().contiguous().view(INTV[t.element_size()])


def assert_exact(x, y):
    assert x.dtype == y.dtype and x.shape == y.shape
    assert torch.equal(ibits(x), ibits(y))


def exact_in(x: torch.Tensor, nd: torch.dtype) -> bool:
    """Every element of x converts to nd and back bit for bit (the codec's condition)."""
    if torch.isnan(x).any():
        return False
    y = x.to(nd).to(x.dtype)
    return torch.equal(ibits(y), ibits(x))


# narrow-format values: any bits of the 16/32-bit format except NaNs, plus specials
_SPECIAL16 = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x0001, 0x83FF, 0x3C00, 0x7BFF]  # fp16 bits
_SPECIALB = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x807F, 0x3F80, 0x7F7F]  # bf16 bits


@st.composite
def narrow_tensors(draw):
    src = draw(st.sampled_from(["float16", "bfloat16", "float32"]))
    wide = torch.float64 if src == "float32" else draw(st.sampled_from([torch.float32,
                                                                         torch.float64]))
    rows = draw(st.sampled_from([1, 2, 5]))
    n = draw(st.integers(0, 200))
    kind = draw(st.sampled_from(["any", "few", "sparse"]))
    if src == "float32":
        el = st.integers(0, 2**32 - 1)
    else:
        el = st.one_of(st.integers(0, 2**16 - 1),
                       st.sampled_from(_SPECIAL16 if src == "float16" else _SPECIALB))
    if kind == "few":
        el = st.sampled_from(draw(st.lists(el, min_size=1, max_size=4)))
    elif kind == "sparse":
        el = st.one_of(st.just(0), st.just(0), st.just(0), el)
    vals = draw(st.lists(el, min_size=rows * n, max_size=rows * n))
    bits = np.array(vals, dtype=np.uint64)
    if src == "float32":
        t = torch.from_numpy(bits.astype(np.uint32).view(np.int32).copy()).view(torch.float32)
    else:
        t = torch.from_numpy(bits.astype(np.uint16).view(np.int16).copy()).view(NARROW[src])
    t = t.reshape(rows, n)
    t = torch.where(torch.isnan(t), torch.zeros((), dtype=t.dtype), t)  # no NaNs
    return t.to(wide), src


@settings(deadline=None, max_examples=60)
@given(narrow_tensors(), st.sampled_from(["block", "element"]))
def test_narrow_roundtrip(xs, form):
    x, _src = xs
    before = ibits(x).clone()
    codec = C.get_codec({"id": "narrow", "form": form})
    enc = codec.encode(x)
    assert enc.codec_id == "narrow" and enc.meta["as"] in C._NARROWER[str(x.dtype)[6:]]
    assert exact_in(x, NARROW[enc.meta["as"]])  # any exact format: the smallest coding wins
    assert_exact(codec.decode(enc), x)
    dec = C.prepare(enc)
    for _ in range(2):
        out = torch.full_like(x, 3.0)
        assert dec(out) is out
        assert_exact(out, x)
    assert torch.equal(ibits(x), before)  # the input is never written
    best = C.encode_best(x)  # verify=True: decoded bits equal the input
    assert best.nbytes <= enc.nbytes


@pytest.mark.parametrize(
    "make,why",
    [
        (lambda x: x.to(torch.float32).add_(1e-7), "a value with more mantissa bits"),
        (lambda x: torch.cat([x, torch.tensor([[float("nan")] * x.shape[1]])]), "a NaN"),
        (lambda x: x * 1e30, "outside the float16 range, mantissa too wide for bfloat16"),
        (lambda x: x.to(torch.float16), "already 16-bit"),
        (lambda x: (x * 100).to(torch.int32), "not a float"),
    ],
)
def test_narrow_not_applicable(make, why):
    x = make(torch.randn(4, 8).to(torch.float16).to(torch.float32))
    with pytest.raises(C.NotApplicable):
        C.get_codec("narrow").encode(x)


def test_narrow_subnormal_edges():
    # float16 subnormals and the largest finite float16, held in float32: exact in float16
    h = torch.tensor([[6e-8, -6.1e-5, 65504.0, -0.0, float("inf"), 1.0]], dtype=torch.float16)
    enc = C.get_codec("narrow").encode(h.to(torch.float32))
    assert enc.meta["as"] == "float16"
    assert_exact(C.decode(enc), h.to(torch.float32))
    # a float64 with a 7-bit mantissa that is a float32 *subnormal*: float32 holds it
    # exactly but bfloat16 does not (the subnormal needs more than 7 stored bits)
    v = np.array([[2.0**-140 * (1 + 2.0**-7), 1.0]])
    x = torch.from_numpy(v)
    assert not exact_in(x, torch.bfloat16) and exact_in(x, torch.float32)
    enc = C.get_codec("narrow").encode(x)
    assert enc.meta["as"] == "float32"
    assert_exact(C.decode(enc), x)


def test_narrow_beats_float_on_half_precision_checkpoints():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 256, generator=g) * 0.02
    for nd, at_least in ((torch.float16, 2.0), (torch.bfloat16, 2.5)):
        x = w.to(nd).to(torch.float32)
        enc = C.encode_best(x)
        assert enc.codec_id == "narrow", enc.describe()
        assert x.numel() * 4 / enc.nbytes > at_least
        assert enc.nbytes < C.FloatCodec().encode(x).nbytes / 1.6
    plain = C.encode_best(w)  # full float32 values: not applicable, the float codec wins
    assert plain.codec_id == "float"


def test_narrow_bad_parts_are_codec_errors():
    x = torch.randn(8, 16).to(torch.float16).to(torch.float32)
    enc = C.get_codec("narrow").encode(x)
    bad = [
        lambda e: e.meta.__setitem__("as", "int8"),
        lambda e: e.meta.__setitem__("as", "float64"),
        lambda e: e.children["values"].meta.__setitem__("dtype", "bfloat16"),
        lambda e: e.children["values"].meta.__setitem__("n", 7),
        lambda e: e.children.pop("values"),
        lambda e: e.children.__setitem__("extra", e.children["values"]),
    ]
    for mutate in bad:
        e = copy.deepcopy(enc)
        mutate(e)
        with pytest.raises(C.CodecError):
            C.decode(e)
    # a narrow value part inside a narrow part is not a format we write
    e = copy.deepcopy(enc)
    e.children["values"] = copy.deepcopy(enc)
    e.children["values"].meta.update(dtype="float16", n=x.numel())
    with pytest.raises(C.CodecError):
        C.decode(e)


def _half_trained_mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                      nn.Linear(64, 8)).eval()
    with torch.no_grad():  # weights as saved by a float16-trained model in float32
        for i, p in enumerate(m.parameters()):
            p.copy_(p.to(torch.float16 if i % 2 == 0 else torch.bfloat16).to(torch.float32))
    return m


@pytest.mark.parametrize("mode", ["streaming", "cached"])
def test_wrapped_half_precision_checkpoint(tmp_path, mode):
    ref = _half_trained_mlp()
    x = torch.randn(5, 64)
    before = hashlib.sha256(b"".join(ibits(p).numpy().tobytes() for p in ref.parameters()))
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(mode=mode, min_numel=256))
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
        assert torch.equal(m(x), ref(x))  # workspace reuse
    assert "narrow" in str(D.report(m))
    path = tmp_path / "m.dnnz"
    D.save(m, path)
    fresh = _half_trained_mlp()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    D.load(path, fresh, mode=mode)
    with torch.no_grad():
        assert torch.equal(fresh(x), ref(x))
    D.unwrap(m)
    for a, b in zip(m.parameters(), ref.parameters(), strict=True):
        assert_exact(a, b)
    after = hashlib.sha256(b"".join(ibits(p).numpy().tobytes() for p in ref.parameters()))
    assert before.hexdigest() == after.hexdigest()


def test_fused_mode_does_not_use_narrow():
    ref = _half_trained_mlp()
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256, fused=True))
    assert "narrow" not in str(D.report(m))


def test_narrow_rows_decode_only_the_rows_asked():
    g = torch.Generator().manual_seed(3)
    w = (torch.randn(300, 24, generator=g) * 0.1).to(torch.bfloat16).to(torch.float32)
    enc = C.get_codec("narrow").encode(w)
    rows = C.get_codec("narrow").prepare_rows(enc)
    assert rows is not None
    out = torch.full_like(w, 7.0)
    assert rows(out, [3, 0, 3, 299]) is out
    for r in range(300):
        if r in (0, 3, 299):
            assert_exact(out[r], w[r])
        else:
            assert (out[r] == 7.0).all()
    with pytest.raises(IndexError):
        rows(out, [300])


@pytest.mark.parametrize("nd,wide", [("float16", "float32"), ("bfloat16", "float32"),
                                     ("float16", "float64"), ("bfloat16", "float64"),
                                     ("float32", "float64")])
def test_widen_without_torch_matches_torch(monkeypatch, nd, wide):
    """The bit layer works without torch: the numpy widening gives the same bits."""
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(4000, generator=g) * 10.0 ** torch.randint(-6, 4, (4000,), generator=g))
    x = x.to(NARROW[nd])
    x[:4] = torch.tensor([0.0, -0.0, float("inf"), -float("inf")])
    nb = ibits(x).numpy().view({2: np.uint16, 4: np.uint32}[x.element_size()])
    wu = {"float32": np.uint32, "float64": np.uint64}[wide]
    ref = np.empty(nb.size, wu)
    C._widen_into(nb, nd, ref, wide)
    monkeypatch.setattr(C, "torch", None)
    got = np.zeros(nb.size, wu)
    C._widen_into(nb, nd, got, wide)
    np.testing.assert_array_equal(got, ref)
    want = x.to({"float32": torch.float32, "float64": torch.float64}[wide])
    np.testing.assert_array_equal(ref, ibits(want).numpy().view(wu))


# ---- the row split form: some rows narrow, the others as they are ----------------------------
@st.composite
def mixed_row_tensors(draw):
    """(x, mask): a float32/float64 tensor some of whose rows hold values of a narrower
    format (mask), the others any bits (NaNs and all) of the wide format."""
    wide = draw(st.sampled_from([torch.float32, torch.float64]))
    src = draw(st.sampled_from(["float16", "bfloat16"] + (["float32"] if wide is torch.float64
                                                            else [])))
    R = draw(st.integers(2, 40))
    L = draw(st.sampled_from([1, 3, 64, 65]))
    mask = np.array(draw(st.lists(st.booleans(), min_size=R, max_size=R)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    wbits = {torch.float32: np.uint32, torch.float64: np.uint64}[wide]
    kind = draw(st.sampled_from(["bits", "gauss", "sparse", "levels"]))
    if kind == "bits":  # any bits, NaNs too: the raw codec keeps the other rows
        x = rng.integers(0, np.iinfo(wbits).max, size=(R, L), dtype=wbits, endpoint=True)
        xt = torch.from_numpy(x.view({np.uint32: np.int32, np.uint64: np.int64}[wbits]))
        xt = xt.view(wide).clone()
    elif kind == "levels":  # few values, none exact in float16: the dict codec (runs too)
        p0 = draw(st.sampled_from([0.5, 0.97, 1.0]))
        lv = torch.tensor([0.1, 0.2, -0.3], dtype=wide)
        pick = rng.choice(3, size=(R, L), p=[p0, (1 - p0) / 2, (1 - p0) / 2])
        xt = lv[torch.from_numpy(pick)]
    else:  # weights: the float (or sparse) codec keeps them
        xt = torch.from_numpy(rng.standard_normal((R, L)) * 0.1).to(wide)
        if kind == "sparse":
            xt[torch.from_numpy(rng.random((R, L)) < 0.8)] = 0.0
    nb = rng.integers(0, 2**16 if src != "float32" else 2**32, size=(R, L), dtype=np.int64)
    if src == "float32":
        nt = torch.from_numpy(nb.astype(np.uint32).view(np.int32)).view(torch.float32)
    else:
        nt = torch.from_numpy(nb.astype(np.uint16).view(np.int16)).view(NARROW[src])
    nt = torch.where(torch.isnan(nt), torch.zeros((), dtype=nt.dtype), nt).to(wide)
    m = torch.from_numpy(mask)[:, None].expand(R, L)
    return torch.where(m, nt, xt).contiguous(), mask


def _split_min(n):
    from unittest import mock

    return mock.patch.object(C, "_SPLIT_MIN", n)


@settings(deadline=None, max_examples=80)
@given(mixed_row_tensors(), st.sampled_from(["block", "element"]), st.sampled_from([1, 2]),
       st.sampled_from([0, 10**15]), st.data())
def test_row_split_roundtrip(xm, form, threads, run_cost, data):
    """Both ways of placing the rest rows (straight into their rows when a run costs 0,
    into the front then moved up when it costs more than any move) and both thread counts."""
    from unittest import mock

    with mock.patch.object(C, "_RUN_COST_BYTES", run_cost):
        _row_split_roundtrip(xm, form, threads, data)


def _row_split_roundtrip(xm, form, threads, data):
    x, _mask = xm
    before = ibits(x).clone()
    codec = C.get_codec({"id": "narrow", "form": form})
    with _split_min(1):
        try:
            enc = codec.encode(x)
        except C.NotApplicable:  # no row is exact in a narrower format
            nds = [NARROW[nd] for nd in C._NARROWER[str(x.dtype)[6:]]]
            assert not any(exact_in(r, nd) for r in x for nd in nds)
            return
        best = C.encode_best(x)  # verify=True: decoded bits equal the input
        assert best.nbytes <= enc.nbytes
    assert torch.equal(ibits(x), before)  # the input is never written
    C.set_decode_threads(threads)
    try:
        assert_exact(codec.decode(enc), x)
        dec = C.prepare(enc)
        out = torch.full_like(x, 3.0)
        assert dec(out) is out
        assert_exact(out, x)
        rows = codec.prepare_rows(enc)
        if "rest" in enc.children:
            assert enc.meta["row_len"] == x.shape[1]
            ok = np.unpackbits(enc.arrays["rows"], bitorder="little")[: x.shape[0]]
            for r in range(x.shape[0]):  # the rows stored narrow are exact in that format
                assert exact_in(x[r], NARROW[enc.meta["as"]]) or not ok[r]
            assert (rows is not None) == (form == "block" and all(
                c.codec_id in ("float", "dict") for c in enc.children.values()))
        if rows is not None:
            want = data.draw(st.lists(st.integers(0, x.shape[0] - 1), max_size=6))
            out = torch.full_like(x, 7.0)
            rows(out, want)
            for r in range(x.shape[0]):
                if r in want:
                    assert_exact(out[r], x[r])
                else:
                    assert (out[r] == 7.0).all()
    finally:
        C.set_decode_threads(1)


def test_row_split_on_an_embedding_with_half_precision_rows():
    """Rows never updated from a float16 init (unused tokens) beside trained rows: the
    split stores them in float16, is smaller than the float codec, and decodes exactly."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(600, 64, generator=g) * 0.05
    half = torch.zeros(600, dtype=torch.bool)
    half[10:200] = True
    half[350:360] = True
    w[half] = w[half].to(torch.float16).to(torch.float32)
    w[0] = 0.0  # a padding row
    enc = C.encode_best(w)
    assert enc.codec_id == "narrow" and set(enc.children) == {"values", "rest"}
    assert enc.meta["as"] == "float16"
    mask = np.unpackbits(enc.arrays["rows"], bitorder="little")[:600].astype(bool)
    np.testing.assert_array_equal(mask, (half | (torch.arange(600) == 0)).numpy())
    assert enc.nbytes < 0.93 * C.FloatCodec().encode(w).nbytes
    assert_exact(C.decode(enc), w)
    assert "<rest>" in enc.to_text(max_symbols=20)
    # too few narrow elements (under _SPLIT_MIN): no split
    small = w[:40].clone()
    with pytest.raises(C.NotApplicable):
        C.get_codec("narrow").encode(small)


def test_row_split_bad_parts_are_codec_errors():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(20, 8, generator=g)
    w[3:9] = w[3:9].to(torch.bfloat16).to(torch.float32)
    with _split_min(1):
        enc = C.get_codec("narrow").encode(w)
    assert "rest" in enc.children
    assert_exact(C.decode(enc), w)
    bm = enc.arrays["rows"]
    bad = [
        lambda e: e.meta.__setitem__("row_len", 7),  # does not divide the tensor
        lambda e: e.meta.__setitem__("row_len", 160),  # one row
        lambda e: e.meta.__setitem__("row_len", "8"),
        lambda e: e.meta.__setitem__("row_len", 4),  # children sizes no longer match
        lambda e: e.arrays.__setitem__("rows", bm[:2]),
        lambda e: e.arrays.__setitem__("rows", bm.astype(np.uint16)),
        lambda e: e.arrays.__setitem__("rows", bm | np.array([0, 0, 0x80], np.uint8)),  # bit 23
        lambda e: e.arrays.__setitem__("rows", np.zeros_like(bm)),  # no row narrow
        lambda e: e.arrays.__setitem__("rows", bm ^ np.array([1, 0, 0], np.uint8)),  # k != n
        lambda e: e.arrays.pop("rows"),
        lambda e: e.children.pop("rest"),
        lambda e: e.children["rest"].meta.__setitem__("dtype", "float16"),
        lambda e: e.children["values"].meta.__setitem__("dtype", "float32"),
        lambda e: e.meta.pop("row_len"),  # the whole-tensor form with a rest part
    ]
    for mutate in bad:
        e = copy.deepcopy(enc)
        mutate(e)
        with pytest.raises(C.CodecError):
            C.decode(e)
        with pytest.raises(C.CodecError):
            C.prepare(e)
    e = copy.deepcopy(enc)  # a narrow rest part is not a format we write
    e.children["rest"] = copy.deepcopy(enc)
    e.children["rest"].meta.update(dtype="float32", n=enc.children["rest"].meta["n"])
    with pytest.raises(C.CodecError):
        C.decode(e)


@pytest.mark.parametrize("mode", ["streaming", "cached"])
def test_wrapped_embedding_with_half_precision_rows(tmp_path, mode):
    torch.manual_seed(4)
    ref = nn.Sequential(nn.Embedding(500, 32), nn.Flatten(), nn.Linear(32 * 3, 4)).eval()
    with torch.no_grad():
        ref[0].weight[100:400] = ref[0].weight[100:400].to(torch.float16).to(torch.float32)
    before = ibits(ref[0].weight).clone()
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(mode=mode, min_numel=256))
    assert "narrow(" in str(D.report(m))
    idx = torch.tensor([[0, 150, 499], [399, 400, 99], [120, 121, 122]])
    with torch.no_grad():
        assert torch.equal(m(idx), ref(idx))
        assert torch.equal(m(idx), ref(idx))
    path = tmp_path / "e.dnnz"
    D.save(m, path)
    fresh = copy.deepcopy(ref)
    with torch.no_grad():
        fresh[0].weight.zero_()
    D.load(path, fresh, mode=mode)
    with torch.no_grad():
        assert torch.equal(fresh(idx), ref(idx))
    D.unwrap(m)
    assert_exact(m[0].weight, ref[0].weight)
    assert torch.equal(ibits(ref[0].weight), before)
