"""Score the trained rollout models on the test split, once: `python -m models.koopman.evaluate`.

For every model whose weights exist (``weights/*.json``): relative L2 per rollout step of the
40-step rollout from the first 10 test frames, at the training resolution and at other resolutions
(mesh independence: NS trained at 64², scored at 32², 64², 128²; Burgers trained at 256 points, scored
at 64 … 1024). Mean ± std over seeds where several exist (else over test trajectories). Writes
``report/results.json``, ``report/error_vs_step_*.png`` and ``report/ns_frames.png``. Checkpoints were
chosen on the validation split by ``train.py``; nothing here feeds back into training.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import data
from .train import WEIGHTS_DIR, load_trained, rollout_error

REPORT = Path(__file__).parent / "report"
RESOLUTIONS = {"ns": [32, 64, 128], "burgers": [64, 128, 256, 512, 1024]}
LABELS = {"kno": "KNO", "kno-cnn": "KNO-CNN (variant)", "fno": "FNO baseline", "fno-m12": "FNO, 12 modes (the paper's)"}


def trained_models() -> dict[tuple, list[int]]:
    """(problem, kind, nu) -> seeds with weights."""
    found: dict[tuple, list[int]] = {}
    for path in sorted(WEIGHTS_DIR.glob("*.json")):
        m = json.loads(path.read_text())
        nu = m["nu"] if m["problem"] == "burgers" or m["nu"] != data.NS["nu"] else None
        found.setdefault((m["problem"], m["model"], nu), []).append(m["seed"])
    return found


def evaluate(count: int | None = None, high_res_count: int | None = None, problems=tuple(RESOLUTIONS)) -> dict:
    results: dict = {"models": {}}
    cache: dict = {}
    for (problem, kind, nu), seeds in trained_models().items():
        if problem not in problems or (problem == "ns" and nu):  # harder flows: `python -m loadtest.bench_koopman --nu ...`
            continue
        key = f"{problem}{'_nu%g' % nu if nu else ''}_{kind}"
        entry = {"seeds": seeds, "resolutions": {}}
        for res in RESOLUTIONS[problem]:
            n = high_res_count if (problem == "ns" and res == 128 and high_res_count) else count
            if (problem, nu, res) not in cache:
                cache[(problem, nu, res)] = data.load(problem, "test", res, nu)
            u = cache[(problem, nu, res)][:n]
            per_seed, started = [], time.perf_counter()
            for seed in seeds:
                model, metrics = load_trained(problem, kind, seed, nu)
                per_seed.append(rollout_error(model, u, metrics["config"]["t_in"], metrics["t_out"]))  # [N, T]
            errs = torch.stack(per_seed)  # [S, N, T]
            seed_means = errs.mean(dim=(1, 2))
            entry["resolutions"][str(res)] = {
                "trajectories": u.shape[0],
                "per_step_mean": errs.mean(dim=(0, 1)).tolist(),
                "mean": float(errs.mean()),
                "std": float(seed_means.std()) if len(seeds) > 1 else float(errs.mean(dim=(0, 2)).std()),
                "std_over": "seeds" if len(seeds) > 1 else "test trajectories",
                "step1": float(errs[:, :, 0].mean()), "step10": float(errs[:, :, 9].mean()), "step40": float(errs[:, :, -1].mean()),
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(f"[eval] {key} @ {res}: {entry['resolutions'][str(res)]['mean']:.4f} ± {entry['resolutions'][str(res)]['std']:.4f}", flush=True)
        _, metrics = load_trained(problem, kind, seeds[0], nu)
        entry |= {"parameters": metrics["parameters"], "train_resolution": metrics["train_resolution"],
                  "val_rel_l2": [load_trained(problem, kind, s, nu)[1]["selected"]["val_rel_l2"] for s in seeds],
                  "train_seconds": [load_trained(problem, kind, s, nu)[1]["train_seconds"] for s in seeds]}
        results["models"][key] = entry
    return results


def merged(previous: dict, scored: dict, problems, command: str) -> dict:
    """`previous` results with the entries of `problems` replaced by `scored`'s; the other problems' entries stay as
    they were scored, and the partial run is recorded under "rescored"."""
    kept = {k: v for k, v in previous["models"].items() if not k.startswith(tuple(f"{p}_" for p in problems))}
    rescored = previous.get("rescored", []) + [{"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}]
    return previous | {"models": kept | scored["models"], "rescored": rescored}


def table(results: dict, problem: str, nu: float | None = None) -> str:
    prefix = f"{problem}{'_nu%g' % nu if nu else ''}_"
    rows = [k for k in results["models"] if k.startswith(prefix)]
    if not rows:
        return ""
    res = RESOLUTIONS[problem]
    head = "| model | params | seeds | val (selection) | " + " | ".join(f"test @ {r}" for r in res) + " | test step 1 / 10 / 40 (train res.) |"
    lines = [head, "|" + "---|" * (5 + len(res))]
    for k in rows:
        e = results["models"][k]
        train_res = str(e["train_resolution"])
        cells = []
        for r in res:
            c = e["resolutions"].get(str(r))
            cells.append(f"{c['mean']:.4f} ± {c['std']:.4f}" + (" *" if str(r) == train_res else "") if c else "–")
        t = e["resolutions"][train_res]
        kind = k[len(prefix):].replace("_", "-")
        lines.append(f"| {LABELS.get(kind, kind)} | {e['parameters']:,} | {len(e['seeds'])} | "
                     f"{np.mean(e['val_rel_l2']):.4f} | " + " | ".join(cells) + f" | {t['step1']:.4f} / {t['step10']:.4f} / {t['step40']:.4f} |")
    return ("Relative L2 of the 40-step rollout on the test split (mean over steps and trajectories; ± is the std over "
            "seeds, or over test trajectories when there is one seed; * = training resolution):\n\n" + "\n".join(lines))


def plots(results: dict, problems=tuple(RESOLUTIONS)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for problem in ("ns", "burgers"):
        keys = [k for k in results["models"] if k.startswith(problem)]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in keys:
            e = results["models"][k]
            for r, c in e["resolutions"].items():
                if r == str(e["train_resolution"]) or "kno" == k.split("_")[-1]:
                    ax.plot(range(1, len(c["per_step_mean"]) + 1), c["per_step_mean"],
                            label=f"{k} @ {r}", linestyle="-" if r == str(e["train_resolution"]) else ":")
        ax.set_xlabel("rollout step")
        ax.set_ylabel("relative L2 (test)")
        ax.set_yscale("log")
        ax.legend(fontsize=6)
        ax.set_title(f"{problem}: error against rollout step")
        fig.tight_layout()
        fig.savefig(REPORT / f"error_vs_step_{problem}.png", dpi=120)
        plt.close(fig)
    if "ns" in problems and ("ns", "kno", None) in trained_models():
        model, metrics = load_trained("ns", "kno", trained_models()[("ns", "kno", None)][0])
        u = data.load("ns", "test", 64)[:1]
        from .kno import rollout

        with torch.no_grad():
            pred = rollout(model, u[:, :10], 40)
        steps = [1, 10, 20, 40]
        fig, axes = plt.subplots(3, len(steps), figsize=(2.4 * len(steps), 7))
        for j, s in enumerate(steps):
            truth, guess = u[0, 9 + s].T.numpy(), pred[0, s - 1].T.numpy()  # transpose: x horizontal
            lim = np.abs(truth).max()
            for i, (img, title) in enumerate([(truth, "truth"), (guess, "KNO"), (guess - truth, "error")]):
                axes[i, j].imshow(img, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
                axes[i, j].set_title(f"{title}, t = {10 + s}", fontsize=8)
                axes[i, j].axis("off")
        fig.tight_layout()
        fig.savefig(REPORT / "ns_frames.png", dpi=100)
        plt.close(fig)


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=None, help="test trajectories per problem (default: all)")
    parser.add_argument("--high-res-count", type=int, default=None, help="NS test trajectories scored at 128² (default: --count)")
    parser.add_argument("--problems", nargs="+", choices=sorted(RESOLUTIONS), default=sorted(RESOLUTIONS),
                        help="score only these problems' models (seeds added to one of them); the others' entries in "
                             "report/results.json are kept as they were scored")
    args = parser.parse_args()
    REPORT.mkdir(parents=True, exist_ok=True)
    command = "python -m models.koopman.evaluate" + (f" --count {args.count}" if args.count else "") + (
        f" --high-res-count {args.high_res_count}" if args.high_res_count else "")
    scored = evaluate(args.count, args.high_res_count, args.problems)
    if set(args.problems) == set(RESOLUTIONS):
        results = scored | {"command": command}
    else:
        results = merged(json.loads((REPORT / "results.json").read_text()), scored, args.problems,
                         f"{command} --problems {' '.join(args.problems)}")
    results["kno_ns2d"] = {"card_table": table(results, "ns")}
    results["kno_burgers"] = {"card_table": table(results, "burgers", 0.1)}
    results["burgers_nu0.01"] = {"card_table": table(results, "burgers", 0.01)}  # trained and scored, not served
    (REPORT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plots(results, args.problems)
    for name in ("kno_ns2d", "kno_burgers", "burgers_nu0.01"):
        print(results[name]["card_table"], "\n")


if __name__ == "__main__":
    main()
