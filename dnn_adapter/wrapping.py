"""``wrap(model)``: keep weights compressed on the modules and decode them only to run.

Mechanics (DFloat11-style pre-hook, bitsandbytes-style state-dict hook; module classes are
kept intact):

* each selected parameter is encoded (smallest exact codec, verified bit for bit), removed from
  ``module._parameters``, and its compressed parts become non-persistent ``uint8`` buffers on
  the module (so ``.to()`` and ``buffers()`` see them);
* **streaming** (default): a forward pre-hook on the decode *scope* decodes the weights into a
  reused per-dtype workspace and sets them as plain attributes; a forward hook with
  ``always_call=True`` puts back a ``meta`` placeholder (shape/dtype only) and releases the
  workspace. The scope is the owning module, or the outermost ``MultiheadAttention`` /
  ``Transformer*`` ancestor, because those read their children's weights directly (fused
  fast paths), without calling the children;
* **cached**: weights are decoded once at wrap time (disk savings only, no inference cost);
* ``model.state_dict()`` holds the dense, bit-exact weights under their usual keys (a
  state-dict post-hook decodes them); ``load_state_dict`` with dense weights re-encodes them;
* inference only: a forward in training mode with gradients enabled raises, and so does a
  backward that reaches a compressed weight.

Not thread-safe: one forward at a time per process (the workspace is shared).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import math
import os
import queue
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from ._bits import crc32, out_bits
from .codecs import CodecError, Encoded, check_exact, encode_best, get_codec

__all__ = [
    "WrapConfig",
    "wrap",
    "unwrap",
    "is_wrapped",
    "compressed_entries",
    "InferenceOnlyError",
    "set_prefetch",
]

_STATE_ATTR = "_dnn_adapter_state"
_FUSED_SCOPES = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)
_KNOWN = (
    nn.Linear,
    nn.modules.conv._ConvNd,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.Bilinear,
    nn.MultiheadAttention,
)


class InferenceOnlyError(RuntimeError):
    """Raised when a wrapped model is used for training."""


@dataclass(frozen=True)
class WrapConfig:
    """Options of :func:`wrap` (frozen; ``version`` tracks the option set).

    Parameters
    ----------
    mode : ``"streaming"`` (decode before each use, drop after) or ``"cached"`` (decode once).
    fpr_threshold : layers with FLOPs-per-parameter above it use the block-wise RAS,
        the others the element-wise RAS (FPr is measured when a sample input is given).
    min_numel : parameters with fewer elements stay dense.
    overrides : ``{layer name or module type name: "block" | "element" | "skip"}``.
    codecs : candidate codec ids (or configs); the smallest exact one wins.
    verify : decode every encoding and compare bits before accepting it.
    fused : opt-in (streaming mode only): Linear/Conv2d layers stored sparse, or element-wise
        float/dict, multiply straight from the compressed form with C kernels
        (:mod:`dnn_adapter.fused`). Outputs then match the dense model to float32 rounding,
        not bit for bit; the default (False) keeps ``torch.equal`` outputs.
    fused_cache : with *fused*, keep each sparse layer's decoded CSR form (O(nnz)) between
        calls instead of decoding the streams on every call.
    prefetch : streaming mode: while one layer runs, decode the layers that followed it in
        the previous forward on a background thread, hiding decode time behind compute when
        a second core is free. ``True`` queues up to the largest layer's decoded size ahead
        (memory: that much more than plain streaming); an int sets that budget in bytes.
        Switch it on/off on a wrapped or loaded model with :func:`set_prefetch`.
    """

    mode: str = "streaming"
    fpr_threshold: float = 8.0
    min_numel: int = 1024
    overrides: Any = field(default_factory=dict)
    codecs: tuple = ("narrow", "sparse", "dict", "float", "raw")
    verify: bool = True
    fused: bool = False
    fused_cache: bool = False
    prefetch: bool | int = False
    version: int = 2

    def __post_init__(self):
        if self.mode not in ("streaming", "cached"):
            raise ValueError(f"WrapConfig: mode must be 'streaming' or 'cached', not {self.mode!r}")
        if (self.fused or self.fused_cache) and self.mode != "streaming":
            raise ValueError("WrapConfig: fused kernels need mode='streaming'")
        if self.fused_cache and not self.fused:
            raise ValueError("WrapConfig: fused_cache needs fused=True")
        if _prefetch_budget(self.prefetch, "WrapConfig") not in (None, False):
            object.__setattr__(self, "prefetch", int(self.prefetch))  # JSON-ready
        if self.prefetch and self.mode != "streaming":
            raise ValueError("WrapConfig: prefetch needs mode='streaming'")
        for k, v in dict(self.overrides).items():
            if v not in ("block", "element", "skip"):
                raise ValueError(f"WrapConfig: override for {k!r} must be block/element/skip")
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        object.__setattr__(self, "codecs", tuple(self.codecs))

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "fpr_threshold": self.fpr_threshold,
            "min_numel": self.min_numel,
            "overrides": dict(self.overrides),
            "codecs": list(self.codecs),
            "verify": self.verify,
            "fused": self.fused,
            "fused_cache": self.fused_cache,
            "prefetch": self.prefetch,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, d: dict) -> WrapConfig:
        d = dict(d)
        if int(d.get("version", 1)) > 2:
            raise ValueError(f"WrapConfig: version {d['version']} is newer than this library")
        return cls(**d)


# ---- plan -------------------------------------------------------------------------------------
@dataclass
class _Target:
    owner_name: str
    owner: nn.Module
    pname: str
    form: str
    macs: int
    fpr: float | None


def _plan(model, config: WrapConfig, filter_fn, macs: dict) -> list[_Target]:
    out = []
    ov = config.overrides
    for name, mod in model.named_modules():
        if filter_fn is not None and filter_fn(mod, name) is False:
            continue
        params = list(mod.named_parameters(recurse=False))
        if not params:
            continue
        nparams = sum(p.numel() for _, p in params)
        m = macs.get(name) if macs else None
        fpr = (m / nparams) if m is not None else None
        from .reporting import form_for

        for pname, p in params:
            full = f"{name}.{pname}" if name else pname
            if ov.get(full) == "skip" or ov.get(name) == "skip":
                continue
            if not (p.dtype.is_floating_point or p.dtype in (torch.int8, torch.uint8)):
                continue
            if p.numel() < config.min_numel:
                continue
            if not isinstance(mod, _KNOWN) and p.dim() < 2 and full not in ov:
                continue  # norms, scales: tiny and hot; keep dense unless asked
            form = ov.get(full) or form_for(mod, name, fpr, config.fpr_threshold, ov, None)
            out.append(_Target(name, mod, pname, form, m or 0, fpr))
    return out


# ---- workspace ----------------------------------------------------------------------------------
class _Workspace(threading.local):
    """Bump allocator per dtype: decoded weights live here during one forward."""

    def __init__(self):
        self.pools: dict = {}

    def acquire(self, dtype, numel: int) -> tuple[torch.Tensor, bool]:
        pool = self.pools.setdefault(dtype, {"buf": None, "top": 0, "high": 0})
        need = pool["top"] + numel
        pool["high"] = max(pool["high"], need)
        buf = pool["buf"]
        if buf is None or buf.numel() < need:
            if pool["top"] == 0:
                buf = pool["buf"] = torch.empty(pool["high"], dtype=dtype)
            else:
                return torch.empty(numel, dtype=dtype), False
        t = buf[pool["top"] : need]
        pool["top"] = need
        return t, True

    def release(self, dtype, numel: int, pooled: bool) -> None:
        if pooled:
            self.pools[dtype]["top"] -= numel

    def clear(self) -> None:
        self.pools.clear()


_WS = _Workspace()


def clear_workspace() -> None:
    """Free the decode workspace (it is re-grown on the next forward)."""
    _WS.clear()


class _Job:
    """One scope's background decode: a lighter stand-in for a ``Future`` (a queued job can
    be cancelled; waiting is one lock acquire), because a forward queues one per layer."""

    __slots__ = ("scope", "nbytes", "state", "result", "error", "done")
    QUEUED, RUNNING, DONE, CANCELLED = range(4)

    def __init__(self, scope, nbytes: int):
        self.scope, self.nbytes = scope, nbytes
        self.state = _Job.QUEUED
        self.result = self.error = None
        self.done = threading.Lock()
        self.done.acquire()  # released by the worker when the job has finished

    def wait(self) -> dict:
        self.done.acquire()
        self.done.release()
        if self.error is not None:
            raise self.error
        return self.result


class _Prefetcher:
    """Decodes the scopes expected next on one background thread (C decode releases the GIL).

    The prediction is the order the scopes ran in the previous forward (each scope's
    successor), so the first forward runs without prefetch. While a scope runs, the queue is
    topped up along that order with the scopes that follow, as long as the decoded bytes
    waiting in it stay within *ahead* bytes (at least one scope is always queued): a deep
    queue lets a large layer decode during several earlier, compute-heavy ones. A scope that
    runs out of order is decoded in place, and the queue is cut back to the new order (jobs
    not started are cancelled, finished ones released), so weights are never mixed up.
    Decoded weights live in buffers of this object's own pool (not the stack workspace).
    """

    LOW = 0.5  # top the queue up once it is at most this full (fraction of the budget)

    def __init__(self, ahead: int | None = None):
        self.succ: dict[int, _Scope] = {}
        self.last: _Scope | None = None
        self.jobs: collections.deque = collections.deque()  # queued _Job, in order
        self.inbox = queue.SimpleQueue()  # the same jobs, for the worker thread
        self.queued: set[int] = set()  # ids of the queued scopes
        self.pending = 0  # decoded bytes of the queued jobs
        self.ahead_bytes = ahead  # None: the largest scope's decoded bytes (_auto)
        self.scopes: dict | None = None  # the model's scopes, for the default budget
        self._auto: int | None = None
        self._nbytes: dict[int, int] = {}
        self.pool = None  # the worker thread
        self.lock = threading.Lock()
        self.free: dict = {}  # dtype -> [(numel, flat tensor)]
        self.free_bytes = 0
        self.out_bytes = 0  # bytes of the buffers handed out and not yet released

    # sizes --------------------------------------------------------------------------------
    def reset_sizes(self) -> None:
        """Forget cached scope sizes (the scopes were rebuilt)."""
        self._nbytes.clear()
        self._auto = None

    def scope_bytes(self, scope) -> int:
        nb = self._nbytes.get(id(scope))
        if nb is None:
            nb = 0
            for owner, _fqn in scope.owners:
                st = _state(owner)
                if st is not None and st.mode == "streaming":
                    nb += sum(e.dense_nbytes for e in st.entries.values() if e.fused is None)
            self._nbytes[id(scope)] = nb
        return nb

    @property
    def largest(self) -> int:
        """The decoded bytes of the model's largest scope."""
        if self._auto is None:
            self._auto = max((self.scope_bytes(s) for s in (self.scopes or {}).values()),
                             default=0)
        return self._auto

    @property
    def ahead(self) -> int:
        return self.largest if self.ahead_bytes is None else self.ahead_bytes

    # buffers ------------------------------------------------------------------------------
    def acquire(self, dtype, numel: int) -> torch.Tensor:
        """A flat buffer of at least *numel* elements: the smallest pooled one that fits
        without wasting more than half of it (a large layer's buffer is not spent on a
        small one), else a new one."""
        with self.lock:
            bufs = self.free.get(dtype)
            best = None
            if bufs:
                for i, (n, _b) in enumerate(bufs):
                    if numel <= n <= 2 * numel + 1024 and (best is None or n < bufs[best][0]):
                        best = i
            if best is not None:
                n, buf = bufs.pop(best)
                size = n * buf.element_size()
                self.free_bytes -= size
                self.out_bytes += size
                return buf
            self.out_bytes += numel * dtype.itemsize
        return torch.empty(numel, dtype=dtype)

    def release(self, buf: torch.Tensor) -> None:
        n = buf.numel()
        size = n * buf.element_size()
        with self.lock:
            self.out_bytes = max(0, self.out_bytes - size)
            self.free.setdefault(buf.dtype, []).append((n, buf))
            self.free_bytes += size
            # pooled and handed-out buffers together stay within what a full queue plus the
            # running scope use: drop the smallest free ones first (the large ones are the
            # costly ones to re-create)
            keep = self.ahead + self.largest + (1 << 20)
            while self.free_bytes and self.free_bytes + self.out_bytes > keep:
                dt, i = min(((d, j) for d, bs in self.free.items() for j in range(len(bs))),
                            key=lambda p: self.free[p[0]][p[1]][0])
                n, b = self.free[dt].pop(i)
                self.free_bytes -= n * b.element_size()

    # jobs ---------------------------------------------------------------------------------
    def _decode(self, scope) -> dict:
        out = {}
        try:
            for owner, _fqn in scope.owners:
                st = _state(owner)
                if st is None or st.mode != "streaming":
                    continue
                for e in st.entries.values():
                    if e.fused is not None:
                        continue
                    buf = self.acquire(e.dtype, e.numel)
                    out[id(e)] = (buf, e.decode_into(buf[: e.numel].view(e.shape)))
        except BaseException:
            for buf, _w in out.values():
                self.release(buf)
            raise
        return out

    def take(self, scope) -> dict | None:
        """The decoded weights of *scope* if they were prefetched (waits for its job); the
        jobs queued before it were mispredicted and are dropped."""
        if id(scope) not in self.queued:
            return None
        while True:
            job = self.jobs.popleft()
            self.queued.discard(id(job.scope))
            self.pending -= job.nbytes
            if job.scope is scope:
                return job.wait()
            self._drain(job)

    def _drain(self, job) -> None:
        with self.lock:
            if job.state == _Job.QUEUED:  # not started: nothing was decoded
                job.state = _Job.CANCELLED
                return
        try:
            got = job.wait()
        except Exception:  # a failed guess: the layer will decode (and raise) when it runs
            return
        for buf, _w in got.values():
            self.release(buf)

    def _cut(self, keep: int) -> None:
        """Drop the queued jobs after the first *keep* (newest first: not yet started)."""
        while len(self.jobs) > keep:
            job = self.jobs.pop()
            self.queued.discard(id(job.scope))
            self.pending -= job.nbytes
            self._drain(job)

    def ran(self, scope) -> None:
        """Record that *scope* runs now and top the queue up with the scopes predicted to
        follow it, within the byte budget (amortized O(1): each scope is queued once per
        forward; the queue was built along the same order, so only its head is checked)."""
        if self.last is not None and self.last is not scope:
            self.succ[id(self.last)] = scope
        self.last = scope
        succ = self.succ
        nxt = succ.get(id(scope))
        if self.jobs and self.jobs[0].scope is not nxt:
            self._cut(0)  # the order changed: the queue is stale
        ahead = self.ahead
        if self.jobs and self.pending > ahead * self.LOW:
            return  # still half full: top up later, in one batch (each wake-up of the
            # worker thread costs the running thread ~15 us on a virtual machine)
        cur = self.jobs[-1].scope if self.jobs else scope
        nxt = succ.get(id(cur))
        batch = []
        while nxt is not None and nxt is not scope and id(nxt) not in self.queued:
            nb = self.scope_bytes(nxt)
            if self.jobs and self.pending + nb > ahead:
                break
            job = _Job(nxt, nb)
            self.jobs.append(job)
            batch.append(job)
            self.queued.add(id(nxt))
            self.pending += nb
            nxt = succ.get(id(nxt))
        if batch:
            if self.pool is None:
                self.pool = threading.Thread(target=_prefetch_worker, name="dnn-prefetch",
                                             args=(self.inbox, self.lock), daemon=True)
                self.pool.start()
                _LIVE_PREFETCHERS.add(self)
            self.inbox.put((self._decode, batch))

    def close(self) -> None:
        self._cut(0)
        if self.pool is not None:
            self.inbox.put(None)
            self.pool.join()
            self.pool = None
            _LIVE_PREFETCHERS.discard(self)
        self.free.clear()
        self.free_bytes = 0
        self.out_bytes = 0
        self.succ.clear()
        self.last = None
        self.reset_sizes()

    def _after_fork(self) -> None:
        """In a forked child: the worker thread did not come along, so forget its jobs
        (their buffers stay with the parent's copy of memory) and start afresh."""
        self.jobs.clear()
        self.queued.clear()
        self.pending = 0
        self.out_bytes = 0  # the dropped jobs' buffers are not coming back
        self.inbox = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.pool = None

    def __del__(self):  # a model dropped without unwrap: let its worker thread end
        if self.pool is not None:
            with contextlib.suppress(Exception):
                self.inbox.put(None)


