"""`iqa`'s ModelWorker driven in this process, as the ingress hosts it but without the network or a load generator:
`python -m loadtest.worker_in_process [--callers 32] [--duration 8] [--burst 8]`.

- throughput: `--callers` closed-loop callers each sending one JPEG (loadtest.bench_iqa's workload) for `--duration`
  seconds, for `iqa` as served and with `nss_share` 0 (the network alone): images/s, CPU per image, cores used;
- burst: `--burst` concurrent requests of one 4096² PNG each (a smooth picture: 360 kB of file, 48 MiB of pixels), and
  the peak growth of this process's resident memory while they are answered (sampled every 2 ms).
The worker gets the ingress's CPU share (one thread), on the event loop the ingress runs (uvloop). Run it from two
git worktrees, alternately, to compare commits. Prints one line per measurement.
"""
import argparse
import asyncio
import io
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from serve import replica
from serve.replica import ModelWorker

from .bench_iqa import workload


def worker(repository: Path, network_alone: bool = False) -> ModelWorker:
    replica.replica_resources = lambda: (1, "cpu")  # the ingress replica's share (outside Ray: the whole machine)
    served = ModelWorker(str(repository), "iqa", 1)
    if network_alone:
        from models.iqa.export import HANDLER
        from serve.runtimes.python import handler_class

        runtime = served.runtime
        served.runtime = handler_class(HANDLER)(runtime.model_dir, {"nss_share": "0", "jpeg_cap": "false"},
                                                runtime.input_names, runtime.output_names, 1, "cpu")
    return served


async def throughput(model: ModelWorker, callers: int, duration_s: float) -> dict:
    request = {"IMAGE": np.array([[workload()]], dtype=object)}
    answered, stop = 0, 0.0

    async def caller():
        nonlocal answered
        while time.perf_counter() < stop:
            await model.infer(dict(request))
            answered += 1

    stop = time.perf_counter() + 1.0  # warm-up
    await asyncio.gather(*[caller() for _ in range(callers)])
    answered, stop = 0, time.perf_counter() + duration_s
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*[caller() for _ in range(callers)])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"images_per_s": answered / wall, "cpu_ms_per_image": cpu / answered * 1e3, "cores": cpu / wall}


def smooth_png(side: int = 4096) -> bytes:
    y, x = np.mgrid[0:side, 0:side]
    pixels = np.stack([x * 255 // side, y * 255 // side, (x + y) * 127 // side], -1).astype(np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, "PNG")
    return encoded.getvalue()


async def burst(model: ModelWorker, requests: int) -> dict:
    picture = smooth_png()
    await model.infer({"IMAGE": np.array([[picture]], dtype=object)})  # warm: one large picture alone
    process, done = psutil.Process(), threading.Event()
    before = process.memory_info().rss
    peak = [before]

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        await asyncio.gather(*[model.infer({"IMAGE": np.array([[picture]], dtype=object)}) for _ in range(requests)])
    finally:
        done.set()
        sampler.join()
    return {"peak_growth_mib": (peak[0] - before) / 2**20, "seconds": time.perf_counter() - started, "file_kb": len(picture) / 1e3}


def main(argv=None) -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per throughput measurement")
    parser.add_argument("--burst", type=int, default=8, help="concurrent 4096² PNGs (0: skip)")
    args = parser.parse_args(argv)
    for label, alone in (("iqa", False), ("iqa, network alone", True)):
        result = uvloop.run(throughput(worker(args.repository, alone), args.callers, args.duration))
        print(f"{label}: {result['images_per_s']:.0f} images/s, {result['cpu_ms_per_image']:.2f} ms CPU per image, "
              f"{result['cores']:.2f} cores ({args.callers} callers)", flush=True)
    if args.burst:
        result = uvloop.run(burst(worker(args.repository), args.burst))
        print(f"iqa: {args.burst} concurrent 4096² PNGs ({result['file_kb']:.0f} kB each): peak resident growth "
              f"{result['peak_growth_mib']:.0f} MiB, {result['seconds']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
