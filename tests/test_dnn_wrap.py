"""dnn_adapter.wrap/unwrap/save/load/report: bit-exact weights, torch.equal outputs."""

import copy
import os

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import dnn_adapter as D  # noqa: E402
from dnn_adapter.models import DigitsCNN, resnet50  # noqa: E402

INTV = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
torch.set_num_threads(1)


def ibits(t):
    return t.detach().contiguous().view(INTV[t.element_size()])


def mlp():
    return nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def cnn():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


class EmbModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(500, 32)
        self.fc = nn.Linear(32, 4)

    def forward(self, idx):
        return self.fc(self.emb(idx).mean(1))


def transformer():
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


class MHAModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.fc = nn.Linear(64, 8)

    def forward(self, x):
        return self.fc(self.attn(x, x, x, need_weights=False)[0])


MODELS = {
    "mlp": (mlp, lambda: torch.randn(4, 32)),
    "cnn": (cnn, lambda: torch.randn(2, 3, 8, 8)),
    "emb": (EmbModel, lambda: torch.randint(0, 500, (3, 7))),
    "transformer": (transformer, lambda: torch.randn(2, 5, 64)),
    "mha": (MHAModel, lambda: torch.randn(2, 5, 64)),
}


def prune_(m, amount=0.8):
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p[p.abs() < p.abs().flatten().kthvalue(int(amount * p.numel())).values] = 0
    return m


def quantize_(m, levels=16):
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                lo, hi = p.min(), p.max()
                st = (hi - lo) / (levels - 1)
                p.copy_(torch.round((p - lo) / st) * st + lo)
    return m


def make(name, dtype=torch.float32, variant="dense"):
    torch.manual_seed(0)
    ctor, inp = MODELS[name]
    m = ctor().eval()
    for mod in m.modules():  # non-trivial BN statistics
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2)
    if variant == "pruned":
        prune_(m)
    elif variant == "quantized":
        quantize_(m)
    x = inp()
    if dtype != torch.float32:
        m = m.to(dtype)
        if x.is_floating_point():
            x = x.to(dtype)
    return m, x


def check_same(ref, m, x):
    with torch.no_grad():
        y0 = ref(x)
        assert torch.equal(m(x), y0)
        assert torch.equal(m(x), y0)  # workspace reuse
    with torch.inference_mode():
        assert torch.equal(m(x), y0)
    # grad enabled (eval): must match the uncompressed model on the same path
    assert torch.equal(m(x).detach(), ref(x).detach())


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mode", ["streaming", "cached"])
def test_wrap_exact(name, mode):
    ref, x = make(name)
    m = copy.deepcopy(ref)
    cfg = D.WrapConfig(mode=mode, min_numel=256)
    assert D.wrap(m, cfg) is m
    assert D.is_wrapped(m)
    check_same(ref, m, x)
    sd0, sd1 = ref.state_dict(), m.state_dict()
    assert list(sd0) == list(sd1)
    for k in sd0:
        assert torch.equal(ibits(sd0[k]), ibits(sd1[k])), k
    assert D.unwrap(m) is m and not D.is_wrapped(m)
    p0, p1 = list(ref.named_parameters()), list(m.named_parameters())
    assert [k for k, _ in p0] == [k for k, _ in p1]
    for (k, a), (_, b) in zip(p0, p1, strict=True):
        assert torch.equal(ibits(a), ibits(b)) and a.requires_grad == b.requires_grad, k
    check_same(ref, m, x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_wrap_dtypes(name, dtype):
    ref, x = make(name, dtype)
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256))
    assert any(True for _ in D.wrapping.compressed_entries(m))
    check_same(ref, m, x)


@pytest.mark.parametrize("variant,codec", [("pruned", "sparse"), ("quantized", "dict")])
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_wrap_variants(name, variant, codec):
    ref, x = make(name, variant=variant)
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256))
    codecs = [e.enc.codec_id for *_, e in D.wrapping.compressed_entries(m)]
    assert codec in codecs
    check_same(ref, m, x)