def _prefetch_worker(inbox, lock) -> None:
    """A prefetcher's background thread: decode the queued batches of jobs in order until
    told to stop (None). It holds its prefetcher only while a batch runs."""
    while True:
        item = inbox.get()
        if item is None:
            return
        decode, batch = item
        job = None
        for job in batch:
            with lock:
                if job.state == _Job.CANCELLED:
                    job.done.release()  # nobody waits on it; released for good measure
                    continue
                job.state = _Job.RUNNING
            try:
                job.result = decode(job.scope)
            except BaseException as e:  # re-raised (or ignored) by the waiting thread
                job.error = e
            job.state = _Job.DONE
            job.done.release()
        del item, decode, batch, job


_LIVE_PREFETCHERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _stop_prefetchers() -> None:
    """At exit, stop every worker before the interpreter tears its threads down (a daemon
    thread stopped inside torch's C++ code aborts the process)."""
    for pf in list(_LIVE_PREFETCHERS):
        with contextlib.suppress(Exception):
            pf.close()


def _prefetchers_after_fork() -> None:
    for pf in list(_LIVE_PREFETCHERS):
        pf._after_fork()
    _LIVE_PREFETCHERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_prefetchers_after_fork)


def set_prefetch(model: nn.Module, enabled: bool | int = True) -> nn.Module:
    """Switch background decoding of the layers that come next on or off for a wrapped or
    loaded *model* (streaming mode only).

    *enabled*: ``True`` lets the queue of decoded-ahead layers hold up to the largest
    layer's decoded size, an int that many bytes (more lets a large layer start decoding
    during several earlier ones), ``False`` switches it off. While on, peak memory holds that
    budget of decoded weights on top of the running layer's.
    """
    ahead = _prefetch_budget(enabled, "set_prefetch")
    old = model.__dict__.pop("_dnn_adapter_prefetch", None)
    if old is not None:
        old.close()
    pf = None if ahead is False else _Prefetcher(ahead)
    scopes = model.__dict__.get("_dnn_adapter_scopes", {})
    if pf is not None:
        pf.scopes = scopes
        model.__dict__["_dnn_adapter_prefetch"] = pf
    for sc in scopes.values():
        sc.pf = pf
    return model


