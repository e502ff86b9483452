"""dnn_adapter's file format is stable: files written by formats 1 to 5
(tests/fixtures/dnn_v1.dnnz ... dnn_v5.dnnz, made by tests/fixtures/make_fixtures.py) keep
loading bit for bit."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from _dnn_fixture import fixture_model, fixture_model_v2, fixture_model_v4  # noqa: E402

import dnn_adapter  # noqa: E402
from dnn_adapter.io import FileFormatError, read_header  # noqa: E402

HERE = Path(__file__).parent / "fixtures"
FIXTURES = {1: (HERE / "dnn_v1.dnnz", fixture_model), 2: (HERE / "dnn_v2.dnnz", fixture_model_v2),
            3: (HERE / "dnn_v3.dnnz", fixture_model_v2),
            4: (HERE / "dnn_v4.dnnz", fixture_model_v4),
            5: (HERE / "dnn_v5.dnnz", fixture_model_v4)}
VERSIONS = sorted(FIXTURES)
INTV = {2: torch.int16, 4: torch.int32}


def _blank(version):
    m = FIXTURES[version][1]()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def _assert_same_state(m, ref, why=""):
    """Every tensor of *m*'s state dict bit for bit that of *ref* (integer views)."""
    sd = m.state_dict()
    for k, v in ref.state_dict().items():
        iv = INTV.get(v.element_size(), v.dtype)
        assert torch.equal(sd[k].view(iv), v.view(iv)), (why, k)


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_header_covers_every_codec_and_form(version):
    h = read_header(FIXTURES[version][0])
    assert h["version"] == version
    trees = {k: v["tree"] for k, v in h["tensors"].items() if v["kind"] == "compressed"}
    codecs = {"float", "sparse", "dict"} | ({"narrow"} if version >= 2 else set())
    assert {t["codec"] for t in trees.values()} == codecs
    assert {t["meta"]["form"] for t in trees.values()} == {"block", "element"}
    if version <= 3:  # version 4's writer stores these 205 distances plainly, in one block
        assert "esc" in trees["1.weight"]["meta"]  # escaped gaps
    assert trees["emb.weight"]["meta"]["dtype"] == "bfloat16"
    if version >= 2:
        assert set(trees["lin16.weight"]["children"]) == {"values"}
        assert set(trees["emb32.weight"]["children"]) == {"values", "rest"}  # row split
    if version >= 4:
        assert trees["negz.weight"]["meta"]["zsign"] == 1  # zeros of either sign


