"""Write one model into a Triton-layout repository, all or nothing.

The model folder is assembled beside the repository and renamed into place, so a crash mid-build
never leaves a half-written model that the server would then refuse at startup.
"""
import shutil
import tempfile
from pathlib import Path

from serve.repository import load_model, parse_config


def write_model(root: Path, name: str, config_text: str, files: dict[int, tuple[str, bytes] | dict[str, bytes]], card: str) -> Path:
    """`files` maps version -> (file name, bytes), or -> {file name: bytes} when a version holds several
    files (a handler's ONNX graphs and data). The config is parsed and the folder validated before it lands."""
    parse_config(config_text, f"{name}/config.pbtxt")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        folder = staging / name
        folder.mkdir()
        (folder / "config.pbtxt").write_text(config_text.strip() + "\n")
        (folder / "card.md").write_text(card.strip() + "\n")
        for version, contents in files.items():
            (folder / str(version)).mkdir()
            for filename, data in (dict([contents]) if isinstance(contents, tuple) else contents).items():
                (folder / str(version) / filename).write_bytes(data)
        load_model(folder)  # the same validation the server runs at startup
        target = root / name
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