def _prefetch_budget(v, where: str):
    """False (off), None (on, default budget) or a byte budget, from a prefetch setting."""
    if isinstance(v, bool):
        return None if v else False
    if isinstance(v, int | np.integer) and v >= 1:
        return int(v)
    raise ValueError(f"{where}: prefetch must be True, False or a positive number of bytes, "
                     f"not {v!r}")


# ---- per-module state -------------------------------------------------------------------------
@dataclass
class _Entry:
    pname: str
    enc: Encoded
    dtype: torch.dtype
    shape: tuple
    requires_grad: bool
    buffer_names: list
    cached: torch.Tensor | None = None
    live: list = field(default_factory=list)
    fused: Any = None  # dnn_adapter.fused forward: the weight is never decoded
    # per-forward costs paid once: the element count, the meta placeholder, and a decoder
    # whose parts were validated on first use (streaming decodes them on every forward)
    numel: int = field(init=False, repr=False, default=0)
    placeholder: Any = field(init=False, repr=False, default=None)
    _decoder: Any = field(init=False, repr=False, default=None)
    _rows: Any = field(init=False, repr=False, default=None)  # row decoder; False: none

    def __post_init__(self):
        self.numel = math.prod(int(s) for s in self.shape)
        self.placeholder = torch.empty(self.shape, dtype=self.dtype, device="meta")

    @property
    def dense_nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def decode_into(self, out: torch.Tensor) -> torch.Tensor:
        dec = self._decoder
        if dec is None:
            dec = self._decoder = get_codec(self.enc.codec_id).prepare(self.enc)
        dec(out)
        return out

    def decode(self) -> torch.Tensor:
        return self.decode_into(torch.empty(self.shape, dtype=self.dtype))

    def decode_rows_into(self, out: torch.Tensor, ids: torch.Tensor) -> bool:
        """Decode only the rows *ids* index (an embedding lookup's input) into *out*; False
        when this encoding has no row decoder or *ids* are not all valid rows (the caller
        then decodes the whole tensor, and the lookup reports bad ids as usual)."""
        rows = self._rows
        if rows is None:
            rows = self._rows = get_codec(self.enc.codec_id).prepare_rows(self.enc) or False
        if rows is False:
            return False
        try:
            rows(out, ids.reshape(-1).numpy())
        except IndexError:
            return False
        return True


