"""One-file save/load of compressed models (safetensors-like layout, never pickle).

Layout (little-endian), version 5 (``docs/dnn_format.md`` is the specification)::

    u64        length H of the outer header
    H bytes    outer JSON header {"format", "version": 5, "header": ["zlib-d3", nbytes,
               raw_nbytes, crc32]} (UTF-8; versions 2-4: the record as an object)
    nbytes     the JSON header below, zlib-compressed with a preset dictionary of
               ``_header_dict`` (codec "zlib-d3"; "zlib-d2", "zlib-d1" and "zlib", no
               dictionary, are read too)
    ...        raw buffers in the order of the tensor table, each at the next file offset
               that is a multiple of its element size (of 64 for buffers of 1 MiB and
               more); the gaps are zero bytes and the last buffer ends the file

The header (zlib-compressed)::

    {"format": "dnn_adapter", "version": 5, "config": {...WrapConfig...},
     "tensors": {
        "<param fqn>": {"kind": "compressed", "requires_grad", "tree": <Encoded tree (codec,
                        meta -- dtype, shape, crc32 of the original bits --, ras, ...)>,
                        "buffers": [[part, dtype, shape], ...], "data_crc32"},
                        (version 5: without the fields a reader derives, ``_derive``)
        "<fqn>": {"kind": "dense", "dtype", "shape", "crc32"}}}

The header is a model's fixed cost, so it holds only what cannot be derived: offsets follow
from the sizes and the alignment rule, a compressed entry has one CRC-32 over its buffers'
bytes (not one per part), its dtype, shape and checksum are those of its codec meta, and
(version 5) the RAS sizes and buffer descriptions that follow from the rest are left out.
Version 4 files (every field written out), version 3 files (the data start and buffers of 4
KiB and more 64-byte aligned, the others 8, and the entry's CRC-32 over its padding too),
version 2 files (each buffer record with its offset, size and CRC-32; entries repeating
dtype/shape/crc32) and version 1 files (an uncompressed header, every buffer 64-byte
aligned) are still read; :class:`_File` fills version 3 to 5 records in to version 2's
shape, so one validation path reads them all.

Writing: every compressed tensor is decoded and compared with its checksum first, then the
file is written to a temporary file in the same folder, fsynced and renamed over the target.
Reading: every header field, offset and length is checked against the file size, every
buffer (versions 3 to 5: every entry's bytes; 4 and 5: and that its padding is zero)
against its CRC-32, and every decoded tensor against the original checksum; errors name the
layer and the problem (:class:`FileFormatError`).
"""

from __future__ import annotations

import json
import mmap as _mmap
import os
import stat
import struct
import tempfile
import zlib

import numpy as np
import torch
from torch import nn

from . import _derive
from ._bits import bits_of, crc32, dtype_info, out_bits
from ._header_dict import HEADER_DICT_1, HEADER_DICT_2, HEADER_DICT_3
from .codecs import CodecError, Encoded, encode_best, get_codec
from .ras import RASError
from .wrapping import (
    WrapConfig,
    _compressed_state_dict,
    _install_scopes,
    _plan,
    _state,
    attach_encoded,
    compressed_entries,
    set_prefetch,
    unwrap,
)

__all__ = ["save", "load", "read_header", "FileFormatError", "compress_state_dict"]

MAGIC = "dnn_adapter"
VERSION = 5  # written; versions 1 to 5 are read
ALIGN = 64  # buffers of BIG_BUFFER bytes or more; versions 1-3: the data start too
SMALL_ALIGN = 8  # smaller buffers (versions 2 and 3; since version 4: their element size)
BIG_BUFFER = 4096  # versions 2 and 3
BIG_BUFFER_4 = 1 << 20  # versions 4 and 5
MAX_HEADER = 1 << 28
# the inner header's codecs: plain zlib (files of versions 2 and 3 written before the
# dictionaries), zlib with the fixed preset dictionary of _header_dict for version 3
# ("zlib-d1"), version 4 ("zlib-d2") and version 5 ("zlib-d3", written)
_HEADER_DICTS = {"zlib": b"", "zlib-d1": HEADER_DICT_1, "zlib-d2": HEADER_DICT_2,
                 "zlib-d3": HEADER_DICT_3}
