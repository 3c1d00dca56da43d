"""The GPU benchmark's code path runs on CPU too (the lent GPU machine is not always there)."""
import json

from loadtest import gpu_bench


def test_gpu_bench_measures_every_model_on_cpu(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    gpu_bench.main(["--seconds", "0.02", "--cpu-threads", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    models = {row["model"] for row in report["rows"]}
    assert {"digits_cnn", "shortcut_audit", "caption_match"} <= models
    assert all(row["cpu_fp32"] > 0 for row in report["rows"])
    assert "| digits_cnn | 512 |" in capsys.readouterr().out
