"""One model served by two checkouts of this project, alternated, with one client:
`python -m loadtest.served_ab --before /tmp/base --model iqa [--rounds 2] [--concurrency 1 8 32]`.

What a change did to the served path, side by side. Each round starts `python -m serve run` from one checkout (its
code, and its repository: `--repository` relative to each checkout, where `make repository` builds it, or one absolute
path for both), drives it with loadtest.bench's load cells (closed-loop tritonclient asyncio clients, at Ray's worker
niceness, HTTP and gRPC), stops it, then does the same for the other checkout; rounds alternate which goes first, so
a drift of the shared machine falls on both. The before checkout is usually a worktree of an older commit
(`git worktree add /tmp/base REV`, then `ln -s $PWD/.venv /tmp/base/.venv` and `make repository` there). Prints each
cell, then after ÷ before per round; writes the rows, the ratios and each checkout's commit to `--out`.
"""
import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from serve.testing import start_server, stop_server

from .bench import RAY_NICENESS, VERSIONS, run_cell

ROOT = Path(__file__).resolve().parents[1]


def ratios(rows: list[dict]) -> list[dict]:
    """after ÷ before throughput for each (round, protocol, concurrency) measured on both checkouts."""
    cells = {(r["round"], r["protocol"], r["concurrency"], r["checkout"]): r["throughput"] for r in rows}
    return [{"round": k[0], "protocol": k[1], "concurrency": k[2], "before": before, "after": cells[k[:3] + ("after",)],
             "ratio": cells[k[:3] + ("after",)] / before}
            for k, before in cells.items() if k[3] == "before" and k[:3] + ("after",) in cells]


def order(round_: int) -> tuple[str, str]:
    """Which checkout is served first in a round: they take turns, so a drift of the machine falls on both."""
    return ("before", "after") if round_ % 2 == 0 else ("after", "before")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--model", required=True, choices=list(VERSIONS))
    parser.add_argument("--repository", type=Path, default=Path("model_repository"),
                        help="relative: each checkout's own; absolute: the same for both")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "reports" / "served_ab.json")
    args = parser.parse_args(argv)
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    workdir, rows = Path(tempfile.mkdtemp(prefix="served-ab-")), []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for round_ in range(args.rounds):
        for name in order(round_):
            root = checkouts[name]
            server = start_server(root / args.repository, workdir / f"{name}{round_}", timeout_s=600, root=root)
            try:
                time.sleep(5)  # let the replicas settle after RUNNING
                for protocol, address in (("grpc", server.grpc), ("http", server.http)):
                    for n in args.concurrency:
                        result = run_cell(RAY_NICENESS, protocol=protocol, address=address, model=args.model,
                                          version=VERSIONS[args.model], concurrency=n, duration_s=args.duration, binary=True)
                        rows.append({"round": round_, "checkout": name, "protocol": protocol, "concurrency": n, **result})
                        print(f"  round {round_} {name:6} {protocol:4} N={n:<3} {result['throughput']:8.1f}/s  "
                              f"p50 {result['p50_ms']:7.1f} ms  errors {result['errors']}", flush=True)
            finally:
                stop_server(server.process)
    pairs = ratios(rows)
    for p in pairs:
        print(f"round {p['round']} {p['protocol']:4} N={p['concurrency']:<3} after ÷ before {p['ratio']:.2f} "
              f"({p['after']:.1f} / {p['before']:.1f})")
    commits = {name: subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip() for name, root in checkouts.items()}
    report = {"started": started, "model": args.model, "commits": commits, "duration_s": args.duration, "rows": rows,
              "ratios": pairs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return pairs


if __name__ == "__main__":
    main()