@pytest.mark.parametrize("mode", ["streaming", "cached"])
@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_loads_bit_exact(version, mode):
    ref = FIXTURES[version][1]()
    m = dnn_adapter.load(FIXTURES[version][0], _blank(version), mode=mode)
    sd = m.state_dict()
    for k, v in ref.state_dict().items():
        a, b = sd[k], v
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert torch.equal(a.view(INTV[a.element_size()]), b.view(INTV[b.element_size()])), k
    x = torch.randn(5, 64)
    with torch.inference_mode():
        seq = torch.nn.Sequential(*[m[i] for i in range(3)])
        ref_seq = torch.nn.Sequential(*[ref[i] for i in range(3)])
        assert torch.equal(seq(x), ref_seq(x))
        idx = torch.arange(40)
        assert torch.equal(m.emb(idx).view(torch.int16), ref.emb(idx).view(torch.int16))
        if version >= 2:
            assert torch.equal(m.lin16(x), ref.lin16(x))
            idx = torch.tensor([0, 7, 8, 64, 119, 120, 127, 3])  # both sides of the split
            assert torch.equal(m.emb32(idx).view(torch.int32), ref.emb32(idx).view(torch.int32))
        if version >= 4:
            assert torch.equal(m.negz(x), ref.negz(x))


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_truncated_copy_is_rejected(tmp_path, version):
    data = FIXTURES[version][0].read_bytes()
    bad = tmp_path / "cut.dnnz"
    for cut in (len(data) // 2, 200, 9):
        bad.write_bytes(data[:cut])
        with pytest.raises(FileFormatError):
            dnn_adapter.load(bad, _blank(version))


# ---- versions 2 to 5: the compressed header -------------------------------------------------
_RECORD = ("codec", "nbytes", "raw_nbytes", "crc32")  # version 5 writes them as a list


def _split(data: bytes):
    """(outer header dict, compressed header, data section) of a version 2 to 5 file; the
    compressed header's record as a dict whatever the version."""
    (hlen,) = struct.unpack_from("<Q", data, 0)
    outer = json.loads(data[8 : 8 + hlen])
    if isinstance(outer["header"], list):
        outer["header"] = dict(zip(_RECORD, outer["header"], strict=True))
    nb = outer["header"]["nbytes"]
    return outer, data[8 + hlen : 8 + hlen + nb], data[8 + hlen + nb :]


def _join(outer: dict, z: bytes, body: bytes, like: bytes | None = None) -> bytes:
    """A file of these parts, the data starting 64-byte aligned, or (*like*, a version 4 or 5
    file) at the same offset modulo 64 as in *like*, so its buffers stay aligned."""
    want = 0 if like is None else (len(like) - len(_split(like)[2])) % 64
    rec = outer.get("header")
    if outer.get("version") == 5 and isinstance(rec, dict):  # the record as a list again
        outer = dict(outer, header=[rec[k] for k in _RECORD if k in rec])
    hj = json.dumps(outer).encode()
    hj += b" " * ((want - (8 + len(hj) + len(z))) % 64)
    return struct.pack("<Q", len(hj)) + hj + z + body


def _inflate(outer: dict, z: bytes) -> bytes:
    from dnn_adapter.io import _HEADER_DICTS

    zd = _HEADER_DICTS[outer["header"]["codec"]]
    d = zlib.decompressobj(zdict=zd) if zd else zlib.decompressobj()
    return d.decompress(z) + d.flush()


def _expand(head: dict) -> dict:
    """A version 5 header with every derived field written out (a valid version 5 header
    too, the one version 4 would have)."""
    from dnn_adapter import _derive

    for rec in head["tensors"].values():
        if rec["kind"] == "compressed":
            _derive.expand(rec)
    return head


def _rewrite(data: bytes, edit=None, body_edit=None, expand=True) -> bytes:
    """*data* with its inner header edited (as a dict; version 5: with its derived fields
    written out, unless not *expand*) and recompressed (plain zlib) with a valid CRC."""
    outer, z, body = _split(data)
    head = json.loads(_inflate(outer, z))
    if expand and outer["version"] >= 5:
        _expand(head)
    if edit is not None:
        edit(head)
    if body_edit is not None:
        body = body_edit(body)
    raw = json.dumps(head).encode()
    z = zlib.compress(raw)
    outer["header"].update(codec="zlib", nbytes=len(z), raw_nbytes=len(raw),
                           crc32=zlib.crc32(z))
    return _join(outer, z, body, like=data if outer["version"] >= 4 else None)


def test_v2_layout():
    data = FIXTURES[2][0].read_bytes()
    outer, z, body = _split(data)
    assert outer["format"] == "dnn_adapter" and outer["version"] == 2
    rec = outer["header"]
    assert rec["codec"] == "zlib" and rec["crc32"] == zlib.crc32(z)
    raw = zlib.decompress(z)
    assert len(raw) == rec["raw_nbytes"] and len(z) < len(raw) / 3
    assert json.loads(raw) == read_header(FIXTURES[2][0])
    assert (len(data) - len(body)) % 64 == 0  # the data starts 64-byte aligned
    bufs = [b for t in json.loads(raw)["tensors"].values()
            for b in (t.get("buffers") or {"": t}).values()]
    assert any(b["offset"] % 64 for b in bufs)  # small buffers pack on 8 bytes
    for b in bufs:
        assert b["offset"] % (64 if b["nbytes"] >= 4096 else 8) == 0


def _table_parts(rec):
    """``[(numpy dtype, shape)]`` of a version 3/4 table entry's buffers, in file order,
    checking that the entry stores no offsets and (compressed) only its five fields."""
    assert "offset" not in rec and "nbytes" not in rec
    if rec["kind"] == "dense":
        return [(np.dtype(rec["dtype"].replace("bfloat16", "float16")), rec["shape"])]
    assert set(rec) == {"kind", "requires_grad", "tree", "buffers", "data_crc32"}
    return [(np.dtype(dt), shape) for _name, dt, shape in rec["buffers"]]


def test_v3_layout():
    """No offsets, no per-buffer records: each buffer at the next offset its size allows, in
    table order, the last one ending the file; one CRC-32 per compressed entry."""
    data = FIXTURES[3][0].read_bytes()
    outer, z, body = _split(data)
    assert outer["version"] == 3 and outer["header"]["crc32"] == zlib.crc32(z)
    head = json.loads(zlib.decompress(z))
    assert head["version"] == 3 and (len(data) - len(body)) % 64 == 0
    off, packed = 0, False
    for rec in head["tensors"].values():
        parts = _table_parts(rec)
        start = None
        for dt, shape in parts:
            nb = dt.itemsize * int(np.prod(shape))
            align = 64 if nb >= 4096 else 8
            packed |= off % align != off % 64
            off += -off % align
            start = off if start is None else start
            off += nb
        if rec["kind"] == "compressed":
            assert zlib.crc32(body[start:off]) == rec["data_crc32"]
    assert off == len(body) and packed
    # read_header fills in version 2's records (offsets, sizes; dtype/shape/crc32 from meta)
    h = read_header(FIXTURES[3][0])
    for fqn, rec in h["tensors"].items():
        if rec["kind"] == "compressed":
            meta = rec["tree"]["meta"]
            assert (rec["dtype"], rec["shape"], rec["crc32"]) == (
                meta["dtype"], meta["shape"], meta["crc32"])
            assert all({"offset", "nbytes", "dtype", "shape"} <= set(b)
                       for b in rec["buffers"].values()), fqn


@pytest.mark.parametrize("version", [4, 5])
def test_v4_layout(tmp_path, version):
    """Versions 4 and 5: each buffer at the next file offset that is a multiple of its
    element size (64 from 1 MiB), an entry's parts widest first, its CRC-32 over its buffers
    alone, zero padding, and no padding after the outer header."""
    from dnn_adapter._bits import dtype_info
    from dnn_adapter.io import _File

    big = torch.nn.Linear(768, 768)  # raw planes of 2 x 589,824 bytes
    with torch.no_grad():
        big.weight.copy_(torch.from_numpy(np.linspace(-0.1, 0.1, 768 * 768).reshape(768, 768)))
    fixture = FIXTURES[version][0]
    for path in [fixture] + ([tmp_path / "big.dnnz"] if version == VERSIONS[-1] else []):
        if path != fixture:
            dnn_adapter.save(torch.nn.Sequential(fixture_model_v4(), big), path)
        data = path.read_bytes()
        outer, z, body = _split(data)
        assert outer["version"] == version and outer["header"]["crc32"] == zlib.crc32(z)
        assert data[8 : 8 + struct.unpack_from("<Q", data)[0]].rstrip() == data[
            8 : 8 + struct.unpack_from("<Q", data)[0]]  # no padding spaces
        head = json.loads(_inflate(outer, z))
        if version >= 5:
            _expand(head)
        data0 = len(data) - len(body)
        off, pad, aligned64 = 0, 0, 0
        for rec in head["tensors"].values():
            parts = _table_parts(rec)
            if rec["kind"] == "compressed":
                sizes = [dt.itemsize for dt, _ in parts]
                assert sizes == sorted(sizes, reverse=True)
            crc = 0
            for dt, shape in parts:
                nb = dt.itemsize * int(np.prod(shape))
                align = 64 if nb >= 1 << 20 else dt.itemsize
                aligned64 += align == 64
                start = off + -(data0 + off) % align
                assert body[off:start] == bytes(start - off)
                pad += start - off
                crc = zlib.crc32(body[start : start + nb], crc)
                off = start + nb
            if rec["kind"] == "compressed":
                assert crc == rec["data_crc32"]
        assert off == len(body) and pad < 8 * len(head["tensors"])
        assert (aligned64 > 0) == (path != fixture)
        f = _File(path)  # every buffer viewed in place, aligned for its type
        try:
            for fqn, rec in f.header["tensors"].items():
                if rec["kind"] == "compressed":
                    views = [(b, b["dtype"]) for b in rec["buffers"].values()]
                else:
                    views = [(rec, dtype_info(rec["dtype"]).uint.str)]
                for b, dt in views:
                    a = f.array(fqn, b, dt, [b["nbytes"] // np.dtype(dt).itemsize],
                                check_crc=False)
                    ok = a.flags.aligned and (f.data0 + b["offset"]) % a.itemsize == 0
                    del a
                    assert ok, (fqn, b)
        finally:
            f.close()
        m = dnn_adapter.load(path, torch.nn.Sequential(_blank(4), torch.nn.Linear(768, 768))
                             if path != fixture else _blank(version))
        if path != fixture:
            dnn_adapter.unwrap(m)
            assert torch.equal(m[1].weight.view(torch.int32), big.weight.view(torch.int32))


@pytest.mark.parametrize("version", [4, 5])
def test_v4_padding_must_be_zero(tmp_path, version):
    data = FIXTURES[version][0].read_bytes()
    outer, z, body = _split(data)
    f = dnn_adapter.io._File(FIXTURES[version][0])
    regions = dict(f.regions)
    f.close()
    gaps = [(fqn, a) for fqn, (a, _b, _c, spans) in regions.items() if spans[0][0] > a]
    assert gaps  # the fixture has padding
    bad = tmp_path / "bad.dnnz"
    for fqn, a in gaps[:4]:
        flipped = bytearray(data)
        flipped[len(data) - len(body) + a] = 1
        bad.write_bytes(bytes(flipped))
        with pytest.raises(FileFormatError, match=rf"{fqn}: non-zero padding"):
            dnn_adapter.load(bad, _blank(version), verify=False)


def test_each_version_is_smaller_than_the_last(tmp_path):
    """The same models written now (version 5) against the fixtures of versions 1 to 4:
    same tensors, less header and padding (and since version 3, better codecs)."""
    path = tmp_path / "m.dnnz"
    cfg = dnn_adapter.WrapConfig(min_numel=256, overrides={"0": "block", "emb": "block"})
    dnn_adapter.save(fixture_model(), path, config=cfg)
    assert read_header(path)["version"] == 5
    assert path.stat().st_size < 0.85 * FIXTURES[1][0].stat().st_size
    cfg = dnn_adapter.WrapConfig(min_numel=256, overrides={"0": "block", "emb": "block",
                                                           "emb32": "block"})
    dnn_adapter.save(fixture_model_v2(), path, config=cfg)
    assert path.stat().st_size < 0.98 * FIXTURES[2][0].stat().st_size
    assert path.stat().st_size < FIXTURES[3][0].stat().st_size
    dnn_adapter.save(fixture_model_v4(), path, config=cfg)
    assert path.stat().st_size < FIXTURES[4][0].stat().st_size - 300


@pytest.mark.parametrize("version", [2, 3, 4, 5])
@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda o, z: (o["header"].__setitem__("codec", "gzip"), z), "unsupported compressed"),
        (lambda o, z: (o["header"].pop("crc32"), z), "no compressed header record"),
        (lambda o, z: (o.pop("header"), z), "no compressed header record"),
        (lambda o, z: (o["header"].__setitem__("nbytes", "12"), z), "unsupported compressed"),
        (lambda o, z: (o["header"].__setitem__("raw_nbytes", 2**40), z), "out of range"),
        (lambda o, z: (o["header"].__setitem__("raw_nbytes", o["header"]["raw_nbytes"] - 1),
                       z), "does not match its size"),
        (lambda o, z: (o["header"].__setitem__("raw_nbytes", o["header"]["raw_nbytes"] + 1),
                       z), "does not match its size"),
        (lambda o, z: (o.__setitem__("version", 6), z), "unsupported version 6"),
        (lambda o, z: (o.__setitem__("format", "other"), z), "not a dnn_adapter file"),
        (lambda o, z: (None, z[:-1] + bytes([z[-1] ^ 1])), "checksum mismatch"),
    ],
)
def test_bad_outer_or_compressed_header(tmp_path, version, mutate, match):
    data = FIXTURES[version][0].read_bytes()
    outer, z, body = _split(data)
    _, z = mutate(outer, z)
    bad = tmp_path / "bad.dnnz"
    bad.write_bytes(_join(outer, z, body, like=data if version >= 4 else None))
    with pytest.raises(FileFormatError, match=match):
        dnn_adapter.load(bad, _blank(version))


