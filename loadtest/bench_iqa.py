"""`iqa` throughput, one run, side by side: `python -m loadtest.bench_iqa [--served] [--duration 5]`.

Images/s at batch (or concurrency) 1, 8, 32 for:
- torch eager: the PyTorch PMT-IQA on the 4 crops per image (model only);
- onnxruntime: the exported graph in this process on the same crops (model only);
- handler: models/iqa/serving.py in this process — JPEG decode, resize, crops, BRISQUE's features, ONNX Runtime,
  the NSS level — what a replica does per batch, without the server; "handler, network alone": the same with
  nss_share 0 and no JPEG cap (no features, no level), the served path before the level was mixed in;
- with --served: the real server (serve/testing.py) driven by tritonclient over HTTP and gRPC, N concurrent
  clients each sending one encoded JPEG per request (closed loop), so the dynamic batcher forms the batches; the
  server holds `iqa` and a copy with nss_share 0 (`iqa_network_alone`), measured alternately, cell by cell.
The workload is a test-split picture (motorcycle_left, 379×256 JPEG, quality 90). All on one intra-op thread
(the replica's share on 2 cores). Prints the table and writes loadtest/results/bench_iqa.json. Served / in-process
ratios are what carries over between runs on this shared machine, not absolute numbers.
"""
import argparse
import asyncio
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZES = (1, 8, 32)
RESULTS = Path(__file__).parent / "results"


def workload() -> bytes:
    from models.iqa.data import load_source, to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(load_source("motorcycle_left"))).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def timed(fn, items_per_call: int, duration_s: float) -> dict:
    for _ in range(3):
        fn()
    latencies, started = [], time.perf_counter()
    while time.perf_counter() - started < duration_s:
        t = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"images_per_s": items_per_call * len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)), "calls": len(latencies)}


def in_process(model_dir: Path, jpeg: bytes, duration_s: float) -> dict:
    from models.iqa.export import HANDLER, load_trained
    from models.iqa.model import ServedIQA
    from serve.runtimes.python import handler_class

    handler = handler_class(HANDLER)(model_dir, {}, ["IMAGE", "IMAGE_RAW"], ["SCORE", "LEVEL_PROBS"], 1, "cpu")
    alone = handler_class(HANDLER)(model_dir, {"nss_share": "0", "jpeg_cap": "false"}, ["IMAGE", "IMAGE_RAW"], ["SCORE", "LEVEL_PROBS"], 1, "cpu")
    crops1 = handler.preprocess({"IMAGE": np.array([[jpeg]], dtype=object)})["CROPS"]  # [1, 4, 3, 64, 64]
    eager = ServedIQA(load_trained()[0]).eval()
    out = {}
    for b in SIZES:
        flat = np.ascontiguousarray(np.repeat(crops1, b, axis=0).reshape(-1, 3, 64, 64))
        x = torch.from_numpy(flat)

        def run_eager():
            with torch.inference_mode():
                eager(x)

        request = {"IMAGE": np.array([[jpeg]] * b, dtype=object)}
        out[b] = {
            "torch_eager": timed(run_eager, b, duration_s),
            "onnxruntime": timed(lambda: handler.graph.infer({"crops": flat}), b, duration_s),
            "handler": timed(lambda: handler.infer(handler.preprocess(request)), b, duration_s),
            "handler_network_alone": timed(lambda: alone.infer(alone.preprocess(request)), b, duration_s),
        }
        print(f"[bench_iqa] in-process batch {b}: " + ", ".join(f"{k} {v['images_per_s']:.1f}/s" for k, v in out[b].items()), flush=True)
    return out


ALONE = "iqa_network_alone"


def repository_with_network_alone(repository: Path) -> Path:
    """A repository holding the built `iqa` and the same version folder served with nss_share 0 as ALONE."""
    import dataclasses
    import shutil

    from models.iqa.export import MODEL, NAME
    from models.iqa.serving import IqaParams

    root = Path(tempfile.mkdtemp(prefix="bench-iqa-repo-"))
    shutil.copytree(repository / NAME, root / NAME)
    shutil.copytree(repository / NAME, root / ALONE)
    config = dataclasses.replace(MODEL, name=ALONE, params=IqaParams(nss_share=0.0, jpeg_cap=False)).config_pbtxt()
    (root / ALONE / "config.pbtxt").write_text(config)
    return root


async def served_cell(model: str, protocol: str, address: str, jpeg: bytes, concurrency: int, duration_s: float) -> dict:
    """One closed-loop cell through loadtest.bench's tritonclient driver (one image per request)."""
    from .bench import served as drive

    cell = await drive(protocol, address, model, "1", lambda b: {"IMAGE": np.array([[jpeg]] * b, dtype=object)}, concurrency, duration_s)
    return {"images_per_s": cell["throughput"], "p50_ms": cell["p50_ms"], "p99_ms": cell["p99_ms"], "errors": cell["errors"]}


def served(repository: Path, jpeg: bytes, duration_s: float) -> dict:
    from serve.testing import start_server, stop_server

    server = start_server(repository_with_network_alone(repository.resolve()), Path(tempfile.mkdtemp(prefix="bench-iqa-")))
    out = {}
    try:
        for n in SIZES:
            out[n] = {f"{p}{suffix}": asyncio.run(served_cell(model, p, a, jpeg, n, duration_s))
                      for p, a in (("http", server.http), ("grpc", server.grpc)) for model, suffix in (("iqa", ""), (ALONE, "_alone"))}
            print(f"[bench_iqa] served concurrency {n}: " + ", ".join(f"{k} {v['images_per_s']:.1f}/s" for k, v in out[n].items()), flush=True)
    finally:
        stop_server(server.process)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--served", action="store_true", help="also start the server and measure HTTP and gRPC")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model_dir = args.repository / "iqa" / "1"
    if not (model_dir / "model.onnx").exists():
        raise SystemExit(f"{model_dir}/model.onnx missing: run `python -m export.build --only iqa` first")
    jpeg = workload()
    local = in_process(model_dir, jpeg, args.duration)
    remote = served(args.repository, jpeg, args.duration) if args.served else {}
    local_cols = ["torch_eager", "onnxruntime", "handler", "handler_network_alone"]
    served_cols = ["http", "http_alone", "grpc", "grpc_alone"] if remote else []
    print("\niqa: images/s (1 thread; batch N in process, N concurrent one-image requests served; *_alone: nss_share 0)")
    print(f"{'N':>3} | " + " ".join(f"{c.replace('handler_network_alone', 'handler_alone'):>13}" for c in local_cols + served_cols + (["http/alone", "grpc/alone"] if remote else [])))
    for n in SIZES:
        cells = [local[n][c]["images_per_s"] for c in local_cols] + [remote[n][c]["images_per_s"] for c in served_cols]
        if remote:
            cells += [remote[n]["http"]["images_per_s"] / remote[n]["http_alone"]["images_per_s"],
                      remote[n]["grpc"]["images_per_s"] / remote[n]["grpc_alone"]["images_per_s"]]
        print(f"{n:>3} | " + " ".join(f"{v:13.2f}" for v in cells))
    print("the gap between 'onnxruntime' and 'handler_alone' is decoding and cropping, between 'handler_alone' and "
          "'handler' BRISQUE's features and the NSS level; the served path pays both.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_iqa.json").write_text(json.dumps({"in_process": local, "served": remote}, indent=1) + "\n")


if __name__ == "__main__":
    main()
