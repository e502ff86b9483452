"""dnn_adapter's file format is stable: files written by format 1 and format 2
(tests/fixtures/dnn_v1.dnnz, dnn_v2.dnnz, made by tests/fixtures/make_fixtures.py) keep
loading bit for bit."""

import json
import struct
import zlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from _dnn_fixture import fixture_model, fixture_model_v2  # noqa: E402

import dnn_adapter  # noqa: E402
from dnn_adapter.io import FileFormatError, read_header  # noqa: E402

HERE = Path(__file__).parent / "fixtures"
FIXTURES = {1: (HERE / "dnn_v1.dnnz", fixture_model), 2: (HERE / "dnn_v2.dnnz", fixture_model_v2)}
INTV = {2: torch.int16, 4: torch.int32}


def _blank(version):
    m = FIXTURES[version][1]()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


@pytest.mark.parametrize("version", [1, 2])
def test_fixture_header_covers_every_codec_and_form(version):
    h = read_header(FIXTURES[version][0])
    assert h["version"] == version
    trees = {k: v["tree"] for k, v in h["tensors"].items() if v["kind"] == "compressed"}
    codecs = {"float", "sparse", "dict"} | ({"narrow"} if version == 2 else set())
    assert {t["codec"] for t in trees.values()} == codecs
    assert {t["meta"]["form"] for t in trees.values()} == {"block", "element"}
    assert "esc" in trees["1.weight"]["meta"]  # escaped gaps
    assert trees["emb.weight"]["meta"]["dtype"] == "bfloat16"
    if version == 2:
        assert set(trees["lin16.weight"]["children"]) == {"values"}
        assert set(trees["emb32.weight"]["children"]) == {"values", "rest"}  # row split


@pytest.mark.parametrize("mode", ["streaming", "cached"])
@pytest.mark.parametrize("version", [1, 2])
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
        if version == 2:
            assert torch.equal(m.lin16(x), ref.lin16(x))
            idx = torch.tensor([0, 7, 8, 64, 119, 120, 127, 3])  # both sides of the split
            assert torch.equal(m.emb32(idx).view(torch.int32), ref.emb32(idx).view(torch.int32))


@pytest.mark.parametrize("version", [1, 2])
def test_fixture_truncated_copy_is_rejected(tmp_path, version):
    data = FIXTURES[version][0].read_bytes()
    bad = tmp_path / "cut.dnnz"
    for cut in (len(data) // 2, 200, 9):
        bad.write_bytes(data[:cut])
        with pytest.raises(FileFormatError):
            dnn_adapter.load(bad, _blank(version))


# ---- version 2's compressed header --------------------------------------------------------
def _split(data: bytes):
    """(outer header dict, compressed header, data section) of a version 2 file."""
    (hlen,) = struct.unpack_from("<Q", data, 0)
    outer = json.loads(data[8 : 8 + hlen])
    nb = outer["header"]["nbytes"]
    return outer, data[8 + hlen : 8 + hlen + nb], data[8 + hlen + nb :]


def _join(outer: dict, z: bytes, body: bytes) -> bytes:
    hj = json.dumps(outer).encode()
    hj += b" " * (-(8 + len(hj) + len(z)) % 64)
    return struct.pack("<Q", len(hj)) + hj + z + body


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


def test_v2_is_smaller_than_v1_for_the_same_model(tmp_path):
    """The format-1 model written now: its compressed header and packed small buffers make
    the file smaller than the format-1 fixture (same tensors, same codecs)."""
    path = tmp_path / "m.dnnz"
    cfg = dnn_adapter.WrapConfig(min_numel=256, overrides={"0": "block", "emb": "block"})
    dnn_adapter.save(fixture_model(), path, config=cfg)
    assert read_header(path)["version"] == 2
    v1 = FIXTURES[1][0].stat().st_size
    assert path.stat().st_size < 0.85 * v1


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
        (lambda o, z: (o.__setitem__("version", 3), z), "unsupported version 3"),
        (lambda o, z: (o.__setitem__("format", "other"), z), "not a dnn_adapter file"),
        (lambda o, z: (None, z[:-1] + bytes([z[-1] ^ 1])), "checksum mismatch"),
    ],
)
def test_v2_bad_outer_or_compressed_header(tmp_path, mutate, match):
    outer, z, body = _split(FIXTURES[2][0].read_bytes())
    _, z = mutate(outer, z)
    bad = tmp_path / "bad.dnnz"
    bad.write_bytes(_join(outer, z, body))
    with pytest.raises(FileFormatError, match=match):
        dnn_adapter.load(bad, _blank(2))


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"not json at all", "not valid JSON"),
        (json.dumps({"format": "dnn_adapter", "version": 1, "tensors": {}}).encode(),
         "not a version 2"),
        (json.dumps({"format": "dnn_adapter", "version": 2}).encode(), "no tensor table"),
    ],
)
def test_v2_bad_inner_header(tmp_path, raw, match):
    outer, _z, body = _split(FIXTURES[2][0].read_bytes())
    z = zlib.compress(raw)
    outer["header"].update(nbytes=len(z), raw_nbytes=len(raw), crc32=zlib.crc32(z))
    bad = tmp_path / "bad.dnnz"
    bad.write_bytes(_join(outer, z, body))
    with pytest.raises(FileFormatError, match=match):
        dnn_adapter.load(bad, _blank(2))


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