HEADER_CODEC = "zlib-d3"
_ALLOWED_NP = {
    "<u1",
    "<u2",
    "<u4",
    "<u8",
    "<i1",
    "<i2",
    "<i4",
    "<i8",
    "<f4",
    "<f8",
    "|u1",
    "|i1",
    "|b1",
}


class FileFormatError(ValueError):
    """The file is truncated, corrupt, or does not match the model."""


def _np_dtype_str(a: np.ndarray) -> str:
    return np.dtype(a.dtype).newbyteorder("<").str if a.dtype.itemsize > 1 else a.dtype.str


def _collect(model: nn.Module | None, state_dict=None, config: WrapConfig | None = None):
    """(entries, buffers): the header entries and the raw arrays to write, verified."""
    entries: dict[str, dict] = {}
    arrays: list[tuple[str, str, np.ndarray]] = []  # (fqn, part, array)

    def add_compressed(fqn, enc: Encoded, requires_grad: bool):
        # verify bit-exactness before writing (decode + checksum of the original bits)
        got = get_codec(enc.codec_id).decode(enc)
        if enc.meta.get("quant"):
            got = got.int_repr()
        if crc32(bits_of(got)[0]) != int(enc.meta["crc32"]):
            raise CodecError(f"{fqn}: decoded weight does not match the original; not writing")
        tree, bufs = enc.flatten()
        # dtype, shape and the original bits' checksum are in tree["meta"]
        entries[fqn] = {"kind": "compressed", "requires_grad": bool(requires_grad),
                        "tree": tree, "buffers": []}
        # widest elements first: the parts then pack with no padding between them
        for part, a in sorted(bufs.items(), key=lambda kv: -kv[1].dtype.itemsize):
            arrays.append((fqn, part, np.ascontiguousarray(a)))

    def add_dense(fqn, t):
        u, dt, shape = bits_of(t)
        entries[fqn] = {"kind": "dense", "dtype": dt.name, "shape": list(shape), "crc32": crc32(u)}
        arrays.append((fqn, "", u))

    if model is not None:
        done = set()
        for fqn, _mod, _p, e in compressed_entries(model):
            add_compressed(fqn, e.enc, e.requires_grad)
            done.add(fqn)
        if not done:  # unwrapped model: compress with the policy, model unchanged
            config = config or WrapConfig()
            for t in _plan(model, config, None, {}):
                p = t.owner._parameters[t.pname]
                fqn = f"{t.owner_name}.{t.pname}" if t.owner_name else t.pname
                enc = encode_best(p, form=t.form, candidates=config.codecs)
                add_compressed(fqn, enc, p.requires_grad)
                done.add(fqn)
        with _compressed_state_dict():
            sd = model.state_dict()
        for k, v in sd.items():
            if k not in done:
                add_dense(k, v)
    else:
        config = config or WrapConfig()
        for k, v in state_dict.items():
            if not isinstance(v, torch.Tensor):
                continue
            if v.numel() >= config.min_numel and (
                v.dtype.is_floating_point or v.is_quantized or v.dtype in (torch.int8, torch.uint8)
            ):
                form = "block" if v.dim() > 2 else "element"
                add_compressed(
                    k, encode_best(v, form=form, candidates=config.codecs), v.requires_grad
                )
            else:
                add_dense(k, v)
    return entries, arrays


def _align_of(nbytes: int, version: int = VERSION, itemsize: int = 1) -> int:
    """Where a buffer of *nbytes* bytes of *itemsize*-byte elements may start: a multiple of
    this, from the data start (versions 1-3, whose data start is 64-byte aligned) or from the
    start of the file (versions 4 and 5)."""
    if version >= 4:
        return ALIGN if nbytes >= BIG_BUFFER_4 else itemsize
    return ALIGN if version == 1 or nbytes >= BIG_BUFFER else SMALL_ALIGN


def _place_at(off: int, data0: int, nbytes: int, version: int, itemsize: int) -> int:
    """The data offset of a buffer that may start at data offset *off* or later."""
    a = _align_of(nbytes, version, itemsize)
    return off + -((data0 if version >= 4 else 0) + off) % a


