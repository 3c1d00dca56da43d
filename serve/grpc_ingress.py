"""The ingress replica's own gRPC server: `inference.GRPCInferenceService` served by grpcio's asyncio server in the
replica's event loop, calling the servicer (serve/grpc_servicer.py) directly.

With direct ingress (`make serve`), Serve's gRPC server in the ingress replica wraps every call in its own request
machinery: a context object, two request ids, its request context variable, an access-log record built even with the
access log off, its request metrics and a response generator with a timeout. On this 2-core machine that wrapper was a
quarter of the ingress's CPU samples for `digits_cnn`, and calling the servicer from a server of our own in the same
replica answered 1.5x the requests per second at 32 gRPC clients (loadtest/BENCH.md "The ingress's own gRPC server").
Where direct ingress is off (KubeRay, deploy/k8s/), Serve's gRPC proxy calls the same servicer. HTTP: serve/http_ingress.py.

What Serve's server did for each call, this one does too:
- at most `max_concurrent_rpcs` calls at once (grpcio answers RESOURCE_EXHAUSTED past it), the ingress's
  `max_ongoing_requests`;
- a call still running after `timeout_s` ends with DEADLINE_EXCEEDED (a stream counts from its start, as in Serve);
  a client's own deadline, or a client that leaves, cancels the call's task, which stops its work;
- messages above `max_message_bytes` are refused by grpcio before they are parsed (RESOURCE_EXHAUSTED);
- SO_REUSEPORT: the replacement of a killed replica listens at once on the same port, and several ingress replicas
  share one port (the kernel spreads their connections).
And what Serve's could not: TLS (`tls` = certificate and key files; TLS 1.2+, ALPN h2, grpcio's own handshake), so
in TLS mode no terminator stands in front and each call's peer address is the client's own.
"""
import asyncio
import functools
from pathlib import Path

import grpc

from streamserve_proto import SERVICE, add_servicer_to_server


async def start_grpc_server(servicer, listen: str, *, timeout_s: float, max_concurrent_rpcs: int,
                            max_message_bytes: int, tls: tuple[str, str] | None = None) -> grpc.aio.Server:
    """A started server on `listen` ("[::]:8001", "127.0.0.1:40123") in the running event loop, speaking TLS when
    `tls` = (certificate file, key file) is given; raises if the address cannot be bound."""
    server = grpc.aio.server(
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 1)],
    )
    add_servicer_to_server(TimeLimited(servicer, timeout_s), server)
    if tls:  # raises RuntimeError when the port cannot be bound
        certificate, key = (Path(name).read_bytes() for name in tls)
        server.add_secure_port(listen, grpc.ssl_server_credentials([(key, certificate)]))
    else:
        server.add_insecure_port(listen)
    await server.start()
    return server


class TimeLimited:
    """Every RPC of the servicer, ended with DEADLINE_EXCEEDED once it has run `timeout_s`."""

    def __init__(self, servicer, timeout_s: float):
        for method in SERVICE.methods:
            wrap = _limited_stream if method.server_streaming else _limited_unary
            setattr(self, method.name, wrap(getattr(servicer, method.name), timeout_s))


def _limited_unary(method, timeout_s: float):
    @functools.wraps(method)
    async def call(request, context):
        try:
            async with asyncio.timeout(timeout_s):
                return await method(request, context)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"request timed out after {timeout_s:g}s")

    return call


def _limited_stream(method, timeout_s: float):
    @functools.wraps(method)
    async def call(request_iterator, context):
        try:
            async with asyncio.timeout(timeout_s):
                async for response in method(request_iterator, context):
                    yield response
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"stream timed out after {timeout_s:g}s")

    return call
