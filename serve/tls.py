"""TLS for the gRPC port, which Ray Serve's gRPC servers cannot do themselves (they only add insecure ports).

When `STREAMSERVE_TLS_CERTFILE` / `_KEYFILE` are set, the launcher moves Serve's gRPC listener to a free port
and puts this terminator on the public gRPC port: it completes the TLS handshake (ALPN `h2`, TLS 1.2+) and
pipes the decrypted HTTP/2 bytes to Serve over loopback. It parses nothing, so every gRPC feature
(streams, metadata, deadlines) passes through unchanged. Connections it forwards reach Serve from
127.0.0.1, so TLS mode requires the bearer token: the peer address can no longer tell who is local.
In Kubernetes, terminate TLS at the ingress or load balancer instead (deploy/k8s/README.md).
"""
import asyncio
import logging
import ssl
import threading

logger = logging.getLogger("streamserve.tls")
_CHUNK = 1 << 16


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["h2"])  # gRPC clients refuse a TLS server that does not offer h2
    return context


class TlsTerminator:
    def __init__(self, host: str, port: int, target_port: int, certfile: str, keyfile: str):
        self.host, self.port, self.target_port = host, port, target_port
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
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, self.host, self.port, ssl=self.context, ssl_handshake_timeout=10)
            )
        except BaseException as e:  # the port is taken, the key does not match the certificate, ...
            self._error = e
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _connection(self, client_reader, client_writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError as e:
            logger.warning("gRPC TLS: cannot reach Serve's gRPC port %d: %s", self.target_port, e)
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass
