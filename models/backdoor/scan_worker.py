"""One scan in its own process: `python -m models.backdoor.scan_worker MODEL.onnx --clean CLEAN.npy [--steps N]
[--memory-mb M] [--cpu-seconds S]`.

Prints JSON lines on stdout: {"event": "progress", "stage", "progress"}, then exactly one of
{"event": "result", ...} (PNG bytes base64-encoded), {"event": "refused", "kind", "message"} or
{"event": "error", "message"}. The first thing it does is limit itself (address space, CPU time, file size,
no core dumps), before any import or the model's bytes; the parent (jobs.py) adds a wall-clock kill. The
model is checked by onnx_guard before it is parsed into anything that runs it,
and is interpreted by graph_torch (no custom ops, no external data, no pickle: numpy arrays are read with
allow_pickle=False).
"""
import argparse
import base64
import json
import resource
import sys


def emit(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def limit_self(memory_mb: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--clean", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--max-bytes", type=int, default=None)
    parser.add_argument("--memory-mb", type=int, default=3072)
    parser.add_argument("--cpu-seconds", type=int, default=240)
    parser.add_argument("--calibration", help="a JSON file of the fused verdict's constants, which apply to these images")
    args = parser.parse_args()
    limit_self(args.memory_mb, args.cpu_seconds)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from .onnx_guard import MAX_BYTES, Refused, check, image_shape
    from .scanner import FusedCalibration, ScanConfig, png, scan

    emit(event="progress", stage="checking", progress=0.0)
    with open(args.model, "rb") as f:
        data = f.read((args.max_bytes or MAX_BYTES) + 1)
    try:
        model = check(data, args.max_bytes or MAX_BYTES)
        c, h, w = image_shape(model)
        clean = np.load(args.clean, allow_pickle=False).astype(np.float32)
        if clean.ndim != 4 or tuple(clean.shape[1:]) != (c, h, w):
            raise Refused("not_image_classifier", f"CLEAN_IMAGES: shape {list(clean.shape)} does not match the model's input [N, {c}, {h}, {w}]")
    except Refused as e:
        emit(event="refused", kind=e.kind, message=e.message)
        return 0
    calibration = None
    if args.calibration:
        with open(args.calibration) as f:
            calibration = FusedCalibration(**json.load(f))
    try:
        result = scan(model, clean, ScanConfig(steps=args.steps), calibration=calibration,
                      progress=lambda stage, p: emit(event="progress", stage=stage, progress=float(p)))
    except Exception as e:  # the graph ran into something our interpreter or the shapes refuse
        emit(event="refused", kind="not_image_classifier", message=f"MODEL: the graph could not be run as an image classifier: {type(e).__name__}: {e}"[:500])
        return 0
    mask, pattern = result.pop("mask"), result.pop("pattern")
    result["mask_png"] = base64.b64encode(png(mask)).decode()
    result["pattern_png"] = base64.b64encode(png(pattern * mask)).decode()
    emit(event="result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
