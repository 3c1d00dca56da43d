"""The ingress replica's own gRPC server: `inference.GRPCInferenceService` over HTTP/2, spoken by uvicorn's HTTP/2
protocol (its zttp engine, a sans-IO HTTP/2 parser in compiled code) in the replica's event loop, calling the servicer
(serve/grpc_servicer.py) directly.

Why not grpcio's server: on this 2-core machine grpcio's asyncio server spends ~200 µs of CPU on each call before any
code of ours runs (more than all of Triton spends on a call, ~125 µs), and a server built on it stayed under 0.7x
Triton's throughput at 32 clients however lean our part got. On uvicorn's HTTP/2 protocol this module answers the same
stock tritonclient calls for ~40 µs each (loadtest/BENCH.md "gRPC without grpcio's server"). gRPC over HTTP/2 is a small
protocol on top (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): a message is a 5-byte prefix (a
compressed flag, a length) and the bytes; the status travels in the trailers. That part lives here; HTTP/2 itself
(HPACK, flow control, streams, TLS with ALPN) is uvicorn's and zttp's. Where direct ingress is off (KubeRay,
deploy/k8s/), Serve's own gRPC proxy calls the same servicer. HTTP: serve/http_ingress.py.

What each call gets, as Serve's server promised:
- at most `max_concurrent_rpcs` calls at once; one more is answered RESOURCE_EXHAUSTED at once;
- a call still running after `timeout_s` (or the client's own `grpc-timeout`, when shorter) ends with
  DEADLINE_EXCEEDED (checked every 50 ms), a stream counted from its start; a client that resets its stream or drops
  the connection cancels the call's task, which stops its work;
- a message above `max_message_bytes` is refused RESOURCE_EXHAUSTED as soon as its prefix or its bytes say so,
  before it is parsed; gzip / deflate messages are inflated to at most that size;
- SO_REUSEPORT: the replacement of a killed replica listens at once on the same port, and several ingress replicas
  share one port (the kernel spreads their connections);
- TLS (`tls` = certificate and key files): TLS 1.2+, ALPN h2, and each call's peer address is the client's own.
"""
import asyncio
import logging
import socket
import ssl
import struct
import time
import zlib
from functools import partial
from urllib.parse import quote

import grpc
from uvicorn.config import Config
from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol
from uvicorn.server import ServerState

from streamserve_proto import RECEIVED_AS_BYTES, SERVICE, service_pb2

logger = logging.getLogger("streamserve.grpc")

_PREFIX = struct.Struct(">BI")  # compressed flag, message length (gRPC's length-prefixed message)
_RESPONSE_HEADERS = [(b"content-type", b"application/grpc")]
_OK_TRAILERS = [(b"grpc-status", b"0")]
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_INFLATE = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}  # what grpcio's server accepts, besides identity
_IDLE_CONNECTION_S = 300.0
_SWEEP_S = 0.05  # how late past its deadline a call may end

_ROTATE_AFTER_STREAMS = 3072
_ROTATE_AFTER_RESETS = 192
"""zttp ends a connection with ENHANCE_YOUR_CALM once a client has opened 4,096 streams on it or reset 256 (its guard
against rapid-reset floods, not configurable in 0.0.35), failing the calls then in flight. A gRPC client keeps one
connection for millions of calls, so before either count is reached the connection is asked to go away gracefully
(GOAWAY, no error, every stream kept): the client opens a new connection for its next calls and the calls in flight
finish on the old one."""


