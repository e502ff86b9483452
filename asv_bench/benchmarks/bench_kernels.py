"""asv benchmarks for the fused kernels (dnn_adapter._kernels): a pruned Linear layer.

Weights: 2048x2048 float32, Gaussian (std 0.02), unstructured random pruning at 90/95%,
stored with the sparse tuple codec (element-wise RAS); batch 1 and 8; one thread.

``time_fused`` decodes the RAS streams and multiplies on every call (no dense weight),
``time_cached`` multiplies from the kept O(nnz) CSR form, ``time_dense`` and
``time_torch_csr`` are the references (``F.linear`` and ``torch.sparse`` CSR). The
``track_*_vs_*`` benchmarks time ours and a reference interleaved in one process and return
the median ratio (> 1: ours is faster), so machine noise cancels. Every benchmark skips
(``NotImplementedError`` in setup) when torch or the kernel extension is missing.
Methodology and the full table (4096x4096, conv via im2col, 0-97%): asv_bench/kernels_table.py.
"""

import statistics
import time

N = 2048


class FusedLinearSuite:
    params = ([0.9, 0.95], [1, 8])
    param_names = ["sparsity", "batch"]
    timeout = 300

    def setup(self, sparsity, batch):
        try:
            import torch
            import torch.nn.functional as F

            from dnn_adapter._kernels_api import FusedWeight
            from dnn_adapter.codecs import encode_best
        except ImportError as e:  # optional parts missing: skip, do not fail
            raise NotImplementedError(f"fused kernels unavailable ({e})") from None
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(0)
        w = torch.randn(N, N, generator=g) * 0.02
        w = torch.where(torch.rand(N, N, generator=g) < sparsity, 0.0, w)
        self.w, self.F = w, F
        self.x = torch.randn(batch, N, generator=g)
        self.xt = self.x.t().contiguous().numpy()
        from dnn_adapter.wrapping import _fusable

        fusable = _fusable(("sparse",))[0]  # what wrap(fused=True) stores
        self.fw = FusedWeight(encode_best(w, form="element", candidates=[fusable]))
        self.csr = self.fw.to_csr()
        import warnings

        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.wcsr = w.to_sparse_csr()

    def _fused(self):
        self.fw.matmul_t(self.xt)

    def _cached(self):
        self.csr.matmul_t(self.xt)

    def _dense(self):
        self.F.linear(self.x, self.w)

    def _torch_csr(self):
        self.wcsr @ self.x.t()

    def time_fused(self, sparsity, batch):
        self._fused()

    def time_cached(self, sparsity, batch):
        self._cached()

    def time_dense(self, sparsity, batch):
        self._dense()

    def time_torch_csr(self, sparsity, batch):
        self._torch_csr()

    @staticmethod
    def _ratio(ours, ref, reps=7):
        ours(), ref()
        r = []
        for _ in range(reps):
            t0 = time.perf_counter()
            ref()
            t1 = time.perf_counter()
            ours()
            t2 = time.perf_counter()
            r.append((t1 - t0) / (t2 - t1))
        return statistics.median(r)

    def track_fused_vs_dense(self, sparsity, batch):
        return self._ratio(self._fused, self._dense)

    def track_cached_vs_dense(self, sparsity, batch):
        return self._ratio(self._cached, self._dense)

    def track_cached_vs_torch_csr(self, sparsity, batch):
        return self._ratio(self._cached, self._torch_csr)

    def track_fused_vs_torch_csr(self, sparsity, batch):
        return self._ratio(self._fused, self._torch_csr)

    track_fused_vs_dense.unit = "x dense"
    track_cached_vs_dense.unit = "x dense"
    track_cached_vs_torch_csr.unit = "x torch csr"
    track_fused_vs_torch_csr.unit = "x torch csr"


class FusedConvSuite:
    """The direct sparse convolution (no ``unfold``): Conv2d 128->128, 3x3, padding 1 on
    14x14 maps, pruned 95%, batch 1 and 8, from the streams (fused) and from the cached CSR
    form, against ``F.conv2d`` (dense) and torch CSR on the unfolded input."""

    params = ([1, 8],)
    param_names = ["batch"]
    timeout = 300

    def setup(self, batch):
        try:
            import torch
            import torch.nn.functional as F

            from dnn_adapter._kernels_api import FusedWeight
            from dnn_adapter.codecs import encode_best
            from dnn_adapter.wrapping import _fusable
        except ImportError as e:  # optional parts missing: skip, do not fail
            raise NotImplementedError(f"fused kernels unavailable ({e})") from None
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(0)
        w = torch.randn(128, 128, 3, 3, generator=g) * 0.02
        w = torch.where(torch.rand(w.shape, generator=g) < 0.95, 0.0, w)
        self.w, self.F = w, F
        self.x = torch.randn(batch, 128, 14, 14, generator=g)
        self.xn = self.x.numpy()
        self.fw = FusedWeight(encode_best(w, form="element", candidates=_fusable(("sparse",))))
        self.csr = self.fw.to_csr()
        import warnings

        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.wcsr = w.reshape(128, -1).to_sparse_csr()

    def _fused(self):
        self.fw.conv2d(self.xn, (3, 3), (1, 1))

    def _cached(self):  # the same direct conv from the cached CSR form
        self.csr.conv2d(self.xn, (3, 3), (1, 1))

    def _dense(self):
        self.F.conv2d(self.x, self.w, padding=1)

    def _torch_csr(self):
        c = self.F.unfold(self.x, 3, padding=1)
        self.wcsr @ c.permute(1, 0, 2).reshape(c.shape[1], -1)

    def time_fused(self, batch):
        self._fused()

    def time_dense(self, batch):
        self._dense()

    def track_fused_vs_dense(self, batch):
        return FusedLinearSuite._ratio(self._fused, self._dense)

    def track_fused_vs_torch_csr(self, batch):
        return FusedLinearSuite._ratio(self._fused, self._torch_csr)

    def track_cached_vs_dense(self, batch):
        return FusedLinearSuite._ratio(self._cached, self._dense)

    track_fused_vs_dense.unit = "x dense"
    track_fused_vs_torch_csr.unit = "x torch csr"
    track_cached_vs_dense.unit = "x dense"
