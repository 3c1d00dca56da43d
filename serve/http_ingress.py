"""The HTTP app the ingress replica's direct-ingress server runs: our FastAPI app behind a thin ASGI guard, in place of
Serve's per-request wrapper.

With direct ingress, Serve's uvicorn server in the ingress replica hands each request to a wrapper that builds Serve's
request metadata (two request ids, its request context, tracing context), counts it for its metrics and drain, and
proxies `receive` through another task. That wrapper was a quarter of the ingress's CPU samples under HTTP load; serving
the app from the same server without it answered 1.26x the requests per second at 8 HTTP clients and 1.6x at 32
(loadtest/BENCH.md "The ingress's own HTTP path"). Serve keeps its server: the port, TLS, keep-alive, its request-id
middleware and the graceful stop are as before (`serve/app.py` hands it this app).

What Serve's wrapper did for each request, `DirectIngressGuard` does too:
- at most `max_ongoing` requests at once; one more is answered 503 with `Retry-After` at once;
- a request still running after `timeout_s` is stopped and answered 504 (if its response has not started; a stream
  that has is cut);
- a client that disconnects before its answer stops its request's work (its task is cancelled).
"""
import asyncio
import json
from typing import Any, Awaitable, Callable

Scope = Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_S = 1


def serve_directly(app: ASGIApp) -> None:
    """Serve's direct-ingress HTTP server in this process (the ingress replica's, started once its constructor has
    run) serves `app` in place of Serve's per-request wrapper (`_wrapper` below). Serve starts it through
    `start_asgi_http_server` of its replica module, which is where the app is swapped in; the server, its port and
    options stay Serve's."""
    from ray.serve._private import replica

    start = replica.start_asgi_http_server

    async def start_asgi_http_server(_wrapper, http_options, *, event_loop, enable_so_reuseport=False):
        return await start(app, http_options, event_loop=event_loop, enable_so_reuseport=enable_so_reuseport)

    replica.start_asgi_http_server = start_asgi_http_server


class DirectIngressGuard:
    """The ASGI app Serve's server runs: `app` with the request cap, time limit and disconnect handling above."""

    def __init__(self, app: ASGIApp, *, timeout_s: float, max_ongoing: int):
        self.app, self.timeout_s, self.max_ongoing = app, timeout_s, max_ongoing
        self.ongoing = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.ongoing >= self.max_ongoing:
            await _answer(send, 503, f"the server holds {self.ongoing} requests, its limit; retry later",
                          [(b"retry-after", str(RETRY_AFTER_S).encode())])
            return
        self.ongoing += 1
        try:
            await _Exchange(self.app, scope, receive, send).run(self.timeout_s)
        finally:
            self.ongoing -= 1


class _Exchange:
    """One request: the app runs in a task of its own, which a disconnect or the time limit cancels. Once the app has
    read the whole body, a watcher waits on `receive` for the client to leave (uvicorn answers `http.disconnect` to
    every waiter then, so the app may still listen too)."""

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send):
        self.app, self.scope, self._receive, self._send = app, scope, receive, send
        self.started = self.complete = self.client_left = False
        self.task: asyncio.Task | None = None
        self.watcher: asyncio.Task | None = None

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body") and self.watcher is None:
            self.watcher = asyncio.ensure_future(self._watch())
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            self.complete = True
        await self._send(message)

    async def _watch(self) -> None:
        while not self.complete:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self.complete:
                    self.client_left = True
                    self.task.cancel()
                return

    async def run(self, timeout_s: float) -> None:
        self.task = asyncio.ensure_future(self.app(self.scope, self.receive, self.send))
        try:
            done, _ = await asyncio.wait((self.task,), timeout=timeout_s)
        except asyncio.CancelledError:  # the server itself stops this request
            self.task.cancel()
            raise
        finally:
            if self.watcher is not None:
                self.watcher.cancel()
        if not done:
            self.task.cancel()
            await asyncio.wait((self.task,))
            if not self.started:
                await _answer(self._send, 504, f"request timed out after {timeout_s:g}s")
            return
        if self.task.cancelled():
            if not self.client_left:  # cancelled from inside the app: not the client's doing
                raise asyncio.CancelledError
            return
        self.task.result()  # the app's own exception, for the server to log and answer 500


async def _answer(send: Send, status: int, error: str, headers: list | None = None) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
