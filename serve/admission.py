"""Admission: check every model version of the repository before serving it, and refuse the ones that fail.

`STREAMSERVE_ADMISSION_CHECK=models.<family>.<module>:<function>` names a function `(spec, version) -> str | None`
(None admits; a string is the reason for refusing, e.g. the backdoor scanner's verdict). It runs when the
application is built, and when a model is loaded while serving (serve/model_control.py), once per model file: verdicts are cached by the file's SHA-256, so a restart does
not rescan unchanged models. A refused version gets no deployment; its index entry reads UNAVAILABLE with
the reason, and requests to it answer 503 / UNAVAILABLE naming the reason. The cache lives in the server's private
directory (serve/private_files.py): a verdict planted by another local user would skip the scan.
"""
import hashlib
import json
import logging
from pathlib import Path
from typing import Iterable

from .families import resolve
from .private_files import UnsafeFile, private_dir, read_private, write_private
from .repository import ModelSpec

logger = logging.getLogger("streamserve.admission")


def _fingerprint(spec: ModelSpec, version: int) -> str:
    target = spec.model_file(version)
    files = sorted(target.rglob("*")) if target.is_dir() else [target]
    digest = hashlib.sha256(f"{spec.name}/{version}".encode())
    for file in [spec.path / "config.pbtxt", *(f for f in files if f.is_file())]:
        digest.update(file.name.encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def admit(repository: Iterable[ModelSpec], check_path: str | None, cache_dir: str | Path) -> dict[tuple[str, int], str]:
    """(model, version) -> reason, for every refused version of the repository's models (or of one model being loaded
    while serving, serve/model_control.py)."""
    if not check_path:
        return {}
    check = resolve(check_path, "admission check")
    cache_file = private_dir(cache_dir) / "admission.json"
    try:
        cache = json.loads(read_private(cache_file) or b"{}")
    except (UnsafeFile, ValueError) as e:  # a cache we cannot trust is rebuilt, never believed
        logger.warning("admission cache %s ignored: %s", cache_file, e)
        cache = {}
    refused = {}
    for spec in repository:
        for version in spec.versions:
            key = f"{check_path}:{_fingerprint(spec, version)}"
            if key in cache:
                verdict = cache[key]
            else:
                try:
                    verdict = cache[key] = check(spec, version)
                except Exception as e:  # a check that cannot decide must not admit silently (nor be cached)
                    verdict = f"admission check failed: {type(e).__name__}: {e}"
            if verdict:
                refused[(spec.name, version)] = verdict
                logger.warning("model %s version %s refused at admission: %s", spec.name, version, verdict)
    write_private(cache_file, json.dumps(cache, indent=1).encode())
    return refused
