"""Run scans in a separate, resource-limited process (the repository admission check is admission.py).

`run_scan(onnx_bytes, clean_images)` yields the worker's events (dicts). The child gets an address-space
limit (`memory_mb`), a CPU-time limit, a wall-clock timeout (killed past it), no stdin, a fresh session,
an empty temporary working directory and a minimal environment; a hostile model can exhaust only its own
process.
"""
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CLEAN = Path(__file__).parent / "weights" / "clean_reference.npy"


@dataclass
class Limits:
    memory_mb: int = 3072
    cpu_seconds: int = 240
    wall_seconds: float = 300.0
    steps: int = 200


def run_scan(onnx_bytes: bytes, clean_images: np.ndarray, limits: Limits = Limits()) -> Iterator[dict]:
    with tempfile.TemporaryDirectory(prefix="backdoor-scan-") as tmp:
        model_path, clean_path = Path(tmp) / "model.onnx", Path(tmp) / "clean.npy"
        model_path.write_bytes(onnx_bytes)
        np.save(clean_path, np.ascontiguousarray(clean_images, np.float32), allow_pickle=False)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HOME": tmp}
        # The worker sets its own rlimits before it reads the model. Not a preexec_fn: that forces a fork() whose
        # child runs Python, and inside a replica whose gRPC threads are busy the child died before exec.
        proc = subprocess.Popen([sys.executable, "-m", "models.backdoor.scan_worker", str(model_path), "--clean", str(clean_path),
                                 "--steps", str(limits.steps), "--memory-mb", str(limits.memory_mb), "--cpu-seconds", str(limits.cpu_seconds)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp, env=env,
                                start_new_session=True, text=True)
        deadline = time.monotonic() + limits.wall_seconds
        finished = False
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    proc.kill()
                    yield {"event": "error", "message": f"scan exceeded the wall-clock limit of {limits.wall_seconds:.0f} s and was stopped"}
                    finished = True
                    break
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                line = proc.stdout.readline()
                if not line:
                    break
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                yield event
                if event.get("event") in ("result", "refused", "error"):
                    finished = True
                    break
        finally:
            sel.close()
            if proc.poll() is None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if not finished:
            code = proc.wait()
            stderr = proc.stderr.read()[-300:] if proc.stderr else ""
            if code < 0:
                why = {signal.SIGXCPU: f"CPU-time limit ({limits.cpu_seconds} s)", signal.SIGKILL: "killed"}.get(-code, signal.Signals(-code).name)
            else:
                out_of_memory = any(sign in stderr for sign in ("MemoryError", "alloc", "failed to map segment"))
                why = f"exit code {code}" + (f" (memory limit of {limits.memory_mb} MiB reached)" if out_of_memory else "")
            yield {"event": "error", "message": f"scan process ended without a result: {why}", "stderr_tail": stderr}


def scan_once(onnx_bytes: bytes, clean_images: np.ndarray, limits: Limits = Limits()) -> dict:
    """The final event of `run_scan`."""
    last = {}
    for last in run_scan(onnx_bytes, clean_images, limits):
        pass
    return last
