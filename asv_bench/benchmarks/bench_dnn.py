"""asv benchmarks for dnn_adapter codecs: decode speed (GB/s of weights), ratios, vs zipnn.

Tensors are seeded Gaussian weights (std 0.02, the scale of trained layers), a 90%
magnitude-pruned copy and a 16-level quantized copy. time_* are seconds per call
(1 thread). track_decode_speed_vs_zipnn times our decode and zipnn's decompression of
the same tensor interleaved in one process and returns the median ratio (>1: we are
faster); it is skipped when zipnn is not installed. StreamingSuite tracks a small CNN's
forward in streaming mode, with and without prefetch, as dense time / ours (interleaved
medians, torch on 1 thread; prefetch's decode thread uses a second core).
"""

import statistics
import time

try:
    import torch
except ImportError:  # asv imports every file; torch is optional for the package
    torch = None

N = 1 << 20


def _tensor(kind, dtype):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(N // 1024, 1024, generator=g) * 0.02
    if kind == "pruned90":
        thr = w.abs().flatten().kthvalue(int(0.9 * w.numel())).values
        w = torch.where(w.abs() > thr, w, torch.zeros(()))
    elif kind == "quant16":
        lo, hi = float(w.min()), float(w.max())
        w = (torch.round((w - lo) / (hi - lo) * 15) / 15 * (hi - lo) + lo).float()
    return w.to(dtype)


class DecodeSuite:
    params = (["dense", "pruned90", "quant16"], ["float32", "bfloat16"])
    param_names = ["weights", "dtype"]

    def setup(self, weights, dtype):
        if torch is None:
            raise NotImplementedError("torch not installed")
        from dnn_adapter import codecs as C

        torch.set_num_threads(1)
        self.C = C
        self.w = _tensor(weights, getattr(torch, dtype))
        self.enc = C.encode_best(self.w, block_len=1024)
        self.out = torch.empty_like(self.w)

    def time_decode(self, weights, dtype):
        self.C.decode(self.enc, out=self.out)

    def time_encode(self, weights, dtype):
        self.C.encode_best(self.w, block_len=1024)

    def track_compression_ratio(self, weights, dtype):
        return self.w.numel() * self.w.element_size() / self.enc.nbytes

    track_compression_ratio.unit = "x"

    def track_decode_gbps(self, weights, dtype):
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            self.C.decode(self.enc, out=self.out)
            ts.append(time.perf_counter() - t0)
        return self.w.numel() * self.w.element_size() / statistics.median(ts) / 1e9

    track_decode_gbps.unit = "GB/s"

class ZipnnCompareSuite:
    """Decode speed against zipnn's decompression of the same tensor, interleaved in one
    process, median ratio (>1: we are faster). Skipped when zipnn is not installed."""

    params = DecodeSuite.params
    param_names = DecodeSuite.param_names

    def setup(self, weights, dtype):
        if torch is None:
            raise NotImplementedError("torch not installed")
        try:
            from zipnn import ZipNN
        except ImportError:
            raise NotImplementedError("zipnn not installed") from None
        from dnn_adapter import codecs as C

        torch.set_num_threads(1)
        self.C = C
        self.w = _tensor(weights, getattr(torch, dtype))
        self.enc = C.encode_best(self.w, block_len=1024)
        self.out = torch.empty_like(self.w)
        self.z = ZipNN(input_format="torch", bytearray_dtype=dtype, threads=1)
        self.comp = self.z.compress(self.w)

    def track_decode_speed_vs_zipnn(self, weights, dtype):
        ratios = []
        for _ in range(5):
            t0 = time.perf_counter()
            self.C.decode(self.enc, out=self.out)
            t1 = time.perf_counter()
            self.z.decompress(self.comp)
            t2 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
        return statistics.median(ratios)

    track_decode_speed_vs_zipnn.unit = "x zipnn"


def _cnn():
    from torch import nn

    torch.manual_seed(3)
    layers, c = [], 3
    for co in (64, 128, 128, 256, 256, 512):
        layers += [nn.Conv2d(c, co, 3, padding=1, stride=2 if co != c else 1), nn.ReLU()]
        c = co
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c, 1000)).eval()


class StreamingSuite:
    """A 7-layer CNN (2.8M weights, 96x96 input, batch 1): dense eager against the
    wrapped model in streaming mode, and with prefetch; bit-exact outputs are checked in
    setup."""

    def setup(self):
        if torch is None:
            raise NotImplementedError("torch not installed")
        import copy

        import dnn_adapter

        torch.set_num_threads(1)
        self.dense = _cnn()
        self.x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(4))
        cfg = dnn_adapter.WrapConfig(verify=False)
        self.stream = dnn_adapter.wrap(copy.deepcopy(self.dense), cfg)
        self.pre = dnn_adapter.set_prefetch(dnn_adapter.wrap(copy.deepcopy(self.dense), cfg))
        with torch.inference_mode():
            ref = self.dense(self.x)
            for m in (self.stream, self.pre, self.pre):  # the second prefetches
                if not torch.equal(m(self.x), ref):
                    raise AssertionError("wrapped output differs from dense")

    def teardown(self):
        import dnn_adapter

        dnn_adapter.unwrap(self.pre)

    def _ratio(self, model):
        ratios = []
        with torch.inference_mode():
            for _ in range(7):
                t0 = time.perf_counter()
                self.dense(self.x)
                t1 = time.perf_counter()
                model(self.x)
                t2 = time.perf_counter()
                ratios.append((t1 - t0) / (t2 - t1))
        return statistics.median(ratios)

    def track_streaming_speedup(self):
        return self._ratio(self.stream)

    track_streaming_speedup.unit = "x dense"

    def track_prefetch_speedup(self):
        return self._ratio(self.pre)

    track_prefetch_speedup.unit = "x dense"

    def time_forward_streaming(self):
        with torch.inference_mode():
            self.stream(self.x)


def _check_roundtrip():  # used by the test suite's smoke check of this file
    from dnn_adapter import codecs as C

    w = _tensor("dense", torch.float32)
    out = torch.empty_like(w)
    C.decode(C.encode_best(w, block_len=1024), out=out)
    return bool(torch.equal(out.view(torch.int32), w.view(torch.int32)))
