"""Streamed rollout timing: `python -m loadtest.stream_latency [--model kno_ns2d] [--grid 64] [--steps 40] [--pairs 4]`
(`--model` any served rollout operator: kno_burgers, kno_ns2d, fno_ns2d_nu1e4, fno_ns2d_nu1e5).

Starts the real server and opens a gRPC ModelStreamInfer for one rollout; records when each step arrives
after the request was sent. Beside it, the same model file run in this process through the same runtime
(TorchScript for the Koopman and FNO models), step after step. Prints time to the first streamed step, the mean
interval between steps, and both as ratios to in-process.
"""
import argparse
import queue
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from serve.repository import load_model
from serve.runtimes import load_runtime

from serve.testing import start_server, stop_server


def window_for(model: str, grid: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (1, 10, grid) if model == "kno_burgers" else (1, 10, grid, grid)
    return (0.2 * rng.standard_normal(shape)).astype(np.float32)


def served(address: str, model: str, window: np.ndarray, steps: int, members: int = 1) -> list[float]:
    """Seconds from sending one streamed rollout to each step's arrival; `members` > 1: an ensemble request, whose
    steps carry the members' mean and spread."""
    client = grpcclient.InferenceServerClient(address)
    arrivals: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: arrivals.put((time.perf_counter(), error)))
    state = grpcclient.InferInput("WINDOW", list(window.shape), "FP32")
    state.set_data_from_numpy(window)
    count = grpcclient.InferInput("STEPS", [1, 1], "INT32")
    count.set_data_from_numpy(np.array([[steps]], np.int32))
    inputs, outputs = [state, count], ["FRAMES"]
    if members > 1:
        ensemble = grpcclient.InferInput("ENSEMBLE_MEMBERS", [1, 1], "INT32")
        ensemble.set_data_from_numpy(np.array([[members]], np.int32))
        inputs, outputs = inputs + [ensemble], ["FRAMES_MEAN", "FRAMES_SPREAD"]
    sent = time.perf_counter()
    client.async_stream_infer(model, inputs, outputs=[grpcclient.InferRequestedOutput(name) for name in outputs])
    times = []
    for _ in range(steps):
        arrived, error = arrivals.get(timeout=600)
        if error is not None:
            raise RuntimeError(error)
        times.append(arrived - sent)
    client.stop_stream()
    client.close()
    return times


def step_runtime(repository: Path, model: str):
    """The served rollout model's latest version, loaded by its own runtime with one thread (a replica's share)."""
    spec = load_model(repository / model)
    return load_runtime(spec, max(spec.versions), ["WINDOW"], ["FRAMES", "WINDOW_NEXT"], 1, "cpu")


def in_process(repository: Path, model: str, window: np.ndarray, steps: int, warmup: int = 10) -> list[float]:
    """Seconds from the start to each step of a rollout run here, after `warmup` steps (the allocator's heap and the
    runtime's caches settle over the first few; the served side is measured warm too)."""
    runtime = step_runtime(repository, model)
    warm = window
    for _ in range(warmup):
        warm = runtime.infer({"WINDOW": warm})["WINDOW_NEXT"]
    times, started = [], time.perf_counter()
    for _ in range(steps):
        window = runtime.infer({"WINDOW": window})["WINDOW_NEXT"]
        times.append(time.perf_counter() - started)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    from models.koopman.export import MODELS

    parser.add_argument("--model", default="kno_ns2d", choices=sorted(MODELS), help="a served rollout model")
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=1,
                        help="in-process and served rollouts alternated this many times (one server): the machine's drift "
                             "between two measurements is often larger than the difference measured")
    args = parser.parse_args(argv)
    window = window_for(args.model, args.grid)
    interval = lambda t: (t[-1] - t[0]) / (len(t) - 1)  # noqa: E731
    server = start_server(args.repository.resolve(), Path(tempfile.mkdtemp(prefix="stream-")))
    pairs = []
    try:
        served(server.grpc, args.model, window, 3)  # warm-up: replica loaded, first batch run
        for _ in range(args.pairs):
            pairs.append((in_process(args.repository, args.model, window, args.steps), served(server.grpc, args.model, window, args.steps)))
    finally:
        stop_server(server.process)
    print(f"\n{args.model}, grid {args.grid}, {args.steps} steps, batch 1, gRPC stream vs in-process, same runtime (1 thread)")
    for local, remote in pairs:
        print(f"first step: served {remote[0] * 1000:.1f} ms, in-process {local[0] * 1000:.1f} ms; "
              f"per step: served {interval(remote) * 1000:.1f} ms, in-process {interval(local) * 1000:.1f} ms "
              f"({interval(remote) / interval(local):.2f}x); whole rollout: served {remote[-1]:.2f} s, in-process {local[-1]:.2f} s")
    if len(pairs) > 1:
        served_mean = np.mean([interval(r) for _, r in pairs])
        local_mean = np.mean([interval(loc) for loc, _ in pairs])
        print(f"over {len(pairs)} pairs: served {served_mean * 1000:.1f} ms per step, in-process {local_mean * 1000:.1f} ms "
              f"({served_mean / local_mean:.2f}x)")


if __name__ == "__main__":
    main()
