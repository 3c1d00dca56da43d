"""Seconds per backdoor scan, and how they grow with classes and image size:
`python -m loadtest.bench_backdoor [--steps 200] [--out loadtest/results/bench_backdoor.json]`.

Each case exports an (untrained: the time does not depend on the weights) ConvNet with K classes for
C×H×W images, and scans it through jobs.run_scan (the same separate, limited process the endpoint uses)
with 100 random clean images. Prints a table: wall seconds per scan (process start included) and the
scanner's own seconds; the 10-class 16×16 digits CNN is the reference row.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.backdoor.jobs import Limits, scan_once
from models.backdoor.model import ConvNet
from models.backdoor.population import to_onnx

CASES = [(10, 1, 16), (20, 1, 16), (40, 1, 16), (10, 1, 28), (10, 3, 32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/bench_backdoor.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for classes, channels, size in CASES:
        torch.manual_seed(0)
        model = to_onnx(ConvNet(channels=channels, classes=classes, size=size), (channels, size, size))
        clean = np.random.default_rng(0).random((100, channels, size, size), dtype=np.float32)
        started = time.perf_counter()
        event = scan_once(model, clean, Limits(steps=args.steps, cpu_seconds=900, wall_seconds=1200))
        wall = time.perf_counter() - started
        rows.append({"classes": classes, "image": [channels, size, size], "steps": args.steps, "wall_s": wall,
                     "scan_s": event.get("seconds"), "event": event.get("event")})
        print(f"K={classes:3d}  {channels}x{size}x{size}  wall {wall:6.1f}s  scanner {event.get('seconds') or float('nan'):6.1f}s", flush=True)
    base = rows[0]["wall_s"]
    print("\n| classes | image | s/scan (wall) | × reference |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['classes']} | {'×'.join(map(str, r['image']))} | {r['wall_s']:.1f} | {r['wall_s'] / base:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
