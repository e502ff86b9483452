"""``python -m wavelet demo``: the library on real text (the Python stdlib sources).

Builds a BitVector that marks line starts in the concatenated standard-library
``.py`` files, then answers "which line holds byte offset x" (rank) and "where
does line k start" (select) in batch, checked against numpy, and shows the
wavelet structures when they are available.
"""

from __future__ import annotations

import sysconfig
import time
from pathlib import Path

import numpy as np


def stdlib_text(max_bytes: int = 32 << 20) -> bytes:
    """The CPython standard library's .py sources, concatenated (about 32 MB)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts:
            continue
        try:
            b = p.read_bytes()
        except OSError:
            continue
        out.append(b)
        total += len(b)
        if total >= max_bytes:
            break
    return b"".join(out)[:max_bytes]


def demo() -> None:
    import wavelet

    t0 = time.perf_counter()
    text = stdlib_text()
    data = np.frombuffer(text, dtype=np.uint8)
    print(
        f"text: {len(text) / 1e6:.1f} MB of CPython stdlib sources "
        f"(read in {time.perf_counter() - t0:.2f} s)"
    )

    # line starts: position 0 and every position after a newline
    starts = np.zeros(data.size, dtype=bool)
    starts[0] = data.size > 0
    starts[1:] = data[:-1] == ord("\n")
    t0 = time.perf_counter()
    bv = wavelet.BitVector(starts)
    t_build = time.perf_counter() - t0
    sp = bv.space()
    print(
        f"BitVector of line starts: {len(bv):,} bits, {bv.count():,} lines, built in "
        f"{t_build * 1e3:.0f} ms, rank/select overhead {sp['overhead_pct']:.2f}% of n"
    )

    rng = np.random.default_rng(0)
    offs = rng.integers(0, data.size, 1_000_000)
    t0 = time.perf_counter()
    line_of = bv.rank1(offs + 1) - 1  # line holding each byte offset
    t_rank = time.perf_counter() - t0
    lines = rng.integers(0, bv.count(), 1_000_000)
    t0 = time.perf_counter()
    line_start = bv.select1(lines)
    t_sel = time.perf_counter() - t0
    ref_starts = np.flatnonzero(starts)
    assert np.array_equal(line_of, np.searchsorted(ref_starts, offs, side="right") - 1)
    assert np.array_equal(line_start, ref_starts[lines])
    print(
        f"1M 'line of byte offset' queries (rank1): {t_rank * 1e3:.0f} ms "
        f"({t_rank * 1e3:.0f} ns/query), checked against numpy"
    )
    print(
        f"1M 'start of line k' queries (select1): {t_sel * 1e3:.0f} ms "
        f"({t_sel * 1e3:.0f} ns/query), checked against numpy"
    )
    k = int(rng.integers(0, bv.count()))
    s = int(bv.select1(k))
    e = int(bv.select1(k + 1)) if k + 1 < bv.count() else data.size
    print(f"line {k:,}: {text[s:e].decode('utf-8', 'replace').rstrip()!r}")

    if hasattr(wavelet, "WaveletMatrix"):
        t0 = time.perf_counter()
        wm = wavelet.WaveletMatrix(data)
        t_wm = time.perf_counter() - t0
        n_def = int(wm.rank(ord("d"), data.size)) if data.size else 0
        print(
            f"WaveletMatrix over the bytes: built in {t_wm:.2f} s; "
            f"{n_def:,} occurrences of 'd' (rank)"
        )
    if hasattr(wavelet, "WaveletTree"):
        t0 = time.perf_counter()
        wt = wavelet.WaveletTree(data, shape="huffman")
        t_wt = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = wt.extract(0, data.size)
        t_ex = time.perf_counter() - t0
        assert np.array_equal(back, data)
        print(
            f"Huffman WaveletTree: built in {t_wt:.2f} s, {8 * wt.nbytes / max(data.size, 1):.2f} "
            f"bits/byte, whole-text extract {data.size / t_ex / 1e6:.0f} MB/s (bit-exact)"
        )