def _new_file_mode(path: str) -> int:
    """The permission bits a plain ``open(path, "wb")`` would give: the existing file's, or
    0o666 less the umask (``mkstemp`` alone would leave a new file readable by its owner
    only)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    try:
        with open("/proc/self/status") as f:  # Linux: reads the umask without changing it
            um = next(int(ln.split()[1], 8) for ln in f if ln.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        um = os.umask(0o022)
        os.umask(um)
    return 0o666 & ~um


def _write(path, header: dict, arrays, entries) -> None:
    # since version 4: a compressed entry lists its parts (name, dtype, shape) and has one CRC-32
    # over its buffers' bytes; offsets are not stored: each buffer goes at the next file
    # offset its size and element size allow (_place_at), which the reader works out again
    for fqn, part, a in arrays:
        if part:
            e = entries[fqn]
            e["buffers"].append([part, _np_dtype_str(a), list(a.shape)])
            e["data_crc32"] = crc32(a, e.get("data_crc32", 0))
    for fqn, e in entries.items():
        if e["kind"] == "compressed":
            e.setdefault("data_crc32", 0)  # no buffers: the CRC-32 of no bytes
            # version 5: without the fields a reader derives (the entries dict is the
            # header's table, so the table is updated in place)
            entries[fqn] = _derive.compact(e)
    raw = json.dumps(header, separators=(",", ":")).encode()
    c = zlib.compressobj(9, zdict=_HEADER_DICTS[HEADER_CODEC])
    z = c.compress(raw) + c.flush()
    outer = {"format": MAGIC, "version": VERSION,
             "header": [HEADER_CODEC, len(z), len(raw), zlib.crc32(z)]}
    hj = json.dumps(outer, separators=(",", ":")).encode()
    data0 = 8 + len(hj) + len(z)
    offset, starts = 0, []
    for _fqn, _part, a in arrays:
        offset = _place_at(offset, data0, a.nbytes, VERSION, a.dtype.itemsize)
        starts.append(offset)
        offset += a.nbytes
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=".dnnz-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            f.write(z)
            pos = 0
            for (_fqn, _part, a), start in zip(arrays, starts, strict=True):
                f.write(b"\0" * (start - pos))
                f.write(memoryview(a).cast("B") if a.size else b"")
                pos = start + a.nbytes
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    with _suppress():
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def save(model: nn.Module, path, *, config: WrapConfig | None = None) -> None:
    """Write *model* (wrapped or not; it is not modified) to one file at *path*, atomically.

    Compressed weights of a wrapped model are written as they are; an unwrapped model is
    compressed with *config*'s policy. Every other state-dict entry is stored dense.
    """
    cfg = model.__dict__.get("_dnn_adapter_config") or config or WrapConfig()
    entries, arrays = _collect(model, config=cfg)
    header = {"format": MAGIC, "version": VERSION, "config": cfg.to_json(), "tensors": entries}
    _write(path, header, arrays, entries)


def compress_state_dict(
    state_dict: dict, path, *, config: WrapConfig | None = None, progress=None
) -> dict:
    """Compress a plain state dict (no model) to *path*; returns the header."""
    cfg = config or WrapConfig()
    if progress is not None:
        entries, arrays = {}, []
        for k in progress(list(state_dict)):
            e, a = _collect(None, {k: state_dict[k]}, cfg)
            entries.update(e)
            arrays += a
    else:
        entries, arrays = _collect(None, state_dict, cfg)
    header = {"format": MAGIC, "version": VERSION, "config": cfg.to_json(), "tensors": entries}
    _write(path, header, arrays, entries)
    return header


# ---- reading --------------------------------------------------------------------------------
class _File:
    def __init__(self, path, use_mmap: bool = True):
        self.path = os.fspath(path)
        size = os.path.getsize(self.path)
        if size < 8:
            raise FileFormatError(f"{self.path}: truncated (no header length)")
        with open(self.path, "rb") as f:
            if use_mmap and size:
                self.buf = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY)
            else:
                self.buf = bytearray(f.read())
        (hlen,) = struct.unpack_from("<Q", self.buf, 0)
        if hlen > min(size - 8, MAX_HEADER):
            raise FileFormatError(
                f"{self.path}: header length {hlen} exceeds the file (truncated?)"
            )
        self.size = size
        head = self._json(bytes(self.buf[8 : 8 + hlen]), "header")
        if not isinstance(head, dict) or head.get("format") != MAGIC:
            raise FileFormatError(f"{self.path}: not a dnn_adapter file")
        self.version = head.get("version")
        if self.version not in (1, 2, 3, 4, 5):
            raise FileFormatError(f"{self.path}: unsupported version {self.version!r}")
        self.data0 = 8 + hlen
        if self.version >= 2:
            head = self._inner(head.get("header"))
            if not isinstance(head, dict) or head.get("format") != MAGIC or head.get(
                    "version") != self.version:
                raise FileFormatError(f"{self.path}: compressed header is not a version "
                                      f"{self.version} dnn_adapter header")
        if not isinstance(head.get("tensors"), dict):
            raise FileFormatError(f"{self.path}: header has no tensor table")
        # versions 3 to 5: fqn -> (start, end, CRC-32 or None, buffer spans or None)
        self.regions: dict[str, tuple] = {}
        if self.version >= 3:
            self._place(head["tensors"])
        self.header = head

    def _place(self, tensors: dict) -> None:
        """Versions 3 to 5: work out every buffer's offset from the sizes in the table (version
        5: after filling in the fields it leaves out), and fill in the records as version 2
        has them (buffer offsets, sizes, the entry's dtype, shape and checksum), so that one
        validation path reads every version. The buffers must end exactly at the end of the
        file."""
        end = self.size - self.data0
        off = 0
        v4 = self.version >= 4
        v5 = self.version >= 5

        def place(fqn, nb, itemsize):  # the next buffer's offset; the file must hold it
            nonlocal off
            at = _place_at(off, self.data0, nb, self.version, itemsize)
            off = at + nb
            if off > end:
                raise FileFormatError(f"{fqn}: buffer runs past the end of the file "
                                      "(truncated)")
            return at

        for fqn, rec in tensors.items():
            if not isinstance(rec, dict):
                raise FileFormatError(f"{fqn}: malformed entry")
            if rec.get("kind") == "compressed":
                if v5:  # the fields left out because they can be derived
                    try:
                        _derive.expand(rec)
                    except _derive.ERRORS as e:
                        raise FileFormatError(f"{fqn}: malformed entry ({e})") from None
                tree, bufs = rec.get("tree"), rec.get("buffers")
                meta = tree.get("meta") if isinstance(tree, dict) else None
                crc = rec.get("data_crc32")
                if (not isinstance(meta, dict) or not isinstance(bufs, list)
                        or type(crc) is not int):
                    raise FileFormatError(f"{fqn}: malformed entry (tree, buffers or "
                                          "data_crc32)")
                placed, first, spans = {}, off, []
                for b in bufs:
                    if not (isinstance(b, list) and len(b) == 3 and isinstance(b[0], str)
                            and b[0] not in placed):
                        raise FileFormatError(f"{fqn}: malformed buffer list entry {b!r}")
                    part, dt, shape = b
                    nb = self._nbytes(fqn, dt, shape)
                    at = place(fqn, nb, np.dtype(dt).itemsize)
                    spans.append((at, nb))
                    placed[part] = {"offset": at, "nbytes": nb, "dtype": dt, "shape": shape}
                rec.update(buffers=placed, dtype=meta.get("dtype"), shape=meta.get("shape"),
                           crc32=meta.get("crc32"))
                if v4:  # the CRC-32 of the buffers; the padding before each must be zero
                    self.regions[fqn] = (first, off, crc, spans)
                else:  # version 3: the CRC-32 of the bytes from its first buffer to its end
                    self.regions[fqn] = (spans[0][0] if spans else off, off, crc, None)
            elif rec.get("kind") == "dense":
                try:
                    dt = dtype_info(rec["dtype"]).uint.str
                except (KeyError, TypeError) as e:
                    raise FileFormatError(f"{fqn}: malformed entry ({e})") from None
                nb = self._nbytes(fqn, dt, rec.get("shape"))
                first = off
                rec.update(offset=place(fqn, nb, np.dtype(dt).itemsize), nbytes=nb)
                if v4:  # its own CRC-32 is checked when it is read; here only the padding
                    self.regions[fqn] = (first, off, None, [(rec["offset"], nb)])
            else:
                raise FileFormatError(f"{fqn}: unknown entry kind {rec.get('kind')!r}")
        if off != end:
            raise FileFormatError(f"{self.path}: the buffers end at byte {self.data0 + off}, "
                                  f"the file at {self.size} (corrupt header or file)")

    def _nbytes(self, fqn, dtype, shape) -> int:
        if not isinstance(dtype, str) or dtype not in _ALLOWED_NP:
            raise FileFormatError(f"{fqn}: buffer dtype {dtype!r} not allowed")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise FileFormatError(f"{fqn}: malformed shape {shape!r}")
        n = np.dtype(dtype).itemsize
        for d in shape:  # Python ints: no overflow; a huge claim fails the size check
            n *= d
        return n

    def check_region(self, fqn) -> None:
        """Version 3: the CRC-32 of a compressed entry's bytes (its buffers and the padding
        between them). Versions 4 and 5: the CRC-32 of its buffers' bytes, and that the padding
        before each (dense entries too) is zero. Versions 1 and 2 check every buffer's own
        CRC-32 instead."""
        reg = self.regions.get(fqn)
        if reg is None:
            return
        a, b, want, spans = reg
        if spans is None:
            got = crc32(np.frombuffer(self.buf, np.uint8, b - a, self.data0 + a))
        else:
            got, pos = 0, a
            for at, nb in spans:
                if any(self.buf[self.data0 + pos : self.data0 + at]):
                    raise FileFormatError(f"{fqn}: non-zero padding (corrupt file)")
                if want is not None:
                    got = crc32(np.frombuffer(self.buf, np.uint8, nb, self.data0 + at), got)
                pos = at + nb
        if want is not None and got != want:
            raise FileFormatError(f"{fqn}: checksum mismatch (corrupt file)")

    def _json(self, raw: bytes, what: str):
        try:
            return json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise FileFormatError(f"{self.path}: {what} is not valid JSON ({e})") from None

    def _inner(self, rec):
        """Version 2: the zlib-compressed header after the outer one, checked."""
        try:
            if self.version >= 5:  # [codec, nbytes, raw_nbytes, crc32]
                if not isinstance(rec, list) or len(rec) != 4:
                    raise TypeError
                codec, nb, raw_nb, crc = rec
            else:
                codec, nb, raw_nb, crc = (rec["codec"], rec["nbytes"], rec["raw_nbytes"],
                                          rec["crc32"])
        except (KeyError, TypeError):
            raise FileFormatError(f"{self.path}: outer header has no compressed header "
                                  "record") from None
        if (not isinstance(codec, str) or codec not in _HEADER_DICTS
                or not all(type(v) is int for v in (nb, raw_nb, crc))):
            raise FileFormatError(f"{self.path}: unsupported compressed header {rec!r}")
        start = self.data0
        if nb < 0 or start + nb > self.size:
            raise FileFormatError(f"{self.path}: compressed header runs past the end of the "
                                  "file (truncated)")
        if not 0 <= raw_nb <= MAX_HEADER:
            raise FileFormatError(f"{self.path}: header size {raw_nb} out of range")
        if self.version <= 3 and (start + nb) % ALIGN:
            raise FileFormatError(f"{self.path}: data start not 64-byte aligned (corrupt)")
        z = bytes(self.buf[start : start + nb])
        if zlib.crc32(z) != crc:
            raise FileFormatError(f"{self.path}: header checksum mismatch (corrupt file)")
        zd = _HEADER_DICTS[codec]
        d = zlib.decompressobj(zdict=zd) if zd else zlib.decompressobj()
        try:
            raw = d.decompress(z, raw_nb + 1)  # never more than the size it claims
        except zlib.error as e:
            raise FileFormatError(f"{self.path}: compressed header is corrupt ({e})") from None
        if len(raw) != raw_nb or not d.eof or d.unused_data:
            raise FileFormatError(f"{self.path}: compressed header does not match its size")
        self.data0 = start + nb
        return self._json(raw, "compressed header")

    def span(self, rec) -> tuple[int, int]:
        """The file bytes [start, end) of a (validated) compressed entry's buffers."""
        bs = [(int(b["offset"]), int(b["nbytes"])) for b in rec["buffers"].values()]
        if not bs:
            return self.data0, self.data0
        return self.data0 + min(o for o, _ in bs), self.data0 + max(o + n for o, n in bs)

    def release(self, start: int, end: int) -> None:
        """Drop the mapped pages of file bytes [start, end) from this process's resident set
        (cached mode, once a tensor is decoded). The mapping is private and never written,
        so the pages are only dropped, not lost: a later read (save, unwrap) faults them in
        from the file again. A no-op without mmap or madvise."""
        adv = getattr(_mmap, "MADV_DONTNEED", None)
        if adv is None or not isinstance(self.buf, _mmap.mmap) or end <= start:
            return
        a = start - start % _mmap.PAGESIZE
        b = min(self.size, end + -end % _mmap.PAGESIZE)
        if b > a:
            self.buf.madvise(adv, a, b - a)

    def close(self) -> None:
        """Unmap the file; no array of it may be used after."""
        if isinstance(self.buf, _mmap.mmap):
            self.buf.close()

    def array(self, fqn, rec, dtype, shape, check_crc=True) -> np.ndarray:
        try:
            off, nb = int(rec["offset"]), int(rec["nbytes"])
        except (KeyError, TypeError, ValueError):
            raise FileFormatError(f"{fqn}: buffer record is malformed") from None
        if not isinstance(dtype, str) or dtype not in _ALLOWED_NP:
            raise FileFormatError(f"{fqn}: buffer dtype {dtype!r} not allowed")
        dt = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if (off < 0 or nb < 0 or nb != n * dt.itemsize
                or _place_at(off, self.data0, nb, self.version, dt.itemsize) != off):
            raise FileFormatError(f"{fqn}: buffer offset/size inconsistent")
        start = self.data0 + off
        if start + nb > self.size:
            raise FileFormatError(f"{fqn}: buffer runs past the end of the file (truncated)")
        a = np.frombuffer(self.buf, dtype=dt, count=n, offset=start).reshape(shape)
        if not a.flags.aligned:  # a read-in buffer whose memory is not 8-byte aligned
            a = np.require(a, requirements="A")
        if check_crc and crc32(a) != rec.get("crc32"):
            raise FileFormatError(f"{fqn}: checksum mismatch (corrupt file)")
        return a


