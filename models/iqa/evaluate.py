"""Every number in models/iqa/report: `python -m models.iqa.evaluate [--seeds 0 1 2]`.

1. Backbone cost: one forward+backward of PMT-IQA (batch 32, 64×64 crops, 1 thread) with ResNet-18 and ResNet-50,
   at torchvision's width (64) and at width 16 -> report/backbone_timing.json (the choice in the card).
2. For each seed: PMT-IQA "progressive multi-task" and the "plain regression" ablation (models/iqa/train.py),
   each selected on validation; the progressive seed-0 weights are saved (served by models/iqa/export.py).
3. Test split (references never seen in training or selection): SRCC / PLCC against pseudo-MOS, and the
   within-group severity SRCC (same reference and distortion, five levels: ground truth by construction),
   overall and per distortion type. Classical no-reference baseline on the same images:
   scikit-image's ``measure.blur_effect`` (Crété-Roffet et al. 2007; higher = blurrier, so quality = −blur).
-> report/results.json, report/results.md, report/plot.png
"""
import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from .data import DISTORTIONS, TYPES, make_benchmark
from .model import PMTIQA
from .train import PROFILES, run

REPORT = Path(__file__).parent / "report"
MODES = [("progressive", "PMT-IQA, progressive multi-task (λ1 = t/(E−1))"), ("plain", "PMT-IQA trunk, plain L1 regression (ablation)")]


def backbone_timing(reps: int = 3) -> list[dict]:
    rows = []
    x = torch.rand(32, 3, 64, 64)
    for backbone, width in [("resnet18", 16), ("resnet50", 16), ("resnet18", 64), ("resnet50", 64)]:
        torch.manual_seed(0)
        model = PMTIQA(backbone, width)
        opt = torch.optim.Adam(model.parameters())
        times = []
        for _ in range(reps + 1):
            t = time.perf_counter()
            s, logits = model(x)
            (s.mean() + logits.mean()).backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t)
        rows.append({"backbone": backbone, "width": width, "params": sum(p.numel() for p in model.parameters()),
                     "seconds_per_step_batch32": float(np.median(times[1:]))})
        print(f"[timing] {rows[-1]}", flush=True)
    return rows


def _train_one(job: tuple) -> dict:
    """One (mode, seed) run in its own process (``--jobs``): the benchmark comes from the cache written first."""
    mode, seed, profile, save, out, device = job
    torch.set_num_threads(1)
    return run(mode, seed, PROFILES[profile], save=save, out=out, device=device)


def severity_srcc(pred: np.ndarray, split: dict) -> dict:
    """Mean Spearman correlation between predicted quality and −level within each (reference, distortion) group."""
    per_type = {}
    for t in np.unique(split["type"]):
        if t == 0:
            continue
        values = []
        for r in np.unique(split["ref"]):
            m = (split["ref"] == r) & (split["type"] == t)
            if m.sum() < 2:
                continue
            rho = spearmanr(pred[m], -split["level"][m])[0]
            values.append(0.0 if np.isnan(rho) else rho)  # a constant prediction orders nothing
        per_type[TYPES[t]] = float(np.mean(values))
    return {"mean": float(np.mean(list(per_type.values()))), "per_type": per_type}


def scores_for(pred: np.ndarray, split: dict) -> dict:
    return {"srcc": float(spearmanr(pred, split["score"])[0]), "plcc": float(pearsonr(pred, split["score"])[0]),
            "severity_srcc": severity_srcc(pred, split)}


def blur_effect_baseline(images: np.ndarray) -> np.ndarray:
    from skimage.measure import blur_effect

    grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return -np.array([blur_effect(g) for g in grey])


def fmt(values) -> str:
    a = np.asarray(values, float)
    return f"{a.mean():.3f}" if a.size == 1 else f"{a.mean():.3f} ± {a.std():.3f}"


def _selection(results: dict) -> str:
    """The epoch-selection criterion when it is not val SRCC (train.Config.select; older runs have no such field)."""
    chosen = sorted({r["config"].get("select", "val_srcc") for mode, _ in MODES for r in results["runs"][mode]})
    return "" if chosen in ([], ["val_srcc"]) else f" (selected by {', '.join(chosen)})"


