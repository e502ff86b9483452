"""The shared binary container of every ``wavelet`` structure (docs/format.md).

One layout for disk, memory, pickle and GPU: a 64-byte header, a block of
little-endian uint64 *meta* words, a section table, then the raw sections,
each 64-byte aligned. Readers validate every field, length and offset before
any C code sees the data, with CRC-32 checksums on the header and on every
section; the structure's own ``validate`` then checks that the index arrays
agree with the bits.

Structures plug in with :func:`register_kind`; each provides
``_to_parts() -> (meta: list[int], sections: list[(tag, ndarray)])`` and a
classmethod ``_from_parts(meta, sections: dict[str, ndarray])``.
"""

from __future__ import annotations

import mmap as _mmap
import os
import pickle
import stat
import struct
import tempfile
import zlib

import numpy as np

from ._core import WaveletError

MAGIC = b"\x89WVLT\r\n\x1a"
VERSION_MAJOR = 1
# 1.1: WaveletTree symbol tables as one SYMC section; 1.2: compact index; 1.3: the index
# sections may be left out (store_index=False) and are then rebuilt by the reader
VERSION_MINOR = 3
HEADER_SIZE = 64
SECTION_ENTRY = 32
ALIGN = 64
MAX_SECTIONS = 256
MAX_META = 4096

_HDR = struct.Struct("<8sHHHHQIIIIQ16x")  # 64 bytes
_SEC = struct.Struct("<4sB3xQQII")  # 32 bytes
assert _HDR.size == HEADER_SIZE and _SEC.size == SECTION_ENTRY

# dtype codes in the section table
_DTYPES = {1: "<u1", 2: "<u2", 3: "<u4", 4: "<u8", 5: "<i1", 6: "<i2", 7: "<i4", 8: "<i8"}
_CODES = {(np.dtype(v).kind, np.dtype(v).itemsize): k for k, v in _DTYPES.items()}

_KINDS: dict[int, type] = {}
KIND_NAMES = {1: "BitVector", 2: "WaveletMatrix", 3: "WaveletTree"}


def register_kind(kind: int):
    def deco(cls):
        _KINDS[kind] = cls
        cls._KIND = kind
        return cls

    return deco


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _le(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not _NATIVE_LE):
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


_NATIVE_LE = np.little_endian


def header_layout(nmeta: int, nsec: int) -> int:
    return _align(HEADER_SIZE + 8 * nmeta + SECTION_ENTRY * nsec)


def pack(kind: int, meta, sections) -> bytes:
    """Serialize to a single ``bytes`` object."""
    out = bytearray()
    for chunk in iter_chunks(kind, meta, sections):
        out += chunk
    return bytes(out)


def iter_chunks(kind: int, meta, sections):
    """Yield the serialized form piece by piece (header, then each section)."""
    meta = [int(m) for m in meta]
    if len(meta) > MAX_META or len(sections) > MAX_SECTIONS:
        raise ValueError("too many meta words or sections")
    arrays = []
    for tag, a in sections:
        a = _le(np.asarray(a))
        if (a.dtype.kind, a.dtype.itemsize) not in _CODES:
            raise TypeError(f"section {tag!r}: unsupported dtype {a.dtype}")
        arrays.append((tag, a))
    hlen = header_layout(len(meta), len(arrays))
    off = hlen
    table = bytearray()
    layout = []
    for tag, a in arrays:
        tb = tag.encode("ascii")
        if len(tb) != 4:
            raise ValueError(f"section tag must be 4 ASCII characters: {tag!r}")
        nbytes = a.nbytes
        crc = zlib.crc32(memoryview(a).cast("B")) if nbytes else 0
        code = _CODES[(a.dtype.kind, a.dtype.itemsize)]
        table += _SEC.pack(tb, code, off, nbytes, crc, 0)
        layout.append((off, a))
        off = _align(off + nbytes)
    total = off
    body = struct.pack(f"<{len(meta)}Q", *meta) + bytes(table)
    hdr = bytearray(hlen)
    hdr[HEADER_SIZE : HEADER_SIZE + len(body)] = body
    fixed = _HDR.pack(
        MAGIC, VERSION_MAJOR, VERSION_MINOR, kind, 0, total, len(arrays), len(meta), 0, 0, hlen
    )
    hdr[:HEADER_SIZE] = fixed
    hcrc = zlib.crc32(hdr)
    struct.pack_into("<I", hdr, 32, hcrc)
    yield bytes(hdr)
    pos = hlen
    for off, a in layout:
        if off > pos:
            yield b"\0" * (off - pos)
        yield memoryview(a).cast("B")
        pos = off + a.nbytes
    if total > pos:
        yield b"\0" * (total - pos)


def parse(buffer, *, max_bytes: int | None = None, verify: bool = True):
    """Validate a serialized structure and return ``(kind, meta, sections)``.

    ``sections`` maps tags to read-only numpy views into *buffer* (no copy).
    Every header field, length and offset is checked; ``verify`` also checks
    the CRC-32 of every section. Raises :class:`WaveletError` (a ValueError)
    naming the problem.
    """
    mv = memoryview(buffer)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    n = mv.nbytes
    if max_bytes is not None and n > max_bytes:
        raise WaveletError(f"load: {n} bytes exceed max_bytes={max_bytes}")
    if n < HEADER_SIZE:
        raise WaveletError(f"load: truncated header ({n} bytes, need {HEADER_SIZE})")
    (magic, vmaj, vmin, kind, flags, total, nsec, nmeta, hcrc, _r, hlen) = _HDR.unpack_from(mv, 0)
    if magic != MAGIC:
        raise WaveletError("load: bad magic (not a wavelet structure)")
    if vmaj != VERSION_MAJOR:
        raise WaveletError(f"load: unsupported format version {vmaj}.{vmin}")
    if flags != 0:
        raise WaveletError(f"load: unknown flags 0x{flags:x}")
    if kind not in _KINDS:
        raise WaveletError(f"load: unknown structure kind {kind}")
    if nsec > MAX_SECTIONS or nmeta > MAX_META:
        raise WaveletError("load: too many sections or meta words")
    if hlen != header_layout(nmeta, nsec):
        raise WaveletError(f"load: bad header length {hlen}")
    if total != n:
        if total > n:
            raise WaveletError(f"load: truncated ({n} bytes, header says {total})")
        raise WaveletError(f"load: {n - total} trailing bytes after the structure")
    if hlen > n:
        raise WaveletError("load: truncated header")
    hdr = bytearray(mv[:hlen])
    struct.pack_into("<I", hdr, 32, 0)
    if zlib.crc32(hdr) != hcrc:
        raise WaveletError("load: header checksum mismatch")
    meta = struct.unpack_from(f"<{nmeta}Q", mv, HEADER_SIZE)
    sections = {}
    prev_end = hlen
    for s in range(nsec):
        tag, code, off, nbytes, crc, _r2 = _SEC.unpack_from(mv, HEADER_SIZE + 8 * nmeta + 32 * s)
        try:
            tname = tag.decode("ascii")
        except UnicodeDecodeError:
            raise WaveletError(f"load: section {s} has a non-ASCII tag") from None
        if tname in sections:
            raise WaveletError(f"load: duplicate section {tname!r}")
        if code not in _DTYPES:
            raise WaveletError(f"load: section {tname!r} has unknown dtype code {code}")
        dt = np.dtype(_DTYPES[code])
        if off % ALIGN or off < prev_end or off + nbytes > total or nbytes % dt.itemsize:
            raise WaveletError(f"load: section {tname!r} has a bad offset or length")
        view = mv[off : off + nbytes]
        if verify and (zlib.crc32(view) if nbytes else 0) != crc:
            raise WaveletError(f"load: section {tname!r} checksum mismatch")
        arr = np.frombuffer(view, dtype=dt) if nbytes else np.empty(0, dtype=dt)
        if not _NATIVE_LE:  # pragma: no cover - big-endian hosts
            arr = arr.astype(dt.newbyteorder("="))
        else:
            arr = arr.view(dt.newbyteorder("="))
        if not arr.flags.aligned:  # a caller's buffer at an odd address: copy
            arr = arr.copy()
        arr.flags.writeable = False
        sections[tname] = arr
        prev_end = off + nbytes
    return kind, meta, sections


def from_buffer(buffer, *, expect=None, max_bytes=None, verify=True):
    kind, meta, sections = parse(buffer, max_bytes=max_bytes, verify=verify)
    cls = _KINDS[kind]
    if expect is not None and not issubclass(cls, expect):
        raise WaveletError(
            f"load: file holds a {KIND_NAMES.get(kind, kind)}, not a {expect.__name__}"
        )
    return cls._from_parts(meta, sections)


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


def save(obj, path, *, store_index: bool = True) -> None:
    """Write atomically: a temporary file in the same directory, fsync, rename."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    meta, sections = obj._to_parts(store_index)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=".wvtmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            for chunk in iter_chunks(obj._KIND, meta, sections):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path, *, mmap: bool = False, expect=None, max_bytes=None, verify=True):
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise WaveletError(f"load: {path}: {size} bytes exceed max_bytes={max_bytes}")
        if mmap and size >= HEADER_SIZE:
            data = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
        else:
            data = f.read()
    try:
        return from_buffer(data, expect=expect, max_bytes=max_bytes, verify=verify)
    except WaveletError as e:
        raise WaveletError(f"{e} [{path}]") from None


# ---- pickle protocol 5 (out-of-band buffers) ---------------------------------


def reduce(obj, protocol):
    meta, sections = obj._to_parts()
    tags = [t for t, _ in sections]
    arrays = [np.ascontiguousarray(a) for _, a in sections]
    if protocol >= 5:
        bufs = [pickle.PickleBuffer(a) for a in arrays]
    else:
        bufs = [a.tobytes() for a in arrays]
    dtypes = [a.dtype.str for a in arrays]
    return _unpickle, (obj._KIND, tuple(meta), tags, dtypes, bufs)


def _unpickle(kind, meta, tags, dtypes, bufs):
    if kind not in _KINDS:
        raise WaveletError(f"unpickle: unknown structure kind {kind}")
    sections = {}
    for t, d, b in zip(tags, dtypes, bufs, strict=True):
        dt = np.dtype(d)
        mv = memoryview(b).cast("B")
        if mv.nbytes % dt.itemsize:
            raise WaveletError(f"unpickle: section {t!r} has a bad length")
        arr = np.frombuffer(mv, dtype=dt) if mv.nbytes else np.empty(0, dtype=dt)
        if not arr.flags.aligned:
            arr = arr.copy()
        sections[t] = arr
    return _KINDS[kind]._from_parts(tuple(meta), sections)
