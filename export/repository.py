"""Write one model into a Triton-layout repository, all or nothing.

The model folder is assembled beside the repository and renamed into place, so a crash mid-build
never leaves a half-written model that the server would then refuse at startup.
"""
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from google.protobuf import text_format

from serve.repository import load_model, parse_config


def write_model(root: Path, name: str, config_text: str, files: dict[int, tuple[str, bytes] | dict[str, bytes]], card: str,
                model_files: dict[str, bytes] | None = None) -> Path:
    """`files` maps version -> (file name, bytes), or -> {file name: bytes} when a version holds several
    files (a handler's ONNX graphs and data); `model_files` lie beside config.pbtxt (an output's label file).
    The config is parsed and the folder validated before it lands."""
    parse_config(config_text, f"{name}/config.pbtxt")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        folder = staging / name
        folder.mkdir()
        (folder / "config.pbtxt").write_text(config_text.strip() + "\n")
        (folder / "card.md").write_text(card.strip() + "\n")
        for filename, data in (model_files or {}).items():
            (folder / filename).write_bytes(data)
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


def latest_version_dir(folder: Path) -> Path:
    """The newest served version folder of the model at `folder`."""
    spec = load_model(folder)
    return spec.path / str(spec.versions[-1])


def install_snapshot(folder: Path, source: Path, stem: str) -> str:
    """Copy `source` into every served version folder of the model at `folder` as `<stem>-<sha256[:12]>.npz`, then
    point config.pbtxt's `snapshot` parameter at it. Each write lands by rename, so a replica starting meanwhile
    reads either the old config and file or the new ones, never half of one."""
    data = source.read_bytes()
    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}.npz"
    spec = load_model(folder)
    for version in spec.versions:
        write_atomically(folder / str(version) / name, data)
    config = parse_config((folder / "config.pbtxt").read_text())
    config.parameters["snapshot"].string_value = name
    write_atomically(folder / "config.pbtxt", text_format.MessageToString(config).encode())
    load_model(folder)
    return name


def write_atomically(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
    os.replace(f.name, path)