@pytest.mark.parametrize("version", [2, 3, 4, 5])
@pytest.mark.parametrize(
    "raw,match",
    [
        (b"not json at all", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # too deep to parse
        (json.dumps({"format": "dnn_adapter", "version": 1, "tensors": {}}).encode(),
         "not a version [2-5] dnn_adapter header"),
        (json.dumps({"format": "dnn_adapter", "version": "X"}).encode(), "not a version [2-5]"),
    ],
)
def test_bad_inner_header(tmp_path, version, raw, match):
    data = FIXTURES[version][0].read_bytes()
    outer, _z, body = _split(data)
    raw = raw.replace(b'"X"', str(version).encode())
    if b'"version": ' + str(version).encode() in raw:
        match = "no tensor table"
    z = zlib.compress(raw)
    outer["header"].update(codec="zlib", nbytes=len(z), raw_nbytes=len(raw),
                           crc32=zlib.crc32(z))
    bad = tmp_path / "bad.dnnz"
    bad.write_bytes(_join(outer, z, body, like=data if version >= 4 else None))
    with pytest.raises(FileFormatError, match=match):
        dnn_adapter.load(bad, _blank(version))


def test_v2_header_bomb_and_garbage_are_rejected(tmp_path):
    """A compressed header larger than it claims is cut off at the claim (never inflated in
    full); bytes that are not zlib, with a valid checksum, are a corrupt header."""
    outer, _z, body = _split(FIXTURES[2][0].read_bytes())
    bad = tmp_path / "bad.dnnz"
    z = zlib.compress(b" " * (50 << 20))  # 50 MiB of spaces, claimed as 100 bytes
    outer["header"].update(nbytes=len(z), raw_nbytes=100, crc32=zlib.crc32(z))
    bad.write_bytes(_join(outer, z, body))
    with pytest.raises(FileFormatError, match="does not match its size"):
        dnn_adapter.load(bad, _blank(2))
    z = b"\x00garbage that is not a zlib stream"
    outer["header"].update(nbytes=len(z), raw_nbytes=100, crc32=zlib.crc32(z))
    bad.write_bytes(_join(outer, z, body))
    with pytest.raises(FileFormatError, match="compressed header is corrupt"):
        dnn_adapter.load(bad, _blank(2))
    outer["header"].update(nbytes=len(body) + 10_000)  # runs past the end
    bad.write_bytes(_join(outer, z, body))
    with pytest.raises(FileFormatError, match="truncated"):
        dnn_adapter.load(bad, _blank(2))


def _t(name):
    return lambda h: h["tensors"][name]


def _buf(name, i):
    return lambda h: h["tensors"][name]["buffers"][i]


@pytest.mark.parametrize(
    "edit,body_edit,match",
    [
        # sizes: every one moves the end of the data away from the end of the file
        (lambda h: _buf("1.weight", 0)(h)[2].__setitem__(0, _buf("1.weight", 0)(h)[2][0] + 8),
         None, "buffers end at byte|past the end"),
        (lambda h: _t("2.bias")(h).__setitem__("shape", [48]), None,
         "buffers end at byte|past the end"),
        (lambda h: _t("lin16.weight")(h)["buffers"].pop(), None, "buffers end at byte"),
        (None, lambda b: b + b"\0" * 8, "buffers end at byte"),
        (None, lambda b: b[:-8], "past the end|buffers end at byte"),
        (lambda h: _t("0.bias")(h).__setitem__("shape", [2**62]), None, "past the end"),
        # malformed records
        (lambda h: _buf("1.weight", 0)(h).__setitem__(1, "<f16"), None, "dtype '<f16' not allowed"),
        (lambda h: _buf("1.weight", 0)(h).__setitem__(2, [-8]), None, "malformed shape"),
        (lambda h: _buf("1.weight", 0)(h).__setitem__(2, [1.5]), None, "malformed shape"),
        (lambda h: _buf("1.weight", 1)(h).__setitem__(0, _buf("1.weight", 0)(h)[0]), None,
         "malformed buffer list entry"),
        (lambda h: _buf("1.weight", 0)(h).__delitem__(slice(1, None)), None,
         "malformed buffer list entry"),  # version 5: [part, dtype] is a valid entry
        (lambda h: _t("1.weight")(h).__setitem__("buffers", {}), None, "1.weight: malformed"),
        (lambda h: _t("1.weight")(h).pop("data_crc32"), None, "1.weight: malformed"),
        (lambda h: _t("1.weight")(h)["tree"].pop("meta"), None, "1.weight: malformed"),
        (lambda h: _t("0.bias")(h).__setitem__("dtype", "float128"), None,
         "0.bias: malformed entry"),
        (lambda h: _t("0.bias")(h).__setitem__("kind", "sparse"), None, "unknown entry kind"),
        # a checksum that does not match the bytes
        (lambda h: _t("1.weight")(h).__setitem__("data_crc32", _t("1.weight")(h)[
            "data_crc32"] ^ 1), None, r"1\.weight: checksum mismatch"),
    ],
)
@pytest.mark.parametrize("version", [3, 4, 5])
def test_v3_bad_tensor_table(tmp_path, edit, body_edit, match, version):
    """Versions 3 to 5 derive every offset from the table: a wrong size, a missing part or
    bytes added or cut anywhere is caught by the sum against the file size, before any
    decoding. (Version 5: the table with its derived fields written out, which it reads
    too.)"""
    bad = tmp_path / "bad.dnnz"
    bad.write_bytes(_rewrite(FIXTURES[version][0].read_bytes(), edit, body_edit))
    with pytest.raises(FileFormatError, match=match):
        dnn_adapter.load(bad, _blank(version))


@pytest.mark.parametrize("version", [3, 4, 5])
def test_v3_every_compressed_byte_is_checked(tmp_path, version):
    """A flipped byte in any compressed entry's data (version 3: padding between its parts
    included) is a checksum error naming that entry."""
    data = FIXTURES[version][0].read_bytes()
    _outer, _z, body = _split(data)
    data0 = len(data) - len(body)
    f = dnn_adapter.io._File(FIXTURES[version][0])
    regions = dict(f.regions)
    f.close()
    kinds = {"compressed"} if version == 3 else {"compressed", "dense"}
    assert set(regions) == {k for k, v in read_header(FIXTURES[version][0])[
        "tensors"].items() if v["kind"] in kinds}
    bad = tmp_path / "bad.dnnz"
    for fqn, (a, b, crc, spans) in regions.items():
        if crc is None:
            continue
        if spans is not None:
            a, b = spans[0][0], spans[-1][0] + spans[-1][1]
        for pos in {a, (a + b) // 2, b - 1}:
            flipped = bytearray(data)
            flipped[data0 + pos] ^= 0x10
            bad.write_bytes(bytes(flipped))
            with pytest.raises(FileFormatError,
                               match=rf"{fqn}: (checksum mismatch|non-zero padding)"):
                dnn_adapter.load(bad, _blank(version), verify=False)


# ---- version 5: the fields a reader derives ---------------------------------------------------
def _ras(name, r="exp"):
    return lambda h: h["tensors"][name]["tree"]["ras"][r]


def test_v5_header_leaves_derived_fields_out():
    """The fixture's compact table: RAS sizes and buffer descriptions left out where the rules
    give them back; what the rules cannot give (a sparse tree's distance table type, a
    dict's run table) written out. read_header fills them in as version 4 has them."""
    outer, z, _body = _split(FIXTURES[5][0].read_bytes())
    head = json.loads(_inflate(outer, z))
    t = head["tensors"]
    r = t["emb.weight"]["tree"]["ras"]["exp"]  # its symbol order as control places
    assert set(r) == {"k", "nblocks", "wt", "ctl"} and [r["wt"][i] for i in (0, 2, 7)] == [
        None] * 3
    assert set(t["0.weight"]["tree"]["ras"]["exp"]) == {"k", "nblocks", "wt"}  # (a SYMC)
    assert "buffers" not in t["0.weight"] and "buffers" not in t["emb.weight"]
    items = t["1.weight"]["buffers"]
    assert ["gap_table", "|u1"] in items and "gaps.WRDS" in items
    assert any(isinstance(b, list) and len(b) == 3 for b in t["2.weight"]["buffers"])
    full = read_header(FIXTURES[5][0])["tensors"]
    v4 = read_header(FIXTURES[4][0])["tensors"]
    assert full["0.weight"]["tree"]["ras"]["exp"]["tags"] == ["WRDS", "SYMC", "CNTS", "NACT"]
    assert full["emb.weight"]["tree"]["ras"]["exp"]["tags"] == ["WRDS", "CNTS", "NACT"]
    same = [fqn for fqn, rec in full.items()  # same model; where the codec chose the same
            if rec["kind"] == "compressed" and rec["tree"]["meta"] == v4[fqn]["tree"]["meta"]]
    assert len(same) >= 4
    for fqn in same:  # the same fields as version 4's
        rec = full[fqn]
        if rec["kind"] == "compressed":  # (symbol orders replaced by "ctl" places)
            gone = set(v4[fqn]["buffers"]) - set(rec["buffers"])
            assert set(rec["buffers"]) <= set(v4[fqn]["buffers"]), fqn
            assert all(b.endswith(".SYMC") for b in gone), fqn
            for name, b in rec["buffers"].items():
                assert b["shape"] == v4[fqn]["buffers"][name]["shape"], (fqn, name)


def test_v5_written_out_table_reads_the_same(tmp_path):
    """Every derived field written out (version 4's table) is a valid version 5 table too."""
    path = tmp_path / "full.dnnz"
    data = FIXTURES[5][0].read_bytes()
    path.write_bytes(_rewrite(data))
    outer, z, _body = _split(path.read_bytes())
    head = json.loads(_inflate(outer, z))
    assert all(len(b) == 3 for b in head["tensors"]["0.weight"]["buffers"])
    assert read_header(path)["tensors"] == read_header(FIXTURES[5][0])["tensors"]
    m = dnn_adapter.load(path, _blank(5))
    _assert_same_state(m, fixture_model_v4())


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda h: _ras("0.weight")(h)["wt"].__setitem__(8, None), "0.weight: malformed entry"),
        (lambda h: _ras("0.weight")(h).__setitem__("wt", 5), "0.weight: malformed entry"),
        (lambda h: _ras("0.weight")(h).pop("k"), "0.weight: malformed entry"),
        (lambda h: _t("1.weight")(h)["buffers"].__setitem__(
            _t("1.weight")(h)["buffers"].index(["gap_table", "|u1"]), "gap_table"),
         "1.weight: malformed entry .*cannot be derived"),
        (lambda h: _t("1.weight")(h).pop("buffers"), "1.weight: malformed entry"),
        (lambda h: _t("1.weight")(h).__setitem__("buffers", "gaps.WRDS"),
         "1.weight: malformed entry"),
        (lambda h: _t("1.weight")(h)["buffers"].__setitem__(0, 7),
         "1.weight: malformed buffer list entry 7"),
        # wrong numbers move buffers: caught by the sum against the file size
        (lambda h: _ras("0.weight")(h).__setitem__("k", _ras("0.weight")(h)["k"] + 8),
         "buffers end at byte|past the end"),
        (lambda h: _ras("0.weight")(h)["wt"].__setitem__(8, _ras("0.weight")(h)["wt"][8] + 64),
         "buffers end at byte|past the end"),
        (lambda h: _ras("0.weight")(h).__setitem__("n", 1), "buffers end at byte|past the end"),
        (lambda h: _t("0.weight")(h).__setitem__("buffers", [["exp.WRDS", "<u4"]]),
         "buffers end at byte|past the end"),
        # sizes that still add up, but not to this tree: rejected when it is read
        (lambda h: _ras("0.weight")(h)["wt"].__setitem__(0, int(np.prod(_t("0.weight")(h)[
            "tree"]["meta"]["shape"])) + _ras("0.weight")(h)["nblocks"] + 3),
         r"0\.weight: corrupt compressed parts \(RAS: "),
        (lambda h: _ras("0.weight")(h).__setitem__("tags", ["WRDS", "SYMC", "CNTS"]),
         "buffers end at byte|past the end"),
    ],
)
def test_v5_bad_compact_table(tmp_path, edit, match):
    bad = tmp_path / "bad.dnnz"
    bad.write_bytes(_rewrite(FIXTURES[5][0].read_bytes(), edit, expand=False))
    with pytest.raises(FileFormatError, match=match):
        dnn_adapter.load(bad, _blank(5))


