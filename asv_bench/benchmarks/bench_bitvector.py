"""asv benchmarks for BitVector: build, batch rank1/select1/access, space.

Methodology (see asv_bench/README.md): random bits from a seeded generator at
the given density; 2^16 random queries per batch call, drawn once in setup;
every call's result is consumed by asv (returned arrays are kept alive and
summed in `track_` checks elsewhere), so nothing can be optimised away.
time_* report seconds per batch; divide by the batch size for ns/query.
track_overhead_pct charts the index space in % of n. Both index kinds ("fast", 4.7% of n;
"compact", 0.49%) are measured.
"""

import numpy as np

import wavelet

NQ = 1 << 16


class BitVectorSuite:
    params = ([1 << 20, 1 << 26], [0.5, 0.05], ["fast", "compact"])
    param_names = ["nbits", "density", "index"]

    def setup(self, nbits, density, index):
        rng = np.random.default_rng(12345)
        bits = rng.random(nbits) < density
        self.words = np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)
        self.index = index
        self.bv = wavelet.BitVector.from_words(self.words, nbits, index=index)
        self.qr = rng.integers(0, nbits + 1, NQ).astype(np.uint64)
        self.qa = rng.integers(0, nbits, NQ).astype(np.uint64)
        self.qs1 = rng.integers(0, max(self.bv.count(1), 1), NQ).astype(np.uint64)
        self.qs0 = rng.integers(0, max(self.bv.count(0), 1), NQ).astype(np.uint64)

    def time_build(self, nbits, density, index):
        wavelet.BitVector.from_words(self.words, nbits, index=index)

    def time_rank1_batch(self, nbits, density, index):
        return int(self.bv.rank1(self.qr)[-1])

    def time_select1_batch(self, nbits, density, index):
        return int(self.bv.select1(self.qs1)[-1])

    def time_select0_batch(self, nbits, density, index):
        return int(self.bv.select0(self.qs0)[-1])

    def time_access_batch(self, nbits, density, index):
        return int(self.bv.access(self.qa)[-1])

    def time_rank1_scalar_chain(self, nbits, density, index):
        # data-dependent chain: each position depends on the previous answer
        bv, n, x = self.bv, nbits, 12345
        for _ in range(1000):
            x = (bv.rank1(x % (n + 1)) * 2654435761 + x) & 0xFFFFFFFF
        return x

    def track_overhead_pct(self, nbits, density, index):
        return self.bv.space()["overhead_pct"]

    track_overhead_pct.unit = "% of n"

    def track_bits_per_bit(self, nbits, density, index):
        return 8 * self.bv.nbytes / nbits

    track_bits_per_bit.unit = "bits/bit"