def read_header(path) -> dict:
    """The JSON header of a compressed file (validated). The file is mapped, not read: only
    the pages of the header are touched."""
    f = _File(path)
    try:
        return f.header
    finally:
        f.close()


def _decode_entry(f: _File, fqn: str, rec: dict) -> Encoded:
    f.check_region(fqn)  # version 3: one CRC-32 per entry, not per buffer
    try:
        bufs = {}
        for part, b in rec["buffers"].items():
            bufs[part] = f.array(fqn, b, b["dtype"], [int(s) for s in b["shape"]],
                                 check_crc=f.version < 3)
        enc = Encoded.unflatten(rec["tree"], bufs)
    except (KeyError, TypeError, AttributeError) as e:
        raise FileFormatError(f"{fqn}: malformed entry ({e})") from None
    except (CodecError, RASError, ValueError) as e:
        if isinstance(e, FileFormatError):
            raise
        raise FileFormatError(f"{fqn}: corrupt compressed parts ({e})") from None
    if enc.meta.get("dtype") != rec.get("dtype") or enc.meta.get("shape") != rec.get("shape"):
        raise FileFormatError(f"{fqn}: entry and parts disagree on dtype/shape")
    if type(enc.meta.get("crc32")) is not int:
        raise FileFormatError(f"{fqn}: malformed entry (no checksum of the weight)")
    return enc