# ---- the header codecs with a preset dictionary (zlib-d1, zlib-d2, zlib-d3) ------------------
def _written(tmp_path):
    path = tmp_path / "d3.dnnz"
    cfg = dnn_adapter.WrapConfig(min_numel=256, overrides={"0": "block", "emb": "block",
                                                           "emb32": "block"})
    dnn_adapter.save(fixture_model_v4(), path, config=cfg)
    return path


def test_header_dictionary_layout_and_gain(tmp_path):
    from dnn_adapter._header_dict import (
        HEADER_DICT_1,
        HEADER_DICT_1_CRC32,
        HEADER_DICT_2,
        HEADER_DICT_2_CRC32,
        HEADER_DICT_3,
        HEADER_DICT_3_CRC32,
    )

    path = _written(tmp_path)
    data = path.read_bytes()
    outer, z, body = _split(data)
    assert outer["version"] == 5 and outer["header"]["codec"] == "zlib-d3"
    d = zlib.decompressobj(zdict=HEADER_DICT_3)
    raw = d.decompress(z) + d.flush()
    assert len(raw) == outer["header"]["raw_nbytes"] and json.loads(raw)["version"] == 5
    with pytest.raises(zlib.error):  # it needs the dictionary
        zlib.decompress(z)
    assert len(z) < len(zlib.compress(raw, 9)) - 200  # the point of the dictionary
    for older in (HEADER_DICT_1, HEADER_DICT_2):  # and of the new one
        c = zlib.compressobj(9, zdict=older)
        assert len(z) < len(c.compress(raw) + c.flush())
    # the bytes are the format's: fixed, and the specification names them
    spec = (Path(__file__).parents[1] / "docs" / "dnn_format.md").read_text()
    for dic, crc, n in ((HEADER_DICT_1, HEADER_DICT_1_CRC32, 6857),
                        (HEADER_DICT_2, HEADER_DICT_2_CRC32, 9187),
                        (HEADER_DICT_3, HEADER_DICT_3_CRC32, 7206)):
        assert zlib.crc32(dic) == crc and len(dic) == n
        assert f"{crc:#010x}" in spec and str(n) in spec
    # the same header in plain zlib, zlib-d1 or zlib-d2 reads the same
    for codec, zd in (("zlib", None), ("zlib-d1", HEADER_DICT_1), ("zlib-d2", HEADER_DICT_2)):
        c = zlib.compressobj(9, zdict=zd) if zd else zlib.compressobj(9)
        zp = c.compress(raw) + c.flush()
        outer["header"].update(codec=codec, nbytes=len(zp), crc32=zlib.crc32(zp))
        other = tmp_path / "other.dnnz"
        other.write_bytes(_join(outer, zp, body, like=data))
        assert read_header(other) == read_header(path)
        m = dnn_adapter.load(other, _blank(4))
        _assert_same_state(m, fixture_model_v4())


