"""Fixtures shared by the server tests of tests/serve."""
import subprocess

import pytest


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    """A 3-second 160×96 H.264 test clip (ffmpeg's testsrc2), as a client would upload it."""
    from models.video.data import ffmpeg_exe

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x96:r=25:d=3",
                    "-c:v", "libx264", "-qp", "30", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path.read_bytes()
