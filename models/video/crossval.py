"""Source cross-validation over every source before the fresh test set: the selection tool for SSTAM, with the
baselines a video platform would use in the same table. No fresh-test encode is ever scored here.

    python -m models.video.crossval [--folds 5] [--seed 0]   # ~25 min on this box -> report/crossval.{json,md}

The 20 earlier sources (data.SOURCES: their train, validation and former test splits alike: the former test sources
were scored too often to measure generalisation) are split into folds by source. `train.cross_fit_intensities`
trains a block CNN and a TimeSformer on the other folds and scores each held-out fold's encodes, so every encode gets
out-of-fold intensities (cached per seed in build/video/). Then every method below is fitted on the other folds
and scores the held-out fold:
- SSTAM's pooling on the intensities alone (the pooling served until now), and on intensities + detail statistics
  (pipeline.frame_stats), for each saliency method;
- the detail statistics alone (rank fit), BRISQUE's 36 NSS features with a support-vector regressor to VMAF (its
  hyper-parameters chosen by an inner source-grouped CV) and with the rank fit;
- ffmpeg blockdetect / blurdetect and scikit-image blur_effect, which need no fit.
Metrics over all held-out encodes: mean SRCC with the rung order within (source, ladder), and SRCC with VMAF; 95% CIs
by resampling sources (bootstrap), and for SSTAM the CI of its difference to each baseline on the same resamples.
"""
import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.nss import brisque_features

from . import data as D
from .pipeline import ARTIFACTS, STATS, STATS_EVERY
from .train import (SALIENCY_METHODS, SAMPLE_STRIDE, WEIGHTS, Config, cross_fit_intensities, encode_stats, fit_pooling_blend,
                    fit_pooling_rank, ladder_srccs)

REPORT = Path(__file__).resolve().parent / "report"
CACHE = D.ROOT / "build" / "video"
ANCHORS = ("blockdetect", "blurdetect", "blur_effect")  # higher = worse for all three
BLENDS = (0.25, 0.5, 0.75)  # train.fit_pooling_blend's share of the intensities-only fit
N_INTENSITIES = len(ARTIFACTS)


def nss_features(row: dict) -> np.ndarray:
    """BRISQUE's 36 features of the luma, averaged over the sampled frames the detail statistics use."""
    y = D.load_encode(row)["y"]
    frames = range(0, y.shape[0], SAMPLE_STRIDE * STATS_EVERY)
    return np.mean([brisque_features(y[t]) for t in frames], 0)


def fit_nss_regressor(X: np.ndarray, vmaf: np.ndarray, groups: list[str]):
    """Standardised features -> RBF support-vector regression of 1 - VMAF/100; C and epsilon by 3-fold source-grouped
    CV on the training folds only. Returns a function features -> quality (higher = better)."""
    level = fit_level_regressor(X, vmaf, groups)
    return lambda Z: 1.0 - level.predict(Z)


def fit_level_regressor(X: np.ndarray, vmaf: np.ndarray, groups: list[str]):
    """fit_nss_regressor's fitted estimator (StandardScaler + RBF SVR predicting 1 - VMAF/100), for
    models.nss.KernelLevel.from_sklearn to keep as data."""
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    search = GridSearchCV(make_pipeline(StandardScaler(), SVR()), {"svr__C": [0.1, 1, 10], "svr__epsilon": [0.01, 0.05]},
                          cv=GroupKFold(3), scoring="neg_mean_absolute_error")
    search.fit(X, 1.0 - vmaf / 100.0, groups=groups)
    return search.best_estimator_


def rank_fitted(X: np.ndarray, rows, vmaf, intensities: int, blend: float | None = None):
    """features -> quality of the rank fit (with `blend`: the served fit_pooling_blend), unclipped: the order is what
    is measured."""
    pooling = fit_pooling_rank(X, rows, vmaf, intensities=intensities) if blend is None else fit_pooling_blend(X, rows, vmaf, blend)
    w = np.concatenate([pooling.weights, pooling.stat_weights])
    return lambda Z: 1.0 - (pooling.bias + Z @ w)


def out_of_fold(rows, fold_of, folds: int, fit) -> np.ndarray:
    """Quality of every row from `fit(train_indices)`, a function of row indices fitted without the row's fold."""
    quality = np.zeros(len(rows))
    for k in range(folds):
        train, held = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        quality[held] = fit(train)(held)
    return quality