class _State:
    def __init__(self, mode):
        self.mode = mode
        self.entries: dict[str, _Entry] = {}
        self.handles: list = []
        self.order: list[str] = []
        self.fqn = ""


def _state(mod) -> _State | None:
    return mod.__dict__.get(_STATE_ATTR)


def is_wrapped(model: nn.Module) -> bool:
    return any(_state(m) for m in model.modules())


def compressed_entries(model: nn.Module):
    """Yield ``(fqn, module, pname, Encoded)`` for every compressed parameter."""
    for name, mod in model.named_modules():
        st = _state(mod)
        if st:
            for pname, e in st.entries.items():
                yield (f"{name}.{pname}" if name else pname), mod, pname, e


def _grad_guard(w: torch.Tensor, name: str) -> torch.Tensor:
    def hook(_g):
        raise InferenceOnlyError(
            f"dnn_adapter: cannot backpropagate into compressed weight {name!r} "
            "(wrapped models are inference-only; unwrap(model) to train)"
        )

    if w.is_inference():
        # the workspace was filled under torch.inference_mode(); outside it such a tensor
        # cannot take part in autograd, so this (grad-enabled, non-inference) call gets a copy
        w = w.clone()
    w = w.detach().requires_grad_(True)
    w.register_hook(hook)
    return w


