"""``python -m dnn_adapter {compress,inspect,verify,bench,demo}``."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _load_state_dict(path):
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise SystemExit(f"{path}: expected a state dict")
    return sd


def _entries_table(path):
    from .codecs import Encoded
    from .io import _decode_entry, _File
    from .reporting import LayerRow, Report

    f = _File(path)
    rows = []
    for fqn, rec in f.header["tensors"].items():
        n = int(np.prod(rec["shape"], dtype=np.int64)) if rec["shape"] else 1
        from ._bits import dtype_info

        before = n * dtype_info(rec["dtype"]).itemsize
        if rec["kind"] == "compressed":
            enc: Encoded = _decode_entry(f, fqn, rec)
            rows.append(
                LayerRow(
                    fqn,
                    "compressed",
                    n,
                    0,
                    0.0,
                    enc.form or "-",
                    enc.describe(),
                    rec["dtype"],
                    before,
                    enc.nbytes,
                )
            )
        else:
            rows.append(LayerRow(fqn, "dense", n, 0, 0.0, "-", "-", rec["dtype"], before, before))
    return Report(rows)


def cmd_compress(a):
    from tqdm import tqdm

    from .io import compress_state_dict
    from .wrapping import WrapConfig

    sd = _load_state_dict(a.input)
    cfg = WrapConfig(min_numel=a.min_numel)
    t = time.perf_counter()
    compress_state_dict(
        sd, a.output, config=cfg, progress=lambda xs: tqdm(xs, desc="compress", unit="tensor")
    )
    before = sum(v.numel() * v.element_size() for v in sd.values() if hasattr(v, "numel"))
    after = os.path.getsize(a.output)
    print(
        f"{a.input} -> {a.output}: {before:,} -> {after:,} bytes (CR {before / after:.3f}) "
        f"in {time.perf_counter() - t:.1f}s"
    )
    return 0


def cmd_inspect(a):
    rep = _entries_table(a.file)
    print(rep.to_text())
    if a.plot:
        rep.plot(a.plot)
        print(f"plot written to {a.plot}")
    return 0


def cmd_verify(a):
    import torch
    from tqdm import tqdm

    from ._bits import bits_of
    from .codecs import get_codec
    from .io import FileFormatError, _decode_entry, _File

    sd = _load_state_dict(a.original)
    f = _File(a.file)
    tensors = f.header["tensors"]
    bad = [k for k in sd if k not in tensors] + [k for k in tensors if k not in sd]
    for k in tqdm(list(tensors), desc="verify", unit="tensor"):
        if k not in sd:
            continue
        rec = tensors[k]
        try:
            if rec["kind"] == "compressed":
                enc = _decode_entry(f, k, rec)
                got = get_codec(enc.codec_id).decode(enc)
                if enc.meta.get("quant"):
                    got, ref = got.int_repr(), sd[k].int_repr()
                else:
                    ref = sd[k]
            else:
                from ._bits import dtype_info

                dt = dtype_info(rec["dtype"])
                got = f.array(k, rec, dt.uint.str, rec["shape"])
                ref = sd[k]
            a_, _, sa = bits_of(got)
            b_, _, sb = bits_of(ref)
            if not (np.array_equal(a_.view(b_.dtype), b_) and list(sa) == list(sb)):
                bad.append(k)
        except (FileFormatError, ValueError) as e:
            print(f"{k}: {e}", file=sys.stderr)
            bad.append(k)
    del torch
    if bad:
        print(f"FAILED: {len(bad)} tensors differ or are missing: {bad[:10]}")
        return 1
    print(f"OK: {len(tensors)} tensors bit-exact")
    return 0


def cmd_bench(a):
    """Latency (interleaved medians) and real peak memory (fresh child processes) of the
    uncompressed model against the wrapped one in streaming, streaming+prefetch and cached
    modes, on the same input, with the streaming-memory budget checked."""
    import copy
    import statistics
    import tempfile

    import torch

    from . import _benchmem
    from .demo import train_digits_cnn
    from .io import load, save
    from .memory import peak_rss_of
    from .wrapping import WrapConfig, compressed_entries, wrap

    torch.set_num_threads(a.threads)
    if a.model == "digits":
        model, xte, _ = train_digits_cnn()
        x = xte[: a.batch]
    else:
        torch.manual_seed(0)
        model = _benchmem.build(a.model)
        x = torch.randn(a.batch, 3, a.res, a.res)
    model.eval()
    if a.file:
        model = load(a.file, model)
        from .wrapping import unwrap

        unwrap(model)
    runs = {
        "uncompressed": model,
        "streaming": wrap(copy.deepcopy(model), WrapConfig()),
        "streaming+prefetch": wrap(copy.deepcopy(model), WrapConfig(prefetch=True)),
        "cached": wrap(copy.deepcopy(model), WrapConfig(mode="cached")),
    }
    ts = {k: [] for k in runs}
    with torch.inference_mode():
        ref = model(x)
        for k, m in runs.items():
            if not torch.equal(m(x), ref):
                print(f"error: {k} output differs from the uncompressed model", file=sys.stderr)
                return 1
        for _ in range(a.repeat):  # interleaved: every mode sees the same machine state
            for k, m in runs.items():
                t = time.perf_counter()
                m(x)
                ts[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in ts.items()}
    entries = [e for _f, _m, _p, e in compressed_entries(runs["streaming"])]
    comp = sum(e.enc.nbytes for e in entries)
    dense_w = sum(e.dense_nbytes for e in entries)
    largest = max((e.dense_nbytes for e in entries), default=0)
    print(f"{a.model}: batch {x.shape[0]}, {a.threads} thread(s), median of {a.repeat}; "
          "outputs torch.equal in every mode")
    print(f"{'mode':<20}{'median ms':>11}{'x uncompressed':>16}")
    for k in runs:
        print(f"{k:<20}{1e3 * med[k]:>11.2f}{med[k] / med['uncompressed']:>16.3f}")
    if not a.memory:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        sd_path, comp_path = f"{tmp}/dense.pt", f"{tmp}/model.dnnz"
        torch.save(model.state_dict(), sd_path)
        save(runs["streaming"], comp_path)
        arch, shape = a.model, tuple(x.shape)
        meas = {}
        for k, kind, mode, pf in (
            ("uncompressed", "dense", None, False),
            ("streaming", "comp", "streaming", False),
            ("streaming+prefetch", "comp", "streaming", True),
            ("cached", "comp", "cached", False),
        ):
            path = sd_path if kind == "dense" else comp_path
            meas[k] = peak_rss_of(
                _benchmem.forward, arch, kind, path, mode, shape, pf, setup=_benchmem.setup
            )
    act = meas["uncompressed"].increase
    budget = comp + largest + act
    print(f"\npeak memory of one forward (fresh process each; {meas['streaming'].method}):")
    print(f"{'mode':<20}{'model resident MB':>18}{'forward peak +MB':>18}{'total MB':>10}")
    for k, r in meas.items():
        resident = dense_w if k in ("uncompressed", "cached") else comp
        if k == "cached":
            resident += comp
        print(f"{k:<20}{resident / 1e6:>18.2f}{r.increase / 1e6:>18.2f}"
              f"{(resident + r.increase) / 1e6:>10.2f}")
    s_total = comp + meas["streaming"].increase
    print(f"streaming budget: compressed {comp / 1e6:.2f} + largest layer {largest / 1e6:.2f} "
          f"+ activations {act / 1e6:.2f} = {budget / 1e6:.2f} MB; measured "
          f"{s_total / 1e6:.2f} MB = {s_total / budget:.3f}x budget (target <= 1.10)")
    return 0


def cmd_demo(a):
    from .demo import main as demo_main

    return demo_main(epochs=a.epochs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dnn_adapter",
        description="Lossless DNN weight compression with succinct structures",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compress", help="state_dict (.pt/.safetensors) -> compressed file")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--min-numel", type=int, default=1024)
    c.set_defaults(fn=cmd_compress)
    i = sub.add_parser("inspect", help="per-layer table of a compressed file")
    i.add_argument("file")
    i.add_argument("--plot", metavar="OUT.png")
    i.set_defaults(fn=cmd_inspect)
    v = sub.add_parser("verify", help="bit-exact check against the original checkpoint")
    v.add_argument("file")
    v.add_argument("original")
    v.set_defaults(fn=cmd_verify)
    b = sub.add_parser("bench", help="latency and memory vs the uncompressed model")
    b.add_argument("--model", choices=["digits", "resnet50", "resnet101"], default="digits")
    b.add_argument("--file", help="compressed file of that model (default: its own weights)")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--res", type=int, default=224, help="input resolution (resnets)")
    b.add_argument("--repeat", type=int, default=5)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak-memory runs (fresh processes)")
    b.set_defaults(fn=cmd_bench)
    d = sub.add_parser("demo", help="train, prune, quantize, compress a digits CNN; check it")
    d.add_argument("--epochs", type=int, default=8)
    d.set_defaults(fn=cmd_demo)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