class Abort(Exception):
    """`context.abort(code, details)`: the call ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code, self.details = code, details


class CallContext:
    """The part of grpcio's `ServicerContext` the servicer uses: the caller's metadata and address, and the status it
    sets (`set_code` / `set_details`) or ends the call with (`abort`)."""

    __slots__ = ("_scope", "code", "details")

    def __init__(self, scope: dict):
        self._scope, self.code, self.details = scope, grpc.StatusCode.OK, ""

    def invocation_metadata(self) -> tuple:
        return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in self._scope["headers"]
                     if not name.startswith((b":", b"grpc-")) and name not in (b"content-type", b"te"))

    def peer(self) -> str:
        """grpcio's form: 'ipv4:10.0.0.7:51234', 'ipv6:[::1]:51234'; an IPv4 client of a dual-stack listener ("[::]")
        as IPv4, as grpcio reports it (the token rule and shared memory compare addresses)."""
        host, port = self._scope["client"] or ("", 0)
        host = host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    async def abort(self, code: grpc.StatusCode, details: str = ""):
        raise Abort(code, details)


class _Method:
    __slots__ = ("call", "parse", "streaming")

    def __init__(self, call, parse, streaming: bool):
        self.call, self.parse, self.streaming = call, parse, streaming


class GRPCApp:
    """The ASGI application: each HTTP/2 stream a gRPC call of the servicer."""

    def __init__(self, servicer, *, timeout_s: float, max_concurrent_rpcs: int, max_message_bytes: int):
        self.methods = {}
        for method in SERVICE.methods:
            request_class = getattr(service_pb2, method.input_type.name)
            parse = None if method.name in RECEIVED_AS_BYTES else request_class.FromString
            self.methods[f"/{SERVICE.full_name}/{method.name}"] = _Method(getattr(servicer, method.name), parse,
                                                                          method.server_streaming)
        self.timeout_s, self.max_calls, self.max_bytes = timeout_s, max_concurrent_rpcs, max_message_bytes
        self.calls = 0
        self.running: set[_Running] = set()
        self.sweeping: asyncio.TimerHandle | None = None

    def _begin(self, scope: dict, timeout_s: float) -> "_Running":
        """The call's task, watched from here on: for its client leaving (`_Connection`) and for its deadline (one
        sweep every `_SWEEP_S` over the calls in flight, not a timer per call)."""
        scope[_ON_LEAVE] = running = _Running(asyncio.current_task(), time.monotonic() + timeout_s)
        self.running.add(running)
        if self.sweeping is None:
            self.sweeping = asyncio.get_running_loop().call_later(_SWEEP_S, self._sweep)
        return running

    def _end(self, running: "_Running") -> None:
        running.ended_by = running.ended_by or "answer"
        self.running.discard(running)

    def _sweep(self) -> None:
        now = time.monotonic()
        for running in [r for r in self.running if r.deadline <= now]:
            running.stop("deadline")
        self.sweeping = asyncio.get_running_loop().call_later(_SWEEP_S, self._sweep) if self.running else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        content_type, timeout_s, encoding = b"", self.timeout_s, None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout_s = min(timeout_s, _grpc_timeout(value))
            elif name == b"grpc-encoding" and value != b"identity":
                encoding = value
        if scope["method"] != "POST" or not content_type.startswith(b"application/grpc"):
            await _http_refusal(send, 415 if scope["method"] == "POST" else 405,
                                b"this port speaks gRPC: POST with content-type application/grpc")
            return
        method = self.methods.get(scope["path"])
        if method is None:
            await _status(send, grpc.StatusCode.UNIMPLEMENTED, f"method {scope['path']} is not served here")
            return
        if self.calls >= self.max_calls:
            await _status(send, grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the server is at its limit of {self.max_calls} concurrent calls; retry later")
            return
        if encoding is not None and encoding not in _INFLATE:
            await _status(send, grpc.StatusCode.UNIMPLEMENTED, f"grpc-encoding {encoding.decode('latin-1')!r} is not "
                                                               f"supported; use identity, gzip or deflate")
            return
        self.calls += 1
        try:
            messages = _Messages(receive, self.max_bytes, encoding)
            if method.streaming:
                await self._stream(method, scope, messages, send, timeout_s)
            else:
                await self._unary(method, scope, messages, send, timeout_s)
        finally:
            self.calls -= 1

    async def _unary(self, method: _Method, scope, messages: "_Messages", send, timeout_s: float) -> None:
        context = CallContext(scope)
        try:
            request = await messages.only()
            if method.parse is not None:
                request = method.parse(request)
        except Abort as e:
            await _status(send, e.code, e.details)
            return
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError: the client's bytes, answered as such
            await _status(send, grpc.StatusCode.INVALID_ARGUMENT, f"malformed request message: {e}")
            return
        if messages.gone:
            return
        running = self._begin(scope, timeout_s)
        try:
            response = await method.call(request, context)
            payload = response.SerializeToString() if context.code is grpc.StatusCode.OK else None
        except Abort as e:
            await _status(send, e.code, e.details)
            return
        except asyncio.CancelledError:
            if running.ended_by is None:
                raise
            running.task.uncancel()
            if running.ended_by == "deadline":
                await _status(send, grpc.StatusCode.DEADLINE_EXCEEDED, _timed_out(timeout_s, self.timeout_s))
            return  # else the client reset its stream or dropped the connection: nobody to answer
        except Exception:  # noqa: BLE001 - the servicer answers its errors itself; anything else is ours
            logger.exception("unhandled error in gRPC call %s", scope["path"])
            await _status(send, grpc.StatusCode.INTERNAL, "internal error; see the server log")
            return
        finally:
            self._end(running)
        if payload is None:
            await _status(send, context.code, context.details)
            return
        body = _PREFIX.pack(0, len(payload)) + payload
        if not scope[_RESPOND](body):
            await send({"type": "http.response.start", "status": 200, "headers": _RESPONSE_HEADERS, "trailers": True})
            await send({"type": "http.response.body", "body": body})
            await send({"type": "http.response.trailers", "headers": _OK_TRAILERS})

    async def _stream(self, method: _Method, scope, messages: "_Messages", send, timeout_s: float) -> None:
        context, started, running = CallContext(scope), False, self._begin(scope, timeout_s)

        async def requests():
            while (message := await messages.next()) is not None:
                yield message if method.parse is None else method.parse(message)

        try:
            async for response in method.call(requests(), context):
                if not started:
                    await send({"type": "http.response.start", "status": 200, "headers": _RESPONSE_HEADERS,
                                "trailers": True})
                    started = True
                payload = response.SerializeToString()
                await send({"type": "http.response.body", "body": _PREFIX.pack(0, len(payload)) + payload,
                            "more_body": True})
            code, details = context.code, context.details
        except Abort as e:
            code, details = e.code, e.details
        except asyncio.CancelledError:
            if running.ended_by is None:
                raise
            running.task.uncancel()
            if running.ended_by != "deadline":
                return
            code, details = grpc.StatusCode.DEADLINE_EXCEEDED, _timed_out(timeout_s, self.timeout_s, "stream")
        except Exception:  # noqa: BLE001
            logger.exception("unhandled error in gRPC stream %s", scope["path"])
            code, details = grpc.StatusCode.INTERNAL, "internal error; see the server log"
        finally:
            self._end(running)
        if messages.gone:
            return
        await _status(send, code, details, started=started)


_ON_LEAVE = "streamserve.on_leave"
_RESPOND = "streamserve.respond"


class _Running:
    """A call in flight: its task is cancelled when its client resets the stream or drops the connection
    (`_Connection` calls it), when its deadline passes or when the server stops, so its work stops with it; `ended_by`
    says which."""

    __slots__ = ("task", "deadline", "ended_by")

    def __init__(self, task: asyncio.Task, deadline: float):
        self.task, self.deadline, self.ended_by = task, deadline, None

    def __call__(self) -> None:
        self.stop("client")

    def stop(self, why: str) -> None:
        if self.ended_by is None:
            self.ended_by = why
            self.task.cancel()


class _Messages:
    """The length-prefixed messages of one call's request body, each checked against the size limit before its
    bytes are kept."""

    def __init__(self, receive, max_bytes: int, encoding: bytes | None):
        self.receive, self.max_bytes, self.encoding = receive, max_bytes, encoding
        self.buffer, self.ended, self.gone = b"", False, False

    async def only(self) -> bytes:
        """A unary call's one message; any byte after it is refused at once, unread."""
        await self._read()
        if self.ended and len(self.buffer) >= 5:  # the usual call: its whole body in one piece
            compressed, length = _PREFIX.unpack_from(self.buffer)
            if length == len(self.buffer) - 5 and not compressed and length <= self.max_bytes:
                return self.buffer[5:]
        message = await self.next()
        while not self.ended and not self.gone and not self.buffer:
            await self._read()
        if self.gone:
            return b""
        if message is None or self.buffer:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "a unary call carries exactly one length-prefixed message"
                        + ("" if message is None else "; more followed"))
        return message

    async def next(self) -> bytes | None:
        """The next whole message, or None once the client has half-closed (or left: `gone`)."""
        if not isinstance(self.buffer, bytearray):
            self.buffer = bytearray(self.buffer)
        while True:
            if len(self.buffer) >= 5:
                compressed, length = _PREFIX.unpack_from(self.buffer)
                if length > self.max_bytes:
                    raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"message of {length} bytes exceeds the limit of {self.max_bytes} bytes")
                if len(self.buffer) >= 5 + length:
                    message = bytes(memoryview(self.buffer)[5:5 + length])
                    del self.buffer[:5 + length]
                    return self._inflate(message) if compressed else message
            if self.ended or self.gone:
                if self.buffer:
                    raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "the request body ends inside a message")
                return None
            await self._read()

    async def _read(self) -> None:
        event = await self.receive()
        if event["type"] == "http.disconnect":
            self.gone = True
            return
        self.buffer += event["body"]
        self.ended = not event.get("more_body", False)

    def _inflate(self, message: bytes) -> bytes:
        if self.encoding is None:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "a compressed message without grpc-encoding")
        inflater = zlib.decompressobj(_INFLATE[self.encoding])
        try:
            inflated = inflater.decompress(message, self.max_bytes + 1)
        except zlib.error as e:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"message does not inflate as {self.encoding.decode()}: {e}") from None
        if len(inflated) > self.max_bytes:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"message inflates past the limit of {self.max_bytes} bytes")
        return inflated


