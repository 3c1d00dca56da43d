"""The server's control files (pid, reload outcome, admission verdicts) in a directory only its user can touch.

The default directory sits under /tmp, where any local user may create names first: a symlink planted there could
make the server overwrite another file, and a forged verdict cache could admit a model without its backdoor scan.
So the directory must be ours and private (0700), every write goes to a fresh file opened with O_EXCL | O_NOFOLLOW
and is renamed into place (the reader sees the old file or the new one, never half of one), and a read refuses a
file that is a symlink or belongs to someone else.
"""
import os
import stat
from pathlib import Path


class UnsafeFile(RuntimeError):
    """A control directory or file that another user could have planted or changed."""


def private_dir(path: str | Path) -> Path:
    """Create `path` (mode 0700) or check that it is a real directory of ours; tighten its mode if it is looser."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFile(f"{path} is not a directory (a symlink?); remove it or choose another STREAMSERVE_TEMP_DIR")
    if info.st_uid != os.getuid():
        raise UnsafeFile(f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()}); choose another STREAMSERVE_TEMP_DIR")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all, never following a symlink, readable by this user only."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.unlink(temporary)  # a leftover of a crashed writer with our pid
    except FileNotFoundError:
        pass
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)  # replaces a symlink at `path` itself, never its target
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_private(path: str | Path) -> bytes | None:
    """The file's bytes, None when it does not exist; UnsafeFile when it is a symlink or not ours."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a symlink
        raise UnsafeFile(f"{path}: not a regular file of ours ({e.strerror})") from None
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise UnsafeFile(f"{path}: not a regular file owned by this user; refusing to read it")
        return file.read()