@pytest.mark.parametrize("codec", ["zlib-d4", ["zlib-d1"], {"a": 1}, None, 1])
def test_header_codec_unknown_or_malformed(tmp_path, codec):
    data = _written(tmp_path).read_bytes()
    outer, z, body = _split(data)
    outer["header"]["codec"] = codec
    bad = tmp_path / "bad.dnnz"
    bad.write_bytes(_join(outer, z, body, like=data))
    with pytest.raises(FileFormatError, match="unsupported compressed header"):
        dnn_adapter.load(bad, _blank(4))


def test_header_codec_mismatch_is_a_corrupt_header(tmp_path):
    """Dictionary bytes read as plain zlib, or with the other dictionary, fail as a corrupt
    header (a zlib stream says whether it needs a dictionary and names it by its Adler-32,
    so plain zlib read as d1 reads the same header: no harm)."""
    data = _written(tmp_path).read_bytes()
    outer, z, body = _split(data)
    bad = tmp_path / "bad.dnnz"
    for codec in ("zlib", "zlib-d1", "zlib-d2"):
        outer["header"]["codec"] = codec
        bad.write_bytes(_join(outer, z, body, like=data))
        with pytest.raises(FileFormatError, match="compressed header is corrupt"):
            dnn_adapter.load(bad, _blank(4))
    outer, z, body = _split(FIXTURES[3][0].read_bytes())  # plain zlib, claimed as d1
    outer["header"]["codec"] = "zlib-d1"
    bad.write_bytes(_join(outer, z, body))
    assert read_header(bad) == read_header(FIXTURES[3][0])


