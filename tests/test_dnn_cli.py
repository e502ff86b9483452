"""python -m dnn_adapter compress / inspect / verify on a small checkpoint."""

import pytest

torch = pytest.importorskip("torch")

from dnn_adapter.__main__ import main  # noqa: E402


def test_cli_roundtrip(tmp_path, capsys):
    torch.manual_seed(0)
    sd = {
        "a.weight": torch.randn(64, 64),
        "a.bias": torch.randn(64),
        "b.weight": torch.randn(32, 64).bfloat16(),
    }
    torch.save(sd, tmp_path / "m.pt")
    assert main(["compress", str(tmp_path / "m.pt"), str(tmp_path / "m.dnnz")]) == 0
    assert main(["inspect", str(tmp_path / "m.dnnz")]) == 0
    assert "a.weight" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "m.dnnz"), str(tmp_path / "m.pt")]) == 0
    sd["a.bias"][0] += 1
    torch.save(sd, tmp_path / "m2.pt")
    assert main(["verify", str(tmp_path / "m.dnnz"), str(tmp_path / "m2.pt")]) == 1


def test_cli_bench_reports_latency_and_real_peak_memory(capsys):
    assert main(["bench", "--repeat", "1", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "outputs torch.equal in every mode" in out
    for mode in ("uncompressed", "streaming", "streaming+prefetch", "cached"):
        assert mode in out
    assert "streaming budget" in out and "x budget" in out


def test_cli_inspect_plot(tmp_path):
    torch.manual_seed(0)
    sd = {"a.weight": torch.randn(64, 64), "b.weight": torch.randn(128, 64)}
    torch.save(sd, tmp_path / "m.pt")
    assert main(["compress", str(tmp_path / "m.pt"), str(tmp_path / "m.dnnz")]) == 0
    assert main(["inspect", str(tmp_path / "m.dnnz"), "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
