"""Locust users and load shape for the platform (loaded only by the locust runner; see loadtest/suite.py).

    PYTHONPATH=. LT_MODEL=digits_cnn LT_SHAPE=step LT_USERS=16 LT_DURATION=30 LT_RAW=/tmp/raw.csv \
    locust -f loadtest/locust/locustfile.py --headless --host http://127.0.0.1:8000 HttpTritonUser

Users are closed loops (the next request leaves when the previous answer arrives), one tritonclient per
user, all to 127.0.0.1. Every request fires locust's request event with its own timing; failures are
named by their code (HTTP status / gRPC status code) so locust's failures CSV is an error count by code.
LT_RAW, when set, gets one CSV row per request (wall time, protocol, model, latency, code, active users)
from which the suite computes per-step throughput and percentiles.

Environment: LT_MODEL, LT_SHAPE (steady | step | spike | sweep), LT_USERS (peak users), LT_DURATION (s),
LT_LEVELS (sweep: comma-separated user counts), LT_GRPC (host:port for gRPC users), LT_TIMEOUT_S.
"""
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel: gRPC's core must yield to gevent's loop

import os  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from locust import LoadTestShape, User, constant, events, task  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from loadtest.locust.scenarios import SCENARIOS, served_name, triton_inputs  # noqa: E402

MODEL = os.environ.get("LT_MODEL", "digits_cnn")
SHAPE = os.environ.get("LT_SHAPE", "steady")
USERS = int(os.environ.get("LT_USERS", "8"))
DURATION = float(os.environ.get("LT_DURATION", "10"))
LEVELS = [int(x) for x in (os.environ.get("LT_LEVELS") or "1,2,4,8,16,32").split(",")]
TIMEOUT_S = float(os.environ.get("LT_TIMEOUT_S", "30"))
SCENARIO = SCENARIOS[MODEL]
ONE = SCENARIO.factory(1)  # built at import: loading data inside a user would stall gevent's loop
_RAW = []


def error_code(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException) and exc.status():
        return str(exc.status()).replace("StatusCode.", "")
    return type(exc).__name__


class CodedError(Exception):
    """What locust sees: the code alone, so its failures table groups by code."""


class _TritonUser(User):
    abstract = True
    wait_time = constant(0)
    protocol = ""

    def _fire(self, started: float, exc: BaseException | None) -> None:
        ms = (time.perf_counter() - started) * 1000
        code = "OK" if exc is None else error_code(exc)
        _RAW.append((time.time(), self.protocol, MODEL, ms, code, self.environment.runner.user_count))
        self.environment.events.request.fire(
            request_type=self.protocol, name=MODEL, response_time=ms, response_length=0,
            exception=None if exc is None else CodedError(code), context={},
        )


class HttpTritonUser(_TritonUser):
    """tritonclient.http with JSON tensors (the v2 JSON route the naive baseline also speaks); a BYTES tensor that is not
    UTF-8 text (an encoded image) in the binary extension, since JSON cannot carry it."""

    protocol = "http"

    def on_start(self):
        url = urlparse(self.host or "http://127.0.0.1:8000")
        self.client = httpclient.InferenceServerClient(url.netloc, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)
        self.request = triton_inputs(httpclient, ONE, json=True)

    def on_stop(self):
        self.client.close()

    @task
    def infer(self):
        started = time.perf_counter()
        try:
            self.client.infer(served_name(MODEL), self.request, model_version=SCENARIO.version)
            self._fire(started, None)
        except Exception as e:  # every failure is counted by code, none is raised into locust
            self._fire(started, e)


class GrpcTritonUser(_TritonUser):
    """tritonclient.grpc; decoupled models go over a bidirectional stream, one stream per user, and a
    request counts as done when its final response (triton_final_response) arrives."""

    protocol = "grpc"

    def on_start(self):
        self.client = grpcclient.InferenceServerClient(os.environ.get("LT_GRPC", "127.0.0.1:8001"))
        self.request = triton_inputs(grpcclient, ONE)
        if SCENARIO.decoupled:
            self.done = gevent.event.AsyncResult()
            self.client.start_stream(callback=self._on_response, stream_timeout=None)

    def _on_response(self, result, error):
        if error is not None:
            self.done.set(error)
            return
        final = result.get_response().parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            self.done.set(None)

    def on_stop(self):
        if SCENARIO.decoupled:
            self.client.stop_stream(cancel_requests=True)
        self.client.close()

    @task
    def infer(self):
        started = time.perf_counter()
        try:
            if SCENARIO.decoupled:
                self.done = gevent.event.AsyncResult()
                self.client.async_stream_infer(served_name(MODEL), self.request, model_version=SCENARIO.version,
                                               enable_empty_final_response=True)
                err = self.done.get(timeout=TIMEOUT_S)
                if err is not None:
                    raise err
            else:
                self.client.infer(served_name(MODEL), self.request, model_version=SCENARIO.version, client_timeout=TIMEOUT_S)
            self._fire(started, None)
        except Exception as e:
            self._fire(started, e)


def _schedule() -> list[tuple[float, int]]:
    """[(end time s, users)] for the chosen shape; bounded by LT_DURATION."""
    d, u = DURATION, USERS
    if SHAPE == "steady":
        return [(d, u)]
    if SHAPE == "step":  # four equal steps up to the peak
        levels = [max(1, round(u * k / 4)) for k in (1, 2, 3, 4)]
        return [(d * (i + 1) / 4, n) for i, n in enumerate(levels)]
    if SHAPE == "spike":  # base, sudden spike to the peak, back to base (recovery)
        base = max(1, u // 8)
        return [(d * 0.3, base), (d * 0.6, u), (d, base)]
    if SHAPE == "sweep":  # LT_DURATION per level
        return [(d * (i + 1), n) for i, n in enumerate(LEVELS)]
    raise ValueError(f"unknown LT_SHAPE {SHAPE!r}")


class Shape(LoadTestShape):
    def tick(self):
        t = self.get_run_time()
        if os.environ.get("LT_DEBUG"):
            print("tick", round(t, 2), flush=True)
        for end, users in _schedule():
            if t < end:
                return users, max(users, 100)  # spawn at once: the shape, not the ramp, is the test
        return None


@events.quitting.add_listener
def _write_raw(environment, **_):
    path = os.environ.get("LT_RAW")
    if path:  # written whole, then renamed: the suite takes the file's existence to mean complete rows
        with open(path + ".part", "w") as f:
            f.write("time,protocol,model,latency_ms,code,users\n")
            f.writelines(f"{t:.6f},{p},{m},{ms:.3f},{c},{u}\n" for t, p, m, ms, c, u in _RAW)
        os.replace(path + ".part", path)
