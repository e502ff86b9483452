"""Real peak-memory measurement: run a function in a fresh child process and read its RSS peak.

:func:`peak_rss_of` starts a ``spawn`` child (a clean interpreter: no memory inherited from
the caller), runs an optional *setup* there, takes the baseline, runs the target, and reports
the resident-set high-water mark reached during the target above that baseline.

How the peak is read (Linux): after setup the child resets the kernel's high-water mark
(``echo 5 > /proc/self/clear_refs``); the baseline is the current ``VmRSS`` and the peak the
``VmHWM`` after the target (``method="vmhwm"``). Where the reset is not allowed, the baseline
is ``getrusage(RUSAGE_SELF).ru_maxrss`` after setup and the peak the same after the target
(``method="maxrss"``; an increase is then only seen above the setup's own peak). RSS counts
every resident page the target touched -- torch's allocator, numpy, mmap'd file pages --
which is what a user's machine has to hold; pages reserved but never written are not counted.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import resource
import sys
import traceback
from dataclasses import dataclass
from typing import Any

__all__ = ["PeakRSS", "peak_rss_of", "rss_bytes"]


@dataclass
class PeakRSS:
    """Result of :func:`peak_rss_of` (bytes)."""

    baseline: int  #: RSS after imports and setup, before the target
    peak: int  #: RSS high-water mark while the target ran
    method: str  #: ``"vmhwm"`` (reset high-water mark) or ``"maxrss"`` (getrusage)
    value: Any = None  #: what the target returned (must pickle)

    @property
    def increase(self) -> int:
        """Peak above the baseline: the memory the target itself needed."""
        return max(0, self.peak - self.baseline)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process in bytes (Linux), else None."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def _resolve(fn):
    if isinstance(fn, str):
        mod, _, name = fn.partition(":")
        return getattr(importlib.import_module(mod), name)
    return fn


def _child(conn, setup, target, args, kwargs):
    try:
        setup_fn, target_fn = _resolve(setup), _resolve(target)
        state = setup_fn(*args, **kwargs) if setup_fn is not None else None
        import gc

        gc.collect()
        if _reset_hwm():
            method, base = "vmhwm", _status_kb("VmRSS") * 1024
        else:
            method, base = "maxrss", _maxrss_bytes()
        value = target_fn(state) if setup_fn is not None else target_fn(*args, **kwargs)
        peak = _status_kb("VmHWM") * 1024 if method == "vmhwm" else _maxrss_bytes()
        conn.send(("ok", PeakRSS(base, peak, method, value)))
    except BaseException:  # report any failure to the parent, never hang it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def peak_rss_of(target, *args, setup=None, timeout: float | None = 600, **kwargs) -> PeakRSS:
    """Run ``target`` in a fresh ``spawn`` child and return its peak RSS above the baseline.

    Parameters
    ----------
    target : a picklable module-level callable, or ``"package.module:function"``.
    *args, **kwargs : passed to *setup* when given (then ``target(setup_result)`` runs), else
        to *target*. They must pickle.
    setup : optional callable (or ``"module:function"``) run in the child before the baseline
        is taken: build skeletons, import heavy modules, make inputs.
    timeout : seconds before the child is killed (``TimeoutError``).

    Returns
    -------
    PeakRSS with ``baseline``, ``peak``, ``increase`` (bytes), ``method`` and the target's
    return ``value``. A failure in the child raises ``RuntimeError`` with its traceback.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, setup, target, args, kwargs), daemon=True)
    p.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"peak_rss_of: child did not finish in {timeout}s")
        status, payload = parent.recv()
    except EOFError:
        p.join(5)
        raise RuntimeError(f"peak_rss_of: child died (exit code {p.exitcode})") from None
    finally:
        if p.is_alive():
            p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
        parent.close()
    if status != "ok":
        raise RuntimeError(f"peak_rss_of: the child failed:\n{payload}")
    return payload


if __name__ == "__main__":  # pragma: no cover - manual check
    print(peak_rss_of("numpy:ones", 100_000_000, os.environ.get("DT", "uint8")))
