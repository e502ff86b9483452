"""MACs/params per layer (measured by one forward with hooks), the FPr policy, and the report.

``FPr`` (FLOPs-per-parameter ratio, paper section 4.1) is a layer's multiply-accumulates per
forward of the sample input divided by its parameter count. Layers above the threshold use the
block-wise RAS, layers at or below it the element-wise RAS; overrides by layer name or a
filter function take precedence. MACs counted: Linear/Bilinear, Conv1d/2d/3d and their
transposes, MultiheadAttention (projections and the two attention matmuls), Embedding (0).
Element-wise ops (norms, activations, pooling) and functional matmuls inside custom
forwards are not counted, as in the standard totals (ResNet-50 at 224x224: 4.09 GMACs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ["LayerRow", "Report", "count_macs", "report", "form_for"]

_BLOCK_TYPES = (nn.modules.conv._ConvNd, nn.MultiheadAttention)


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)):
        for y in x:
            t = _first_tensor(y)
            if t is not None:
                return t
    if isinstance(x, dict):
        for y in x.values():
            t = _first_tensor(y)
            if t is not None:
                return t
    return None


def _mha_macs(m: nn.MultiheadAttention, args, kwargs):
    q = kwargs.get("query", args[0] if len(args) > 0 else None)
    k = kwargs.get("key", args[1] if len(args) > 1 else q)
    v = kwargs.get("value", args[2] if len(args) > 2 else k)
    E = m.embed_dim

    def lb(t):  # (length, batch)
        if t.dim() == 2:
            return t.shape[0], 1
        return (t.shape[1], t.shape[0]) if m.batch_first else (t.shape[0], t.shape[1])

    (lq, b), (lk, _), (lv, _) = lb(q), lb(k), lb(v)
    inp = b * (lq * E * E + lk * m.kdim * E + lv * m.vdim * E)
    attn = 2 * b * lq * lk * E
    out = b * lq * E * E
    return inp + attn, out


def count_macs(model: nn.Module, sample_input, *, sample_kwargs=None) -> dict[str, int]:
    """MACs per module name for one forward of *sample_input* (hooks; no hand tables).

    *sample_input* is a tensor or a tuple of positional arguments. The model's mode and
    parameters are not changed; the forward runs with gradients enabled but no backward, so
    fused inference fast paths (which skip submodule calls) are not taken.
    """
    macs: dict[str, int] = {}
    handles = []

    def hook_for(name, mod):
        def hook(m, args, kwargs, out):
            o = _first_tensor(out)
            i = _first_tensor(args)
            n = 0
            if isinstance(m, nn.Linear):
                n = o.numel() * m.in_features
            elif isinstance(m, nn.Bilinear):
                n = o.numel() * m.in1_features * m.in2_features
            elif isinstance(m, nn.modules.conv._ConvTransposeNd):
                n = i.numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)
            elif isinstance(m, nn.modules.conv._ConvNd):
                n = o.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
            elif isinstance(m, nn.MultiheadAttention):
                n, out_proj = _mha_macs(m, args, kwargs)
                key = f"{name}.out_proj" if name else "out_proj"
                macs[key] = macs.get(key, 0) + int(out_proj)
            macs[name] = macs.get(name, 0) + int(n)

        return hook

    for name, mod in model.named_modules():
        handles.append(mod.register_forward_hook(hook_for(name, mod), with_kwargs=True))
    args = sample_input if isinstance(sample_input, tuple) else (sample_input,)
    try:
        with torch.enable_grad():
            model(*args, **(sample_kwargs or {}))
    finally:
        for h in handles:
            h.remove()
    return macs


def form_for(
    module: nn.Module,
    name: str,
    fpr: float | None,
    threshold: float,
    overrides=None,
    filter_fn=None,
) -> str:
    """The RAS form of a layer: overrides, then FPr vs threshold, then the layer type."""
    if overrides:
        for key in (name, type(module).__name__):
            if key in overrides:
                return overrides[key]
    if filter_fn is not None:
        r = filter_fn(module, name)
        if r in ("block", "element"):
            return r
    if fpr is not None:
        return "block" if fpr > threshold else "element"
    return "block" if isinstance(module, _BLOCK_TYPES) else "element"


@dataclass
class LayerRow:
    name: str
    type: str
    params: int
    macs: int
    fpr: float
    form: str = "-"
    codec: str = "-"
    dtype: str = "-"
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def cr(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else 1.0

    def as_dict(self) -> dict:
        return {**asdict(self), "cr": self.cr}


@dataclass
class Report:
    rows: list[LayerRow] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def bytes_before(self) -> int:
        return sum(r.bytes_before for r in self.rows)

    @property
    def bytes_after(self) -> int:
        return sum(r.bytes_after for r in self.rows)

    @property
    def cr(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else 1.0

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def as_dicts(self) -> list[dict]:
        return [r.as_dict() for r in self.rows]

    def to_text(self, max_rows: int | None = None) -> str:
        hdr = (
            "layer",
            "type",
            "params",
            "MACs",
            "FPr",
            "RAS",
            "codec",
            "dtype",
            "before",
            "after",
            "CR",
        )
        rows = self.rows if max_rows is None else self.rows[:max_rows]
        cells = [
            (
                r.name or "(root)",
                r.type,
                f"{r.params:,}",
                f"{r.macs:,}",
                f"{r.fpr:.1f}",
                r.form,
                r.codec,
                r.dtype,
                f"{r.bytes_before:,}",
                f"{r.bytes_after:,}",
                f"{r.cr:.3f}",
            )
            for r in rows
        ]
        if max_rows is not None and len(self.rows) > max_rows:
            cells.append(("...",) + ("",) * 10)
        tot = self.total_params
        cells.append(
            (
                "TOTAL",
                "",
                f"{tot:,}",
                f"{self.total_macs:,}",
                f"{self.total_macs / max(tot, 1):.1f}",
                "",
                "",
                "",
                f"{self.bytes_before:,}",
                f"{self.bytes_after:,}",
                f"{self.cr:.3f}",
            )
        )
        w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(hdr)]
        right = {2, 3, 4, 8, 9, 10}

        def line(c):
            return "  ".join(
                s.rjust(w[i]) if i in right else s.ljust(w[i]) for i, s in enumerate(c)
            )

        out = [line(hdr), line(["-" * x for x in w])]
        out += [line(c) for c in cells[:-1]]
        out += [line(["-" * x for x in w]), line(cells[-1])]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def plot(self, path) -> None:
        """Bar chart of bytes before/after per layer (matplotlib, imported lazily)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.rows if r.bytes_after]
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(rows)), 4))
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r.bytes_before for r in rows], 0.4, label="before")
        ax.bar([i + 0.2 for i in x], [r.bytes_after for r in rows], 0.4, label="after")
        ax.set_xticks(list(x), [r.name for r in rows], rotation=90, fontsize=6)
        ax.set_ylabel("bytes")
        ax.set_title(f"dnn_adapter: total CR {self.cr:.3f}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def report(
    model: nn.Module, sample_input=None, config=None, *, filter_fn=None, encode: bool = True
) -> Report:
    """Per-layer table: params, MACs, FPr, RAS form, codec, bytes before/after, CR.

    With *sample_input* the MACs are measured by one forward; without it they are 0 and
    the RAS form follows the layer type. For a wrapped model the stored encodings are
    reported; otherwise (with *encode*) each selected tensor is encoded now (the model is
    not modified).
    """
    from .wrapping import WrapConfig, _plan, _state

    config = config or WrapConfig()
    macs = count_macs(model, sample_input) if sample_input is not None else {}
    plan = {(t.owner_name, t.pname): t for t in _plan(model, config, filter_fn, macs)}
    rows = []
    for name, mod in model.named_modules():
        direct = list(mod.named_parameters(recurse=False))
        st = _state(mod)
        wrapped = dict(st.entries) if st else {}
        nparams = sum(p.numel() for _, p in direct) + sum(e.numel for e in wrapped.values())
        if not nparams:
            continue
        m = macs.get(name, 0)
        row = LayerRow(name, type(mod).__name__, nparams, m, m / nparams)
        forms, codecs_, dts = [], [], []
        for pname, p in direct:
            row.bytes_before += p.numel() * p.element_size()
            t = plan.get((name, pname))
            if t is not None and encode:
                from .codecs import encode_best

                enc = encode_best(p, form=t.form, candidates=config.codecs, verify=False)
                row.bytes_after += enc.nbytes
                forms.append(enc.form or "-")
                codecs_.append(enc.describe())
            else:
                row.bytes_after += p.numel() * p.element_size()
            dts.append(str(p.dtype).removeprefix("torch."))
        for _pname, e in wrapped.items():
            row.bytes_before += e.dense_nbytes
            row.bytes_after += e.enc.nbytes
            forms.append(e.enc.form or "-")
            codecs_.append(e.enc.describe())
            dts.append(e.enc.meta["dtype"])
        row.form = "/".join(sorted(set(forms))) or "-"
        row.codec = "/".join(dict.fromkeys(codecs_)) or "-"
        row.dtype = "/".join(dict.fromkeys(dts))
        rows.append(row)
    return Report(rows)
