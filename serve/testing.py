"""Start `python -m serve run` as a subprocess on free ports and stop it like Ctrl-C.

Shared by the tests and the benchmarks, so both measure the server users actually run.
"""
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .launcher import QUIET_PORTS

ROOT = Path(__file__).resolve().parents[1]


def free_port_block(count: int, avoid: set[int] = frozenset()) -> int:
    """The first of `count` consecutive free ports in QUIET_PORTS (an ingress replica per port), none of them in `avoid`."""
    while True:
        first = random.randrange(QUIET_PORTS.start, QUIET_PORTS.stop - count)
        block = range(first, first + count)
        if avoid.isdisjoint(block) and all(_bindable(port) for port in block):
            return first


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


@dataclass
class Server:
    http: str
    grpc: str
    metrics: str
    repository: Path
    log: Path
    process: subprocess.Popen
    temp_dir: Path
    """The server's --temp-dir: `python -m serve reload --temp-dir` finds it there."""

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as r:
            return r.read().decode()


def start_server(repository: Path, workdir: Path, env: dict | None = None, timeout_s: float = 240, ports: dict | None = None,
                 root: Path = ROOT) -> Server:
    """Returns once every application is RUNNING; raises with the log tail if it never gets there. `ports` ("http",
    "grpc", "metrics"): chosen by the caller, e.g. for a Ray cluster started beforehand with their environment. `root`:
    the checkout whose code serves (another worktree, for a before / after comparison)."""
    if not ports:
        replicas = int({**os.environ, **(env or {})}.get("STREAMSERVE_INGRESS_REPLICAS", 1))
        http = free_port_block(replicas)
        grpc = free_port_block(replicas, avoid=set(range(http, http + replicas)))
        ports = {"http": http, "grpc": grpc, "metrics": free_port_block(1, avoid=set(range(http, http + replicas)) | set(range(grpc, grpc + replicas)))}
    workdir.mkdir(parents=True, exist_ok=True)
    ready, log = workdir / "ready", workdir / "server.log"
    ready.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "serve", "run", "--repository", str(repository),
        "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"]),
        # Ray's socket paths must stay short: a temp dir of our own per server, under /tmp.
        "--temp-dir", (temp_dir := f"/tmp/sst-{ports['http']}"), "--ready-file", str(ready),
    ]
    process = subprocess.Popen(
        cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root), **(env or {})},
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            raise RuntimeError(f"server did not start (exit {process.poll()}); log tail:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    host = "127.0.0.1"
    return Server(f"{host}:{ports['http']}", f"{host}:{ports['grpc']}", f"{host}:{ports['metrics']}", repository, log, process, Path(temp_dir))


def stop_server(process: subprocess.Popen, timeout_s: float = 90) -> int | None:
    """SIGINT (what Ctrl-C sends), then the whole process group if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def self_signed_pair(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 and its key (cert.pem, key.pem in `folder`): a TLS server
    for the tests and the benchmark, its certificate the clients' root."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certfile, keyfile
