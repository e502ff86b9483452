"""TEST-ONLY stand-in for ``wavelet.WaveletTree`` (numpy, same contract), used by the dnn
tests only while the C wavelet tree has not landed. Never shipped, never used when
``wavelet.WaveletTree`` exists. Sizes are a Huffman estimate, not a real structure.
"""

import heapq

import numpy as np


def _huffman_bits(counts):
    if len(counts) <= 1:
        return int(sum(counts))
    h = list(counts)
    heapq.heapify(h)
    total = 0
    while len(h) > 1:
        a, b = heapq.heappop(h), heapq.heappop(h)
        total += a + b
        heapq.heappush(h, a + b)
    return total


class StandInWaveletTree:
    def __init__(self, seq, shape="huffman"):
        self._seq = np.array(seq, copy=True).reshape(-1)
        self._shape = shape

    def __len__(self):
        return self._seq.size

    @property
    def nbytes(self):
        _, cnt = np.unique(self._seq, return_counts=True)
        return int(_huffman_bits(cnt.tolist()) * 1.04 / 8) + 16 * cnt.size + 64

    def access(self, i):
        if np.ndim(i) == 0:
            return int(self._seq[int(i)])
        return self._seq[np.asarray(i, dtype=np.int64)]

    def extract(self, l=0, r=None, out=None):
        r = self._seq.size if r is None else r
        if out is not None:
            out[...] = self._seq[l:r]
            return out
        return self._seq[l:r].copy()

    def rank(self, c, i):
        return int(np.count_nonzero(self._seq[: int(i)] == c))

    def select(self, c, k):
        pos = np.flatnonzero(self._seq == c)
        if np.ndim(k) == 0:
            if not 0 <= int(k) < pos.size:
                raise IndexError("select: out of range")
            return int(pos[int(k)])
        return pos[np.asarray(k, dtype=np.int64)].astype(np.uint64)

    def _to_parts(self):
        return [self._seq.size], [("SEQ_", self._seq)]

    @classmethod
    def _from_parts(cls, meta, parts):
        if set(parts) != {"SEQ_"} or parts["SEQ_"].size != meta[0]:
            raise ValueError("stand-in: bad parts")
        self = cls.__new__(cls)
        self._seq = parts["SEQ_"]
        return self


def install():
    """Make ``wavelet.WaveletTree`` available (stand-in) if the real one is missing."""
    import wavelet

    if not hasattr(wavelet, "WaveletTree"):
        wavelet.WaveletTree = StandInWaveletTree
        return True
    return False
