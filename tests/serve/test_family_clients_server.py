"""The client examples in the family READMEs, run as written against the real server: what a user copies works.

Each README holds one example after a marker `<!-- client example "NAME": ... -->`; it is extracted, written to a
file and run in a subprocess with the session server's address (`--url`), as a user would run it."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r'<!-- client example "(?P<name>[a-z_]+)"[^>]*-->\s*```python\n(?P<code>.*?)\n```', re.S)


def examples() -> dict[str, str]:
    found = {}
    for readme in sorted((ROOT / "models").glob("*/README.md")):
        for match in EXAMPLE.finditer(readme.read_text()):
            found[match["name"]] = match["code"]
    return found


def run_example(name: str, args: list[str], cwd: Path, timeout_s: float = 600) -> str:
    script = cwd / f"{name}_client.py"
    script.write_text(examples()[name])
    result = subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"the README's {name!r} example failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_every_family_readme_carries_its_example():
    assert set(examples()) == {"iqa", "video", "bot", "forecast", "scan"}


def test_iqa_example_scores_a_jpeg_file(server, tmp_path):
    from PIL import Image
    from skimage import data as samples

    photo = tmp_path / "photo.jpg"
    Image.fromarray(samples.astronaut()).save(photo, quality=90)
    out = run_example("iqa", [str(photo), "--url", server.http], tmp_path)
    score = float(re.search(r"quality (\d+\.\d) / 100", out)[1])
    assert 0 <= score <= 100, out


def test_video_example_streams_segments_then_the_whole_video(server, tmp_path, clip):
    video = tmp_path / "clip.mp4"
    video.write_bytes(clip)
    out = run_example("video", [str(video), "--url", server.grpc], tmp_path).splitlines()
    assert len(out) >= 3 and out[-1].startswith("whole video: quality"), out
    assert all(re.match(r"\s*\d+\.\d\d-\s*\d+\.\d\d s: quality \d\.\d{3}", line) for line in out[:-1]), out


def test_bot_example_answers_known_ids_and_names_unknown_ones(server, tmp_path):
    with np.load(server.repository / "bot_detector" / "1" / "graph.npz", allow_pickle=False) as snapshot:
        known = [str(i) for i in snapshot["account_id"][:2]]
    out = run_example("bot", [*known, "42", "--url", server.http], tmp_path).splitlines()
    assert len(out) == 3 and out[2] == "42: not in the hosted graph", out
    assert all(re.fullmatch(rf"{i}: P\(bot\) \d\.\d{{3}}, stance (neutral|against|support)", line) for i, line in zip(known, out)), out


def test_forecast_example_streams_the_steps_it_asked_for(server, tmp_path):
    x = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    window = np.stack([np.sin(x[:, None] + 0.1 * t) * np.cos(x[None, :]) for t in range(10)]).astype(np.float32)
    np.save(tmp_path / "window.npy", window)
    out = run_example("forecast", ["window.npy", "--steps", "4", "--url", server.grpc, "--output", "forecast.npy"], tmp_path).splitlines()
    assert [line.split(":")[0] for line in out] == ["t+1", "t+2", "t+3", "t+4"], out
    forecast = np.load(tmp_path / "forecast.npy")
    assert forecast.shape == (4, 64, 64) and np.isfinite(forecast).all()


def test_scan_example_finds_a_planted_trigger_with_a_progress_bar(server, tmp_path):
    import torch

    from models.backdoor.data import Trigger
    from models.backdoor.population import to_onnx, train_direct

    torch.set_num_threads(1)
    planted = train_direct(Trigger(3, 1, "br", 7), 0.1, 0, steps=180)  # 10 % carry a 3×3 patch, relabelled 7
    (tmp_path / "model.onnx").write_bytes(to_onnx(planted))
    out = run_example("scan", ["model.onnx", "--url", server.grpc], tmp_path)
    assert "verdict: backdoored, suspected target class 7" in out, out
    assert (tmp_path / "trigger_mask.png").read_bytes().startswith(b"\x89PNG")
