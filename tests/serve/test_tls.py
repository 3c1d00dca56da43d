"""The gRPC TLS terminator (serve/tls.py) on its own, in front of an echo server: IPv4 and IPv6 clients, the idle
timeout and the connection cap."""
import socket
import ssl
import threading
import time

import pytest

from serve.launcher import free_loopback_port
from serve.tls import TlsTerminator
from serve.testing import self_signed_pair


@pytest.fixture
def echo_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")], daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def terminator(tmp_path, echo_port, host="::", **options):
    certfile, keyfile = self_signed_pair(tmp_path)
    return TlsTerminator(host, free_loopback_port(), echo_port, str(certfile), str(keyfile), **options).start()


def tls_connect(host: str, port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.socket(family)
    raw.settimeout(10)
    raw.connect((host, port))
    return context.wrap_socket(raw)


def test_ipv4_and_ipv6_clients_are_both_served(tmp_path, echo_port):
    tls = terminator(tmp_path, echo_port)
    try:
        for host in ("127.0.0.1", "::1"):
            with tls_connect(host, tls.port) as conn:
                conn.sendall(b"ping " + host.encode())
                assert conn.recv(100) == b"ping " + host.encode()
    finally:
        tls.stop()


def test_the_default_loopback_host_serves_ipv4_loopback_only(tmp_path, echo_port):
    tls = terminator(tmp_path, echo_port, host="127.0.0.1")
    try:
        with tls_connect("127.0.0.1", tls.port) as conn:
            conn.sendall(b"x")
            assert conn.recv(10) == b"x"
        with pytest.raises(OSError):
            tls_connect("::1", tls.port)
    finally:
        tls.stop()


def test_an_idle_connection_is_closed(tmp_path, echo_port):
    tls = terminator(tmp_path, echo_port, idle_timeout_s=0.5)
    try:
        with tls_connect("127.0.0.1", tls.port) as conn:
            conn.sendall(b"x")
            assert conn.recv(10) == b"x"
            started = time.monotonic()
            assert conn.recv(10) == b""  # closed by the terminator, not by us
            assert time.monotonic() - started < 8
    finally:
        tls.stop()


def test_connections_past_the_cap_are_closed_at_once(tmp_path, echo_port):
    tls = terminator(tmp_path, echo_port, max_connections=1)
    try:
        with tls_connect("127.0.0.1", tls.port) as first:
            first.sendall(b"a")
            assert first.recv(10) == b"a"
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                with tls_connect("127.0.0.1", tls.port) as second:
                    second.sendall(b"b")
                    if second.recv(10) == b"":
                        raise ConnectionError("closed")
    finally:
        tls.stop()