def test_unaligned_read_buffer_gives_aligned_arrays():
    """A file read into memory whose base is not 8-byte aligned: the arrays are copied to
    aligned memory (the C kernels require it), not handed over misaligned."""
    from dnn_adapter.io import _File

    f = _File(FIXTURES[VERSIONS[-1]][0], use_mmap=False)
    raw = bytearray(len(f.buf) + 1)
    shifted = memoryview(raw)[1:]
    shifted[:] = f.buf
    f.buf = shifted
    assert np.frombuffer(shifted, np.uint8).ctypes.data % 8  # the premise: misaligned base
    for fqn, rec in f.header["tensors"].items():
        if rec["kind"] != "compressed":
            continue
        for b in rec["buffers"].values():
            a = f.array(fqn, b, b["dtype"], b["shape"], check_crc=False)
            assert a.flags.aligned
            assert a.tobytes() == bytes(shifted[f.data0 + b["offset"]:][: b["nbytes"]])


# ---- a fuzzed table: any value anywhere is an error naming the problem, or reads exactly ----
_ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False), st.text(max_size=4), st.sampled_from(["<u8", "|u1", "WRDS"]),
    st.lists(st.integers(-2, 70000), max_size=3), st.just({}), st.just([None]))


def _paths(node, path=()):
    """Every (path, value) of a JSON tree, containers included."""
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in items:
        yield from _paths(v, (*path, k))


