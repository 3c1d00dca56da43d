"""TLS for the gRPC port, which Ray Serve's gRPC servers cannot do themselves (they only add insecure ports).

When `STREAMSERVE_TLS_CERTFILE` / `_KEYFILE` are set, the launcher moves the gRPC listener to a free loopback port
and puts this terminator on the public gRPC port: it completes the TLS handshake (ALPN `h2`, TLS 1.2+) and
pipes the decrypted HTTP/2 bytes to the gRPC server over loopback. It parses nothing, so every gRPC feature
(streams, metadata, deadlines) passes through unchanged. Connections it forwards reach the server from
127.0.0.1, so TLS mode requires the bearer token: the peer address can no longer tell who is local.
In Kubernetes, terminate TLS at the ingress or load balancer instead (deploy/k8s/README.md).

It listens where HTTP does (`STREAMSERVE_HTTP_HOST`: loopback unless exposing the server is chosen; "::" is every
interface for IPv6 and IPv4 clients alike, one dual-stack socket), gives a client `HANDSHAKE_TIMEOUT_S` to finish the TLS
handshake, closes a connection that moved no byte in either direction for `IDLE_TIMEOUT_S`, and holds at most
`MAX_CONNECTIONS` at once (one more is closed at once): a client cannot pin the terminator's memory or sockets.
"""
import asyncio
import logging
import socket
import ssl
import threading
import time

logger = logging.getLogger("streamserve.tls")
_CHUNK = 1 << 16
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 300.0
MAX_CONNECTIONS = 1024


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["h2"])  # gRPC clients refuse a TLS server that does not offer h2
    return context


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port. "::" (every interface) also accepts IPv4 clients, as ::ffff:a.b.c.d."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    if host == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    sock.setblocking(False)
    return sock


class TlsTerminator:
    def __init__(self, host: str, port: int, target_port: int, certfile: str, keyfile: str,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS):
        self.host, self.port, self.target_port = host, port, target_port
        self.idle_timeout_s, self.max_connections = idle_timeout_s, max_connections
        self.connections = 0
        self.context = server_context(certfile, keyfile)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="grpc-tls", daemon=True)

    def start(self) -> "TlsTerminator":
        self._thread.start()
        self._started.wait(timeout=30)
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        async def shutdown():
            self._server.close()
            connections = asyncio.all_tasks() - {asyncio.current_task()}  # open connections end with the terminator
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(
                self._connection, sock=listening_socket(self.host, self.port), ssl=self.context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
            ))
        except BaseException as e:  # the port is taken, the key does not match the certificate, ...
            self._error = e
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _connection(self, client_reader, client_writer) -> None:
        if self.connections >= self.max_connections:
            logger.warning("gRPC TLS: %d connections open, refusing one more", self.connections)
            client_writer.close()
            return
        self.connections += 1
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError as e:
                logger.warning("gRPC TLS: cannot reach the gRPC server on port %d: %s", self.target_port, e)
                client_writer.close()
                return
            activity = [time.monotonic()]
            pipes = [asyncio.ensure_future(_pipe(client_reader, upstream_writer, activity)),
                     asyncio.ensure_future(_pipe(upstream_reader, client_writer, activity))]
            while not all(p.done() for p in pipes):
                idle = time.monotonic() - activity[0]
                if idle >= self.idle_timeout_s:
                    for writer in (client_writer, upstream_writer):
                        writer.close()
                    break
                await asyncio.wait(pipes, timeout=self.idle_timeout_s - idle)
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self.connections -= 1


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity: list[float]) -> None:
    try:
        while data := await reader.read(_CHUNK):
            activity[0] = time.monotonic()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass
