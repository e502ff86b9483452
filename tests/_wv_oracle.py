"""Naive numpy oracles for wavelet matrix/tree queries (tests only)."""

import contextlib

import numpy as np

import wavelet


def isa_levels():
    return list(range(wavelet.build_info()["isa_max"] + 1))


@contextlib.contextmanager
def isa(level):
    old = wavelet.set_isa_level(level)
    try:
        yield
    finally:
        wavelet.set_isa_level(old)


def rank(seq, c, i):
    return int(np.count_nonzero(seq[:i] == c))


def select(seq, c, k):
    pos = np.flatnonzero(seq == c)
    return int(pos[k]) if k < pos.size else None


def quantile(seq, l, r, k):
    return int(np.sort(seq[l:r])[k])


def count_less(seq, l, r, x):
    return int(np.count_nonzero(seq[l:r].astype(object) < x))


def range_freq(seq, l, r, lo, hi):
    s = seq[l:r].astype(object)
    return int(sum(1 for v in s if lo <= v < hi))


def range_list(seq, l, r, lo, hi):
    vals, cnts = np.unique(seq[l:r], return_counts=True)
    keep = [(int(v), int(c)) for v, c in zip(vals, cnts) if lo <= int(v) < hi]
    return keep


def prev_value(seq, l, r, x):
    s = [int(v) for v in seq[l:r] if int(v) < x]
    return max(s) if s else None


def next_value(seq, l, r, x):
    s = [int(v) for v in seq[l:r] if int(v) >= x]
    return min(s) if s else None
