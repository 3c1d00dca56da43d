"""Every number in models/shortcut/report: `python -m models.shortcut.evaluate [--seeds 0 1 2 3 4]`.

For each shortcut kind and seed, runs models/shortcut/train.py with the pre-sweep ``train.Config`` defaults
(Chroma-VAE stage 1 + 2, and ERM) and writes report/results.json, report/results.md (mean ± std
over seeds of test average and worst-group accuracy, each model chosen on validation) and report/traversal_<kind>.png
(decodings while z1 sweeps its training range, z2 held at a test image's posterior mean). The seed-0 weights
go to a temporary folder, not to weights/: the served weights are the sweep's choice (models/shortcut/sweep.py).
"""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .data import make_benchmark
from .train import Config, run

REPORT = Path(__file__).parent / "report"
ROWS = [("erm", "ERM (same MLP trunk)"), ("z1", "Chroma-VAE z1 head (shortcut side)"),
        ("z2_knn", "Chroma-VAE z2 kNN"), ("z2_linear", "Chroma-VAE z2 linear probe"),
        ("z2_knn_resampled", "z2 kNN + z1-resampled reconstructions (ours)"),
        ("z2_linear_resampled", "z2 linear + z1-resampled reconstructions (ours)")]


def table(results: dict) -> str:
    lines = []
    for kind, runs in results.items():
        seeds = [r["seed"] for r in runs]
        lines += [f"\n### shortcut = {kind} (seeds {seeds}; test split, 10 % shortcut agreement; selection on validation)\n",
                  "| model | test average acc | test worst-group acc | val worst-group acc (selection) |", "|---|---|---|---|"]
        for key, name in ROWS:
            avg = np.array([r[key]["test"]["average"] for r in runs])
            worst = np.array([r[key]["test"]["worst_group"] for r in runs])
            val = np.array([r[key]["val"]["worst_group"] for r in runs])
            lines.append(f"| {name} | {avg.mean():.3f} ± {avg.std():.3f} | {worst.mean():.3f} ± {worst.std():.3f} | {val.mean():.3f} ± {val.std():.3f} |")
        agree = np.array([r["z1"]["test_agreement_with_attribute"] for r in runs])
        dz1 = np.array([r["attribute_decodable_from"]["z1"] for r in runs])
        dz2 = np.array([r["attribute_decodable_from"]["z2"] for r in runs])
        lines += ["", f"Diagnostics (test): z1 head agrees with the shortcut attribute {agree.mean():.3f} ± {agree.std():.3f}; "
                  f"a logistic regression recovers the attribute from z1 at {dz1.mean():.3f} ± {dz1.std():.3f} and from z2 at "
                  f"{dz2.mean():.3f} ± {dz2.std():.3f} (0.5 = no shortcut information)."]
    return "\n".join(lines) + "\n"


@torch.no_grad()
def traversal(kind: str, seed: int, path: Path, columns: int = 9, rows: int = 6, weights: Path | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .export import load_trained

    vae = load_trained(kind, seed, weights)[0].vae
    data = make_benchmark(kind, seed)
    z1_train = vae.encode(torch.from_numpy(data["train"]["image"]))[0][:, : vae.shortcut_dim]
    lo, hi = np.quantile(z1_train[:, 0].numpy(), [0.01, 0.99])
    mu = vae.encode(torch.from_numpy(data["test"]["image"][:rows]))[0]
    fig, axes = plt.subplots(rows, columns + 1, figsize=(1.1 * (columns + 1), 1.1 * rows))
    for r in range(rows):
        axes[r, 0].imshow(data["test"]["image"][r].transpose(1, 2, 0))
        for c, value in enumerate(np.linspace(lo, hi, columns)):
            z = mu[r : r + 1].clone()
            z[0, 0] = float(value)
            axes[r, c + 1].imshow(torch.sigmoid(vae.decode(z))[0].permute(1, 2, 0).numpy())
            if r == 0:
                axes[r, c + 1].set_title(f"z1={value:.1f}", fontsize=7)
    axes[0, 0].set_title("input", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"Chroma-VAE z1 traversal ({kind} shortcut, seed {seed}); z2 fixed per row", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kinds", nargs="+", default=["colour", "patch"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    REPORT.mkdir(exist_ok=True)
    results = {}
    scratch = tempfile.TemporaryDirectory()
    for kind in args.kinds:
        results[kind] = []
        weights = Path(scratch.name) / f"chroma_{kind}_seed0.safetensors"
        for seed in args.seeds:
            metrics = run(kind, seed, Config(), save=(seed == 0), out=weights)
            print(f"[{kind} seed {seed}] " + "  ".join(f"{k} {metrics[k]['test']['worst_group']:.3f}" for k, _ in ROWS), flush=True)
            results[kind].append(metrics)
        if weights.exists():
            traversal(kind, 0, REPORT / f"traversal_{kind}.png", weights=weights)
    (REPORT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (REPORT / "results.md").write_text("# Chroma-VAE vs ERM on shortcut digits\n\nCommand: `python -m models.shortcut.evaluate`\n" + table(results))
    print(table(results))


if __name__ == "__main__":
    main()
