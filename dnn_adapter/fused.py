"""Fused execution: Linear / Conv2d layers computed straight from their compressed weights.

Opt-in (``WrapConfig(fused=True)``, or :func:`enable` on a wrapped model). A layer whose
weight is stored ``sparse`` (any RAS form), or element-wise ``float`` / ``dict``, gets a
forward that runs the C kernels of ``dnn_adapter._kernels`` on the compressed streams: the
sparse tuples are multiplied directly (gap codes -> column offsets -> gather), dense
element-wise rows are rebuilt a band at a time in a small buffer and multiplied; no dense
weight is ever built. A sparse Conv2d (any stride, dilation and zero padding, kernels up to
1024 taps) is a direct sparse convolution, from the streams or from the cached CSR form: the
C kernel packs the input once per band of output rows (a zero-padded plane per filter
column and stride phase), then adds each non-zero's weight times one contiguous window of
it (no ``unfold``); element-wise (dense) conv weights go through ``unfold`` (im2col);
``groups != 1`` and other layers keep the decode path.

**Not bit-identical.** The kernels accumulate in float32 in their own order, so outputs
equal the dense model's only to rounding (compare with a tolerance against a float64
reference). The default streaming and cached modes are untouched and keep ``torch.equal``
outputs. With ``cache=True`` (``WrapConfig(fused_cache=True)``) each sparse layer keeps its
decoded O(nnz) CSR form after the first call (a clear speed win, at the cost of the
memory of that form).

Falls back to the decode path (bit-exact, as streaming) per call when the input is not a CPU
float32/bfloat16/float16 tensor or requires grad (with grad enabled); a fused output never
requires grad (wrapped models are inference-only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._kernels_api import CSRWeight, FusedWeight, NotFusable, lib
from .codecs import CodecError

__all__ = ["enable", "disable", "fused_layers"]

_ATTR = "_dnn_adapter_fused"


class _FusedForward:
    """Instance ``forward`` of a fused layer (the module class stays intact)."""

    def __init__(self, mod: nn.Module, entry, cache: bool):
        self.mod, self.entry, self.cache = mod, entry, cache
        self.fw: FusedWeight | None = None
        self.csr: CSRWeight | None = None
        self.enc = None

    def _weight(self):
        e = self.entry
        if self.enc is not e.enc:  # (re)encoded by load_state_dict: rebuild the plan
            self.fw, self.csr, self.enc = FusedWeight(e.enc), None, e.enc
        if self.cache and self.fw.sparse:
            if self.csr is None:
                self.csr = self.fw.to_csr()
            return self.csr
        return self.fw

    def _fallback(self, *args):
        from .wrapping import _grad_guard

        mod, e = self.mod, self.entry
        w = e.decode()
        if torch.is_grad_enabled() and e.requires_grad:
            w = _grad_guard(w, e.pname)
        old = mod.__dict__.get(e.pname)
        object.__setattr__(mod, e.pname, w)
        try:
            return type(mod).forward(mod, *args)
        finally:
            object.__setattr__(mod, e.pname, old)

    def _usable(self, x) -> bool:
        if not isinstance(x, torch.Tensor) or x.device.type != "cpu":
            return False
        if not x.dtype.is_floating_point or x.dtype == torch.float64:
            return False
        return not (torch.is_grad_enabled() and x.requires_grad)

    def _mm(self, xt: torch.Tensor) -> torch.Tensor:
        """``W @ xt`` (xt: K x N float32 contiguous) -> rows x N float32."""
        w = self._weight()
        out = torch.empty((w.nrows, xt.shape[1]), dtype=torch.float32)
        w.matmul_t(xt.numpy(), out=out.numpy())
        return out

    def __call__(self, *args, **kwargs):
        x = args[0] if args else None
        if kwargs or len(args) != 1 or not self._usable(x):
            return self._fallback(*args, **kwargs)
        mod = self.mod
        with torch.no_grad():
            if isinstance(mod, nn.Linear):
                return self._linear(mod, x)
            return self._conv2d(mod, x)

    def _linear(self, mod, x):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).to(torch.float32)
        xt = x2.t().contiguous()
        y = self._mm(xt).t()
        if mod.bias is not None:
            y = y + mod.bias.to(torch.float32)
        return y.to(x.dtype).reshape(*lead, y.shape[-1])

    def _conv2d(self, mod, x):
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        xf = x.to(torch.float32)
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            pad = mod._reversed_padding_repeated_twice
            mode = "constant" if mod.padding_mode == "zeros" else mod.padding_mode
            if any(pad):
                xf = F.pad(xf, pad, mode=mode)
            padding = 0
        else:
            padding = mod.padding
        B = xf.shape[0]
        pd = (padding, padding) if isinstance(padding, int) else tuple(padding)
        H, W = (
            (xf.shape[2 + d] + 2 * pd[d] - mod.dilation[d] * (mod.kernel_size[d] - 1) - 1)
            // mod.stride[d]
            + 1
            for d in (0, 1)
        )
        w = self._weight()
        if (isinstance(w, CSRWeight) or w.sparse) and _direct_conv_ok(mod):
            # direct sparse conv (from the streams, or the cached CSR form): no unfold
            y = torch.from_numpy(
                w.conv2d(xf.contiguous().numpy(), mod.kernel_size, pd, mod.dilation, mod.stride)
            )
        else:
            cols = F.unfold(
                xf, mod.kernel_size, dilation=mod.dilation, padding=padding, stride=mod.stride
            )  # B x K x L
            xt = cols.permute(1, 0, 2).reshape(cols.shape[1], B * cols.shape[2])  # K x (B*L)
            y = self._mm(xt.contiguous())  # Cout x (B*L)
        y = y.reshape(y.shape[0], B, H, W).permute(1, 0, 2, 3)
        if mod.bias is not None:
            y = y + mod.bias.to(torch.float32).reshape(1, -1, 1, 1)
        y = y.to(x.dtype).contiguous()
        return y.squeeze(0) if unbatched else y


def _direct_conv_ok(mod) -> bool:
    """The C direct convolution takes any stride and dilation, kernels up to 1024 taps."""
    return mod.kernel_size[0] * mod.kernel_size[1] <= lib.DNK_CONV_MAXTAP


def _eligible(mod, name, st, model) -> str | None:
    from .wrapping import _scope_of

    if not isinstance(mod, (nn.Linear, nn.Conv2d)):
        return None
    if isinstance(mod, nn.Conv2d) and mod.groups != 1:
        return None
    if _scope_of(model, name) != name:  # weights read by a fused ancestor (attention)
        return None
    e = st.entries.get("weight")
    if e is None:
        return None
    cid = e.enc.codec_id
    if cid != "sparse" and not (cid in ("float", "dict") and e.enc.form == "element"):
        return None  # block-wise dense layers: decoded into the workspace (the design)
    try:
        FusedWeight(e.enc)
    except (NotFusable, CodecError, KeyError):
        return None
    return "weight"


def enable(model: nn.Module, *, cache: bool = False) -> list[str]:
    """Run eligible wrapped layers of *model* through the fused kernels; returns their names.

    Eligible: ``nn.Linear`` and ``nn.Conv2d`` (``groups == 1``) whose weight is compressed
    ``sparse``, or element-wise ``float``/``dict``, in float32/bfloat16/float16, and that are
    not inside an attention/transformer scope. *cache* keeps each sparse layer's CSR form
    after its first call.
    """
    from .wrapping import _state

    done = []
    for name, mod in model.named_modules():
        st = _state(mod)
        if not st or st.mode != "streaming":
            continue
        pname = _eligible(mod, name, st, model)
        if pname is None:
            continue
        e = st.entries[pname]
        e.fused = _FusedForward(mod, e, cache)
        mod.__dict__["forward"] = e.fused
        mod.__dict__[_ATTR] = True
        done.append(name)
    return done


def disable(model: nn.Module) -> None:
    """Back to the decode path for every fused layer of *model*."""
    from .wrapping import _state

    for _name, mod in model.named_modules():
        if mod.__dict__.pop(_ATTR, None):
            mod.__dict__.pop("forward", None)
            st = _state(mod)
            if st:
                for e in st.entries.values():
                    e.fused = None


def fused_layers(model: nn.Module) -> list[str]:
    """Names of the layers that run through the fused kernels."""
    return [n for n, m in model.named_modules() if m.__dict__.get(_ATTR)]
