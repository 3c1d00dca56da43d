"""Run scans in a separate, resource-limited process (the repository admission check is admission.py).

`run_scan(onnx_bytes, clean_images)` yields the worker's events (dicts). The child gets an address-space
limit (`memory_mb`), a CPU-time limit, a wall-clock timeout (killed past it), no stdin, a session and process
group of its own, an empty working directory (onnx.checker resolves paths against it) and a minimal
environment; a hostile model can exhaust only its own process.

Closing the generator early (the client left) SIGKILLs the scan's process group at once and returns without
waiting: `close()` may run on the replica's event loop, so a thread reaps the process.
"""
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CLEAN = Path(__file__).parent / "weights" / "clean_reference.npy"
EXIT_GRACE_SECONDS = 5.0  # a worker that closed its output is exiting; past this it is killed


@dataclass
class Limits:
    memory_mb: int = 3072
    cpu_seconds: int = 240
    wall_seconds: float = 300.0
    steps: int = 200


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL the scan's process group (its session, start_new_session) and return at once; a daemon thread
    reaps the leader. Only while the leader is unreaped: after that its pid may belong to someone else."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        threading.Thread(target=proc.wait, name=f"reap-scan-{proc.pid}", daemon=True).start()
    proc.stdout.close()


def _events(proc: subprocess.Popen, limits: Limits) -> Iterator[dict]:
    """The worker's events up to its last one. Returns how the stream ended: "final" (a result, refusal or
    error event), "exited" (the worker closed its output without one: its exit status says why) or "timeout"."""
    deadline = time.monotonic() + limits.wall_seconds
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            if not sel.select(timeout=min(left, 1.0)):
                continue
            line = proc.stdout.readline()
            if not line:
                return "exited"
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            yield event
            if event.get("event") in ("result", "refused", "error"):
                return "final"


def run_scan(onnx_bytes: bytes, clean_images: np.ndarray, limits: Limits = Limits(),
             calibration: dict | None = None) -> Iterator[dict]:
    """`calibration`: the fused verdict's constants (scanner.FusedCalibration's fields), given when the images are
    the platform-held set they were measured with."""
    with tempfile.TemporaryDirectory(prefix="backdoor-scan-") as tmp:
        tmp = Path(tmp)
        model_path, clean_path, stderr_path, cwd = tmp / "model.onnx", tmp / "clean.npy", tmp / "stderr.txt", tmp / "cwd"
        model_path.write_bytes(onnx_bytes)
        np.save(clean_path, np.ascontiguousarray(clean_images, np.float32), allow_pickle=False)
        calibration_path = tmp / "calibration.json"
        if calibration:
            calibration_path.write_text(json.dumps(calibration))
        cwd.mkdir()
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HOME": str(cwd)}
        # The worker sets its own rlimits before it reads the model. Not a preexec_fn: that forces a fork() whose
        # child runs Python, and inside a replica whose gRPC threads are busy the child died before exec.
        # stderr goes to a file (bounded by the worker's RLIMIT_FSIZE): a pipe nobody reads would stall the scan.
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "models.backdoor.scan_worker", str(model_path), "--clean", str(clean_path),
                                     "--steps", str(limits.steps), "--memory-mb", str(limits.memory_mb), "--cpu-seconds", str(limits.cpu_seconds)]
                                    + (["--calibration", str(calibration_path)] if calibration else []),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=cwd, env=env,
                                    start_new_session=True, text=True)
        ended = None
        try:
            ended = yield from _events(proc, limits)
        finally:
            if ended != "exited":  # a final event, the wall clock, or the consumer closed us early
                stop(proc)
        if ended == "timeout":
            yield {"event": "error", "message": f"scan exceeded the wall-clock limit of {limits.wall_seconds:.0f} s and was stopped"}
        elif ended == "exited":
            try:
                code = proc.wait(timeout=EXIT_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                stop(proc)
                code = -signal.SIGKILL
            proc.stdout.close()
            stderr = stderr_path.read_text(errors="replace")[-300:]
            if code < 0:
                why = {signal.SIGXCPU: f"CPU-time limit ({limits.cpu_seconds} s)", signal.SIGKILL: "killed"}.get(-code, signal.Signals(-code).name)
            else:
                out_of_memory = any(sign in stderr for sign in ("MemoryError", "alloc", "failed to map segment"))
                why = f"exit code {code}" + (f" (memory limit of {limits.memory_mb} MiB reached)" if out_of_memory else "")
            yield {"event": "error", "message": f"scan process ended without a result: {why}", "stderr_tail": stderr}


def scan_once(onnx_bytes: bytes, clean_images: np.ndarray, limits: Limits = Limits(), calibration: dict | None = None) -> dict:
    """The final event of `run_scan`."""
    last = {}
    for last in run_scan(onnx_bytes, clean_images, limits, calibration):
        pass
    return last
