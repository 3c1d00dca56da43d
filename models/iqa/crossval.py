"""Leave-pictures-out cross-validation of PMT-IQA and the baselines over all 19 source pictures.

    python -m models.iqa.crossval --baselines-only                    # NSS + SVR, blur_effect, JPEG quality (minutes)
    python -m models.iqa.crossval --arms plain fixed progressive --seeds 0 1 2 --profile cv --hybrid
    python -m models.iqa.crossval --fixed-split --seeds 0 1 2 3 4 5    # the served (gpu2) weights, card's test split

The fixed train / val / test split of data.SPLITS scores 4 pictures; here every picture is held out once:
``FOLDS`` = 5 folds of 3-4 source pictures (``folds()``, a fixed shuffle, dealt round-robin), and every model is
trained on the other folds only. Trained arms (models/iqa/train.py, modes plain / fixed / progressive) select their
epoch on ``INNER_VAL`` = 2 of the fold's *training* pictures (held out from their training), never on the held-out
fold. The NSS regressor chooses its hyper-parameters by an inner 3-fold CV grouped by picture, on the training
pictures only.

Metrics on the out-of-fold predictions of all 19 pictures (4,836 images):
- SRCC and PLCC against pseudo-MOS, pooled over folds (each fold's model scores its own pictures) and per fold;
- severity SRCC: mean within-(reference tile, distortion) Spearman correlation with −level, i.e. the ordering of
  the five levels of one distortion of one tile (ground truth by construction), per distortion type and overall;
- 95% bootstrap CIs by resampling the 19 *pictures* (all images of a picture together, 2,000 resamples), and the
  paired bootstrap CI of each model's difference from each baseline (same resamples).
Learned arms: the metric averaged over seeds (the CI is that of the seed mean), the seeds' spread beside it.
The JPEG-quality baseline exists only for JPEG inputs: it is scored, with every model beside it, on the JPEG subset.

Run records (out-of-fold predictions per arm / seed / fold) go to build/iqa_cv/ and the run resumes from them;
report/crossval.{json,md} and report/crossval_predictions.npz are written from whatever is there.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

from .data import SOURCES, TYPES, make_benchmark

REPORT = Path(__file__).parent / "report"
RUNS = Path(__file__).resolve().parents[2] / "build" / "iqa_cv"
FOLDS = 5
FOLD_SEED = 20261203
INNER_VAL = 2
BOOTSTRAP = 2000
ARMS = {"plain": "PMT-IQA trunk, plain L1", "fixed": "PMT-IQA, fixed λ1 = λ2 = 0.5", "progressive": "PMT-IQA, progressive (λ1 = t/(E−1))"}
BASELINES = {"nss_svr": "NSS (BRISQUE-style, 36 features) + SVR", "nss_jpeg_svr": "NSS + JPEG quality estimate + SVR",
             "blur_effect": "scikit-image blur_effect (no training)"}
HYBRID = {"hybrid": "Hybrid: SVR on [progressive trunk (CV-trained) + NSS + JPEG quality]",
          "hybrid_oof": "Hybrid, SVR fitted on out-of-fold trunk outputs (added after the first table)"}


# ---- folds ----------------------------------------------------------------------------------------------------

def folds(n_folds: int = FOLDS) -> list[list[str]]:
    """Disjoint groups of source pictures covering all of SOURCES; the same on every machine."""
    order = np.random.default_rng(FOLD_SEED).permutation(len(SOURCES))
    return [[SOURCES[i] for i in sorted(order[k::n_folds])] for k in range(n_folds)]


def inner_split(train_pictures: list[str], fold: int) -> tuple[list[str], list[str]]:
    """(training, validation) pictures inside one fold's training pictures: INNER_VAL of them, drawn per fold."""
    val = list(np.random.default_rng([FOLD_SEED, fold]).choice(train_pictures, INNER_VAL, replace=False))
    return [p for p in train_pictures if p not in val], val


def all_images() -> dict[str, np.ndarray]:
    """The whole benchmark (every split of data.py together), in a fixed order."""
    splits = make_benchmark()
    full = {k: np.concatenate([splits[s][k] for s in ("train", "val", "test")]) for k in splits["train"]}
    order = np.lexsort((full["level"], full["type"], full["ref"]))
    return {k: v[order] for k, v in full.items()}