def test_torch_prune_masks():
    from torch.nn.utils import prune

    torch.manual_seed(0)
    ref = mlp().eval()
    m = copy.deepcopy(ref)
    mask = ref[0].weight.abs() > 0.05
    prune.custom_from_mask(ref[0], "weight", mask)
    prune.custom_from_mask(m[0], "weight", mask)
    x = torch.randn(4, 32)
    with torch.no_grad():
        y0 = ref(x)
        w0 = ref[0].weight.clone()
    D.wrap(m, D.WrapConfig(min_numel=256))
    with torch.no_grad():
        assert torch.equal(m(x), y0)
    D.unwrap(m)
    assert torch.equal(ibits(m[0].weight), ibits(w0))  # -0.0 of pruned negatives kept


def test_torch_prune_zeros_cost_a_bit_each(tmp_path):
    """torch.nn.utils.prune multiplies by its mask, so half the pruned weights are -0.0: they
    are stored as zeros plus one sign bit each (not as values), bit-exact through wrap,
    save and load."""
    from torch.nn.utils import prune

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 64)).eval()
    m = copy.deepcopy(ref)
    for lin in (ref[0], ref[2], m[0], m[2]):  # the same weights: the same masks
        prune.l1_unstructured(lin, "weight", amount=0.9)
    x = torch.randn(3, 256)
    with torch.no_grad():
        y0 = ref(x)
        w0 = ref[0].weight.clone()
    D.wrap(m, D.WrapConfig(min_numel=256))
    enc = D.wrapping.compressed_entries(m)
    encs = {fqn: e.enc for fqn, _mod, _p, e in enc}
    assert encs["0.weight"].codec_id == "sparse" and encs["0.weight"].meta["zsign"] == 1
    nzero = w0.numel() - int(encs["0.weight"].meta["nnz"])
    assert nzero == int((w0 == 0).sum())
    plus = D.codecs.SparseCodec().encode(torch.where(w0 == 0, torch.zeros(()), w0))
    assert encs["0.weight"].nbytes <= plus.nbytes + nzero / 8 + 64
    with torch.no_grad():
        assert torch.equal(m(x), y0)
    D.save(m, tmp_path / "p.dnnz")
    fresh = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 64)).eval()
    D.load(tmp_path / "p.dnnz", fresh)
    with torch.no_grad():
        assert torch.equal(fresh(x), y0)
    D.unwrap(fresh)
    assert torch.equal(ibits(fresh[0].weight), ibits(w0))


@pytest.mark.parametrize("mode", ["streaming", "cached"])
def test_training_is_refused(mode):
    m, x = make("mlp")
    ref = copy.deepcopy(m)
    D.wrap(m, D.WrapConfig(min_numel=256, mode=mode))
    with torch.inference_mode():  # a no-grad forward first (cached: no weight swaps)
        assert torch.equal(m(x), ref(x))
    m.train()
    with pytest.raises(D.InferenceOnlyError):
        m(x)
    with torch.no_grad():
        m(x)  # train-mode forward without grad is allowed (e.g. BN statistics)
    m.eval()
    y = m(x).sum()
    with pytest.raises(D.InferenceOnlyError):
        y.backward()
    with torch.no_grad():  # and back: the guards are gone, outputs unchanged
        assert torch.equal(m(x), ref.eval()(x))
    comp = {fqn for fqn, *_ in D.wrapping.compressed_entries(m)}
    assert comp and not comp & {k for k, _ in m.named_parameters()}


def test_filter_and_overrides():
    m, x = make("cnn")
    ref = copy.deepcopy(m)
    D.wrap(
        m,
        D.WrapConfig(min_numel=256, overrides={"3": "element", "7": "skip"}),
        filter_fn=lambda mod, fqn: fqn != "0",
    )
    ents = {fqn: e for fqn, _m, _p, e in D.wrapping.compressed_entries(m)}
    assert "0.weight" not in ents and "7.weight" not in ents
    assert ents["3.weight"].enc.form == "element"
    check_same(ref, m, x)


def test_fpr_policy_with_sample():
    m, x = make("cnn")
    D.wrap(m, D.WrapConfig(min_numel=256, fpr_threshold=4.0), sample_input=x[:1])
    ents = {fqn: e.enc.form for fqn, _m, _p, e in D.wrapping.compressed_entries(m)}
    assert ents["3.weight"] == "block" and ents["7.weight"] == "element"


def test_state_dict_load_into_wrapped():
    ref, x = make("mlp")
    m = D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256))
    with torch.no_grad():  # a forward first: each weight's decoder is prepared and kept
        assert torch.equal(m(x), ref(x))
    other, _ = make("mlp")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(2)
    m.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert torch.equal(m(x), other(x))


# ---- save / load -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cnn", "transformer", "emb"])
@pytest.mark.parametrize("wrapped", [True, False])
def test_save_load(tmp_path, name, wrapped):
    ref, x = make(name, variant="pruned" if name == "cnn" else "dense")
    src = copy.deepcopy(ref)
    if wrapped:
        D.wrap(src, D.WrapConfig(min_numel=256))
    path = tmp_path / "m.dnnz"
    D.save(src, path)
    for mode in ("streaming", "cached"):
        fresh, _ = make(name)
        with torch.no_grad():
            for p in fresh.parameters():
                p.zero_()
        D.load(path, fresh, mode=mode)
        check_same(ref, fresh, x)
    assert not any(f.startswith(".dnnz-") for f in os.listdir(tmp_path))




@pytest.mark.parametrize("verify", [True, False])
def test_cached_load_decodes_once_and_drops_the_file_pages(tmp_path, monkeypatch, verify):
    """A cached load keeps the decode its verification made (no second decode), and once a
    tensor is decoded its compressed bytes' pages are released; they fault back in from the
    file when read again (save, unwrap), bit for bit."""
    import dnn_adapter.io as dio
    import dnn_adapter.wrapping as dw

    ref, x = make("cnn", variant="pruned")
    path = tmp_path / "m.dnnz"
    D.save(D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256)), path)
    decodes, spans = [], []
    real_cached, real_release = dw._cached_tensor, dio._File.release
    monkeypatch.setattr(dw, "_cached_tensor", lambda e: decodes.append(e) or real_cached(e))
    monkeypatch.setattr(dio._File, "release",
                        lambda self, a, b: spans.append((a, b)) or real_release(self, a, b))
    m = D.load(path, make("cnn")[0], mode="cached", verify=verify)
    compressed = [k for k, v in dio.read_header(path)["tensors"].items()
                  if v["kind"] == "compressed"]
    assert len(decodes) == (0 if verify else len(compressed)) and len(spans) == len(compressed)
    check_same(ref, m, x)
    D.save(m, tmp_path / "again.dnnz")  # reads every released page again
    (a, b) = (dio._File(p) for p in (path, tmp_path / "again.dnnz"))
    try:  # the same tensors and bytes (the header differs only in its config's mode, so the
        # data starts elsewhere and the buffers' alignment padding may differ)
        def parts(f):
            out = {}
            for fqn, rec in f.header["tensors"].items():
                bufs = rec["buffers"] if rec["kind"] == "compressed" else {"": rec}
                for part, r in bufs.items():
                    at = f.data0 + r["offset"]
                    out[fqn, part] = bytes(f.buf[at : at + r["nbytes"]])
            return out

        def strip(h):
            return {fqn: {k: v for k, v in rec.items() if k not in ("buffers", "offset")}
                    for fqn, rec in h["tensors"].items()}

        assert strip(a.header) == strip(b.header) and parts(a) == parts(b)
    finally:
        a.close()
        b.close()
    D.unwrap(m)
    check_same(ref, m, x)
    spans.clear()
    D.load(path, make("cnn")[0], mode="streaming", verify=verify)
    assert not spans  # streaming reads the compressed bytes on every forward: kept


def test_file_release_drops_resident_pages(tmp_path):
    """_File.release really takes the pages out of the resident set (Linux smaps)."""
    if not os.path.exists("/proc/self/smaps"):
        pytest.skip("needs /proc/self/smaps")
    import numpy as np

    from dnn_adapter.io import _File

    big = nn.Linear(1024, 1024)  # 4 MiB of float32: many pages
    path = tmp_path / "big.dnnz"
    D.save(nn.Sequential(big), path)
    f = _File(path)

    def rss_kb():
        with open("/proc/self/smaps") as fh:
            lines = fh.read().splitlines()
        for i, ln in enumerate(lines):
            if ln.endswith(str(path)):
                return next(int(x.split()[1]) for x in lines[i + 1:] if x.startswith("Rss:"))
        raise AssertionError("mapping not found")

    try:
        int(np.frombuffer(f.buf, np.uint8).sum())  # touch every page
        before = rss_kb()
        f.release(0, f.size)
        after = rss_kb()
        assert before >= 2048 and after <= before // 8, (before, after)
        assert f.buf[: f.size] == path.read_bytes()  # the bytes are still there
    finally:
        f.close()

def test_save_file_mode_is_that_of_a_plain_open(tmp_path):
    """save's atomic write leaves the mode a plain open would (mkstemp alone makes 0o600)."""
    m = mlp()
    old = os.umask(0o022)
    try:
        D.save(m, tmp_path / "a.dnnz")
        os.umask(0o077)
        D.save(m, tmp_path / "b.dnnz")
        (tmp_path / "c.dnnz").write_bytes(b"")
        os.chmod(tmp_path / "c.dnnz", 0o640)
        D.save(m, tmp_path / "c.dnnz")
    finally:
        os.umask(old)
    assert [(tmp_path / n).stat().st_mode & 0o777 for n in ("a.dnnz", "b.dnnz", "c.dnnz")] == [
        0o644, 0o600, 0o640]

