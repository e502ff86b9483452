"""dnn_adapter's file format is stable: a file written by format 1 (tests/fixtures/dnn_v1.dnnz,
made by tests/fixtures/make_fixtures.py) keeps loading bit for bit."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from _dnn_fixture import fixture_model  # noqa: E402

import dnn_adapter  # noqa: E402
from dnn_adapter.io import FileFormatError, read_header  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "dnn_v1.dnnz"
INTV = {2: torch.int16, 4: torch.int32}


def _blank():
    m = fixture_model()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def test_fixture_header_covers_every_codec_and_form():
    h = read_header(FIXTURE)
    assert h["version"] == 1
    trees = {k: v["tree"] for k, v in h["tensors"].items() if v["kind"] == "compressed"}
    assert {t["codec"] for t in trees.values()} == {"float", "sparse", "dict"}
    assert {t["meta"]["form"] for t in trees.values()} == {"block", "element"}
    assert "esc" in trees["1.weight"]["meta"]  # escaped gaps
    assert trees["emb.weight"]["meta"]["dtype"] == "bfloat16"


@pytest.mark.parametrize("mode", ["streaming", "cached"])
def test_fixture_loads_bit_exact(mode):
    ref = fixture_model()
    m = dnn_adapter.load(FIXTURE, _blank(), mode=mode)
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


def test_fixture_truncated_copy_is_rejected(tmp_path):
    data = FIXTURE.read_bytes()
    bad = tmp_path / "cut.dnnz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError):
        dnn_adapter.load(bad, _blank())