def subset(bench: dict, pictures: list[str]) -> dict:
    mask = np.isin(bench["source"], [SOURCES.index(p) for p in pictures])
    return {k: v[mask] for k, v in bench.items()}


def fold_of(bench: dict) -> np.ndarray:
    lookup = {SOURCES.index(p): k for k, group in enumerate(folds()) for p in group}
    return np.array([lookup[int(s)] for s in bench["source"]])


# ---- metrics --------------------------------------------------------------------------------------------------

def group_rhos(pred: np.ndarray, bench: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (reference, distortion) group: Spearman(pred, −level), its distortion type and its picture.
    A constant prediction within a group orders nothing: 0."""
    rhos, types, pictures = [], [], []
    key = bench["ref"] * 100 + bench["type"]
    for k in np.unique(key[bench["type"] > 0]):
        m = key == k
        rho = spearmanr(pred[m], -bench["level"][m])[0] if m.sum() >= 2 else np.nan
        rhos.append(0.0 if np.isnan(rho) else rho)
        types.append(int(k % 100))
        pictures.append(int(bench["source"][m][0]))
    return np.array(rhos), np.array(types), np.array(pictures)


def severity_from_groups(rhos, types, pictures, weight: np.ndarray | None = None, only: int | None = None) -> tuple[float, dict]:
    """Mean over distortion types of the mean group rho (weighted by how often each picture was drawn)."""
    w = np.ones(len(rhos)) if weight is None else weight[pictures]
    per_type = {}
    for t in np.unique(types):
        if only is not None and t != only:
            continue
        m = (types == t) & (w > 0)
        if m.any():
            per_type[TYPES[t]] = float(np.sum(w[m] * rhos[m]) / np.sum(w[m]))
    return float(np.mean(list(per_type.values()))), per_type


def scores(pred: np.ndarray, bench: dict, only_type: int | None = None) -> dict:
    """SRCC, PLCC (pooled), severity SRCC overall and per type; ``only_type``: on that distortion's images."""
    m = np.ones(len(pred), bool) if only_type is None else bench["type"] == only_type
    sev, per_type = severity_from_groups(*group_rhos(pred, bench), only=only_type)
    return {"srcc": float(spearmanr(pred[m], bench["score"][m])[0]), "plcc": float(pearsonr(pred[m], bench["score"][m])[0]),
            "severity": sev, "severity_per_type": per_type}


def bootstrap(methods: dict[str, np.ndarray], bench: dict, n: int = BOOTSTRAP, only_type: int | None = None,
              seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap draws of (srcc, plcc, severity) per method, resampling source pictures with replacement.
    ``methods[name]`` is (seeds, N): each draw's value is the mean over seeds. Same draws for every method, so
    differences between methods are paired."""
    rng = np.random.default_rng(seed)
    pictures = np.unique(bench["source"])
    mask = np.ones(len(bench["score"]), bool) if only_type is None else bench["type"] == only_type
    by_picture = {p: np.flatnonzero((bench["source"] == p) & mask) for p in pictures}
    groups = {name: [group_rhos(p, bench) for p in preds] for name, preds in methods.items()}
    out = {name: {"srcc": np.empty(n), "plcc": np.empty(n), "severity": np.empty(n)} for name in methods}
    for b in range(n):
        drawn = rng.choice(pictures, len(pictures), replace=True)
        idx = np.concatenate([by_picture[p] for p in drawn])
        weight = np.bincount(drawn, minlength=max(len(SOURCES), int(pictures.max()) + 1))  # times each picture was drawn (held-out ids are 100+)
        y = bench["score"][idx]
        for name, preds in methods.items():
            out[name]["srcc"][b] = np.mean([spearmanr(p[idx], y)[0] for p in preds])
            out[name]["plcc"][b] = np.mean([np.corrcoef(p[idx], y)[0, 1] for p in preds])
            out[name]["severity"][b] = np.mean([severity_from_groups(*g, weight=weight, only=only_type)[0] for g in groups[name]])
    return out


def ci(draws: np.ndarray) -> list[float]:
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


# ---- baselines ------------------------------------------------------------------------------------------------

def nss_cache(bench: dict) -> np.ndarray:
    """NSS features of every image (~25 s on one core), cached beside the run records."""
    from .baselines import nss_matrix

    from .data import cache_path

    path = RUNS / f"nss_features_{cache_path().stem}_{len(bench['score'])}.npy"
    if path.exists():
        return np.load(path)
    features = nss_matrix(bench["image"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    return features


def fit_nss(features: np.ndarray, target: np.ndarray, pictures: np.ndarray, seed: int = 0):
    """SVR on NSS features, C / γ chosen by 3-fold CV grouped by picture (on the given training pictures only),
    scored by SRCC: the model never sees a held-out picture, not even for its hyper-parameters."""
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GridSearchCV, GroupKFold

    from .baselines import NSS_GRID, nss_regressor

    srcc = make_scorer(lambda y, p: spearmanr(y, p)[0])
    search = GridSearchCV(nss_regressor(seed), NSS_GRID, scoring=srcc, cv=GroupKFold(3), n_jobs=1)
    search.fit(features, target, groups=pictures)
    return search.best_estimator_, search.best_params_


def baseline_predictions(bench: dict, log=print) -> tuple[dict, dict]:
    """Out-of-fold predictions of the baselines: {name: (N,)} and the NSS hyper-parameters chosen per fold."""
    from .baselines import blur_quality, jpeg_quality_for_benchmark

    features = nss_cache(bench)
    fold = fold_of(bench)
    nss, chosen = np.empty(len(fold)), []
    for k in range(FOLDS):
        tr = fold != k
        model, params = fit_nss(features[tr], bench["score"][tr], bench["source"][tr])
        nss[~tr] = model.predict(features[~tr])
        chosen.append(params)
        log(f"[iqa cv] fold {k}: NSS SVR {params}")
    from .hybrid import nss_jpeg_predictions

    return {"nss_svr": nss, "nss_jpeg_svr": nss_jpeg_predictions(bench, log), "blur_effect": blur_quality(bench["image"]),
            "jpeg_quality": jpeg_quality_for_benchmark(bench)}, {"nss_svr_params": chosen}


# ---- trained arms ---------------------------------------------------------------------------------------------

def run_arm(bench: dict, arm: str, seed: int, fold: int, profile: str, log=print) -> dict:
    """Train one arm on one fold's training pictures (epoch chosen on INNER_VAL of them); predict the held-out fold.
    Saves the record (predictions, history, pictures) and the weights under RUNS."""
    import torch
    from safetensors.torch import save_file

    from .train import PROFILES, predict, train

    record = RUNS / f"{arm}_{profile}_seed{seed}_fold{fold}.json"
    if record.exists():
        return json.loads(record.read_text())
    held_out = folds()[fold]
    train_pictures, val_pictures = inner_split([p for p in SOURCES if p not in held_out], fold)
    started = time.perf_counter()
    model, info = train({"train": subset(bench, train_pictures), "val": subset(bench, val_pictures)}, arm, seed,
                        PROFILES[profile], log=log)
    test = subset(bench, held_out)
    pred = predict(model, test["image"])[0]
    out = {"arm": arm, "seed": seed, "fold": fold, "profile": profile, "held_out": held_out, "train": train_pictures,
           "inner_val": val_pictures, "best_epoch": info["best_epoch"], "history": info["history"],
           "seconds": round(time.perf_counter() - started, 1), "index": np.flatnonzero(np.isin(
               bench["source"], [SOURCES.index(p) for p in held_out])).tolist(), "prediction": pred.tolist()}
    RUNS.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(record.with_suffix(".safetensors")))
    record.write_text(json.dumps(out) + "\n")
    log(f"[iqa cv] {arm} seed {seed} fold {fold}: epoch {info['best_epoch']}, {out['seconds']} s, "
        f"fold SRCC {spearmanr(pred, test['score'])[0]:.3f}")
    torch.set_num_threads(1)
    return out


def arm_predictions(bench: dict, arm: str, seeds: list[int], profile: str) -> tuple[np.ndarray, list[dict]]:
    """(seeds, N) out-of-fold predictions of an arm from the records in RUNS (complete seeds only)."""
    preds, records = [], []
    for seed in seeds:
        runs = [RUNS / f"{arm}_{profile}_seed{seed}_fold{k}.json" for k in range(FOLDS)]
        if not all(r.exists() for r in runs):
            continue
        p = np.full(len(bench["score"]), np.nan)
        for r in runs:
            rec = json.loads(r.read_text())
            p[rec["index"]] = rec["prediction"]
            records.append({k: rec[k] for k in ("arm", "seed", "fold", "best_epoch", "seconds", "inner_val")})
        preds.append(p)
    return np.array(preds), records


# ---- report ---------------------------------------------------------------------------------------------------

def summarise(methods: dict[str, np.ndarray], bench: dict, baselines: list[str], only_type: int | None = None,
              per_fold: bool = True) -> dict:
    """Point values (mean over seeds, with the seeds' std), bootstrap CIs, per-fold values and paired differences
    of every non-baseline method against every baseline."""
    draws = bootstrap(methods, bench, only_type=only_type)
    fold = fold_of(bench) if per_fold else None
    out = {}
    for name, preds in methods.items():
        per_seed = [scores(p, bench, only_type) for p in preds]
        row = {"seeds": len(preds)}
        for metric in ("srcc", "plcc", "severity"):
            values = [s[metric] for s in per_seed]
            row[metric] = float(np.mean(values))
            row[f"{metric}_seed_std"] = float(np.std(values)) if len(values) > 1 else None
            row[f"{metric}_ci"] = ci(draws[name][metric])
        row["severity_per_type"] = {t: float(np.mean([s["severity_per_type"][t] for s in per_seed]))
                                    for t in per_seed[0]["severity_per_type"]}
        in_type = np.ones(len(bench["type"]), bool) if only_type is None else bench["type"] == only_type
        row["per_fold_srcc"] = None if fold is None else [float(np.mean([spearmanr(p[(fold == k) & in_type], bench["score"][(fold == k) & in_type])[0]
                                               for p in preds])) for k in range(FOLDS)]
        if name not in baselines:
            row["minus"] = {b: {m: {"mean": float(np.mean(draws[name][m] - draws[b][m])), "ci": ci(draws[name][m] - draws[b][m])}
                                for m in ("srcc", "plcc", "severity")} for b in baselines if b in methods}
        out[name] = row
    return out


def write_report(out: Path, results: dict, lines: list[str]) -> None:
    """``out``.json (the numbers) and ``out``.md (the table) beside each other."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def fmt_diff(d: dict, sep: str = " | ") -> str:
    """A ``minus`` entry of ``summarise`` as "mean [CI]" cells for SRCC, PLCC and severity."""
    return sep.join(f"{d[m]['mean']:+.3f} [{d[m]['ci'][0]:+.3f}, {d[m]['ci'][1]:+.3f}]" for m in ("srcc", "plcc", "severity"))


def fmt(row: dict, metric: str) -> str:
    spread = f" ± {row[metric + '_seed_std']:.3f}" if row.get(metric + "_seed_std") is not None else ""
    lo, hi = row[metric + "_ci"]
    return f"{row[metric]:.3f}{spread} [{lo:.3f}, {hi:.3f}]"


def markdown(results: dict) -> str:
    names = {**BASELINES, "jpeg_quality": "JPEG quality from quantisation tables", **ARMS, **HYBRID}
    lines = ["# Leave-pictures-out cross-validation (`python -m models.iqa.crossval`)", "",
             f"{FOLDS} folds over all {len(SOURCES)} source pictures ({results['images']} images); folds: " +
             "; ".join(", ".join(f) for f in results["folds"]) + ". Target: pseudo-MOS (100 × SSIM). "
             "Cells: value on the pooled out-of-fold predictions [95% bootstrap CI over pictures]; learned arms: "
             f"mean ± std over seeds, CI of the seed mean. Trained arms: profile `{results['profile']}` "
             f"({results['profile_config']}), epoch chosen on {INNER_VAL} inner-validation pictures of each fold's "
             "training pictures. **The served weights came from the much larger `gpu2` budget (12 × 32,768 crops, batch 64, on a GPU); "
             "these rows measure the method at this CPU budget, not the served model.**", "",
             "## All images", "", "| method | seeds | SRCC | PLCC | severity SRCC (ground truth) | per-fold SRCC |", "|---|---|---|---|---|---|"]
    for name, row in results["all"].items():
        lines.append(f"| {names.get(name, name)} | {row['seeds'] if name in results['learned'] else '–'} | {fmt(row, 'srcc')} | "
                     f"{fmt(row, 'plcc')} | {fmt(row, 'severity')} | {' / '.join(f'{v:.2f}' for v in row['per_fold_srcc'])} |")
    lines += ["", "Difference from each baseline (paired bootstrap over pictures, mean [95% CI]); a win needs the CI above 0:", "",
              "| method | vs | ΔSRCC | ΔPLCC | Δseverity |", "|---|---|---|---|---|"]
    for name, row in results["all"].items():
        for b, d in row.get("minus", {}).items():
            lines.append(f"| {names.get(name, name)} | {b} | " + fmt_diff(d) + " |")
    lines += ["", "## JPEG subset (the only images that are JPEG files; the JPEG-quality baseline exists only here)", "",
              "| method | SRCC | PLCC | JPEG severity SRCC |", "|---|---|---|---|"]
    for name, row in results["jpeg"].items():
        lines.append(f"| {names.get(name, name)} | {fmt(row, 'srcc')} | {fmt(row, 'plcc')} | {fmt(row, 'severity')} |")
    lines += ["", "Difference from the JPEG-quality baseline on the JPEG subset:", "", "| method | ΔSRCC | ΔPLCC | Δseverity |", "|---|---|---|---|"]
    for name, row in results["jpeg"].items():
        d = row.get("minus", {}).get("jpeg_quality")
        if d:
            lines.append(f"| {names.get(name, name)} | " + fmt_diff(d) + " |")
    types = list(next(iter(results["all"].values()))["severity_per_type"])
    lines += ["", "## Severity SRCC per distortion type (mean over seeds)", "",
              "| distortion | " + " | ".join(names.get(n, n) for n in results["all"]) + " |", "|---" * (len(results["all"]) + 1) + "|"]
    for t in types:
        lines.append(f"| {t} | " + " | ".join(f"{row['severity_per_type'].get(t, float('nan')):.3f}" for row in results["all"].values()) + " |")
    lines += ["", f"NSS SVR hyper-parameters chosen per fold (inner CV): {results['baseline_info']['nss_svr_params']}"]
    if results.get("runs"):
        lines += ["", "Trained runs (arm, seed, fold: selected epoch, seconds): " + "; ".join(
            f"{r['arm']} s{r['seed']} f{r['fold']}: {r['best_epoch']}, {r['seconds']:.0f}" for r in results["runs"])]
    return "\n".join(lines) + "\n"


def fixed_split(report: Path, seeds: list[int]) -> dict:
    """The committed gpu2 weights against the baselines on the card's test split (data.SPLITS: 4 pictures), the only
    split where they can be compared: their training and selection pictures are in every CV fold. The baselines are
    fitted on the same 15 train + val pictures (hyper-parameters by inner CV grouped by picture)."""
    from .baselines import blur_quality
    from .data import SPLITS
    from .hybrid import jpeg_feature
    from .train import WEIGHTS_DIR, load, predict

    bench = all_images()
    test = subset(bench, SPLITS["test"])
    fit_on = np.isin(bench["source"], [SOURCES.index(p) for p in SPLITS["train"] + SPLITS["val"]])
    in_test = np.isin(bench["source"], [SOURCES.index(p) for p in SPLITS["test"]])
    nss = nss_cache(bench)
    methods = {"nss_svr": fit_nss(nss[fit_on], bench["score"][fit_on], bench["source"][fit_on])[0].predict(nss[in_test])[None]}
    x = np.hstack([nss, jpeg_feature(bench)])
    methods["nss_jpeg_svr"] = fit_nss(x[fit_on], bench["score"][fit_on], bench["source"][fit_on])[0].predict(x[in_test])[None]
    methods["blur_effect"] = blur_quality(test["image"])[None]
    for arm in ("plain", "progressive"):
        methods[f"{arm}_gpu2"] = np.stack([predict(load(WEIGHTS_DIR / f"pmt_iqa_{arm}_seed{s}.safetensors")[0], test["image"])[0]
                                           for s in seeds])
    results = {"command": "python -m models.iqa.crossval --fixed-split", "test_pictures": SPLITS["test"], "seeds": seeds,
               "all": summarise(methods, test, list(BASELINES), per_fold=False)}
    (report / "crossval_fixed_split.json").write_text(json.dumps(results, indent=1) + "\n")
    names = {**BASELINES, "plain_gpu2": "committed gpu2 weights, plain", "progressive_gpu2": "committed gpu2 weights, progressive"}
    lines = ["# The committed (gpu2) weights against the baselines on the card's fixed test split", "",
             f"Test pictures {', '.join(SPLITS['test'])} ({len(test['score'])} images); baselines fitted on the 15 train + val "
             f"pictures the weights were trained and selected on; weights: seeds {seeds}. 95% CIs by resampling the 4 "
             "test pictures (wide: 4 pictures).", "", "| method | SRCC | PLCC | severity SRCC |", "|---|---|---|---|"]
    lines += [f"| {names[n]} | {fmt(r, 'srcc')} | {fmt(r, 'plcc')} | {fmt(r, 'severity')} |" for n, r in results["all"].items()]
    lines += ["", "| method | vs | ΔSRCC | ΔPLCC | Δseverity |", "|---|---|---|---|---|"]
    for n, r in results["all"].items():
        for b, d in r.get("minus", {}).items():
            lines.append(f"| {names[n]} | {b} | " + fmt_diff(d) + " |")
    (report / "crossval_fixed_split.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="*", default=[], choices=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--profile", default="cv", help="train.PROFILES entry for the trained arms")
    parser.add_argument("--baselines-only", action="store_true", help="no training; report the baselines (and any finished arms)")
    parser.add_argument("--fixed-split", action="store_true",
                        help="only the committed gpu2 weights (--seeds) against the baselines on the card's test split")
    parser.add_argument("--hybrid-oof-seeds", type=int, nargs="*", default=[],
                        help="also the hybrid with out-of-fold trunk outputs for these seeds (10 more trunks a seed)")
    parser.add_argument("--hybrid", action="store_true", help="also the hybrid (models/iqa/hybrid.py) on the finished progressive seeds")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from dataclasses import asdict

    from .train import PROFILES

    if args.fixed_split:
        return fixed_split(args.report, args.seeds)
    bench = all_images()
    # training first, seed by seed, so an interrupted run leaves whole seeds behind
    if not args.baselines_only:
        for seed in args.seeds:
            for k in range(FOLDS):
                for arm in args.arms:
                    run_arm(bench, arm, seed, k, args.profile)
    base, info = baseline_predictions(bench)
    methods = {name: base[name][None] for name in BASELINES}
    learned, runs = [], []
    for arm in ARMS:
        preds, records = arm_predictions(bench, arm, args.seeds, args.profile)
        if len(preds):
            methods[arm], runs = preds, runs + records
            learned.append(arm)
    if args.hybrid and "progressive" in learned:
        from .hybrid import hybrid_predictions

        done = sorted({r["seed"] for r in runs if r["arm"] == "progressive"})
        methods["hybrid"] = hybrid_predictions(bench, done, args.profile)
        learned.append("hybrid")
    if args.hybrid_oof_seeds and "progressive" in learned:
        from .hybrid import oof_hybrid_predictions

        methods["hybrid_oof"] = oof_hybrid_predictions(bench, args.hybrid_oof_seeds, args.profile)
        learned.append("hybrid_oof")
    jpeg_type = TYPES.index("jpeg")
    cfg = asdict(PROFILES[args.profile])
    results = {"command": "python -m models.iqa.crossval " + " ".join(
                   (["--arms", *args.arms] if args.arms else []) + ["--seeds", *map(str, args.seeds), "--profile", args.profile]
                   + (["--hybrid"] if args.hybrid else []) + (["--hybrid-oof-seeds", *map(str, args.hybrid_oof_seeds)] if args.hybrid_oof_seeds else [])),
               "folds": folds(), "images": int(len(bench["score"])), "profile": args.profile,
               "profile_config": ", ".join(f"{k}={cfg[k]}" for k in ("epochs", "crops_per_epoch", "batch_size", "lr_step", "select")),
               "learned": learned, "baseline_info": info, "runs": runs,
               "all": summarise(methods, bench, list(BASELINES)),
               "jpeg": summarise({"jpeg_quality": base["jpeg_quality"][None], **methods}, bench, ["jpeg_quality"], only_type=jpeg_type)}
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "crossval.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.report / "crossval.md").write_text(markdown(results))
    np.savez_compressed(args.report / "crossval_predictions.npz", ref=bench["ref"], type=bench["type"], level=bench["level"],
                        source=bench["source"], score=bench["score"], **{k: v for k, v in base.items()},
                        **{arm: methods[arm] for arm in learned})
    print(markdown(results))


if __name__ == "__main__":
    main()
