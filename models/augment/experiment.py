"""MixGen ablation: `python -m models.augment.experiment [--sizes 250 1000 4000] [--seeds 0 1 2 3 4]`.

For each training-set size and seed, trains the same DualEncoder twice on the same pairs — plain InfoNCE and
InfoNCE on MixGen-augmented batches — for a fixed number of steps. The checkpoint is chosen by validation
R@1 (mean of both directions, 500 validation pairs), then test retrieval (1,000 test pairs) is measured once.
A retrieved item counts as correct when its attribute tuple equals the query's (identical captions cannot be
told apart). Writes models/augment/report/{results.json, results.md, recall.png}; `--save` also writes the
weights `caption_match` serves (weights/dual_encoder.safetensors: at the largest size and seed 0, whichever of the
plain and the MixGen run has the better validation R@1).
"""
import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from .captions import VOCAB, make_pairs, tokenize
from .dual_encoder import DualEncoder
from .mixgen import mixgen

REPORT = Path(__file__).parent / "report"
WEIGHTS = Path(__file__).parent / "weights" / "dual_encoder.safetensors"
N_VAL, N_TEST = 500, 1000


@dataclass
class Config:
    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    max_len: int = 32
    eval_every: int = 100


@torch.no_grad()
def retrieval(model: DualEncoder, pairs: dict, max_len: int) -> dict[str, float]:
    """Image→text and text→image R@1 / R@5 over the whole split; a hit is a retrieved item with equal attributes."""
    model.eval()
    u = model.encode_image(torch.from_numpy(pairs["image"]))
    v = model.encode_text(torch.from_numpy(tokenize(pairs["caption"], max_len)))
    sim = (u @ v.T).numpy()
    same = (pairs["attributes"][:, None, :] == pairs["attributes"][None, :, :]).all(-1)
    out = {}
    for name, s in (("i2t", sim), ("t2i", sim.T)):
        top = np.argsort(-s, axis=1, kind="stable")[:, :5]
        hits = np.take_along_axis(same, top, axis=1)
        out[f"{name}_R@1"], out[f"{name}_R@5"] = float(hits[:, 0].mean()), float(hits.any(1).mean())
    out["mean_R@1"] = (out["i2t_R@1"] + out["t2i_R@1"]) / 2
    return out


