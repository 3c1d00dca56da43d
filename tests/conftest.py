"""Shared fixtures: a model repository built by the project's own export code, and a real server.

The server is `python -m serve run` in a subprocess (real Ray, real Serve proxies, real HTTP and gRPC),
started once per session on free ports with its own Ray temp dir, and stopped with SIGINT like Ctrl-C.
"""
from pathlib import Path

import pytest

from serve.testing import start_server, stop_server


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    from export.build import main as build

    root = tmp_path_factory.mktemp("repo") / "model_repository"
    build(["--repository", str(root)])
    return root


@pytest.fixture(scope="session")
def server(repository, tmp_path_factory):
    # Small request and response limits, so the over-limit cases stay cheap (test_bad_input.LIMIT, test_hostile_server).
    limits = {"STREAMSERVE_MAX_REQUEST_BYTES": str(1 << 20), "STREAMSERVE_MAX_RESPONSE_BYTES": str(4 << 20)}
    try:
        srv = start_server(repository, tmp_path_factory.mktemp("server"), limits, timeout_s=600)
    except RuntimeError as e:
        pytest.fail(str(e))
    yield srv
    code = stop_server(srv.process)
    assert code == 0, f"server exited with {code} after SIGINT; log tail:\n{srv.log.read_text()[-2000:]}"


@pytest.fixture(scope="module")
def http(server):
    """tritonclient's HTTP client on the session server (concurrency 4 for async_infer tests)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http, concurrency=4)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(server):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc)
    yield client
    client.close()