def methods(rows, fold_of, folds, oof: dict, nss: np.ndarray) -> dict[str, np.ndarray]:
    """{method: out-of-fold quality of every row (higher = better)}."""
    vmaf = np.array([r["vmaf"] for r in rows], np.float64)
    sources = [r["source"] for r in rows]

    def rank_on(X, intensities, blend=None):
        return lambda tr: (lambda idx, f=rank_fitted(X[tr], [rows[i] for i in tr], vmaf[tr], intensities, blend): f(X[idx]))

    out = {}
    for sal in SALIENCY_METHODS:
        X = oof[sal]
        out[f"SSTAM, {sal} saliency: intensities (pooling served before)"] = out_of_fold(rows, fold_of, folds, rank_on(X[:, :N_INTENSITIES], N_INTENSITIES))
        out[f"SSTAM, {sal} saliency: intensities + detail statistics"] = out_of_fold(rows, fold_of, folds, rank_on(X, N_INTENSITIES))
        for blend in BLENDS:
            out[f"SSTAM, {sal} saliency: blend {blend}"] = out_of_fold(rows, fold_of, folds, rank_on(X, N_INTENSITIES, blend))
    stats = oof[SALIENCY_METHODS[0]][:, N_INTENSITIES:]
    out["detail statistics alone, rank fit"] = out_of_fold(rows, fold_of, folds, rank_on(stats, 0))
    out["BRISQUE NSS + SVR to VMAF"] = out_of_fold(
        rows, fold_of, folds,
        lambda tr: (lambda idx, f=fit_nss_regressor(nss[tr], vmaf[tr], [sources[i] for i in tr]): f(nss[idx])))
    out["BRISQUE NSS, rank fit"] = out_of_fold(rows, fold_of, folds, rank_on(nss, 0))
    for anchor in ANCHORS:
        out[f"ffmpeg {anchor}" if anchor != "blur_effect" else "scikit-image blur_effect"] = -np.nan_to_num(
            np.array([r[anchor] for r in rows], np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return out


def scores_on(rows, quality, per: dict, sources_drawn: list[str]) -> tuple[float, float]:
    """(mean over ladders of the mean over drawn sources of the within-ladder SRCC `per` (ladder_srccs of `quality`),
    SRCC with VMAF over the drawn sources' encodes); a source drawn twice counts twice."""
    from scipy.stats import spearmanr

    ladders = sorted({ladder for _, ladder in per})
    qp = np.mean([np.mean([np.nan_to_num(per[(s, lad)]) for s in sources_drawn if (s, lad) in per]) for lad in ladders])
    idx = np.concatenate([[i for i, r in enumerate(rows) if r["source"] == s] for s in sources_drawn])
    vmaf = np.array([rows[i]["vmaf"] for i in idx])
    return float(qp), float(spearmanr(quality[idx], vmaf).statistic)


def bootstrap(rows, qualities: dict[str, np.ndarray], reference: str, draws: int = 1000, seed: int = 0) -> dict:
    """Point estimates, 95% CIs by resampling sources, and each method's difference to `reference` on the same draws."""
    sources = sorted({r["source"] for r in rows})
    rng = np.random.default_rng(seed)
    samples = [list(rng.choice(sources, len(sources))) for _ in range(draws)]
    out = {}
    for name, q in qualities.items():
        per = ladder_srccs(rows, q)  # a source's SRCCs do not depend on which other sources are drawn
        point = scores_on(rows, q, per, sources)
        boots = np.array([scores_on(rows, q, per, s) for s in samples])
        out[name] = {"qp_srcc": point[0], "vmaf_srcc": point[1], "boots": boots}
    ref = out[reference]["boots"]
    for name, o in out.items():
        diff = ref - o["boots"]  # reference minus this method: > 0 where the reference is better
        o["qp_srcc_ci"] = np.percentile(o["boots"][:, 0], [2.5, 97.5]).tolist()
        o["vmaf_srcc_ci"] = np.percentile(o["boots"][:, 1], [2.5, 97.5]).tolist()
        o["reference_minus_this_qp_ci"] = np.percentile(diff[:, 0], [2.5, 97.5]).tolist()
        o["reference_minus_this_vmaf_ci"] = np.percentile(diff[:, 1], [2.5, 97.5]).tolist()
        del o["boots"]
    return out


def cached_oof(cfg: Config, arm: str, rows, folds: int, log) -> dict:
    path = CACHE / f"crossval_oof_{arm}_seed{cfg.seed}_folds{folds}_steps{cfg.cnn_steps}.npz"
    if path.exists():
        with np.load(path) as z:
            if z[SALIENCY_METHODS[0]].shape == (len(rows), N_INTENSITIES + len(STATS)):
                return {k: z[k] for k in z.files}
    oof = cross_fit_intensities(cfg, arm, rows, folds, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **oof)
    return oof


def table(results: dict, reference: str) -> list[str]:
    ci = lambda v, c: f"{v:.3f} [{c[0]:.3f}, {c[1]:.3f}]"
    md = ["| method | SRCC with rung order within (source, ladder) [95% CI] | SRCC with VMAF [95% CI] | "
          f"reference minus method, rung order [95% CI] | reference minus method, VMAF [95% CI] |", "|---|---|---|---|---|"]
    for name, o in sorted(results.items(), key=lambda kv: -kv[1]["qp_srcc"]):
        mark = " (reference)" if name == reference else ""
        md.append(f"| {name}{mark} | {ci(o['qp_srcc'], o['qp_srcc_ci'])} | {ci(o['vmaf_srcc'], o['vmaf_srcc_ci'])} | "
                  f"[{o['reference_minus_this_qp_ci'][0]:+.3f}, {o['reference_minus_this_qp_ci'][1]:+.3f}] | "
                  f"[{o['reference_minus_this_vmaf_ci'][0]:+.3f}, {o['reference_minus_this_vmaf_ci'][1]:+.3f}] |")
    return md


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--arm", choices=("ce", "ce+ceco"), default="ce", help="block CNN arm")
    p.add_argument("--seed", type=int, default=0, help="training seed for the networks")
    p.add_argument("--reference", default="SSTAM, spectral_residual saliency: blend 0.5",
                   help="the method the differences are taken against")
    p.add_argument("--tag", default="", help="write report/crossval_<tag>.{json,md} instead of crossval.{json,md}")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    started = time.time()
    rows = D.build_all()
    meta = json.loads(WEIGHTS.with_suffix(".json").read_text())
    cfg = Config(**{k: v for k, v in meta["config"].items() if k in Config.__dataclass_fields__ and k not in ("arms", "t_use_from")})
    cfg = replace(cfg, seed=a.seed)
    log = lambda m: print(m, flush=True)
    oof = cached_oof(cfg, a.arm, rows, a.folds, log)
    stats = np.stack([encode_stats(r) for r in rows])  # network-free: recomputed, so the cache never holds stale ones
    for features in oof.values():
        features[:, N_INTENSITIES:] = stats
    nss = np.stack([nss_features(r) for r in rows])
    sources = sorted({r["source"] for r in rows})
    fold_of = np.array([sources.index(r["source"]) % a.folds for r in rows])  # cross_fit_intensities' grouping
    qualities = methods(rows, fold_of, a.folds, oof, nss)
    results = bootstrap(rows, qualities, a.reference)
    report = {"sources": sources, "folds": a.folds, "arm": a.arm, "seed": a.seed, "cnn_steps": cfg.cnn_steps,
              "reference": a.reference, "methods": results, "seconds": round(time.time() - started)}
    REPORT.mkdir(exist_ok=True)
    name = f"crossval_{a.tag}" if a.tag else "crossval"
    (REPORT / f"{name}.json").write_text(json.dumps(report, indent=1))
    md = [f"# Source cross-validation over {len(sources)} sources ({a.folds} folds; no fresh-test encode scored)", "",
          "`" + " ".join(["python -m models.video.crossval", *(argv if argv is not None else sys.argv[1:])]) + "`",
          f"(block CNN arm {a.arm}, {cfg.cnn_steps} steps, seed {a.seed}). Every score comes from networks and a fit that "
          "never saw the encode's source; CIs resample sources (1000 draws).", "", *table(results, a.reference)]
    (REPORT / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