def train(train_pairs: dict, val_pairs: dict, use_mixgen: bool, seed: int, cfg: Config) -> tuple[DualEncoder, dict]:
    torch.manual_seed(seed)
    model = DualEncoder(len(VOCAB), cfg.max_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    images, captions = torch.from_numpy(train_pairs["image"]), train_pairs["caption"]
    n, step, best = len(captions), 0, {"val": {"mean_R@1": -1.0}}
    batch = min(cfg.batch_size, n)
    while step < cfg.steps:
        order = torch.randperm(n)
        for i in range(0, n - batch + 1, batch):
            model.train()
            idx = order[i : i + batch]
            x, texts = images[idx], [captions[j] for j in idx.tolist()]
            if use_mixgen:
                x, texts = mixgen(x, texts)
            loss = model.loss(x, torch.from_numpy(tokenize(texts, cfg.max_len)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % cfg.eval_every == 0 or step == cfg.steps:
                score = retrieval(model, val_pairs, cfg.max_len)
                if score["mean_R@1"] > best["val"]["mean_R@1"]:
                    best = {"step": step, "val": score, "state": {k: v.clone() for k, v in model.state_dict().items()}}
            if step >= cfg.steps:
                break
    model.load_state_dict(best.pop("state"))
    return model.eval(), best


def run(sizes, seeds, cfg: Config, save: bool) -> list[dict]:
    val_pairs, test_pairs = make_pairs("val", N_VAL, 0), make_pairs("test", N_TEST, 0)
    rows, candidates = [], []
    for size in sizes:
        for seed in seeds:
            train_pairs = make_pairs("train", size, seed)
            for use_mixgen in (False, True):
                started = time.perf_counter()
                model, best = train(train_pairs, val_pairs, use_mixgen, seed, cfg)
                row = {"size": size, "seed": seed, "mixgen": use_mixgen, **best, "test": retrieval(model, test_pairs, cfg.max_len),
                       "seconds": round(time.perf_counter() - started, 1)}
                rows.append(row)
                print(f"n={size:5d} seed={seed} mixgen={use_mixgen!s:5}  val R@1 {best['val']['mean_R@1']:.3f} (step {best['step']})"
                      f"  test i2t R@1 {row['test']['i2t_R@1']:.3f} t2i R@1 {row['test']['t2i_R@1']:.3f}  {row['seconds']}s", flush=True)
                if save and size == max(sizes) and seed == seeds[0]:
                    candidates.append((best["val"]["mean_R@1"], row, model))
    if candidates:  # serve the better of plain / MixGen at the largest size, seed 0, by validation R@1
        _, row, model = max(candidates, key=lambda c: c[0])
        WEIGHTS.parent.mkdir(exist_ok=True)
        save_file(model.state_dict(), str(WEIGHTS))
        WEIGHTS.with_suffix(".json").write_text(json.dumps({"config": asdict(cfg), **row, "vocab": list(VOCAB)}, indent=1) + "\n")
    return rows


def summarise(rows: list[dict], cfg: Config) -> str:
    sizes, metrics = sorted({r["size"] for r in rows}), ["i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5"]
    seeds = sorted({r["seed"] for r in rows})
    lines = ["# MixGen ablation: tiny dual encoder on generated digit captions\n",
             f"Command: `python -m models.augment.experiment --seeds {' '.join(map(str, seeds))} --sizes {' '.join(map(str, sizes))} --steps {cfg.steps}`; "
             f"{cfg.steps} steps, batch {cfg.batch_size}, Adam lr {cfg.lr}; checkpoint chosen on validation mean R@1 ({N_VAL} pairs); "
             f"test: {N_TEST} pairs, scored once. Mean ± std over seeds {seeds}.\n",
             "| train pairs | MixGen | " + " | ".join(f"test {m}" for m in metrics) + " | Δ mean R@1 (MixGen − plain) |",
             "|---|---|" + "---|" * (len(metrics) + 1)]
    for size in sizes:
        base = np.array([[r["test"][m] for m in metrics] for r in rows if r["size"] == size and not r["mixgen"]])
        mix = np.array([[r["test"][m] for m in metrics] for r in rows if r["size"] == size and r["mixgen"]])
        d = np.array([r["test"]["mean_R@1"] for r in rows if r["size"] == size and r["mixgen"]]) - \
            np.array([r["test"]["mean_R@1"] for r in rows if r["size"] == size and not r["mixgen"]])  # paired by seed
        for name, arr in (("no", base), ("yes", mix)):
            cells = " | ".join(f"{arr[:, j].mean():.3f} ± {arr[:, j].std():.3f}" for j in range(len(metrics)))
            delta = f"{d.mean():+.3f} ± {d.std():.3f} ({(d > 0).sum()}/{len(d)} seeds up)" if name == "yes" else ""
            lines.append(f"| {size} | {name} | {cells} | {delta} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric in zip(axes, ("i2t_R@1", "t2i_R@1")):
        for use, colour in ((False, "tab:blue"), (True, "tab:orange")):
            vals = np.array([[r["test"][metric] for r in rows if r["size"] == s and r["mixgen"] == use] for s in sizes])
            ax.errorbar(sizes, vals.mean(1), yerr=vals.std(1), marker="o", capsize=3, color=colour, label="MixGen" if use else "plain")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("training pairs")
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Dual encoder on generated digit captions: MixGen vs plain (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--save", action="store_true", help="write the weights caption_match serves")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = Config(steps=args.steps)
    rows = run(args.sizes, args.seeds, cfg, args.save)
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "results.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=1) + "\n")
    (args.report / "results.md").write_text(summarise(rows, cfg))
    plot(rows, args.report / "recall.png")
    print(summarise(rows, cfg))


if __name__ == "__main__":
    main()
