"""asv benchmarks for WaveletMatrix and WaveletTree: build, batch queries, bulk extract, space.

Data: a Zipf-like byte sequence from a seeded generator (fast to make; the table script
asv_bench/wavelet_table.py runs the real stdlib text). time_* are seconds per call
(batch of 2^14 queries); track_bits_per_symbol charts the space.
"""

import numpy as np

import wavelet

NQ = 1 << 14


def _zipf_bytes(n, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.zipf(1.3, n) % 256).astype(np.uint8)


class WaveletSuite:
    params = (["matrix", "balanced", "huffman"], [1 << 16, 1 << 22])
    param_names = ["structure", "n"]

    def setup(self, structure, n):
        self.seq = _zipf_bytes(n)
        self.make = (
            (lambda s: wavelet.WaveletMatrix(s))
            if structure == "matrix"
            else (lambda s: wavelet.WaveletTree(s, shape=structure))
        )
        self.s = self.make(self.seq)
        rng = np.random.default_rng(4)
        self.pos = rng.integers(0, n, NQ).astype(np.uint64)
        self.ipos = rng.integers(0, n + 1, NQ).astype(np.uint64)
        self.syms = self.seq[rng.integers(0, n, NQ)].astype(np.uint64)
        tot = self.s.rank(self.syms, np.full(NQ, n, dtype=np.uint64))
        self.kk = (rng.random(NQ) * tot).astype(np.uint64)
        self.out = np.empty(n, dtype=np.uint8)

    def time_build(self, structure, n):
        self.make(self.seq)

    def time_access_batch(self, structure, n):
        return int(self.s.access(self.pos)[-1])

    def time_rank_batch(self, structure, n):
        return int(self.s.rank(self.syms, self.ipos)[-1])

    def time_select_batch(self, structure, n):
        return int(self.s.select(self.syms, self.kk)[-1])

    def time_extract_all(self, structure, n):
        self.s.extract(0, n, out=self.out)
        return int(self.out[-1])

    def track_bits_per_symbol(self, structure, n):
        return 8 * self.s.nbytes / n

    track_bits_per_symbol.unit = "bits/symbol"
