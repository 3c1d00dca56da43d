"""The GPU benchmark's code path runs on CPU too (the lent GPU machine is not always there)."""
import json

from loadtest import gpu_bench


def test_gpu_bench_measures_every_model_on_cpu(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    # Small batches only: kno_ns2d at batch 512 alone takes minutes on one CPU thread.
    gpu_bench.main(["--seconds", "0.02", "--cpu-threads", "1", "--batches", "1", "8", "--json", str(out)])
    report = json.loads(out.read_text())
    models = {row["model"] for row in report["rows"]}
    assert {"digits_cnn", "shortcut_audit", "caption_match", "kno_ns2d", "kno_burgers", "iqa (crops)",
            "video_artifacts (block CNN)"} <= models
    assert {row["batch"] for row in report["rows"]} == {1, 8}
    assert all(row["cpu_fp32"] > 0 for row in report["rows"])
    assert "| digits_cnn | 8 |" in capsys.readouterr().out
