"""The scan process's own limits are in force: a scan that needs more memory or CPU time than allowed ends with
an error naming the limit, and the caller goes on (the limits are set by the worker itself, before it reads
the model; see models/backdoor/scan_worker.py)."""
import numpy as np

from models.backdoor.jobs import DEFAULT_CLEAN, Limits, scan_once
from models.backdoor.population import to_onnx, train_direct


def model_bytes() -> bytes:
    return to_onnx(train_direct(None, 0.0, 0, steps=5))


def test_a_scan_over_its_memory_limit_ends_with_an_error_naming_it():
    event = scan_once(model_bytes(), np.load(DEFAULT_CLEAN), Limits(memory_mb=300))
    assert event["event"] == "error" and "memory limit of 300 MiB" in event["message"], event


def test_a_scan_over_its_cpu_time_limit_ends_with_an_error_naming_it():
    event = scan_once(model_bytes(), np.load(DEFAULT_CLEAN), Limits(cpu_seconds=1, steps=10_000))
    assert event["event"] == "error" and "CPU-time limit (1 s)" in event["message"], event