def _placeholder(e: _Entry) -> torch.Tensor:
    return e.placeholder


def _lookup_ids(owner, pname, args):
    """The index tensor of a plain ``nn.Embedding`` forward (which reads only those rows of
    its weight), else None. Subclasses and ``max_norm`` (which renormalises rows in place)
    are excluded, so streaming decodes only the looked-up rows exactly when nothing else
    can read the weight."""
    if type(owner) is not nn.Embedding or pname != "weight" or owner.max_norm is not None:
        return None
    ids = args[0] if args else None
    if (not isinstance(ids, torch.Tensor) or ids.device.type != "cpu"
            or ids.dtype not in (torch.int64, torch.int32)):
        return None
    return ids


# ---- scope hooks ---------------------------------------------------------------------------------
class _Scope:
    """Decodes every compressed weight under one scope module around its forward."""

    def __init__(self, scope: nn.Module):
        self.scope = scope
        self.owners: list[tuple[nn.Module, str]] = []  # (owner, fqn)
        self.handles = []
        self.depth = 0
        self.pf: _Prefetcher | None = None
        self.all_cached = False  # every owner cached: a no-grad forward needs no swaps
        self.swapped = True

    def attach(self):
        self.all_cached = all(_state(o).mode == "cached" for o, _ in self.owners)
        self.handles = [
            self.scope.register_forward_pre_hook(self.pre),
            self.scope.register_forward_hook(self.post, always_call=True),
        ]

    def detach(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    def _check_mode(self):
        if self.scope.training and torch.is_grad_enabled():
            raise InferenceOnlyError(
                "dnn_adapter: wrapped modules are inference-only; call model.eval() (or run "
                "under torch.no_grad()/torch.inference_mode()), or unwrap(model) to train"
            )

    def pre(self, mod, args):
        self._check_mode()
        self.depth += 1
        if self.depth > 1:
            return None
        grad = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        # cached weights stay installed between forwards; only a grad-enabled forward
        # swaps in guards (so the hooks of a cached model cost ~nothing under no_grad)
        self.swapped = not (self.all_cached and not grad)
        if not self.swapped:
            return None
        got = self.pf.take(self) if self.pf is not None else None
        for owner, fqn in self.owners:
            st = _state(owner)
            for pname, e in st.entries.items():
                if st.mode == "cached":
                    if grad and e.requires_grad:
                        object.__setattr__(owner, pname, _grad_guard(e.cached, fqn + "." + pname))
                    continue
                if e.fused is not None:
                    continue
                if got is not None and id(e) in got:
                    buf, w = got.pop(id(e))
                    e.live.append((buf, w))  # a prefetch buffer: released to the prefetcher
                else:
                    # with prefetch, a layer decoded here (the first forward, a miss) uses
                    # the prefetcher's pool too: one set of buffers, not two
                    if self.pf is not None:
                        pooled = self.pf.acquire(e.dtype, e.numel)
                        flat = pooled[: e.numel]
                    else:
                        flat, pooled = _WS.acquire(e.dtype, e.numel)
                    w = flat.view(e.shape)
                    ids = _lookup_ids(owner, pname, args) if owner is mod else None
                    if ids is None or not e.decode_rows_into(w, ids):
                        e.decode_into(w)
                    e.live.append((pooled, w))
                if grad and e.requires_grad:
                    w = _grad_guard(w, f"{fqn}.{pname}" if fqn else pname)
                object.__setattr__(owner, pname, w)
        if self.pf is not None:
            for buf, _w in (got or {}).values():  # prefetched for an entry now gone
                self.pf.release(buf)
            self.pf.ran(self)
        return None

    def post(self, mod, args, output):
        self.depth -= 1
        if self.depth > 0 or not self.swapped:
            return None
        for owner, _fqn in reversed(self.owners):
            st = _state(owner)
            for pname, e in reversed(list(st.entries.items())):
                if st.mode == "cached":
                    object.__setattr__(owner, pname, e.cached)
                    continue
                while e.live:
                    pooled, _w = e.live.pop()
                    if isinstance(pooled, torch.Tensor):
                        if self.pf is not None:
                            self.pf.release(pooled)
                    else:
                        _WS.release(e.dtype, e.numel, pooled)
                object.__setattr__(owner, pname, _placeholder(e))
        return None


def _fusable(codecs, per_call: bool = True) -> tuple:
    """The codec candidates in the forms the fused kernels read: the sparse codec's separate
    distance and value streams (no tuple symbols) with one row per block, the dictionary
    codec's one code per value (no runs); no ``narrow`` (its values are converted on
    decode, which the kernels do not do). *per_call* (fused without the CSR cache: the
    values are decoded on every call): float values without joint mantissa bits, whose
    whole byte planes the kernels read 1.7x faster than a bit-packed remainder (95%-sparse
    4096x4096 Linear, batch 1: 6.1 against 10.4 ms here) for about 0.3% of the values'
    size, and distances without escapes or Rice bits unless those save 1% (4096x4096,
    batch 1, interleaved: 1.26x / 1.22x faster per call at 90% / 95% sparsity, for 0.002% /
    0.012% of the size; at 97% the Rice coding stays: plain codes would not fit a byte)."""
    out = []
    for c in codecs:
        cfg = {"id": c} if isinstance(c, str) else dict(c)
        if cfg["id"] == "narrow":
            continue
        if cfg["id"] == "sparse":
            cfg["joint"] = False
            cfg["max_rows_per_block"] = 1
            if per_call:
                cfg["value_joint_bits"] = 0
                cfg["extra_bits_min_gain"] = 0.01
        elif cfg["id"] == "dict":
            cfg["max_group"] = 1
        elif cfg["id"] == "float" and per_call:
            cfg["max_joint_bits"] = 0
        out.append(cfg)
    return tuple(out)


def _scope_of(model, name: str) -> str:
    """The outermost fused ancestor (MHA / Transformer*) of module *name*, else *name*."""
    parts = name.split(".") if name else []
    best = name
    for i in range(len(parts) - 1, -1, -1):
        anc = ".".join(parts[:i])
        if isinstance(model.get_submodule(anc), _FUSED_SCOPES):
            best = anc
    return best


# ---- state dict hooks --------------------------------------------------------------------------
_SD = threading.local()


@contextlib.contextmanager
def _compressed_state_dict():
    """Inside: state_dict() does not decode compressed weights (used by save)."""
    old = getattr(_SD, "skip", False)
    _SD.skip = True
    try:
        yield
    finally:
        _SD.skip = old


def _sd_post_hook(module, state_dict, prefix, local_metadata):
    if getattr(_SD, "skip", False):
        return
    st = _state(module)
    if not st:
        return
    for pname, e in st.entries.items():
        state_dict[prefix + pname] = e.decode()
    # put the keys back in the module's original parameter order
    own = [prefix + n for n in st.order if prefix + n in state_dict]
    own_set = set(own)
    keys = list(state_dict)
    first = min(keys.index(k) for k in own) if own else 0
    order = [k for k in keys[:first] if k not in own_set] + own
    order += [k for k in keys[first:] if k not in own_set]
    items = {k: state_dict[k] for k in order}
    state_dict.clear()
    state_dict.update(items)


def _load_pre_hook(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    st = _state(module)
    if not st:
        return
    for pname, e in list(st.entries.items()):
        key = prefix + pname
        if key not in state_dict:
            if strict:
                missing.append(key)
            continue
        t = state_dict.pop(key)
        if tuple(t.shape) != e.shape or t.dtype != e.dtype:
            errors.append(
                f"size/dtype mismatch for {key}: {tuple(t.shape)} {t.dtype} vs {e.shape} {e.dtype}"
            )
            continue
        enc = encode_best(t, form=e.enc.form or "block", candidates=_CODECS_OF.get(id(st)))
        _replace_encoding(module, st, pname, enc)


_CODECS_OF: dict = {}


# ---- install / remove ----------------------------------------------------------------------------
def _buffer_name(pname: str, i: int) -> str:
    return f"_dnnz_{pname}_{i}"


def _register_parts(module, pname, enc: Encoded) -> list[str]:
    _tree, bufs = enc.flatten()
    names = []
    for i, (_k, a) in enumerate(bufs.items()):
        a = np.ascontiguousarray(a)
        b = a.reshape(-1).view(np.uint8) if a.size else np.zeros(0, np.uint8)
        with warnings.catch_warnings():  # read-only structure arrays: shared, never written
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(b)
        n = _buffer_name(pname, i)
        module.register_buffer(n, t, persistent=False)
        names.append(n)
    return names


def _replace_encoding(module, st: _State, pname: str, enc: Encoded) -> None:
    e = st.entries[pname]
    for n in e.buffer_names:
        module._buffers.pop(n, None)
    e.enc = enc
    e._decoder = None  # checked again on first use
    e.buffer_names = _register_parts(module, pname, enc)
    if st.mode == "cached":
        e.cached = _cached_tensor(e)
        object.__setattr__(module, pname, e.cached)


def _cached_tensor(e: _Entry) -> torch.Tensor:
    w = e.decode()
    return w


def attach_encoded(
    model, owner_name: str, pname: str, enc: Encoded, mode: str, requires_grad: bool = True,
    decoded: torch.Tensor | None = None,
) -> None:
    """Install an (already verified) encoding as the compressed form of a parameter.

    In cached mode, *decoded* (the encoding's decoded tensor, when the caller has it already:
    a verified load) is kept instead of decoding again."""
    owner = model.get_submodule(owner_name)
    st = _state(owner)
    if st is None:
        st = _State(mode)
        st.fqn = owner_name
        st.order = list(owner._parameters)
        owner.__dict__[_STATE_ATTR] = st
        st.handles.append(owner.register_state_dict_post_hook(_sd_post_hook))
        st.handles.append(owner.register_load_state_dict_pre_hook(_load_pre_hook))
    elif st.mode != mode:
        raise ValueError(f"{owner_name}: already wrapped in {st.mode!r} mode")
    if pname in owner._parameters:
        del owner._parameters[pname]
    shape = tuple(int(s) for s in enc.meta["shape"])
    dtype = getattr(torch, enc.meta["dtype"])
    e = _Entry(pname, enc, dtype, shape, requires_grad, [])
    st.entries[pname] = e
    e.buffer_names = _register_parts(owner, pname, enc)
    if mode == "cached":
        ok = (isinstance(decoded, torch.Tensor) and decoded.dtype == dtype
              and tuple(decoded.shape) == shape and decoded.is_contiguous()
              and not decoded.requires_grad)
        e.cached = decoded if ok else _cached_tensor(e)
        object.__setattr__(owner, pname, e.cached)
    else:
        object.__setattr__(owner, pname, _placeholder(e))


def _install_scopes(model) -> None:
    """(Re)build the scope hooks of every wrapped module under *model*."""
    scopes = model.__dict__.setdefault("_dnn_adapter_scopes", {})
    for sc in scopes.values():
        sc.detach()
    scopes.clear()
    for name, mod in model.named_modules():
        st = _state(mod)
        if not st:
            continue
        sname = _scope_of(model, name)
        if sname not in scopes:
            scopes[sname] = _Scope(model.get_submodule(sname))
        scopes[sname].owners.append((mod, name))
    pf = model.__dict__.get("_dnn_adapter_prefetch")
    if pf is not None:
        pf.close()  # jobs and sizes of the old scopes
        pf.scopes = scopes
    for sc in scopes.values():
        sc.pf = pf
        sc.attach()


def _remove_prune(mod, pname) -> bool:
    """Make a torch.nn.utils.prune reparametrization permanent (weight = orig * mask)."""
    from torch.nn.utils import prune

    for hook in list(mod._forward_pre_hooks.values()):
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == pname:
            prune.remove(mod, pname)
            return True
    return False


def wrap(
    model: nn.Module, config: WrapConfig | None = None, *, filter_fn=None, sample_input=None
) -> nn.Module:
    """Compress *model*'s weights in place and return the same object (``wrap(m) is m``).

    Parameters
    ----------
    model : the module to change in place.
    config : :class:`WrapConfig` (default: streaming, FPr threshold 8).
    filter_fn : ``filter_fn(module, fqn) -> bool``; modules for which it returns False are
        left alone (torchao's signature).
    sample_input : optional input (tensor or tuple of args); with it, each layer's FPr is
        measured by one forward and decides its RAS form; without it, the layer type does
        (conv/attention block-wise, the rest element-wise).

    Pruned modules (``torch.nn.utils.prune``) are made permanent first (``prune.remove``).
    """
    config = config or WrapConfig()
    if not isinstance(config, WrapConfig):
        raise TypeError("wrap: config must be a WrapConfig")
    from .reporting import count_macs

    macs = count_macs(model, sample_input) if sample_input is not None else {}
    for _name, mod in list(model.named_modules()):
        for pname in [
            h._tensor_name
            for h in mod._forward_pre_hooks.values()
            if type(h).__module__.startswith("torch.nn.utils.prune")
        ]:
            _remove_prune(mod, pname)
    codecs = _fusable(config.codecs, not config.fused_cache) if config.fused else config.codecs
    for t in _plan(model, config, filter_fn, macs):
        p = t.owner._parameters[t.pname]
        enc = encode_best(p, form=t.form, candidates=codecs, verify=False)
        if enc.codec_id == "raw":
            continue  # nothing to gain: stays a dense parameter
        if config.verify:
            check_exact(p, enc)
        attach_encoded(model, t.owner_name, t.pname, enc, config.mode, p.requires_grad)
        st = _state(t.owner)
        _CODECS_OF[id(st)] = codecs
    _install_scopes(model)
    if config.fused:
        from .fused import enable

        enable(model, cache=config.fused_cache)
    model.__dict__["_dnn_adapter_config"] = config
    if config.prefetch:
        set_prefetch(model, config.prefetch)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """Restore dense parameters (bit-exact) and remove every hook and buffer; returns *model*."""
    from .fused import disable

    disable(model)
    for _name, mod in list(model.named_modules()):
        st = _state(mod)
        if not st:
            continue
        for pname, e in st.entries.items():
            dense = e.decode()
            for n in e.buffer_names:
                mod._buffers.pop(n, None)
            mod.__dict__.pop(pname, None)
            mod.register_parameter(pname, nn.Parameter(dense, requires_grad=e.requires_grad))
        params = dict(mod._parameters)
        mod._parameters.clear()
        for n in [n for n in st.order if n in params] + [n for n in params if n not in st.order]:
            mod._parameters[n] = params[n]
        for h in st.handles:
            h.remove()
        _CODECS_OF.pop(id(st), None)
        del mod.__dict__[_STATE_ATTR]
    for sc in model.__dict__.pop("_dnn_adapter_scopes", {}).values():
        sc.detach()
    set_prefetch(model, False)
    model.__dict__.pop("_dnn_adapter_config", None)
    return model


def verify(model: nn.Module) -> None:
    """Decode every compressed weight and check it against the checksum taken at encode time."""
    for fqn, _mod, _p, e in compressed_entries(model):
        w = e.decode()
        if crc32(out_bits(w, _dtype_info(e))) != int(e.enc.meta["crc32"]):
            raise CodecError(f"{fqn}: decoded weight does not match its checksum")


def _dtype_info(e):
    from ._bits import dtype_info

    return dtype_info(e.enc.meta["dtype"])