def _verify_enc(fqn, enc: Encoded) -> torch.Tensor:
    try:
        got = get_codec(enc.codec_id).decode(enc)
    except (CodecError, RASError, ValueError, IndexError) as e:
        raise FileFormatError(f"{fqn}: cannot decode ({e})") from None
    t = got.int_repr() if enc.meta.get("quant") else got
    if crc32(bits_of(t)[0]) != int(enc.meta["crc32"]):
        raise FileFormatError(f"{fqn}: decoded weight does not match its checksum (corrupt)")
    return got


def load(
    path,
    model: nn.Module,
    *,
    mode: str | None = None,
    mmap: bool = True,
    verify: bool = True,
    strict: bool = True,
) -> nn.Module:
    """Load a file written by :func:`save` into *model* (same architecture); returns *model*.

    Compressed entries are installed as compressed weights (``mode``: ``"streaming"`` or
    ``"cached"``, default from the file); dense entries are copied into the model's
    parameters/buffers bit for bit. With *verify*, every compressed entry is decoded and
    checked first (cached mode keeps that decode). Cached mode with *mmap* then drops each
    decoded entry's file pages from memory (they are read back from the file if needed).
    Any mismatch (missing/unexpected layer, shape, dtype), truncation or corruption raises
    :class:`FileFormatError` naming the layer.
    """
    f = _File(path, use_mmap=mmap)
    try:
        cfg = WrapConfig.from_json(f.header.get("config", {}))
    except (TypeError, ValueError) as e:
        raise FileFormatError(f"{f.path}: bad config in header ({e})") from None
    mode = mode or cfg.mode
    tensors = f.header["tensors"]
    if any(_state(m) for m in model.modules()):
        unwrap(model)
    with _compressed_state_dict():
        sd = model.state_dict(keep_vars=True)
    if strict:
        missing = [k for k in sd if k not in tensors]
        extra = [k for k in tensors if k not in sd]
        if missing or extra:
            raise FileFormatError(
                f"{f.path}: model does not match the file (missing from file: {missing[:5]}, "
                f"not in model: {extra[:5]})"
            )
    plan = []
    for fqn, rec in tensors.items():
        if not isinstance(rec, dict):
            raise FileFormatError(f"{fqn}: malformed entry")
        if fqn not in sd:
            continue
        cur = sd[fqn]
        want_shape = rec.get("shape")
        if list(cur.shape) != want_shape or str(cur.dtype).removeprefix("torch.") != rec.get(
            "dtype"
        ):
            raise FileFormatError(
                f"{fqn}: file has {rec.get('dtype')} {want_shape}, model has "
                f"{str(cur.dtype).removeprefix('torch.')} {list(cur.shape)} (wrong model?)"
            )
        if rec.get("kind") == "compressed":
            enc = _decode_entry(f, fqn, rec)
            owner, _, pname = fqn.rpartition(".")
            mod = model.get_submodule(owner)
            if pname not in mod._parameters:
                raise FileFormatError(f"{fqn}: compressed entry is not a parameter of the model")
            got = None
            if verify:
                got = _verify_enc(fqn, enc)
                # cached mode keeps this decode; streaming needs none until the forward
                got = got if mode == "cached" and not enc.meta.get("quant") else None
            plan.append(("c", owner, pname, enc, bool(rec.get("requires_grad", True)), got,
                         f.span(rec)))
        elif rec.get("kind") == "dense":
            try:
                dt = dtype_info(rec["dtype"])
            except TypeError as e:
                raise FileFormatError(f"{fqn}: {e}") from None
            f.check_region(fqn)  # versions 4 and 5: the padding before it
            a = f.array(fqn, rec, dt.uint.str, [int(s) for s in rec["shape"]])
            plan.append(("d", fqn, cur, a, dt))
        else:
            raise FileFormatError(f"{fqn}: unknown entry kind {rec.get('kind')!r}")
    # everything validated: now change the model
    with torch.no_grad():
        for item in plan:
            if item[0] == "d":
                _, fqn, cur, a, dt = item
                out_bits(cur.data, dt)[...] = a.reshape(-1)
            else:
                _, owner, pname, enc, rg, got, span = item
                attach_encoded(model, owner, pname, enc, mode, rg, decoded=got)
                if mode == "cached":
                    f.release(*span)  # decoded: its file pages need not stay resident
    _install_scopes(model)
    cj = {**cfg.to_json(), "mode": mode}
    if mode != "streaming":  # streaming-only options do not apply to a cached load
        cj.update(fused=False, fused_cache=False, prefetch=False)
    model.__dict__["_dnn_adapter_config"] = WrapConfig(**cj)
    if cj["prefetch"]:
        set_prefetch(model, cj["prefetch"])
    if cj["fused"]:
        from .fused import enable

        enable(model, cache=cj["fused_cache"])
    return model
