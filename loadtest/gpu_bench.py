"""Throughput of every model's PyTorch module on CUDA (fp32 and fp16) against its CPU figure:
`python -m loadtest.gpu_bench [--seconds 2] [--json out.json]`.

The torch CUDA path, so it runs on the lent GPU machine where neither ray nor onnxruntime-gpu is
installed (see ../shared/PLATFORM.md). Each model is rebuilt from the repository's own committed weights
through its export module's `load_trained`, exactly what `export.build` exports. fp16 is reported with its
largest deviation from fp32 on the same inputs, so a reader can see where half precision is acceptable.
Prints one markdown table (record it in loadtest/BENCH.md) and writes the raw numbers as JSON.
"""
import argparse
import importlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

BATCHES = (1, 8, 32, 128, 512)


def models():
    """name -> (module, inputs(batch) -> tuple of tensors). Every entry loads committed weights."""
    from models.augment import export as caption
    from models.digits import export as digits
    from models.shortcut import export as shortcut

    def images(shape):
        return lambda b: (torch.rand(b, *shape),)

    entries = {
        "digits_cnn": (digits.load_trained(seed=1)[0], images((1, 8, 8))),
        "shortcut_audit": (shortcut.load_trained()[0], images((3, 8, 8))),
        "caption_match": (caption.load_trained()[0], lambda b: (torch.rand(b, 3, 16, 16), torch.randint(0, 20, (b, caption.MAX_LEN)))),
    }
    # Families whose export module offers `torch_benchmarks() -> {name: (module, inputs)}`.
    for family in ("koopman", "iqa", "graph", "video", "backdoor"):
        module = importlib.import_module(f"models.{family}.export")
        if hasattr(module, "torch_benchmarks"):
            entries.update(module.torch_benchmarks())
    return entries


def throughput(module, inputs, batch: int, device: str, dtype, seconds: float) -> float:
    args = tuple(a.to(device, dtype) if a.is_floating_point() else a.to(device) for a in inputs(batch))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):
            module(*args)
        sync()
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            module(*args)
            count += 1
        sync()
    return count * batch / (time.perf_counter() - started)


def first_output(result):
    while isinstance(result, (tuple, list)):
        result = result[0]
    return result.float()


def fp16_error(module, inputs, device: str) -> float:
    args = inputs(32)
    with torch.inference_mode():
        full = first_output(module.to(device, torch.float32)(*(a.to(device) for a in args)))
        half_args = tuple(a.to(device, torch.float16) if a.is_floating_point() else a.to(device) for a in args)
        half = first_output(module.to(device, torch.float16)(*half_args))
    module.to(device, torch.float32)
    return float((full - half).abs().max())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--json", default="loadtest/results/gpu_bench.json")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES),
                        help="batch sizes (the default goes to 512: minutes per heavy model on a CPU alone)")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count(),
                        help="intra-op threads for the CPU figure (use 1 on a busy machine: OpenMP spin-waits collapse otherwise)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.cpu_threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device_name = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
    rows = []
    for name, (module, inputs) in models().items():
        module = module.eval()
        for batch in args.batches:
            row = {"model": name, "batch": batch, "cpu_fp32": throughput(module.cpu().float(), inputs, batch, "cpu", torch.float32, args.seconds / 2)}
            if cuda:
                row["cuda_fp32"] = throughput(module.cuda().float(), inputs, batch, "cuda", torch.float32, args.seconds)
                try:  # half precision is not defined for every op (complex FFT weights, for one)
                    row["cuda_fp16"] = throughput(module.cuda().half(), inputs, batch, "cuda", torch.float16, args.seconds)
                except (RuntimeError, TypeError) as error:
                    row["cuda_fp16_error"] = str(error).splitlines()[0][:200]
                module.float()
            rows.append(row)
            print(row, flush=True)
        if cuda and not any("cuda_fp16_error" in r for r in rows if r["model"] == name):
            error = fp16_error(module, inputs, "cuda")
            for row in rows:
                if row["model"] == name:
                    row["fp16_max_abs_error"] = error
        # Written after every model, so a run stopped at its time limit keeps what it measured.
        report = {"device": device_name, "torch": torch.__version__, "host": platform.node(), "cpu_threads": args.cpu_threads, "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\n{device_name}, torch {torch.__version__}, CPU figure on {args.cpu_threads} threads; samples/s; x = CUDA / CPU fp32 at the same batch")
    print("| model | batch | CPU fp32 | CUDA fp32 | x | CUDA fp16 | x | fp16 max abs err |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "cuda_fp16" in r:
            gpu = (f"{r['cuda_fp32']:,.0f} | {r['cuda_fp32'] / r['cpu_fp32']:.1f} | {r['cuda_fp16']:,.0f} | "
                   f"{r['cuda_fp16'] / r['cpu_fp32']:.1f} | {r['fp16_max_abs_error']:.2e}")
        elif "cuda_fp32" in r:
            gpu = f"{r['cuda_fp32']:,.0f} | {r['cuda_fp32'] / r['cpu_fp32']:.1f} | fails: {r['cuda_fp16_error'][:60]} | – | –"
        else:
            gpu = "– | – | – | – | –"
        print(f"| {r['model']} | {r['batch']} | {r['cpu_fp32']:,.0f} | {gpu} |")


if __name__ == "__main__":
    np.random.seed(0)
    main()
