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
    made = []
    real_empty = torch.empty

    def counting_empty(*a, **k):
        made.append(a)
        return real_empty(*a, **k)

    with torch.no_grad():
        for _ in range(3):
            m(x)
        wrapping.torch.empty = counting_empty
        try:
            for _ in range(3):
                m(x)
        finally:
            wrapping.torch.empty = real_empty
    # steady state: decodes reuse pooled buffers (a new one only when timing puts more
    # layers in flight than before): 3 forwards decode the 4 weights 12 times
    assert len(made) <= 4
    kept = sum(n * b.element_size() for v in pf.free.values() for n, b in v)
    assert kept == pf.free_bytes <= pf.ahead + pf.largest + (1 << 20)
    pf._cut(0)  # drop the jobs queued for the next forward: their buffers come back
    assert pf.out_bytes == 0  # every buffer handed out came back


def test_prefetching_model_keeps_one_set_of_buffers():
    """Its first forward (no prefetch yet) decodes into the prefetcher's pool, not the
    shared stack workspace, so the largest layer's buffer is not held twice; a large
    layer's pooled buffer is not spent on a small one."""
    m = dnn_adapter.wrap(deep(), dnn_adapter.WrapConfig(prefetch=True, min_numel=100))
    pf = m.__dict__["_dnn_adapter_prefetch"]
    wrapping.clear_workspace()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 48))
    assert not any(p["buf"] is not None for p in wrapping._WS.pools.values())
    assert pf.free_bytes + pf.out_bytes <= pf.ahead + pf.largest + (1 << 20)
    big = pf.acquire(torch.float32, 50_000)
    pf.release(big)
    small = pf.acquire(torch.float32, 100)
    assert small is not big and small.numel() == 100
    pf.release(small)


def deep():
    torch.manual_seed(2)
    layers = []
    for i in range(8):
        layers += [nn.Linear(48 + 8 * i, 56 + 8 * i), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(112, 10)).eval()


def _watch_queue(pf):
    """Record the queue after every top-up: (number of jobs, decoded bytes waiting)."""
    seen = []
    ran = pf.ran

    def spy(scope):
        ran(scope)
        assert pf.pending == sum(j.nbytes for j in pf.jobs) >= 0
        assert {id(j.scope) for j in pf.jobs} == pf.queued
        seen.append((len(pf.jobs), pf.pending))

    pf.ran = spy
    return seen


@pytest.mark.parametrize("budget", [True, 1, 30_000, 1 << 30])
def test_prefetch_queue_stays_within_its_byte_budget(budget):
    ref = deep()
    m = dnn_adapter.wrap(deep(), dnn_adapter.WrapConfig(prefetch=budget, min_numel=100))
    pf = m.__dict__["_dnn_adapter_prefetch"]
    sizes = [lin.weight.numel() * 4 for lin in ref if isinstance(lin, nn.Linear)]
    assert pf.largest == max(sizes)
    assert pf.ahead == (max(sizes) if budget is True else budget)
    seen = _watch_queue(pf)
    x = torch.randn(5, 48)
    with torch.inference_mode():
        for _ in range(4):
            assert torch.equal(m(x), ref(x))
    assert seen[: len(sizes)] == [(0, 0)] * len(sizes)  # the first forward learns the order
    later = seen[len(sizes):]
    for jobs, pending in later:  # over budget only with one job (always one may run ahead)
        assert pending <= pf.ahead or jobs == 1
    deepest = max(j for j, _p in later)
    if budget is not True and budget == 1:
        assert deepest == 1  # one layer ahead
    elif budget == 1 << 30:
        assert deepest == len(sizes) - 1  # the whole model ahead
    else:
        assert 1 < deepest < len(sizes)


