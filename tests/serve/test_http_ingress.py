"""The guard in front of the HTTP app with direct ingress (serve/http_ingress.py) keeps what Serve's per-request
wrapper promised: a cap on requests at once (503 with Retry-After), a time limit (504), and a client that leaves
stopping its request's work. Driven as uvicorn drives an ASGI app: `receive` gives the body, then blocks until the
client disconnects or the response is complete."""
import asyncio
import json

from serve.http_ingress import DirectIngressGuard


class Client:
    """One HTTP exchange: the body in one message, then `leave()` makes `receive` answer `http.disconnect`."""

    def __init__(self, body: bytes = b"{}"):
        self.sent, self._body, self._gone = [], body, asyncio.Event()

    async def receive(self):
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message):
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self._gone.set()  # uvicorn answers http.disconnect once the response is complete

    def leave(self):
        self._gone.set()

    @property
    def status(self):
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self):
        return dict(next(m["headers"] for m in self.sent if m["type"] == "http.response.start"))

    @property
    def error(self):
        return json.loads(b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"))["error"]


class SleepingApp:
    """Reads the body, sleeps as long as the body says, answers 200; records the requests that were cancelled."""

    def __init__(self):
        self.cancelled, self.finished = 0, 0

    async def __call__(self, scope, receive, send):
        message = await receive()
        try:
            await asyncio.sleep(json.loads(message["body"]).get("sleep_s", 0))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


SCOPE = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}


def body(sleep_s: float) -> bytes:
    return json.dumps({"sleep_s": sleep_s}).encode()


def test_a_request_is_answered_by_the_app():
    app = SleepingApp()
    client = Client(body(0))
    asyncio.run(DirectIngressGuard(app, timeout_s=5, max_ongoing=4)(SCOPE, client.receive, client.send))
    assert client.status == 200 and app.finished == 1


def test_a_request_past_the_time_limit_is_stopped_and_answered_504():
    app = SleepingApp()
    client = Client(body(30))
    asyncio.run(DirectIngressGuard(app, timeout_s=0.2, max_ongoing=4)(SCOPE, client.receive, client.send))
    assert client.status == 504 and "timed out after 0.2s" in client.error
    assert app.cancelled == 1 and app.finished == 0


def test_a_client_that_leaves_stops_its_request():
    app = SleepingApp()
    client = Client(body(30))

    async def main():
        call = asyncio.ensure_future(DirectIngressGuard(app, timeout_s=60, max_ongoing=4)(SCOPE, client.receive, client.send))
        await asyncio.sleep(0.1)
        client.leave()
        await asyncio.wait_for(call, 5)

    asyncio.run(main())
    assert app.cancelled == 1 and app.finished == 0 and client.sent == []


def test_requests_past_the_cap_are_answered_503_with_retry_after_and_the_rest_complete():
    app = SleepingApp()
    guard = DirectIngressGuard(app, timeout_s=10, max_ongoing=2)
    clients = [Client(body(0.3)) for _ in range(5)]

    async def main():
        await asyncio.gather(*(guard(SCOPE, c.receive, c.send) for c in clients))
        after = Client(body(0))
        await guard(SCOPE, after.receive, after.send)
        return after

    after = asyncio.run(main())
    statuses = sorted(c.status for c in clients)
    assert statuses == [200, 200, 503, 503, 503]
    refused = [c for c in clients if c.status == 503]
    assert all(c.headers[b"retry-after"] == b"1" and "limit" in c.error for c in refused)
    assert after.status == 200 and guard.ongoing == 0


def test_an_app_error_reaches_the_server_and_frees_its_slot():
    async def failing(scope, receive, send):
        await receive()
        raise ValueError("boom")

    guard = DirectIngressGuard(failing, timeout_s=5, max_ongoing=1)
    client = Client()

    async def main():
        try:
            await guard(SCOPE, client.receive, client.send)
        except ValueError as e:
            return str(e)

    assert asyncio.run(main()) == "boom" and guard.ongoing == 0


def test_lifespan_and_other_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(DirectIngressGuard(app, timeout_s=5, max_ongoing=0)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
