"""`backdoor_scan` is bounded: closing its stream (the client left) kills the scan's whole process group at once,
without waiting for it, and a replica runs at most `max_concurrent_scans` scans. The scan process works in an
empty directory, where `onnx.checker` runs. The handler is driven directly, as serve/replica.py does."""
import json
import os
import time

import numpy as np
import psutil
import pytest

from models.backdoor.export import scanner_settings
from models.backdoor.jobs import DEFAULT_CLEAN
from models.backdoor.model import make
from models.backdoor.population import to_onnx
from models.backdoor.serving import BackdoorScanHandler
from serve.errors import InvalidInput, Overloaded, RepositoryError


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return to_onnx(make("convnet"))  # untrained: the scan's duration does not depend on the weights


def handler(tmp_path, **params) -> BackdoorScanHandler:
    (tmp_path / "clean_reference.npy").write_bytes(DEFAULT_CLEAN.read_bytes())
    (tmp_path / "scanner.json").write_text(json.dumps(scanner_settings()))  # as the export writes the folder
    # far more steps than a test waits for: a scan that is not stopped would still be running
    return BackdoorScanHandler(tmp_path, {"steps": "100000", "wall_seconds": "120", **params}, ["MODEL", "CLEAN_IMAGES"], [], 1, "cpu")


def scan(h: BackdoorScanHandler, data: bytes):
    return h.stream(h.preprocess({"MODEL": np.array([data], dtype=object)}))


def scan_workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "models.backdoor.scan_worker" in " ".join(p.cmdline())]


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_closing_the_stream_kills_the_scan_process_group_at_once(tmp_path, model_bytes):
    h = handler(tmp_path)
    stream = scan(h, model_bytes)
    first = next(stream)  # the worker's first progress event: it is running, torch imported
    assert first["STAGE"][0] == b"checking"
    (worker,) = scan_workers()
    pgid = os.getpgid(worker.pid)
    assert pgid == worker.pid != os.getpgid(0)  # a process group of its own, so the whole group can be killed
    assert os.listdir(worker.cwd()) == []  # onnx.checker resolves paths against an empty directory
    closed = time.monotonic()
    stream.close()
    assert time.monotonic() - closed < 0.5  # close() may run on the event loop: it kills and returns, never waits
    deadline = closed + 1.0
    while group_exists(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_exists(pgid), "the scan's process group still existed 1 s after its stream was closed"
    assert not scan_workers()


def test_a_scan_over_the_cap_is_refused_while_the_other_runs(tmp_path, model_bytes):
    h = handler(tmp_path)  # default: one scan per replica
    running = scan(h, model_bytes)
    try:
        next(running)
        with pytest.raises(Overloaded, match="already running 1 scan.*max_concurrent_scans"):
            next(scan(h, model_bytes))
        assert len(scan_workers()) == 1  # refused before any process started; the running scan goes on
        running.close()
        running = scan(h, model_bytes)  # the closed scan's slot is free at once
        next(running)
    finally:
        running.close()


def test_the_checker_runs_in_the_scan_process(tmp_path, model_bytes):
    """A model only onnx.checker refuses (a node reads a tensor nothing defines) passes the replica's checks and is
    refused by the scan process, where the checker runs."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    model.graph.node[0].input[1] = "undefined_weight"
    h = handler(tmp_path, steps="5")
    inputs = h.preprocess({"MODEL": np.array([model.SerializeToString()], dtype=object)})  # no checker here
    with pytest.raises(InvalidInput, match=r"ONNX checker rejects the model.*\[malformed\]"):
        list(h.stream(inputs))


@pytest.mark.parametrize("value", ["0", "x"])
def test_a_bad_cap_is_refused_naming_the_parameter(tmp_path, value):
    with pytest.raises(RepositoryError, match=f"parameter 'max_concurrent_scans': .*, got '{value}'"):
        handler(tmp_path, max_concurrent_scans=value)
