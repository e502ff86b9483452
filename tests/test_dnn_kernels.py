"""Fused kernels (dnn_adapter._kernels): properties vs float64 references, binding checks,
corrupt streams, and wrapped models in fused mode."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dnn_adapter as D
from dnn_adapter import _kernels_api as K
from dnn_adapter.codecs import DictCodec, FloatCodec, encode_best
from dnn_adapter.fused import fused_layers

# the sparse form even when dense-ish, with separate distance/value streams (the kernels' form)
SP = [{"id": "sparse", "min_zero_fraction": 0.0, "joint": False, "max_rows_per_block": 1}]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@pytest.fixture(params=[0, 1, 2], ids=["portable", "avx2", "avx512"])
def kisa(request):
    got = K.set_isa_level(request.param)
    if got != request.param:
        K.set_isa_level(-1)
        pytest.skip(f"CPU lacks ISA level {request.param}")
    yield got
    K.set_isa_level(-1)


def _check(w: torch.Tensor, x: np.ndarray, y: np.ndarray):
    """y == w @ x to float32 accumulation error (bound scaled by |w| @ |x|)."""
    wd = w.to(torch.float64).reshape(w.shape[0], -1).numpy()
    ref = wd @ x.astype(np.float64)
    bound = 1e-5 * (np.abs(wd) @ np.abs(x.astype(np.float64))) + 1e-30
    assert y.shape == ref.shape
    assert (np.abs(y - ref) <= bound).all(), float(np.abs(y - ref).max())


@st.composite
def sparse_weights(draw):
    nrows = draw(st.integers(1, 40))
    ncols = draw(st.sampled_from([1, 2, 7, 63, 64, 65, 300, 2047, 2048, 2049]))
    dtype = draw(st.sampled_from(list(DTYPES)))
    density = draw(st.sampled_from([0.0, 0.01, 0.05, 0.3, 0.79]))
    few = draw(st.booleans())  # few distinct values -> dict child, else float child
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if few:
        vals = torch.tensor([-1.5, 0.25, 3.0])[torch.randint(0, 3, (nrows, ncols), generator=g)]
    else:
        vals = torch.randn(nrows, ncols, generator=g)
    mask = torch.rand(nrows, ncols, generator=g) < density
    if draw(st.booleans()):  # extremes: first and last column of a row, an empty row
        mask[0, :] = False
        mask[0, -1] = True
        mask[-1, 0] = True
        if nrows > 2:
            mask[1, :] = False
    w = torch.where(mask, vals, 0.0).to(DTYPES[dtype])  # +0.0: a product would leave -0.0
    batch = draw(st.sampled_from([1, 2, 8, 33]))
    x = torch.randn(ncols, batch, generator=g).numpy()
    return w, x


@settings(max_examples=30, deadline=None)
@given(sparse_weights(), st.sampled_from(["block", "element"]))
def test_sparse_product_matches_reference(wx, form):
    w, x = wx
    enc = encode_best(w, form=form, candidates=SP, verify=False)
    fw = K.FusedWeight(enc)
    assert fw.sparse
    x0 = x.copy()
    _check(w, x, fw.matmul_t(x))
    _check(w, x, fw.to_csr().matmul_t(x))
    assert np.array_equal(x, x0)  # inputs are never written


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 20),
    st.sampled_from([1, 5, 64, 65, 1100, 2049]),
    st.sampled_from(list(DTYPES)),
    st.sampled_from([1, 3, 40]),
    st.sampled_from(["float", "dict"]),
    st.integers(0, 2**31 - 1),
)
def test_dense_elementwise_product_matches_reference(nrows, ncols, dtype, batch, cid, seed):
    g = torch.Generator().manual_seed(seed)
    if cid == "dict":
        w = torch.tensor([0.0, -2.0, 0.5, 7.0])[torch.randint(0, 4, (nrows, ncols), generator=g)]
        codec = DictCodec("element")
    else:
        w = torch.randn(nrows, ncols, generator=g) * 10.0 ** torch.randint(-3, 3, (1,)).item()
        codec = FloatCodec("element")
    w = w.to(DTYPES[dtype])
    enc = codec.encode(w)
    fw = K.FusedWeight(enc)
    assert not fw.sparse
    x = torch.randn(ncols, batch, generator=g).numpy()
    _check(w, x, fw.matmul_t(x))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("cid", ["float", "dict"])
@pytest.mark.parametrize("band", [1, 7, 1 << 18])
def test_dense_band_decode_equals_code_extract_path(monkeypatch, dtype, cid, band):
    """Dense rows are decoded a band at a time by the codec's table-driven row decoder and
    multiplied from a float32 buffer; the result is bit-identical to the other path (codes
    extracted, values merged inside the kernel), with bands that split the rows unevenly."""
    monkeypatch.setattr(K, "_BAND_ELEMS", band * 50)
    g = torch.Generator().manual_seed(band)
    if cid == "dict":
        w = torch.tensor([0.0, -2.0, 0.5, 7.0])[torch.randint(0, 4, (23, 50), generator=g)]
        enc = DictCodec("element").encode(w.to(DTYPES[dtype]))
    else:
        w = torch.randn(23, 50, generator=g)
        enc = FloatCodec("element").encode(w.to(DTYPES[dtype]))
    fw = K.FusedWeight(enc)
    assert fw._rows_dec is not None
    for batch in (1, 4):
        x = torch.randn(50, batch, generator=g).numpy()
        y_band = fw.matmul_t(x)
        dec, fw._rows_dec = fw._rows_dec, None
        try:
            y_codes = fw.matmul_t(x)
        finally:
            fw._rows_dec = dec
        assert np.array_equal(y_band, y_codes)
        _check(w.to(DTYPES[dtype]), x, y_band)
        out = np.full((23, batch), np.nan, np.float32)
        assert fw.matmul_t(x, out=out) is out and np.array_equal(out, y_band)


def test_isa_levels_agree(kisa):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(50, 3000, generator=g)
    w[torch.rand(50, 3000, generator=g) < 0.9] = 0
    x = torch.randn(3000, 9, generator=g).numpy()
    for form in ("block", "element"):
        fw = K.FusedWeight(encode_best(w, form=form, candidates=SP, verify=False))
        _check(w, x, fw.matmul_t(x))
        _check(w, x[:, :1].copy(), fw.matmul_t(x[:, :1].copy()))
    fw = K.FusedWeight(FloatCodec("element").encode(w.to(torch.bfloat16)))
    _check(w.to(torch.bfloat16), x, fw.matmul_t(x))


@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1, 5), (4, 4096)])
def test_all_zero_and_tiny(shape):
    x = np.ones((shape[1], 2), np.float32)
    z = torch.zeros(shape)
    fw = K.FusedWeight(encode_best(z, candidates=SP))
    assert fw.nnz == 0
    assert np.array_equal(fw.matmul_t(x), np.zeros((shape[0], 2), np.float32))
    assert np.array_equal(fw.to_csr().matmul_t(x), np.zeros((shape[0], 2), np.float32))
    one = z.clone()
    one[-1, -1] = 2.5
    fw = K.FusedWeight(encode_best(one, candidates=SP))
    _check(one, x, fw.matmul_t(x))


@pytest.mark.parametrize("dtype,k", [("float32", 0), ("float32", 1), ("float32", 2),
                                     ("bfloat16", 0), ("bfloat16", 1),
                                     ("float16", 0), ("float16", 1), ("float16", 3)])
@pytest.mark.parametrize("ncols", [3, 1000])  # a row shorter/longer than an 8-byte top load
def test_float_values_every_joint_bit_count(monkeypatch, kisa, dtype, k, ncols):
    """FloatCodec values with k joint bits (byte planes + a packed top-bit remainder of
    (mant_bits - k + 1) % 8 bits): the one-pass batch-1 path and the chunked path, sparse
    and dense rows, agree with the reference; the last operands read the top bits near the
    end of their array."""
    from dnn_adapter import codecs as C

    def forced(self, u, dt, block_len):
        return self._encode_k(u, dt, block_len, k)

    monkeypatch.setattr(C.FloatCodec, "_encode_bits", forced)
    g = torch.Generator().manual_seed(k)
    nrows = 37 if ncols > 3 else 3000  # enough values that the float child is the smallest
    w = torch.randn(nrows, ncols, generator=g) * 3.0
    w[torch.rand(nrows, ncols, generator=g) < 0.5] = 0
    w[0, 0], w[-1, -1] = 1e-3, -7.5  # the first and the last operand
    w = w.to(DTYPES[dtype])
    for enc in (encode_best(w, form="element", candidates=SP, verify=True),
                FloatCodec("element").encode(w)):
        vals = enc.children["values"] if enc.codec_id == "sparse" else enc
        assert vals.codec_id == "float" and int(vals.meta["k"]) == k
        fw = K.FusedWeight(enc)
        for batch in (1, 5):
            x = torch.randn(ncols, batch, generator=g).numpy()
            _check(w, x, fw.matmul_t(x))


def test_long_gaps_escaped():
    """Rows with one non-zero at the far end: the longest distances (escape codes)."""
    w = torch.zeros(8, 70000)
    for r in range(8):
        w[r, 69999 - 9000 * r] = r + 1.0
    w[3, 0] = -1.0
    enc = encode_best(w, candidates=SP)
    x = np.random.default_rng(0).standard_normal((70000, 3)).astype(np.float32)
    _check(w, x, K.FusedWeight(enc).matmul_t(x))


def test_not_fusable():
    with pytest.raises(K.NotFusable):
        K.FusedWeight(encode_best(torch.randn(8, 300, dtype=torch.float64)))
    with pytest.raises(K.NotFusable):
        K.FusedWeight(encode_best(torch.randn(300)))  # 1-D
    enc = encode_best(torch.where(torch.rand(8, 300) < 0.1, 1.0, 0.0), candidates=SP)
    enc.meta["future_field"] = 1  # a format this module does not know: fall back
    with pytest.raises(K.NotFusable):
        K.FusedWeight(enc)


# ---- binding checks and corrupt streams -------------------------------------------------------
def _sparse_args():
    g = torch.Generator().manual_seed(3)
    w = torch.where(torch.rand(6, 50, generator=g) < 0.3, torch.randn(6, 50, generator=g), 0.0)
    enc = encode_best(w, candidates=SP)
    fw = K.FusedWeight(enc)
    gs = fw.gaps.body().copy()
    vals = np.ascontiguousarray(w[w != 0].numpy())
    kw = dict(
        nrows=6, ncols=50, gaps=gs, gap_step=fw.step.copy(), gap_delim=fw.gaps.DELIM,
        gap_xbits=fw.xbits, gap_extra=fw.extra,
        values={"kind": "f32", "vals": vals, "nnz": vals.size},
    )
    return w, kw


def test_raw_layer_mm_f32_values():
    w, kw = _sparse_args()
    x = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    _check(w, x, K.layer_mm(x, **kw))


@pytest.mark.parametrize(
    "mutate, exc",
    [
        (lambda x, kw: (x.astype(np.float64), kw), TypeError),
        (lambda x, kw: (np.asfortranarray(np.ones((50, 3), np.float32)), kw), ValueError),
        (lambda x, kw: (x[:40], kw), ValueError),
        (lambda x, kw: (x, {**kw, "gaps": kw["gaps"].astype(np.int64)}), TypeError),
        (lambda x, kw: (x, {**kw, "gaps": kw["gaps"][:-1]}), ValueError),
        (lambda x, kw: (x, {**kw, "gap_step": kw["gap_step"] + np.uint32(60)}), ValueError),
        (lambda x, kw: (x, {**kw, "gap_delim": 0}), ValueError),
        (lambda x, kw: (x, {**kw, "values": {**kw["values"], "vals": kw["values"]["vals"][1:]}}),
         ValueError),
        (lambda x, kw: (x, {**kw, "values": {"kind": "what", "nnz": 1}}), ValueError),
        (lambda x, kw: (x, {**kw, "nrows": 7}), ValueError),
        (lambda x, kw: (x, {**kw, "yt": np.zeros((5, 2), np.float32)}), ValueError),
        (lambda x, kw: (x, {**kw, "yt": np.zeros((6, 2), np.float32)[:, :1]}), ValueError),
    ],
)
def test_binding_rejects_bad_arguments(mutate, exc):
    _, kw = _sparse_args()
    x = np.ones((50, 2), np.float32)
    x2, kw2 = mutate(x, kw)
    with pytest.raises(exc):
        K.layer_mm(x2, **kw2)


def test_overlapping_output_rejected():
    w = torch.eye(4) * 2
    fw = K.FusedWeight(encode_best(w, candidates=SP))
    buf = np.ones((4, 1), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        fw.matmul_t(buf, out=buf)


@pytest.mark.parametrize("batch", [1, 2])  # batch 1: the one-pass walks (AVX-512 at level 2)
def test_corrupt_streams_raise(kisa, batch):
    _, kw = _sparse_args()
    x = np.ones((50, batch), np.float32)
    d = kw["gap_delim"]
    gs = kw["gaps"]
    rng = np.random.default_rng(0)
    cases = []
    bad = gs.copy()
    bad[np.flatnonzero(bad == d)[0]] = d + 1 if d + 1 < 256 else 0  # unknown symbol
    cases.append(bad)
    moved = gs.copy()  # a delimiter moved: rows too long / wrong count
    i = np.flatnonzero(moved == d)[0]
    moved[i], moved[0] = moved[0], d
    cases.append(moved)
    nodelim = gs.copy()
    nodelim[nodelim == d] = 0  # no delimiters: columns run past the rows
    cases.append(nodelim)
    for _ in range(20):  # random symbol swaps: must never crash, errors are exceptions
        s = gs.copy()
        j = rng.integers(0, s.size)
        s[j] = rng.integers(0, d + 1)
        cases.append(s)
    for s in cases[:3]:
        with pytest.raises(K.KernelError):
            K.layer_mm(x, **{**kw, "gaps": s})
    for s in cases[3:]:  # a valid-looking stream may decode to another matrix; never a crash
        try:
            y = K.layer_mm(x, **{**kw, "gaps": s})
        except K.KernelError:
            continue
        assert y.shape == (6, batch)


def test_csr_checks():
    x = np.ones((3, 1), np.float32)
    rp = np.array([0, 1, 2], np.uint64)
    with pytest.raises(ValueError):
        K.csr_mm(x, rp, np.array([0, 3], np.uint32), np.ones(2, np.float32), 3)
    with pytest.raises(ValueError):
        K.CSRWeight(np.array([0, 2, 1], np.uint64), np.zeros(2, np.uint32), np.ones(2), 3)
    with pytest.raises(K.KernelError):
        K.csr_mm(x, np.array([0, 1, 3], np.uint64), np.zeros(2, np.uint32),
                 np.ones(2, np.float32), 3)
    y = K.csr_mm(x, rp, np.array([0, 2], np.uint32), np.array([2, 3], np.float32), 3)
    assert y.ravel().tolist() == [2.0, 3.0]


# ---- wrapped models ---------------------------------------------------------------------------
def _pruned(m, sp, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                mod.weight[torch.rand(mod.weight.shape, generator=g) < sp] = 0
    return m.eval()


def _mlp():
    torch.manual_seed(0)
    return _pruned(nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 300), nn.ReLU(),
                                 nn.Linear(300, 10)), 0.9)


def _cnn():
    torch.manual_seed(1)
    return _pruned(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding="same", padding_mode="reflect", dilation=2), nn.ReLU(),
        nn.Conv2d(32, 32, 3, groups=2, padding=1), nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    ), 0.85)


def _mlp_torch_prune():
    """Pruned by torch.nn.utils.prune: weight = orig * mask, -0.0 where orig < 0."""
    from torch.nn.utils import prune

    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    for lin in (m[0], m[2]):
        prune.random_unstructured(lin, "weight", amount=0.9)
        prune.remove(lin, "weight")
    return m.eval()


def _ref64(ref, x):
    return copy.deepcopy(ref).double()(x.double())


def _conv_only():
    torch.manual_seed(3)
    return _pruned(nn.Sequential(nn.Conv2d(3, 40, (3, 5), stride=(2, 1), padding=(1, 2)),
                                 nn.ReLU(), nn.Conv2d(40, 20, 1)), 0.7)


@pytest.mark.parametrize("make, x_shape", [(_mlp, (5, 256)), (_mlp, (2, 3, 256)),
                                           (_mlp_torch_prune, (4, 256)),
                                           (_cnn, (2, 3, 16, 16)), (_conv_only, (3, 9, 11))])
@pytest.mark.parametrize("cache", [False, True])
def test_wrapped_fused_matches_reference(make, x_shape, cache):
    ref = make()
    x = torch.randn(*x_shape)
    x0 = x.clone()
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256, fused=True, fused_cache=cache))
    names = fused_layers(m)
    assert names and all(not isinstance(m.get_submodule(n), nn.Conv2d)
                         or m.get_submodule(n).groups == 1 for n in names)
    with torch.inference_mode():
        y = m(x)
        y2 = m(x)
    r = _ref64(ref, x)
    assert torch.equal(x, x0)
    assert torch.equal(y, y2)
    assert torch.allclose(y.double(), r, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # no_grad path too, then back to dense
        assert torch.allclose(m(x).double(), r, rtol=1e-4, atol=1e-5)
    D.unwrap(m)
    assert fused_layers(m) == []
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))


def test_default_modes_stay_bit_exact_and_fused_is_opt_in():
    ref = _mlp()
    x = torch.randn(3, 256)
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256))
    assert fused_layers(m) == []
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
    with pytest.raises(ValueError):
        D.WrapConfig(mode="cached", fused=True)
    cfg = D.WrapConfig(fused=True, fused_cache=True)
    assert D.WrapConfig.from_json(cfg.to_json()) == cfg


def test_fused_falls_back_for_grad_inputs():
    ref = _mlp()
    x = torch.randn(2, 256, requires_grad=True)
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256, fused=True))
    y = m(x)  # eval mode, grad enabled, input needs grad: decode path, bit-exact
    assert torch.equal(y, ref(x))
    with pytest.raises(D.InferenceOnlyError):
        y.sum().backward()


def test_fused_half_precision_model():
    ref = _mlp().to(torch.bfloat16)
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256, fused=True))
    assert fused_layers(m)
    with torch.inference_mode():
        y = m(x)
    assert y.dtype == torch.bfloat16
    r = _ref64(ref, x)
    assert torch.allclose(y.double(), r, rtol=2e-2, atol=2e-2)


def test_elementwise_dense_layer_fused():
    torch.manual_seed(2)
    ref = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 7)).eval()
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256, fused=True,
                                                 overrides={"0": "element", "2": "element"}))
    assert "0" in fused_layers(m)  # (a small layer may stay raw, i.e. dense)
    x = torch.randn(6, 300)
    with torch.inference_mode():
        assert torch.allclose(m(x).double(), _ref64(ref, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cache", [False, True])
def test_fused_wrap_stores_fast_value_planes(cache):
    """wrap(fused=True) decodes values on every call, so float values are stored without
    joint mantissa bits (k = 0: whole byte planes, the kernels' fast path); with the CSR
    cache they are decoded once and keep the smaller default encoding."""
    from dnn_adapter.wrapping import compressed_entries

    torch.manual_seed(4)
    ref = nn.Sequential(nn.Linear(600, 400), nn.ReLU(), nn.Linear(400, 300)).eval()
    with torch.no_grad():
        ref[0].weight[torch.rand(400, 600) < 0.9] = 0  # sparse; ref[2] stays dense
    cfg = D.WrapConfig(min_numel=256, fused=True, fused_cache=cache,
                       overrides={"0": "element", "2": "element"})
    m = D.wrap(copy.deepcopy(ref), cfg)
    ks = {}
    for fqn, _mod, _p, e in compressed_entries(m):
        enc = e.enc
        vals = enc.children["values"] if enc.codec_id == "sparse" else enc
        if vals.codec_id == "float" and fqn.endswith("weight"):
            ks[fqn] = int(vals.meta.get("k", 0))
    assert set(ks) == {"0.weight", "2.weight"}
    if cache:
        assert ks["2.weight"] > 0  # the default picks joint bits for gaussian weights
    else:
        assert set(ks.values()) == {0}
    x = torch.randn(3, 600)
    with torch.inference_mode():
        assert torch.allclose(m(x).double(), _ref64(ref, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("coding", [{}, {"esc": 8}, {"rice": 1}, {"rice": 5}, {"rice": 12}])
def test_fused_sparse_every_gap_coding(monkeypatch, kisa, coding):
    """Plain, escaped and Rice-coded distances: the kernel's per-code (step, extra bits)
    tables give the reference product; corrupt Rice parts are a CodecError."""
    from dnn_adapter import codecs as C

    monkeypatch.setattr(C, "_gap_codings", lambda g, **kw: [dict(coding)])
    g = torch.Generator().manual_seed(len(str(coding)))
    w = torch.randn(40, 3000, generator=g)
    w[torch.rand(40, 3000, generator=g) < 0.97] = 0
    w[3] = 0  # an empty row
    w[5, -1] = 2.0  # the last column
    enc = encode_best(w, form="element", candidates=SP, verify=True)
    for key, v in coding.items():
        assert enc.meta.get(key) == v
    fw = K.FusedWeight(enc)
    for batch in (1, 6):
        x = torch.randn(3000, batch, generator=g).numpy()
        _check(w, x, fw.matmul_t(x))
    _check(w, x, fw.to_csr().matmul_t(x))
    if "rice" in coding:
        bad = C.Encoded(enc.codec_id, {**enc.meta, "esc": 4}, enc.arrays, enc.ras, enc.children)
        with pytest.raises(C.CodecError):
            K.FusedWeight(bad)


def test_fused_config_prefers_distances_without_extra_bits():
    """wrap(fused=True)'s sparse config takes plain distance codes (1 byte) over escapes or
    Rice bits unless those save 1%: the per-call walk reads every distance's extra bits. The
    product is the same (to float32 rounding); the size grows by less than 1%; the default
    encoder is unchanged."""
    from dnn_adapter.wrapping import _fusable

    cfg = _fusable(("sparse",))[0]
    assert cfg["extra_bits_min_gain"] == 0.01
    g = torch.Generator().manual_seed(0)
    w = torch.randn(512, 4096, generator=g) * 0.02
    w = torch.where(torch.rand(512, 4096, generator=g) < 0.95, 0.0, w)
    fast = encode_best(w, form="element", candidates=[cfg])
    small = encode_best(w, form="element", candidates=[dict(cfg, extra_bits_min_gain=0.0)])
    assert "rice" in small.meta or "esc" in small.meta  # the premise: extra bits are smaller
    assert "rice" not in fast.meta and "esc" not in fast.meta
    assert small.nbytes <= fast.nbytes < 1.01 * small.nbytes
    assert fast.ras["gaps"].code_dtype == np.uint8
    x = np.random.default_rng(0).standard_normal((4096, 3)).astype(np.float32)
    for e in (fast, small):  # walked by different kernels (AVX-512 takes plain and Rice codes)
        _check(w, x, K.FusedWeight(e).matmul_t(x))


# ---- direct sparse convolution (no unfold) -----------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),  # batch
    st.integers(1, 5),  # cin
    st.integers(1, 6),  # cout
    st.tuples(st.integers(1, 4), st.integers(1, 4)),  # kernel
    st.tuples(st.integers(0, 3), st.integers(0, 3)),  # padding
    st.tuples(st.integers(1, 2), st.integers(1, 2)),  # dilation
    st.tuples(st.integers(1, 3), st.integers(1, 3)),  # stride
    st.tuples(st.integers(1, 40), st.integers(1, 40)),  # input h, w
    st.sampled_from([0.0, 0.5, 0.9, 1.0]),  # sparsity
    st.sampled_from([{}, {"rice": 1}, {"esc": 2}]),  # distance coding
    st.integers(0, 2**31 - 1),
)
def test_direct_conv2d_matches_torch(B, cin, cout, k, p, d, s, hw, sp, coding, seed):
    """layer_conv2d on every ISA level equals F.conv2d (to float32 rounding) for any geometry
    that fits: zero padding wider than the kernel, dilation, strides, empty filters, rows of
    one column, output rows on both sides of the 16-float alignment (wide rows dropped)."""
    from dnn_adapter import codecs as C

    span = [d[i] * (k[i] - 1) + 1 for i in (0, 1)]
    if any(hw[i] + 2 * p[i] < span[i] for i in (0, 1)):
        return  # the kernel does not fit: torch raises too (tested below)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(cout, cin, *k, generator=g)
    w[torch.rand(w.shape, generator=g) < sp] = 0
    x = torch.randn(B, cin, *hw, generator=g)
    ref = F.conv2d(x.double(), w.double(), stride=s, padding=p, dilation=d)
    old = C._gap_codings
    C._gap_codings = lambda gg, **kw: [dict(coding)]
    try:
        enc = encode_best(w, form="element", candidates=SP, verify=True)
    finally:
        C._gap_codings = old
    fw = K.FusedWeight(enc)
    csr = fw.to_csr()
    for lv in range(K.set_isa_level(99) + 1):
        K.set_isa_level(lv)
        try:
            ys = [fw.conv2d(x.numpy(), k, p, d, s), csr.conv2d(x.numpy(), k, p, d, s)]
        finally:
            K.set_isa_level(-1)
        oh, ow = ref.shape[2:]
        bound = 1e-5 * F.conv2d(x.double().abs(), w.double().abs(), stride=s, padding=p,
                                dilation=d) + 1e-30
        for which, y in zip(("streams", "csr"), ys, strict=True):
            got = torch.from_numpy(y).reshape(cout, B, oh, ow).permute(1, 0, 2, 3).double()
            err = float((got - ref).abs().max())
            assert ((got - ref).abs() <= bound).all(), (lv, which, err)


@pytest.mark.parametrize("hw", [(1, 1), (14, 14), (7, 9), (56, 56), (3, 40)])
def test_direct_conv2d_pointwise(hw):
    """1x1 convolutions (stride 1, no padding) run as one row per channel when the input fits
    a band, else in bands of rows: both equal F.conv2d, from the streams and from CSR."""
    g = torch.Generator().manual_seed(hw[0] * 100 + hw[1])
    cin = 96 if hw == (56, 56) else 24  # 56x56x96 floats: over one band
    w = torch.randn(20, cin, 1, 1, generator=g)
    w[torch.rand(w.shape, generator=g) < 0.8] = 0
    x = torch.randn(2, cin, *hw, generator=g)
    ref = F.conv2d(x.double(), w.double())
    fw = K.FusedWeight(encode_best(w, form="element", candidates=SP, verify=True))
    bound = 1e-5 * F.conv2d(x.double().abs(), w.double().abs()) + 1e-30
    for y in (fw.conv2d(x.numpy(), (1, 1)), fw.to_csr().conv2d(x.numpy(), (1, 1))):
        got = torch.from_numpy(y).reshape(20, 2, *hw).permute(1, 0, 2, 3).double()
        assert ((got - ref).abs() <= bound).all()


def test_direct_conv2d_checks():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 3, 3, generator=g)
    w[torch.rand(w.shape, generator=g) < 0.7] = 0
    fw = K.FusedWeight(encode_best(w, form="element", candidates=SP, verify=True))
    x = np.ones((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="too small"):
        fw.conv2d(np.ones((1, 3, 2, 2), np.float32), (3, 3))
    with pytest.raises(ValueError, match="columns"):  # channels do not match the weight
        fw.conv2d(np.ones((1, 2, 5, 5), np.float32), (3, 3))
    with pytest.raises(TypeError):
        fw.conv2d(x.astype(np.float64), (3, 3))
    with pytest.raises(ValueError, match="bad geometry"):
        fw.conv2d(x, (3, 3), padding=(-1, 0))
    with pytest.raises(ValueError, match="bad geometry"):
        fw.conv2d(x, (3, 3), stride=(0, 1))
    csr = fw.to_csr()
    with pytest.raises(ValueError, match="columns"):
        csr.conv2d(np.ones((1, 2, 5, 5), np.float32), (3, 3))
    with pytest.raises(ValueError, match="too small"):
        csr.conv2d(np.ones((1, 3, 2, 2), np.float32), (3, 3))
    with pytest.raises(TypeError):
        csr.conv2d(x.astype(np.float64), (3, 3))
    dense = K.FusedWeight(FloatCodec("element").encode(w.reshape(4, -1)))
    with pytest.raises(K.NotFusable):
        dense.conv2d(x, (3, 3))
    # a corrupt distance stream is an error naming the row, never a crash
    _, kw = _sparse_args()
    bad = kw["gaps"].copy()
    bad[bad == kw["gap_delim"]] = 0
    with pytest.raises(K.KernelError):
        K.layer_conv2d(np.ones((1, 2, 5, 5), np.float32), kernel_size=(5, 5), nrows=6,
                       **{k2: v for k2, v in kw.items() if k2 not in ("nrows", "ncols", "gaps")},
                       gaps=bad)
