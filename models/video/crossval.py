"""Source cross-validation over the non-test sources: does the video score order QP on sources the networks never
saw? The selection tool for the next change to SSTAM; no test encode is ever scored here.

    python -m models.video.crossval [--folds 3]   # ~10 min on this box -> models/video/report/crossval.{json,md}

The training and validation sources are split into folds by source. `train.cross_fit_intensities` trains a block CNN
(the served arm, last step) and a TimeSformer on the other folds and scores each held-out fold's encodes, so every
encode gets out-of-fold intensities. Then, for each fold, each pooling method is fitted on the other folds'
(out-of-fold) intensities and scores the held-out fold: the mean SRCC with QP order within (source, ladder) compares
methods on content no network and no pooling saw.
"""
import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import data as D
from .pipeline import ARTIFACTS, Pooling
from .train import SALIENCY_METHODS, WEIGHTS, Config, cross_fit_intensities, fit_pooling_rank, ladder_srcc, rows_by_split

REPORT = Path(__file__).resolve().parent / "report"
ANCHORS = ("blockdetect", "blurdetect", "blur_effect")  # higher = worse for all three


def fit_pooling_vmaf(intensities: np.ndarray, vmaf: np.ndarray) -> Pooling:
    """The earlier pooling, kept as a baseline: NNLS of 1 - VMAF/100 on the intensities (w >= 0, bias >= 0)."""
    from scipy.optimize import nnls

    sol, _ = nnls(np.concatenate([intensities, np.ones((len(intensities), 1))], 1), 1.0 - vmaf / 100.0)
    return Pooling(weights=[float(x) for x in sol[:6]], bias=float(sol[6]))


POOLINGS = {"rank (served method)": lambda x, rows, vmaf: fit_pooling_rank(x, rows, vmaf),
            "NNLS to VMAF (earlier method)": lambda x, rows, vmaf: fit_pooling_vmaf(x, vmaf)}


def compare(intensities: np.ndarray, rows: list[dict], folds: int) -> dict:
    """{score name: ladder_srcc over all rows} where every row is scored by a pooling fitted without its fold."""
    sources = sorted({r["source"] for r in rows})
    fold_of = np.array([sources.index(r["source"]) % folds for r in rows])  # cross_fit_intensities' grouping
    vmaf = np.array([r["vmaf"] for r in rows], np.float64)
    out = {}
    for name, fit in POOLINGS.items():
        quality = np.zeros(len(rows))
        for k in range(folds):
            train = np.flatnonzero(fold_of != k)
            pooling = fit(intensities[train], [rows[i] for i in train], vmaf[train])
            quality[fold_of == k] = [pooling.quality(x) for x in intensities[fold_of == k]]
        out[name] = ladder_srcc(rows, quality)
    for j, artifact in enumerate(ARTIFACTS):  # no fit at all: one intensity, higher = worse
        out[f"{artifact} alone"] = ladder_srcc(rows, -intensities[:, j])
    out["4 spatial intensities, equal weights"] = ladder_srcc(rows, -intensities[:, :4].sum(1))
    for anchor in ANCHORS:
        out[f"{anchor} (anchor)"] = ladder_srcc(rows, -np.array([r[anchor] for r in rows], np.float64))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--cnn-luma", choices=("raw", "mscn"), help="BlockCNN luma input (default: the served weights')")
    p.add_argument("--always-train", nargs="*", default=[], metavar="SOURCE",
                   help="sources in every fold's training data, never held out (e.g. added training sources)")
    p.add_argument("--drop", nargs="*", default=[], metavar="SOURCE", help="sources left out entirely")
    p.add_argument("--arm", choices=("ce", "ce+ceco"), help="block CNN arm (default: the served weights' chosen arm)")
    p.add_argument("--cnn-steps", type=int, help="block CNN training steps (default: the served weights')")
    p.add_argument("--seed", type=int, help="training seed for the networks (default: the served weights')")
    p.add_argument("--tag", default="", help="write report/crossval_<tag>.{json,md} instead of crossval.{json,md}")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    started = time.time()
    split = rows_by_split(D.build_all())
    rows = [r for r in split["train"] + split["val"] if r["source"] not in a.drop]
    meta = json.loads(WEIGHTS.with_suffix(".json").read_text())
    cfg = Config(**{k: v for k, v in meta["config"].items() if k in Config.__dataclass_fields__ and k not in ("arms", "t_use_from")})
    overrides = {"cnn_luma": a.cnn_luma, "seed": a.seed, "cnn_steps": a.cnn_steps}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    arm = a.arm or meta["chosen_arm"]
    oof = cross_fit_intensities(cfg, arm, rows, a.folds, log=lambda m: print(m, flush=True),
                                always_train=a.always_train)
    held = np.array([r["source"] not in a.always_train for r in rows])
    scored = [r for r, h in zip(rows, held) if h]
    results = {"sources": sorted({r["source"] for r in scored}), "always_train": sorted(a.always_train), "folds": a.folds,
               "arm": arm, "cnn_steps": cfg.cnn_steps, "cnn_luma": cfg.cnn_luma, "seed": cfg.seed,
               "by_saliency": {sal: compare(oof[sal][held], scored, a.folds) for sal in SALIENCY_METHODS},
               "seconds": round(time.time() - started)}
    REPORT.mkdir(exist_ok=True)
    name = f"crossval_{a.tag}" if a.tag else "crossval"
    (REPORT / f"{name}.json").write_text(json.dumps(results, indent=1))
    names = list(results["by_saliency"]["sstam"])
    extra = f"; always in training: {', '.join(results['always_train'])}" if a.always_train else ""
    md = [f"# Source cross-validation over {len(results['sources'])} non-test sources ({a.folds} folds; no test encode scored)",
          "", "`" + " ".join(["python -m models.video.crossval", *(argv if argv is not None else sys.argv[1:])]) + "`",
          f"(block CNN: {arm}, luma input {cfg.cnn_luma}, {cfg.cnn_steps} steps, seed {cfg.seed}{extra}) — mean SRCC with QP order within (held-out source, ladder);",
          "every score comes from networks and a pooling that never saw that source.", "",
          "| score | " + " | ".join(f"{s} saliency" for s in SALIENCY_METHODS) + " |", "|---|" + "---|" * len(SALIENCY_METHODS)]
    md += [f"| {n} | " + " | ".join(f"{results['by_saliency'][s][n]['mean']:.3f}" for s in SALIENCY_METHODS) + " |" for n in names]
    (REPORT / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