def markdown(results: dict) -> str:
    seeds = results["seeds"]
    lines = [
        "# PMT-IQA on the scikit-image graded-distortion benchmark (pseudo-MOS)", "",
        f"Command: `{results.get('command', 'python -m models.iqa.evaluate')}` (all numbers below come from it). Target = **pseudo-MOS** "
        "(100 × SSIM against the pristine reference; a full-reference proxy, not human opinion). "
        f"Test split: {results['split_sizes']['test']['references']} references never used for training or selection, "
        f"{results['split_sizes']['test']['images']} images. Learned models: mean ± std over seeds {seeds}, each at its "
        f"best **validation** epoch{_selection(results)}; training profile `{results.get('profile')}` (models/iqa/train.py PROFILES) on "
        f"`{results.get('device')}`.", "",
        f"| method | test SRCC | test PLCC | severity SRCC (within group, ground truth) | val SRCC{'' if _selection(results) else ' (selection)'} |",
        "|---|---|---|---|---|",
    ]
    for mode, name in MODES:
        runs = results["runs"][mode]
        if not runs:
            lines.append(f"| {name} | not run (see below) | | | |")
            continue
        lines.append(f"| {name} | {fmt([r['test_scores']['srcc'] for r in runs])} | {fmt([r['test_scores']['plcc'] for r in runs])} | "
                     f"{fmt([r['test_scores']['severity_srcc']['mean'] for r in runs])} | {fmt([r['val']['srcc'] for r in runs])} |")
    b = results["baseline_blur_effect"]
    lines.append(f"| scikit-image `blur_effect` (classical NR, no training) | {b['srcc']:.3f} | {b['plcc']:.3f} | {b['severity_srcc']['mean']:.3f} | – |")
    lines += ["", "Severity SRCC per distortion type (test; learned models: mean over seeds):", "",
              "| distortion | progressive | plain | blur_effect |", "|---|---|---|---|"]
    for t in DISTORTIONS:
        cells = []
        for mode, _ in MODES:
            vals = [r["test_scores"]["severity_srcc"]["per_type"].get(t) for r in results["runs"][mode]]
            vals = [v for v in vals if v is not None]
            cells.append((fmt(vals) if len(vals) > 1 else f"{vals[0]:.3f}") if vals else "–")
        cells.append(f"{b['severity_srcc']['per_type'].get(t, float('nan')):.3f}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    timing = results["backbone_timing"]
    lines += ["", "Backbone cost (one forward+backward, batch 32 of 64×64, one thread, this shared CPU):", "",
              "| backbone | width | parameters | s / step |", "|---|---|---|---|"]
    lines += [f"| {r['backbone']} | {r['width']} | {r['params']:,} | {r['seconds_per_step_batch32']:.2f} |" for r in timing]
    return "\n".join(lines) + "\n"


def plot(results: dict, scatter: tuple[np.ndarray, np.ndarray], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    metrics = [("srcc", "SRCC"), ("plcc", "PLCC"), ("severity", "severity SRCC")]
    names = ["progressive", "plain", "blur_effect"]
    for j, name in enumerate(names):
        if name == "blur_effect":
            b = results["baseline_blur_effect"]
            means, stds = [b["srcc"], b["plcc"], b["severity_srcc"]["mean"]], [0, 0, 0]
        elif not results["runs"][name]:
            continue
        else:
            runs = results["runs"][name]
            vals = [[r["test_scores"]["srcc"] for r in runs], [r["test_scores"]["plcc"] for r in runs],
                    [r["test_scores"]["severity_srcc"]["mean"] for r in runs]]
            means, stds = [np.mean(v) for v in vals], [np.std(v) for v in vals]
        ax1.bar(np.arange(3) + (j - 1) * 0.27, means, 0.27, yerr=stds, capsize=3, label=name)
    ax1.set_xticks(range(3), [m[1] for m in metrics])
    ax1.axhline(0, color="k", lw=0.5)
    ax1.set_title(f"test split, mean ± std over seeds {results['seeds']}")
    ax1.legend(fontsize=8)
    pred, target = scatter
    ax2.scatter(target, pred, s=4, alpha=0.5)
    ax2.plot([0, 100], [0, 100], "k--", lw=0.8)
    ax2.set_xlabel("pseudo-MOS (100 × SSIM vs reference)")
    ax2.set_ylabel("predicted score")
    ax2.set_title("served model (progressive, seed 0) on test")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def score_only(report: Path, weights: Path | None, seeds: list[int], profile: str = "gpu2") -> None:
    """No training: score every committed run (weights/pmt_iqa_<mode>_seed<s>.safetensors, trained elsewhere,
    e.g. on the GPU by `loadtest/gpu_session.sh`) and the blur_effect baseline on this machine's test split."""
    from .train import WEIGHTS_DIR, load, predict

    folder = weights or WEIGHTS_DIR
    test = make_benchmark()["test"]
    runs, served, trained_on = {m: [] for m, _ in MODES}, None, set()
    for seed in seeds:
        for mode, _ in MODES:
            path = folder / f"pmt_iqa_{mode}_seed{seed}.safetensors"
            if not path.exists():
                continue
            model, metrics = load(path)
            pred = predict(model, test["image"])[0]
            metrics["test_scores"] = scores_for(pred, test)
            if mode == "progressive" and seed == seeds[0]:
                served = pred
                metrics["test_predictions_served"] = pred.tolist()
            trained_on.add(metrics.get("device", "cuda"))
            runs[mode].append(metrics)
            print(f"[iqa evaluate] {mode} seed {seed}: val SRCC {metrics['val']['srcc']:.3f} test SRCC "
                  f"{metrics['test_scores']['srcc']:.3f} (scored here)", flush=True)
    timing_file = report / "backbone_timing.json"
    results = {"command": "python -m models.iqa.evaluate --score-only", "seeds": seeds, "profile": profile,
               "device": f"{', '.join(sorted(trained_on))} (training); cpu (this scoring)",
               "backbone_timing": json.loads(timing_file.read_text()) if timing_file.exists() else [],
               "runs": runs, "split_sizes": runs["progressive"][0]["split_sizes"],
               "baseline_blur_effect": scores_for(blur_effect_baseline(test["image"]), test)}
    (report / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (report / "results.md").write_text(markdown(results))
    plot(results, (served, test["score"]), report / "plot.png")
    print(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu2", help="training length and selection (train.PROFILES)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=1, help="processes for generating the benchmark (first run only)")
    parser.add_argument("--save-all", action="store_true", help="keep every run's weights in --weights, not only the served one")
    parser.add_argument("--jobs", type=int, default=1,
                        help="training runs at once, one process each (6 fit one GPU; the runs are independent)")
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--weights", type=Path, default=None, help="where the served weights go (default models/iqa/weights)")
    parser.add_argument("--timing-only", action="store_true", help="only the backbone timing (CPU) -> <report>/backbone_timing.json")
    parser.add_argument("--plot-only", action="store_true", help="redraw <report>/plot.png and results.md from results.json")
    parser.add_argument("--score-only", action="store_true",
                        help="no training: score the committed weights of every run and the baseline on test (CPU, ~2 min)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = args.report
    report.mkdir(parents=True, exist_ok=True)
    if args.timing_only:
        (report / "backbone_timing.json").write_text(json.dumps(backbone_timing(), indent=1) + "\n")
        return
    if args.plot_only:
        results = json.loads((report / "results.json").read_text())
        served = results["runs"]["progressive"][0]
        (report / "results.md").write_text(markdown(results))
        plot(results, (np.array(served["test_predictions_served"]), make_benchmark()["test"]["score"]), report / "plot.png")
        print(markdown(results))
        return
    if args.score_only:
        return score_only(report, args.weights, args.seeds, args.profile)
    data = make_benchmark(args.workers)
    test = data["test"]
    timing_file = report / "backbone_timing.json"
    results = {"seeds": args.seeds, "profile": args.profile, "device": args.device,
               "backbone_timing": json.loads(timing_file.read_text()) if timing_file.exists() else backbone_timing(),
               "runs": {m: [] for m, _ in MODES}}
    scatter = None
    jobs = [(mode, seed, args.profile, args.save_all or (seed == args.seeds[0] and mode == "progressive"),
             (args.weights / f"pmt_iqa_{mode}_seed{seed}.safetensors") if args.weights else None, args.device)
            for seed in args.seeds for mode, _ in MODES]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            finished = list(pool.map(_train_one, jobs))
    else:
        finished = [run(mode, seed, PROFILES[profile], save=save, out=out, data=data, device=device)
                    for mode, seed, profile, save, out, device in jobs]
    for (mode, seed, _, save, _, _), metrics in zip(jobs, finished):
        if seed == args.seeds[0] and mode == "progressive":  # the served run
            scatter = (np.array(metrics["test_predictions"]), test["score"])
            metrics["test_predictions_served"] = metrics["test_predictions"]
        results["runs"][mode].append(metrics)
        print(f"[iqa evaluate] {mode} seed {seed}: val SRCC {metrics['val']['srcc']:.3f} test SRCC {metrics['test']['srcc']:.3f}", flush=True)
    for mode, _ in MODES:
        for m in results["runs"][mode]:
            m["test_scores"] = scores_for(np.array(m.pop("test_predictions")), test)
    results["baseline_blur_effect"] = scores_for(blur_effect_baseline(test["image"]), test)
    results["split_sizes"] = results["runs"]["progressive"][0]["split_sizes"]
    (report / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (report / "results.md").write_text(markdown(results))
    try:
        plot(results, scatter, report / "plot.png")
    except ImportError:  # a GPU box without matplotlib: `--plot-only` draws it afterwards
        print("matplotlib missing: run `python -m models.iqa.evaluate --plot-only` for plot.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
