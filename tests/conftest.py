"""Shared fixtures: a model repository built by the project's own export code, and a real server.

The server is `python -m serve run` in a subprocess (real Ray, real Serve proxies, real HTTP and gRPC),
started once per session on free ports with its own Ray temp dir, and stopped with SIGINT like Ctrl-C.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    from export.build import main as build

    root = tmp_path_factory.mktemp("repo") / "model_repository"
    build(["--repository", str(root)])
    return root


@dataclass
class Server:
    http: str
    grpc: str
    metrics: str
    repository: Path
    log: Path
    process: subprocess.Popen

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as r:
            return r.read().decode()


def start_server(repository: Path, tmp: Path, env_extra: dict | None = None, timeout_s: float = 240) -> Server:
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    ready, log = tmp / "ready", tmp / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    cmd = [
        sys.executable, "-m", "serve", "run", "--repository", str(repository),
        "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"]),
        "--temp-dir", f"/tmp/sst-{ports['http']}", "--ready-file", str(ready),
    ]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            pytest.fail(f"server did not start (exit {process.poll()}); log tail:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return Server(f"127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}", f"127.0.0.1:{ports['metrics']}", repository, log, process)


def stop_server(process: subprocess.Popen, timeout_s: float = 90) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


@pytest.fixture(scope="session")
def server(repository, tmp_path_factory):
    # A small request limit, so the over-limit cases stay cheap (test_bad_input.LIMIT).
    srv = start_server(repository, tmp_path_factory.mktemp("server"), {"STREAMSERVE_MAX_REQUEST_BYTES": str(1 << 20)})
    yield srv
    stop_server(srv.process)