def _grpc_timeout(value: bytes) -> float:
    """'100m' -> 0.1 (gRPC's TimeoutValue TimeoutUnit); an unreadable value sets no limit of its own."""
    try:
        return int(value[:-1]) * _TIMEOUT_UNITS[value[-1:]]
    except (ValueError, KeyError):
        return float("inf")


def _timed_out(timeout_s: float, limit_s: float, what: str = "request") -> str:
    return f"{what} timed out after {limit_s:g}s" if timeout_s >= limit_s else "deadline exceeded"


async def _status(send, code: grpc.StatusCode, details: str, started: bool = False) -> None:
    """End the call with `code`: response headers unless sent already, no message, the status in the trailers."""
    if not started:
        await send({"type": "http.response.start", "status": 200, "headers": _RESPONSE_HEADERS, "trailers": True})
    await send({"type": "http.response.body", "body": b""})
    trailers = [(b"grpc-status", str(code.value[0]).encode())]
    if details:  # percent-encoded, as the protocol asks for grpc-message
        trailers.append((b"grpc-message", quote(details, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()))
    await send({"type": "http.response.trailers", "headers": trailers})


async def _http_refusal(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


class _Connection(ZttpH2Protocol):
    """uvicorn's HTTP/2 connection, asked to go away gracefully before zttp's per-connection limits end it
    (`_ROTATE_AFTER_STREAMS`), and on `drain()`; a unary call's answer is written in one piece with the others ready
    in the same turn of the event loop (`respond`)."""

    def connection_made(self, transport) -> None:
        self.opened = self.resets = 0
        self.leaving = self.flush_due = False
        super().connection_made(transport)

    def handle_request(self, event) -> None:
        super().handle_request(event)
        if cycle := self.cycles.get(event.stream_id):  # its task is created, not yet run
            cycle.scope[_RESPOND] = partial(self.respond, cycle)
        self.opened += 1
        if self.opened >= _ROTATE_AFTER_STREAMS:
            self.drain()

    def handle_rst_stream(self, event) -> None:
        cycle = self.cycles.get(event.stream_id)
        super().handle_rst_stream(event)
        _left(cycle)
        self.resets += 1
        if self.resets >= _ROTATE_AFTER_RESETS:
            self.drain()

    def connection_lost(self, exc: Exception | None) -> None:
        cycles = list(self.cycles.values())
        super().connection_lost(exc)
        for cycle in cycles:
            _left(cycle)

    def resume_reading_if_idle(self) -> None:
        """uvicorn's checks every stream's buffered body, twice a call; only needed when reading is paused."""
        if self.flow.read_paused:
            super().resume_reading_if_idle()

    def respond(self, cycle, body: bytes) -> bool:
        """A unary call's whole answer (headers, its message, OK trailers) handed to zttp at once, and written with
        every other answer completed in this turn of the loop: a finished batch of 32 calls is one socket write and
        one read for the client, instead of three of each per call through ASGI's `send`. False where ASGI's `send`
        must do it: the transport is pushing back (it waits), or the answer has begun."""
        if cycle.response_started or self.flow.write_paused:
            return False
        if not cycle.disconnected:
            stream = cycle.stream
            stream.send_response(200, _RESPONSE_HEADERS)
            stream.send_data(body)
            stream.end_message(_OK_TRAILERS)
        cycle.response_started = cycle.response_complete = True
        cycle.message_event.set()
        finished, cycle.on_response = cycle.on_response, _answered
        finished(cycle.stream.stream_id)
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self.write_answers)
        return True

    def write_answers(self) -> None:
        self.flush_due = False
        if not self.transport.is_closing():
            self.flush()

    def drain(self) -> None:
        """GOAWAY with no error and every stream kept (RFC 9113 6.8): the client opens no new stream here and closes
        the connection once its calls in flight are answered."""
        if not self.leaving and not self.transport.is_closing():
            self.leaving = True
            self.conn.close(0, 2**31 - 1)
            self.flush()


def _answered(stream_id: int) -> None:
    """What a cycle's completion callback becomes once called: uvicorn calls it again when the call's task ends."""


def _left(cycle) -> None:
    if cycle is not None and not cycle.response_complete and (leaving := cycle.scope.get(_ON_LEAVE)):
        leaving()


class GRPCServer:
    """A listening gRPC server; `stop(grace)` as grpcio's."""

    def __init__(self, listener: asyncio.Server, state: ServerState, app: GRPCApp):
        self.listener, self.state, self.app = listener, state, app

    async def stop(self, grace: float | None) -> None:
        """Stop listening, let the calls in flight finish for up to `grace` seconds (None: none), then end them."""
        self.listener.close()
        for connection in list(self.state.connections):
            connection.drain()
        if grace and self.state.tasks:
            await asyncio.wait(list(self.state.tasks), timeout=grace)
        for running in list(self.app.running):
            running.stop("server")
        for task in list(self.state.tasks):
            task.cancel()
        for connection in list(self.state.connections):
            connection.transport.close()
        await self.listener.wait_closed()


async def start_grpc_server(servicer, listen: str, *, timeout_s: float, max_concurrent_rpcs: int,
                            max_message_bytes: int, tls: tuple[str, str] | None = None) -> GRPCServer:
    """A started server on `listen` ("[::]:8001", "127.0.0.1:40123") in the running event loop, speaking TLS when
    `tls` = (certificate file, key file) is given; raises RuntimeError if the address cannot be bound."""
    app = GRPCApp(servicer, timeout_s=timeout_s, max_concurrent_rpcs=max_concurrent_rpcs,
                  max_message_bytes=max_message_bytes)
    config = Config(app, http=_Connection, lifespan="off", log_config=None, access_log=False, proxy_headers=False,
                    timeout_keep_alive=_IDLE_CONNECTION_S)
    config.load()
    state = ServerState()
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*tls)
        context.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Connection(config=config, server_state=state, app_state={}),
                                        sock=_listening_socket(listen), ssl=context)
    return GRPCServer(listener, state, app)


def _listening_socket(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "::"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "[::]" takes IPv4 clients too, as grpcio's
        sock.bind((host, int(port)))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise RuntimeError(f"cannot listen for gRPC on {listen}: {e}") from None
    sock.setblocking(False)
    return sock