def test_load_errors(tmp_path):
    ref, x = make("cnn")
    path = tmp_path / "m.dnnz"
    D.save(D.wrap(copy.deepcopy(ref), D.WrapConfig(min_numel=256)), path)
    data = path.read_bytes()
    wrong = nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 5),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )
    with pytest.raises(D.FileFormatError, match=r"3\.weight"):
        D.load(path, wrong)
    with pytest.raises(D.FileFormatError, match="does not match"):
        D.load(path, mlp())
    (tmp_path / "t").write_bytes(data[: len(data) // 2])
    with pytest.raises(D.FileFormatError, match="truncated|past the end"):
        D.load(tmp_path / "t", make("cnn")[0])
    (tmp_path / "h").write_bytes(data[:20])
    with pytest.raises(D.FileFormatError):
        D.load(tmp_path / "h", make("cnn")[0])
    # flip a byte in every region; each must raise a FileFormatError naming the problem
    for pos in range(len(data) - 1, 8 + 64, -max(1, len(data) // 25)):
        b = bytearray(data)
        b[pos] ^= 0x5A
        (tmp_path / "c").write_bytes(bytes(b))
        target = make("cnn")[0]
        try:
            D.load(tmp_path / "c", target)
        except D.FileFormatError as e:
            assert str(e)
        else:  # flipping header padding/alignment padding bytes is harmless
            check_same(ref, target, x)


# ---- report ------------------------------------------------------------------------------------
def test_resnet50_counts():
    with torch.device("meta"):
        m = resnet50()
    rep = D.report(m, torch.empty(1, 3, 224, 224, device="meta"), encode=False)
    assert rep.total_params == 25_557_032
    assert rep.total_macs == 4_089_184_256
    by = {r.name: r for r in rep}
    assert by["conv1"].macs == 118_013_952 and by["fc"].macs == 2_048_000
    assert by["conv1"].form == "-"  # not encoded


def test_report_table():
    m, x = make("transformer")
    rep = D.report(m, x[:1], D.WrapConfig(min_numel=256))
    rows = {r.name: r for r in rep}
    attn = rows["layers.0.self_attn"]
    assert attn.macs == 5 * 64 * 64 * 3 + 2 * 5 * 5 * 64
    assert rows["layers.0.self_attn.out_proj"].macs == 5 * 64 * 64
    assert rows["layers.0.linear1"].macs == 5 * 64 * 128
    assert attn.form == "element" and attn.fpr == pytest.approx(attn.macs / attn.params)
    txt = rep.to_text()
    assert "TOTAL" in txt and "layers.0.linear1" in txt
    d = rep.as_dicts()[0]
    assert {"params", "macs", "fpr", "form", "codec", "bytes_before", "bytes_after", "cr"} <= set(d)
    m2 = D.wrap(copy.deepcopy(m), D.WrapConfig(min_numel=256))
    assert D.report(m2).bytes_after == pytest.approx(rep.bytes_after, rel=0.05)
    mh, xh = make("mha")
    rh = {r.name: r for r in D.report(mh, xh[:1])}
    assert rh["attn"].macs == 5 * 64 * 64 * 3 + 2 * 5 * 5 * 64
    emb, xe = make("emb")
    assert {r.name: r for r in D.report(emb, xe[:1])}["emb"].macs == 0


def test_digits_cnn_defined():
    m = DigitsCNN().eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_grad_enabled_forward_after_inference_mode_forward():
    # regression: a workspace filled under inference_mode was reused with grad enabled
    # (report() counts MACs with grad on) and raised "inference tensor outside InferenceMode"
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    m.eval()
    x = torch.randn(4, 64)
    ref = m(x).detach()
    D.wrap(m, sample_input=x)
    with torch.inference_mode():
        assert torch.equal(m(x), ref)
    rep = D.report(m, x)
    assert rep is not None
    with torch.no_grad():
        assert torch.equal(m(x), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("variant", ["dense", "quant"])
def test_embedding_streaming_decodes_only_looked_up_rows(monkeypatch, dtype, variant):
    torch.manual_seed(0)
    emb = nn.Embedding(3000, 48).to(dtype).eval()
    if variant == "quant":
        with torch.no_grad():
            emb.weight.copy_((emb.weight * 4).round() / 4)
    ref = copy.deepcopy(emb)
    w = D.wrap(copy.deepcopy(emb))
    full_calls = []
    import dnn_adapter.wrapping as W

    orig = W._Entry.decode_into
    monkeypatch.setattr(W._Entry, "decode_into",
                        lambda self, out: full_calls.append(1) or orig(self, out))
    with torch.inference_mode():
        for ids in (torch.tensor([[5, 5, 2999, 0], [17, 18, 19, 5]]), torch.tensor([7]),
                    torch.tensor([], dtype=torch.long), torch.tensor([1, 2], dtype=torch.int32)):
            assert torch.equal(ibits(w(ids)), ibits(ref(ids)))
        assert not full_calls  # rows only
        many = torch.arange(0, 3000, 2)  # most rows: one bulk decode instead
        assert torch.equal(ibits(w(many)), ibits(ref(many)))
        with pytest.raises(IndexError):
            w(torch.tensor([3000]))
        with pytest.raises(IndexError):
            w(torch.tensor([-1]))
    # grad-enabled eval forward: still the same rows
    assert torch.equal(ibits(w(torch.tensor([3, 4]))), ibits(ref(torch.tensor([3, 4]))))


def test_row_decoder_edges():
    from dnn_adapter import codecs as C

    torch.manual_seed(1)
    x = torch.randn(40, 33)
    enc = C.FloatCodec().encode(x)
    f = C.FloatCodec().prepare_rows(enc)
    out = torch.zeros_like(x)
    f(out, [39, 0, 0, 20])
    for r in (0, 20, 39):
        assert torch.equal(ibits(out[r]), ibits(x[r]))
    assert (out[1] == 0).all()
    with pytest.raises(IndexError):
        f(out, [40])
    with pytest.raises(IndexError):
        f(out, [0.5])
    with pytest.raises(ValueError):
        f(torch.zeros(10, 33), [1])
    # no row decoder: sparse, element-wise, other block lengths
    sp = x.clone()
    sp[sp.abs() < 1] = 0
    assert C.SparseCodec().prepare_rows(C.SparseCodec().encode(sp)) is None
    # the element-wise form has the same fixed rows: decoded the same way
    fe = C.FloatCodec("element").prepare_rows(C.FloatCodec("element").encode(x))
    out = torch.zeros_like(x)
    fe(out, [3])
    assert torch.equal(ibits(out[3]), ibits(x[3])) and (out[4] == 0).all()
    enc2 = C.FloatCodec().encode(x, block_len=x.numel())
    assert C.FloatCodec().prepare_rows(enc2) is None
