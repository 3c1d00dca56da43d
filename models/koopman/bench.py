"""Time a 40-step NS rollout: the exported KNO in ONNX Runtime (in process) against our solver.

    python -m models.koopman.bench [--batch 1] [--repository /tmp/kno_repo]

The solver runs at the data resolution/dt (64², dt = 1e-2), which `report/ns_convergence.json` shows is
within 3e-4 rel. L2 of a 128² solve — far more accurate than the KNO (≈ 0.15), so this compares against
a solver that is *more* accurate, not one of equal accuracy; a coarser solve matching the KNO's error was
not searched for. Needs the exported model (`export.koopman.build`) and the cached NS test split.
"""
import argparse
import time
from pathlib import Path

import onnxruntime as ort
import torch

from . import data, solvers


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(args.repository / "kno_ns2d" / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    u = data.load("ns", "test", 64)[: args.batch]
    window = u[:, :10].numpy()

    def kno():
        w = window
        for _ in range(40):
            _, w = session.run(["FRAMES", "WINDOW_NEXT"], {"WINDOW": w})

    w10 = u[:, 9].double()  # the solver starts from the last input frame (t = 10) and runs to t = 50

    def solver():
        solvers.ns_solve(w10, data.NS["nu"], 40.0, data.NS["dt"], record_every=1.0)

    times = {}
    for name, fn in (("kno_onnx", kno), ("solver_64_dt1e-2", solver)):
        fn()  # warm-up
        started = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        times[name] = (time.perf_counter() - started) / args.repeats
        print(f"{name:>18}: {times[name]:.3f} s per 40-step rollout (batch {args.batch})")
    print(f"solver / KNO time ratio: {times['solver_64_dt1e-2'] / times['kno_onnx']:.1f}x")


if __name__ == "__main__":
    main()
