"""Streaming mode with background decoding of the next layer (WrapConfig(prefetch=True))."""

import threading

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import dnn_adapter  # noqa: E402
from dnn_adapter import wrapping  # noqa: E402


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    ).eval()


def mlp_with_branch():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(32, 64)
            self.b = nn.Linear(64, 64)
            self.c = nn.Linear(64, 64)
            self.d = nn.Linear(64, 8)

        def forward(self, x, route=0):
            h = torch.relu(self.a(x))
            h = self.b(h) if route == 0 else self.c(h)  # the order changes with the input
            return self.d(torch.relu(h))

    torch.manual_seed(1)
    return M().eval()


def _ibits(t):
    return t.view(torch.int32)


@pytest.mark.parametrize("ctx", [torch.no_grad, torch.inference_mode])
def test_prefetch_outputs_equal_and_overlap_happens(ctx):
    ref = cnn()
    m = dnn_adapter.wrap(cnn(), dnn_adapter.WrapConfig(prefetch=True, min_numel=100))
    pf = m.__dict__["_dnn_adapter_prefetch"]
    x = torch.randn(4, 3, 12, 12)
    with ctx():
        want = ref(x)
        for _ in range(3):
            assert torch.equal(m(x), want)
    assert pf.pool is not None  # the background thread decoded something
    assert len(pf.succ) >= 2  # the order was learnt
    names = {t.name for t in threading.enumerate()}
    assert any(n.startswith("dnn-prefetch") for n in names)


def test_prefetch_survives_changing_order_and_exceptions():
    ref = mlp_with_branch()
    m = dnn_adapter.wrap(mlp_with_branch(), dnn_adapter.WrapConfig(prefetch=True, min_numel=100))
    x = torch.randn(3, 32)
    with torch.no_grad():
        for route in [0, 0, 1, 0, 1, 1, 0]:  # mispredictions drain the job, never mix weights
            assert torch.equal(_ibits(m(x, route)), _ibits(ref(x, route)))
        with pytest.raises(RuntimeError):
            m(torch.randn(3, 31))  # a shape error mid-forward: workspace and buffers released
        assert torch.equal(_ibits(m(x, 0)), _ibits(ref(x, 0)))


def test_set_prefetch_toggle_unwrap_and_cached_rejected(tmp_path):
    ref = cnn()
    m = dnn_adapter.wrap(cnn(), dnn_adapter.WrapConfig(min_numel=100))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        dnn_adapter.set_prefetch(m, True)
        for _ in range(2):
            assert torch.equal(m(x), ref(x))
        dnn_adapter.set_prefetch(m, False)
        assert "_dnn_adapter_prefetch" not in m.__dict__
        assert torch.equal(m(x), ref(x))
        dnn_adapter.set_prefetch(m, True)
        dnn_adapter.save(m, tmp_path / "m.dnnz")
        dnn_adapter.unwrap(m)
        assert "_dnn_adapter_prefetch" not in m.__dict__
        for a, b in zip(m.state_dict().values(), ref.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="prefetch"):
        dnn_adapter.WrapConfig(mode="cached", prefetch=True)
    # a file saved with prefetch on loads streaming with it on, and cached without it
    with torch.no_grad():
        ld = dnn_adapter.load(tmp_path / "m.dnnz", cnn(), mode="streaming")
        assert "_dnn_adapter_prefetch" not in ld.__dict__  # m was wrapped without prefetch
        cfg = dnn_adapter.WrapConfig(prefetch=True, min_numel=100)
        dnn_adapter.save(dnn_adapter.wrap(cnn(), cfg), tmp_path / "p.dnnz")
        ld = dnn_adapter.load(tmp_path / "p.dnnz", cnn())
        assert "_dnn_adapter_prefetch" in ld.__dict__
        for _ in range(2):
            assert torch.equal(ld(x), ref(x))
        ld2 = dnn_adapter.load(tmp_path / "p.dnnz", cnn(), mode="cached")
        assert "_dnn_adapter_prefetch" not in ld2.__dict__
        assert torch.equal(ld2(x), ref(x))


def test_prefetch_buffers_are_reused():
    m = dnn_adapter.wrap(cnn(), dnn_adapter.WrapConfig(prefetch=True, min_numel=100))
    pf = m.__dict__["_dnn_adapter_prefetch"]
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        for _ in range(5):
            m(x)
    assert sum(len(v) for v in pf.free.values()) <= 4
    assert wrapping._WS.pools  # the synchronous path still uses the stack workspace


def test_load_restores_fused_mode(tmp_path):
    pytest.importorskip("dnn_adapter._kernels")
    torch.manual_seed(5)
    ref = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    with torch.no_grad():
        ref[0].weight[torch.rand(64, 64) < 0.9] = 0
    dnn_adapter.save(dnn_adapter.wrap(ref, dnn_adapter.WrapConfig(fused=True, min_numel=100)),
                     tmp_path / "f.dnnz")
    fresh = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    ld = dnn_adapter.load(tmp_path / "f.dnnz", fresh)
    assert ld._dnn_adapter_config.fused
    assert "forward" in ld[0].__dict__  # the fused instance forward is installed
    x = torch.randn(3, 64)
    with torch.no_grad():
        dnn_adapter.unwrap(ref)
        torch.testing.assert_close(ld(x), ref(x), rtol=1e-5, atol=1e-6)
    ld2 = dnn_adapter.load(tmp_path / "f.dnnz", fresh, mode="cached")
    assert not ld2._dnn_adapter_config.fused