def test_prefetch_budget_validated_and_saved(tmp_path):
    for bad in (0, -5, 1.5, "big", None):
        with pytest.raises(ValueError, match="prefetch"):
            dnn_adapter.WrapConfig(prefetch=bad)
        with pytest.raises(ValueError, match="prefetch"):
            dnn_adapter.set_prefetch(nn.Linear(2, 2), bad)
    import numpy as np

    cfg = dnn_adapter.WrapConfig(prefetch=np.int64(12345), min_numel=100)
    assert cfg.prefetch == 12345 and type(cfg.prefetch) is int
    dnn_adapter.save(dnn_adapter.wrap(deep(), cfg), tmp_path / "d.dnnz")
    ld = dnn_adapter.load(tmp_path / "d.dnnz", deep())
    assert ld.__dict__["_dnn_adapter_prefetch"].ahead == 12345
    x = torch.randn(2, 48)
    with torch.no_grad():
        for _ in range(2):
            assert torch.equal(ld(x), deep()(x))


def test_prefetch_recovers_when_the_order_changes_with_a_deep_queue():
    ref = mlp_with_branch()
    m = dnn_adapter.wrap(mlp_with_branch(), dnn_adapter.WrapConfig(prefetch=1 << 30,
                                                                  min_numel=100))
    pf = m.__dict__["_dnn_adapter_prefetch"]
    x = torch.randn(3, 32)
    with torch.no_grad():
        for route in [0, 0, 1, 1, 0, 1, 0, 0, 1]:
            assert torch.equal(_ibits(m(x, route)), _ibits(ref(x, route)))
            assert pf.pending == sum(j.nbytes for j in pf.jobs)
    dnn_adapter.unwrap(m)
    assert pf.pool is None and not pf.jobs and pf.pending == 0


def test_prefetch_thread_ends_with_its_model_and_at_exit():
    import gc
    import subprocess
    import sys

    m = dnn_adapter.wrap(deep(), dnn_adapter.WrapConfig(prefetch=True, min_numel=100))
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 48))
    th = m.__dict__["_dnn_adapter_prefetch"].pool
    assert th.is_alive() and th.name.startswith("dnn-prefetch")
    del m  # dropped without unwrap: its worker thread ends once the model is collected
    for _ in range(600):  # (a batch still decoding holds the model until it ends)
        gc.collect()
        th.join(timeout=0.05)
        if not th.is_alive():
            break
    assert not th.is_alive()
    # a process that exits with a prefetching model still alive (and decoding) exits cleanly
    code = (
        "import torch, dnn_adapter\n"
        "from torch import nn\n"
        "m = nn.Sequential(*[nn.Linear(256, 256) for _ in range(12)]).eval()\n"
        "dnn_adapter.wrap(m, dnn_adapter.WrapConfig(prefetch=1 << 30))\n"
        "with torch.no_grad():\n"
        "    for _ in range(3):\n"
        "        m(torch.randn(1, 256))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "terminate" not in r.stderr


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


_FORK_CHILD = """
import os, torch, dnn_adapter
from torch import nn
torch.set_num_threads(1)  # no OpenMP team: a forked child would hang in it (not ours)
def net():
    torch.manual_seed(2)
    return nn.Sequential(*[nn.Linear(64, 64) for _ in range(8)]).eval()
ref = net()
m = dnn_adapter.wrap(net(), dnn_adapter.WrapConfig(prefetch=1 << 30, min_numel=100))
x = torch.randn(4, 64)
with torch.no_grad():
    want = ref(x)
    for _ in range(2):
        m(x)  # the queue now holds jobs (the next forward's layers)
    pid = os.fork()
    if pid == 0:  # exit code 0 only if every forward is exact
        ok = all(torch.equal(m(x), want) for _ in range(3))
        pf = m.__dict__["_dnn_adapter_prefetch"]
        pf._cut(0)  # every buffer back: none counted for the parent's jobs
        ok &= pf.out_bytes == 0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "child failed"
    assert torch.equal(m(x), want)  # the parent goes on as before
print("ok")
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_prefetch_in_a_forked_child():
    """A child forked while the worker thread has jobs (DataLoader workers do this) does not
    wait for a thread it does not have: it starts its own."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _FORK_CHILD], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