@settings(deadline=None, max_examples=int(__import__("os").environ.get("FUZZ_N", 150)),
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
@pytest.mark.parametrize("version", [4, 5])
def test_fuzzed_table_is_rejected_or_exact(tmp_path_factory, version, data):
    """One value of the table replaced (a number off by one, a wrong type, a container
    emptied, a key dropped; version 5: its compact table): the load raises FileFormatError,
    or (where the value was not used or is equivalent) gives the model bit for bit. Never
    another exception."""
    raw = FIXTURES[version][0].read_bytes()
    outer, z, _body = _split(raw)
    head = json.loads(_inflate(outer, z))
    paths = [p for p, _ in _paths(head["tensors"]) if p]
    path = data.draw(st.sampled_from(paths))
    how = data.draw(st.sampled_from(["replace", "drop", "nudge"]))
    value = data.draw(_ODD_VALUES)

    def edit(h):
        node = h["tensors"]
        for k in path[:-1]:
            node = node[k]
        old = node[path[-1]]
        if how == "drop" and isinstance(node, dict):
            del node[path[-1]]
        elif how == "nudge" and type(old) is int:
            node[path[-1]] = old + data.draw(st.sampled_from([-1, 1, 64, -(2**40)]))
        else:
            node[path[-1]] = value

    bad = tmp_path_factory.mktemp("fuzz") / "bad.dnnz"
    bad.write_bytes(_rewrite(raw, edit, expand=False))
    try:
        m = dnn_adapter.load(bad, _blank(version))
    except FileFormatError:
        return
    _assert_same_state(m, fixture_model_v4(), path)


@settings(deadline=None, max_examples=int(__import__("os").environ.get("FUZZ_N", 150)),
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_parts_with_valid_checksum_are_rejected_or_exact(tmp_path_factory, data):
    """A crafted file: bytes of one compressed entry's parts changed and its checksum made to
    match (so only the parts' own validation, in Python and in C, stands in the way). The
    load raises FileFormatError or gives the model bit for bit; it never crashes."""
    from dnn_adapter.io import _File

    raw = FIXTURES[5][0].read_bytes()
    f = _File(FIXTURES[5][0])
    regions = {k: v for k, v in f.regions.items() if v[2] is not None and v[3]}
    data0 = f.data0
    f.close()
    fqn = data.draw(st.sampled_from(sorted(regions)))
    _a, _b, _crc, spans = regions[fqn]
    at, nb = data.draw(st.sampled_from([s for s in spans if s[1]]))
    pos = data.draw(st.integers(0, nb - 1))
    new = bytearray(raw)
    width = data.draw(st.sampled_from([1, 2, 4]))
    for i in range(pos, min(pos + width, nb)):
        new[data0 + at + i] = data.draw(st.integers(0, 255))
    if new == bytearray(raw):
        return
    crc = 0
    for s_at, s_nb in spans:
        crc = zlib.crc32(new[data0 + s_at : data0 + s_at + s_nb], crc)
    body = bytes(new[data0:])

    def edit(h):
        h["tensors"][fqn]["data_crc32"] = crc

    bad = tmp_path_factory.mktemp("fuzz") / "bad.dnnz"
    bad.write_bytes(_rewrite(raw[:data0] + body, edit, expand=False))
    try:
        m = dnn_adapter.load(bad, _blank(5))
    except FileFormatError:
        return
    _assert_same_state(m, fixture_model_v4(), fqn)
