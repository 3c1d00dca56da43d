"""Evaluate SSTAM on the held-out sources and write models/video/report/ (results.json, results.md, plots).

    python -m models.video.evaluate [--weights W.safetensors] [--report DIR]

- Per-artifact detection AUC on the test sources: spatial artifacts per 16x16 block (block CNN output
  vs block label > 0.25) and per clip (segment intensity vs the setting's level > 0.25); temporal ones per
  clip (flickering, floating).
- Video score: SRCC of -quality with QP order within each (test source, codec ladder), averaged; SRCC
  with VMAF over all test encodes. The same for ffmpeg blockdetect / blurdetect and scikit-image
  blur_effect (higher = worse for all three), and VMAF itself against QP order.
- Saliency: the pooled score with our low-cost saliency, spectral residual alone, and uniform weights
  (pooling fitted for each by train.py the way the served one was: rank on out-of-fold training intensities).
- Plots: spatial intensities over time along a QP ladder, flicker scores, quality vs QP per source.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from . import data as D
from .pipeline import ARTIFACTS, Pooling
from .train import CLEAN_THRESHOLD, SAMPLE_STRIDE, WEIGHTS, auc, ladder_srcc, load, rows_by_split, torch_fns, whole_encode_segment

REPORT = Path(__file__).resolve().parent / "report"
SALIENCY = ["sstam", "spectral_residual", "uniform"]
ANCHORS = {"blockdetect": -1, "blurdetect": -1, "blur_effect": -1}  # sign that makes "higher = better quality"


def analyse(fns, row, method):
    seg = whole_encode_segment(fns, row, method)
    return seg.intensities.astype(np.float64), np.array(seg.curve)


def main(weights: Path = WEIGHTS, report: Path = REPORT):
    torch.set_num_threads(1)
    rows = D.build_all()
    split = rows_by_split(rows)
    cnn, tsf, pooling, meta = load(weights)
    fns = torch_fns(cnn, tsf)
    results = {"weights": meta["chosen_arm"], "config": meta["config"], "splits": meta["splits"]}

    # per-encode segment intensities for each saliency method (validation for refitting pooling, test for scores)
    inten = {m: {s: [] for s in ("val", "test")} for m in SALIENCY}
    curves = {}
    for m in SALIENCY:
        for s in ("val", "test"):
            for r in split[s]:
                i, c = analyse(fns, r, m)
                inten[m][s].append(i)
                if m == "sstam" and s == "test":
                    curves[(r["source"], r["encode"])] = c
        print(f"[eval] saliency {m} done", flush=True)
    test = split["test"]
    vmaf = np.array([r["vmaf"] for r in test])

    # detection AUC, block level (spatial) and clip level (all six)
    preds, labels = [], []
    with torch.no_grad():
        for r in test:
            d = D.load_encode(r)
            idx = np.arange(0, d["y"].shape[0], SAMPLE_STRIDE)
            p, _ = cnn(torch.from_numpy(d["y"][idx])[:, None].float(), torch.from_numpy(np.stack([d["u"][idx], d["v"][idx]], 1)).float())
            preds.append(p.numpy()), labels.append(d["blocks"][idx].astype(np.float32))
    P, L = np.concatenate(preds), np.concatenate(labels)
    block_auc = {a: auc(P[:, k].ravel(), L[:, k].ravel() > CLEAN_THRESHOLD) for k, a in enumerate(ARTIFACTS[:4])}
    block_pos = {a: float((L[:, k] > CLEAN_THRESHOLD).mean()) for k, a in enumerate(ARTIFACTS[:4])}
    I = np.stack(inten["sstam"]["test"])
    clip_auc = {a: auc(I[:, k], np.array([r["levels"][a] for r in test]) > CLEAN_THRESHOLD) for k, a in enumerate(ARTIFACTS)}
    clip_pos = {a: int(sum(r["levels"][a] > CLEAN_THRESHOLD for r in test)) for a in ARTIFACTS}
    results["detection"] = {"block_auc": block_auc, "block_positive_rate": block_pos, "clip_auc": clip_auc,
                            "clip_positives": clip_pos, "test_encodes": len(test)}

    # video score vs QP order and VMAF, per saliency method (each with the pooling train.py fitted for it) and anchors
    scores = {}
    by_saliency = meta["pooling_fit"]["by_saliency"]
    for m in SALIENCY:
        pool = pooling if m == "sstam" else Pooling(**by_saliency[m]["pooling"])
        q = np.array([pool.quality(i) for i in inten[m]["test"]])
        scores[f"SSTAM ({m} saliency)"] = {"qp_srcc": ladder_srcc(test, q), "vmaf_srcc": float(spearmanr(q, vmaf).statistic),
                                          "pooling": {"weights": pool.weights, "bias": pool.bias}}
        if m == "sstam":
            results["test_quality"] = [{"source": r["source"], "encode": r["encode"], "q": r["q"], "quality": float(x), "vmaf": r["vmaf"],
                                        **{a: float(v) for a, v in zip(ARTIFACTS, i)}} for r, x, i in zip(test, q, inten[m]["test"])]
    for a, sign in ANCHORS.items():
        v = sign * np.array([r[a] for r in test])
        scores[f"{a} (anchor)"] = {"qp_srcc": ladder_srcc(test, v), "vmaf_srcc": float(spearmanr(v, vmaf).statistic)}
    scores["VMAF (full reference, for scale)"] = {"qp_srcc": ladder_srcc(test, vmaf), "vmaf_srcc": 1.0}
    results["video_score"] = scores
    report.mkdir(parents=True, exist_ok=True)
    (report / "results.json").write_text(json.dumps(results, indent=1))
    plots(test, curves, results, report)
    write_md(results, meta, report)
    print((report / "results.md").read_text())


def plots(test, curves, results, report: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    src = "coffee"
    t = np.arange(16) * SAMPLE_STRIDE / D.FPS
    for name, style in zip(D.LADDERS["x264"] + ["x264_nodb_qp44", "mpeg2_q31"], ["-", "-", "-", "-", "--", ":"]):
        c = curves.get((src, name))
        if c is not None:
            axes[0].plot(t[:len(c)], c[:, 0], style, label=f"{name} blur")
            axes[0].plot(t[:len(c)], c[:, 1], style, alpha=0.5)
    axes[0].set(title=f"{src}: per-frame blurring (thick) / blocking (faint), saliency-weighted", xlabel="time (s)", ylabel="intensity")
    axes[0].legend(fontsize=7)
    tq = results["test_quality"]
    for s in sorted({r["source"] for r in tq}):
        pts = sorted((r["q"], r["quality"]) for r in tq if r["source"] == s and r["encode"] in D.LADDERS["x264"])
        axes[1].plot(*zip(*pts), "o-", label=s)
    axes[1].set(title="SSTAM quality along the x264 QP ladder (test sources)", xlabel="QP", ylabel="quality")
    axes[1].legend(fontsize=7)
    names = ["x264_qp28", "x264_qp36", "x264_flicker_26_38", "x264_flicker_20_44"]
    for k, name in enumerate(names):
        vals = [r["flickering"] for r in tq if r["encode"] == name]
        axes[2].scatter(np.full(len(vals), k) + np.linspace(-0.15, 0.15, len(vals)), vals)
    axes[2].set_xticks(range(len(names)), names, fontsize=7)
    axes[2].set(title="flickering score per test source", ylabel="flickering")
    fig.tight_layout()
    fig.savefig(report / "plot.png", dpi=90)


def pooling_line(meta) -> str:
    how = ("fitted to QP order within source on out-of-fold intensities of the training encodes (pairwise logistic, "
           "weights ≥ 0; scale and bias match the spread of 1 − VMAF/100 there)")
    return (f"Pooling ({how}): " + json.dumps(meta["pooling"]) + "; validation SRCC with QP order "
            + json.dumps(meta["pooling_fit"]["val_qp_srcc"]))


def write_md(r, meta, report: Path):
    f = lambda x: "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"
    det = r["detection"]
    md = ["# SSTAM evaluation (held-out test sources: " + ", ".join(r["splits"]["test"]) + ")", "",
          "`python -m models.video.evaluate` (weights from `python -m models.video.train`; block CNN arm chosen on validation: "
          f"**{r['weights']}**)", "", "## Detection AUC (test sources)", "",
          "| artifact | block-level AUC | positive blocks | clip-level AUC | positive clips / " + str(det["test_encodes"]) + " |", "|---|---|---|---|---|"]
    for a in ARTIFACTS:
        md.append(f"| {a} | {f(det['block_auc'].get(a))} | {f(det['block_positive_rate'].get(a))} | {f(det['clip_auc'][a])} | {det['clip_positives'][a]} |")
    md += ["", "## Video score (test sources): SRCC with QP order within source and codec ladder, and with VMAF", "",
           "| score | x264 ladder | x265 ladder | mpeg2 ladder | mean | SRCC with VMAF |", "|---|---|---|---|---|---|"]
    for name, s in r["video_score"].items():
        q = s["qp_srcc"]
        md.append(f"| {name} | {f(q['x264'])} | {f(q['x265'])} | {f(q['mpeg2'])} | {f(q['mean'])} | {f(s['vmaf_srcc'])} |")
    cn = meta["cnn"]
    md += ["", "## Block CNN: CE vs CE + CeCo (validation sources; both with the pairwise QP-order loss)", "",
           "Selection score = ½ mean block AUC + ½ pair order accuracy (same source and frame, two encodes whose labels differ: "
           "does the frame-mean prediction move the same way?).", "",
           "| arm | selection score | val mean block AUC | per artifact (blur, block, bleed, ring) | pair order accuracy | best step |",
           "|---|---|---|---|---|---|"]
    for arm, m in cn.items():
        md.append(f"| {arm} | {f(m.get('val_score'))} | {f(m['val_mean_auc'])} | {[round(x, 3) if x == x else None for x in m['val_aucs']]} | "
                  f"{f(m.get('val_order_accuracy'))} | {m['best_step']} |")
    t = meta["timesformer"]
    md += ["", f"TimeSformer validation clip AUC (flickering, floating): {[round(x, 3) if x == x else None for x in t['val_aucs']]}",
           "", pooling_line(meta), "", "![plots](plot.png)"]
    (report / "results.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--report", type=Path, default=REPORT, help="folder for results.json / results.md / plot.png")
    a = ap.parse_args()
    main(a.weights, a.report)
