"""The pooling refitted on scored fresh sets, the served networks unchanged: run 9 (rejected by its rule), run 10
(adopted, served since 2026-12-05) and run 11 (a level fit mixed in).

    python -m models.video.refit dev [--blend 0.75]   # the rule's evidence: leave-one-source-out over the first fresh
                                                      # set -> report/refit_dev[_blend0.75].{json,md} (~3 min, cached features)
    python -m models.video.refit joint-dev            # run 10's evidence: 7 folds over the three scored fresh sets
                                                      # -> report/refit_joint_dev.{json,md} (~4 min, cached features)
    python -m models.video.refit joint-apply          # run 10 adopted: each seed's pooling refitted, into its weights
    python -m models.video.refit level-dev            # run 11's evidence: 10 folds over the five scored fresh sets
                                                      # -> report/refit_level_dev.{json,md} (cached features)
    python -m models.video.refit level-apply          # run 11: each seed's pooling refitted with the served share
    python -m models.video.refit nss-explore          # after the sixth set: level models with BRISQUE's features, over
                                                      # all six scored sets -> report/refit_nss_explore.{json,md} (~45 min)
    python -m models.video.refit nss-dev              # run 12's check, its form fixed by the exploration
                                                      # -> report/refit_nss_dev.{json,md}
    python -m models.video.refit nss-apply            # run 12: each seed's pooling, with BRISQUE's features, into its weights
    python -m models.video.refit by-set-explore       # after the seventh set: each scored set held out in turn
                                                      # -> report/refit_by_set_explore.{json,md} (~40 min)
    python -m models.video.refit svr-apply            # run 13: each seed's pooling with an RBF SVR level, into its weights

Run 9. Why: scored once against run 8, the first fresh set's weakest ladders were x265 CRF and VP9 CRF (rung-order SRCC
0.49 each), codecs and rate-control modes the pooling had never been fitted on: its rank fit only saw the constant-QP
ladders of the training sources. That set has now been scored, so it is development data; its 240 encodes come with
five long ladders each, and the networks never trained on them, so their intensities are out-of-sample as the
training sources' out-of-fold ones are (train.cross_fit_intensities). The pooling is refitted on both with the served
procedure (train.fit_pooling_blend, the same blend and saliency); the block CNN and the TimeSformer stay as run 8
froze them.

The rule, fixed before `dev` was first run: for each seed, every first-set source in turn is scored by a pooling
fitted on the training sources plus the other seven, beside run 8's pooling on the same encodes. Run 9 replaces run 8
if, over the three seeds, the mean rung-order SRCC rises and the mean SRCC with VMAF falls by no more than 0.02.

The first candidate (run 8's blend, 0.5) failed that rule: rung order +0.068, SRCC with VMAF -0.025. One more was then
fixed before it was run, the only other: the blend 0.75, which leans on the intensities-alone fit that carries the
level across sources, judged by the same rule against run 8. It failed too (+0.048, -0.035): run 8's pooling stays
served, so the step that would have refitted each seed on all eight sources was never taken and is not kept here.

Run 10 (after the second and third sets were scored too): one rank fit on intensities + statistics, no blend, over the
training sources and all three scored sets, optionally with level pairs across sources (`across`). Its rule and its
fourth fresh set were written down before it ran (models/video/README.md); `joint-dev` chose across = 0 and adopted it.

Run 11 (after the fourth and fifth sets were scored too): run 10's rank fit mixed with a least-squares fit to VMAF, the
level across sources that rung pairs never see; its rule and its sixth fresh set were written down before it ran.

Run 12 (after the sixth set, and the exploration over all six): the level fit on the pooling's features and BRISQUE's
36, half and half with the rank fit; its rule and its seventh fresh set were written down before it ran.

Run 13 (after the seventh set, and each set held out in turn): an RBF SVR on those 50 features for the level, three
quarters to the rank fit's one; its rule and its eighth fresh set were written down before it was fitted.
"""
import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from models.nss import KernelLevel

from . import data as D
from . import fresh
from .crossval import bootstrap, fit_level_regressor, fit_nss_regressor, nss_features
from .pipeline import Pooling
from .scoring import seed_weights
from .train import (fit_pooling_blend, fit_pooling_level, fit_pooling_rank, ladder_srcc, load, mixed, rows_by_split,
                    segment_features, torch_fns)

REPORT_DIR = Path(__file__).resolve().parent / "report"
MAX_VMAF_DROP = 0.02


def write_report(name: str, out: dict, markdown_of) -> None:
    """report/NAME.json and its markdown, printed too."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    report = REPORT_DIR / f"{name}.json"
    report.write_text(json.dumps(out, indent=1))
    report.with_suffix(".md").write_text(markdown_of(out))
    print(markdown_of(out))


def report_path(blend: float | None) -> Path:
    """The rule's report for a candidate: run 8's own blend (None) or another."""
    return REPORT_DIR / ("refit_dev.json" if blend is None else f"refit_dev_blend{blend}.json")


def fresh_features(weights: Path, rows: list[dict], set_name: str = "fresh") -> np.ndarray:
    """[len(rows), 6 + len(STATS)] segment features of a fresh set's encodes through `weights`' networks, cached in the
    set's folder."""
    cache = fresh.CACHE / set_name / f"features_{weights.stem}.npy"
    if cache.exists():
        X = np.load(cache)
        if X.shape[0] == len(rows):
            return X
    cnn, tsf, _, meta = load(weights)
    X = segment_features(torch_fns(cnn, tsf), rows, meta["saliency"])
    np.save(cache, X)
    return X


def training_set(weights: Path) -> tuple[list[dict], np.ndarray, dict]:
    """The training sources' encodes, their out-of-fold features (as run 8 fitted them) and the weights' metadata."""
    meta = json.loads(weights.with_suffix(".json").read_text())
    train = rows_by_split(D.build_all())["train"]
    oof = np.asarray(meta["pooling_fit"]["out_of_fold_train_intensities"][meta["saliency"]], np.float64)
    assert len(oof) == len(train), (len(oof), len(train))
    return train, oof, meta


def refit(train, oof, rows, X, blend: float) -> Pooling:
    both = train + rows
    return fit_pooling_blend(np.vstack([oof, X]), both, np.array([r["vmaf"] for r in both], np.float64), blend)


def dev(blend: float | None = None) -> dict:
    """`blend`: the candidate's pooling blend (train.fit_pooling_blend); None: each seed's own (run 8's, 0.5)."""
    import torch

    torch.set_num_threads(1)
    rows = fresh.build_all("fresh")
    sources = sorted({r["source"] for r in rows})
    out = {"rule": f"run 9 if the seeds' mean rung-order SRCC rises and their mean SRCC with VMAF falls by <= {MAX_VMAF_DROP}",
           "blend": blend, "sources": sources, "seeds": {}}
    for weights in seed_weights():
        train, oof, meta = training_set(weights)
        X = fresh_features(weights, rows)
        q8, q9 = Pooling(**meta["pooling"]).qualities(X), np.zeros(len(rows))
        for held in sources:
            keep = [i for i, r in enumerate(rows) if r["source"] != held]
            pooling = refit(train, oof, [rows[i] for i in keep], X[keep], meta["pooling_fit"]["blend"] if blend is None else blend)
            idx = [i for i, r in enumerate(rows) if r["source"] == held]
            q9[idx] = pooling.qualities(X[idx])
        results = bootstrap(rows, {"run 9": q9, "run 8": q8}, "run 9")
        out["seeds"][weights.stem] = {
            "run 8": {k: results["run 8"][k] for k in ("qp_srcc", "vmaf_srcc", "qp_srcc_ci", "vmaf_srcc_ci")},
            "run 9": {k: results["run 9"][k] for k in ("qp_srcc", "vmaf_srcc", "qp_srcc_ci", "vmaf_srcc_ci")},
            "run 9 minus run 8 CI": {"qp": results["run 8"]["reference_minus_this_qp_ci"],
                                     "vmaf": results["run 8"]["reference_minus_this_vmaf_ci"]},
            "per_ladder": {"run 8": ladder_srcc(rows, q8), "run 9": ladder_srcc(rows, q9)}}
        s = out["seeds"][weights.stem]
        print(f"[refit] {weights.stem}: rung order {s['run 8']['qp_srcc']:.3f} -> {s['run 9']['qp_srcc']:.3f}, "
              f"VMAF {s['run 8']['vmaf_srcc']:.3f} -> {s['run 9']['vmaf_srcc']:.3f}", flush=True)
    mean = lambda run, m: float(np.mean([s[run][m] for s in out["seeds"].values()]))
    d_qp, d_vmaf = mean("run 9", "qp_srcc") - mean("run 8", "qp_srcc"), mean("run 9", "vmaf_srcc") - mean("run 8", "vmaf_srcc")
    out["mean_change"] = {"qp_srcc": d_qp, "vmaf_srcc": d_vmaf}
    out["verdict"] = "run 9" if d_qp > 0 and d_vmaf >= -MAX_VMAF_DROP else "run 8"
    write_report(report_path(blend).stem, out, markdown)
    return out


DEV_SETS = ("fresh", "fresh2", "fresh3")  # scored once each, so development data now
ACROSS = (0.0, 0.25, 1.0, 4.0)  # run 10's candidates: the weight of the level pairs in the rank fit
DEV_FOLDS = 7


def summarise(rows, qualities: dict, reference: str, tag: str) -> dict:
    """Each method's point estimates, CIs, difference to `reference` and per-ladder rung order; printed after `tag`."""
    results = bootstrap(rows, qualities, reference)
    print(f"{tag}: " + ", ".join(f"{name} {results[name]['qp_srcc']:.3f} / {results[name]['vmaf_srcc']:.3f}"
                                         for name in qualities), flush=True)
    keys = ("qp_srcc", "vmaf_srcc", "qp_srcc_ci", "vmaf_srcc_ci", "reference_minus_this_qp_ci", "reference_minus_this_vmaf_ci")
    return {name: {k: results[name][k] for k in keys} | {"per_ladder": ladder_srcc(rows, q)} for name, q in qualities.items()}


def set_rows(set_names=DEV_SETS) -> tuple[list[dict], list[str]]:
    """The encodes of scored fresh sets, in order, and the set each came from."""
    rows, sets = [], []
    for set_name in set_names:
        part = fresh.build_all(set_name)
        rows, sets = rows + part, sets + [set_name] * len(part)
    return rows, sets


def set_features(weights: Path, rows: list[dict], sets: list[str]) -> np.ndarray:
    """`rows`' segment features through `weights`' networks, cached per set (fresh_features)."""
    names = list(dict.fromkeys(sets))
    return np.vstack([fresh_features(weights, [r for r, s in zip(rows, sets) if s == name], name) for name in names])


def fit_joint(train, oof, rows, X, across: float) -> Pooling:
    """Run 10's pooling: one rank fit on intensities + statistics (no blend) over the rung pairs and, weighted by
    `across`, the level pairs across sources (train.fit_pooling_rank)."""
    both = train + rows
    return fit_pooling_rank(np.vstack([oof, X]), both, np.array([r["vmaf"] for r in both], np.float64), across=across)


def dev_joint() -> dict:
    """Run 10's evidence: every fresh source of the three scored sets is scored by poolings fitted without its fold
    (7 folds of 4 sources; the training sources are in every fit), for each `ACROSS` and seed, beside run 8's pooling
    on the same encodes."""
    rows, sets = set_rows()
    sources = sorted({r["source"] for r in rows})
    folds = [sources[k::DEV_FOLDS] for k in range(DEV_FOLDS)]
    out = {"rule": JOINT_RULE, "sets": list(DEV_SETS), "folds": folds, "seeds": {}}
    for weights in seed_weights():
        train, oof, meta = training_set(weights)
        X = set_features(weights, rows, sets)
        qualities = {"run 8": Pooling(**meta["pooling"]).qualities(X)}
        for across in ACROSS:
            q = np.zeros(len(rows))
            for held in folds:
                keep = [i for i, r in enumerate(rows) if r["source"] not in held]
                idx = [i for i, r in enumerate(rows) if r["source"] in held]
                q[idx] = fit_joint(train, oof, [rows[i] for i in keep], X[keep], across).qualities(X[idx])
            qualities[f"across {across}"] = q
        out["seeds"][weights.stem] = summarise(rows, qualities, "run 8", f"[refit joint] {weights.stem}")
    anchors = {"scikit-image blur_effect": "blur_effect", "ffmpeg blurdetect": "blurdetect", "ffmpeg blockdetect": "blockdetect"}
    reference = bootstrap(rows, {name: -np.nan_to_num(np.array([r[key] for r in rows], np.float64), nan=0.0, posinf=0.0, neginf=0.0)
                                 for name, key in anchors.items()}, "ffmpeg blurdetect")
    out["baselines"] = {name: {k: reference[name][k] for k in ("qp_srcc", "vmaf_srcc")} for name in anchors}
    mean = lambda run, m: float(np.mean([s[run][m] for s in out["seeds"].values()]))
    chosen = max(ACROSS, key=lambda a: mean(f"across {a}", "qp_srcc") + mean(f"across {a}", "vmaf_srcc"))
    d_qp = mean(f"across {chosen}", "qp_srcc") - mean("run 8", "qp_srcc")
    d_vmaf = mean(f"across {chosen}", "vmaf_srcc") - mean("run 8", "vmaf_srcc")
    out |= {"chosen_across": chosen, "mean_change": {"qp_srcc": d_qp, "vmaf_srcc": d_vmaf},
            "verdict": "run 10" if d_qp > 0 and d_vmaf >= -MAX_VMAF_DROP else "run 8"}
    write_report("refit_joint_dev", out, joint_markdown)
    return out


def joint_apply() -> None:
    """Run 10 adopted (report/refit_joint_dev.json): each seed's pooling refitted with the chosen `across` on all of its
    development data, written into its weights' metadata for the saliency it serves; run 8's pooling is kept beside it."""
    chosen = json.loads((REPORT_DIR / "refit_joint_dev.json").read_text())
    if chosen["verdict"] != "run 10":
        raise SystemExit("refit_joint_dev.json kept run 8: nothing to apply")
    rows, sets = set_rows()
    for weights in seed_weights():
        train, oof, meta = training_set(weights)
        pooling = asdict(fit_joint(train, oof, rows, set_features(weights, rows, sets), chosen["chosen_across"]))
        fit = meta["pooling_fit"]
        fit["run10"] = {"across": chosen["chosen_across"], "run8_pooling": meta["pooling"], "report": "report/refit_joint_dev.md",
                        "fitted_on": sorted({r["source"] for r in train + rows})}
        fit["method"] = "rank fit on intensities + statistics over the training sources and the scored fresh sets (run 10)"
        meta["pooling"] = fit["by_saliency"][meta["saliency"]]["pooling"] = pooling
        weights.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        print(f"[refit joint] {weights.stem}: run 10's pooling written", flush=True)


LEVEL_SETS = ("fresh", "fresh2", "fresh3", "fresh4", "fresh5")  # all five scored once: development data for run 11
LEVEL_SHARES = (0.0, 0.25, 0.5, 0.75)  # run 11's candidates: the level fit's share of the pooling (0: run 10's fit)
LEVEL_FOLDS = 10
MIN_VMAF_GAIN = 0.02
MAX_ORDER_DROP = 0.01
LEVEL_RULE = (f"the share with the highest seeds' mean SRCC with VMAF among those whose mean rung-order SRCC is within "
              f"{MAX_ORDER_DROP} of share 0's is chosen; it is served (run 11) if its mean SRCC with VMAF beats share 0's by "
              f">= {MIN_VMAF_GAIN}, else share 0 (run 10's fit on more data) is")


def fit_level(train, oof, rows, X, share: float) -> Pooling:
    """Run 11's pooling: run 10's rank fit (rung order within a source) mixed with `share` of the least-squares fit to
    VMAF (the level across sources), both over the training sources' out-of-fold features and the scored sets'."""
    both, features = train + rows, np.vstack([oof, X])
    vmaf = np.array([r["vmaf"] for r in both], np.float64)
    rank = fit_pooling_rank(features, both, vmaf)
    return rank if share == 0 else mixed(rank, fit_pooling_level(features, vmaf), share)


def source_folds(rows, k: int = LEVEL_FOLDS) -> tuple[list[list[str]], list[tuple[list[int], list[int]]]]:
    """`k` folds of `rows`' sources (every k-th in sorted order) and, per fold, the indices of the rows kept to fit and
    of the rows held out."""
    sources = sorted({r["source"] for r in rows})
    folds = [sources[j::k] for j in range(k)]
    return folds, [([i for i, r in enumerate(rows) if r["source"] not in held], [i for i, r in enumerate(rows) if r["source"] in held])
                   for held in folds]


def nss_svr_out_of_fold(rows, fold_idx) -> tuple[np.ndarray, np.ndarray]:
    """BRISQUE NSS + SVR's quality of every row, fitted for each (keep, held) of `fold_idx` on the 20 earlier sources
    and the kept rows (as the fresh scorings fit it), and the rows' 36 BRISQUE features."""
    earlier = D.build_all()
    nss_rows, nss_earlier = np.stack([nss_features(r) for r in rows]), np.stack([nss_features(r) for r in earlier])
    svr = np.zeros(len(rows))
    for keep, idx in fold_idx:
        fit_rows = earlier + [rows[i] for i in keep]
        svr[idx] = fit_nss_regressor(np.vstack([nss_earlier, nss_rows[keep]]), np.array([r["vmaf"] for r in fit_rows], np.float64),
                                     [r["source"] for r in fit_rows])(nss_rows[idx])
    return svr, nss_rows


def dev_level() -> dict:
    """Run 11's evidence: the 59 sources of the five scored sets in 10 folds, each scored by poolings fitted without
    its fold (the training sources in every fit), for each share and seed; BRISQUE NSS + SVR fitted on the same folds
    beside them, the comparison the fourth and fifth sets left undecided."""
    rows, sets = set_rows(LEVEL_SETS)
    folds, fold_idx = source_folds(rows)
    out = {"rule": LEVEL_RULE, "sets": list(LEVEL_SETS), "folds": folds, "seeds": {}}
    svr, _ = nss_svr_out_of_fold(rows, fold_idx)
    for weights in seed_weights():
        train, oof, meta = training_set(weights)
        X = set_features(weights, rows, sets)
        qualities = {}
        for share in LEVEL_SHARES:
            q = np.zeros(len(rows))
            for keep, idx in fold_idx:
                q[idx] = fit_level(train, oof, [rows[i] for i in keep], X[keep], share).qualities(X[idx])
            qualities[f"share {share}"] = q
        qualities["BRISQUE NSS + SVR to VMAF"] = svr
        out["seeds"][weights.stem] = summarise(rows, qualities, "BRISQUE NSS + SVR to VMAF", f"[refit level] {weights.stem}")
    mean = lambda name, m: float(np.mean([s[name][m] for s in out["seeds"].values()]))
    base = "share 0.0"
    eligible = [a for a in LEVEL_SHARES if mean(f"share {a}", "qp_srcc") >= mean(base, "qp_srcc") - MAX_ORDER_DROP]
    chosen = max(eligible, key=lambda a: mean(f"share {a}", "vmaf_srcc"))
    gain = mean(f"share {chosen}", "vmaf_srcc") - mean(base, "vmaf_srcc")
    out |= {"chosen_share": chosen, "vmaf_gain_over_share_0": gain,
            "served_share": chosen if gain >= MIN_VMAF_GAIN else 0.0}
    write_report("refit_level_dev", out, level_markdown)
    return out


def level_apply() -> None:
    """Run 11 (report/refit_level_dev.json's served share): each seed's pooling refitted on all of its development data
    (the training sources and the five scored sets) and written into its weights' metadata; run 10's kept beside it."""
    chosen = json.loads((REPORT_DIR / "refit_level_dev.json").read_text())
    rows, sets = set_rows(LEVEL_SETS)
    for weights in seed_weights():
        train, oof, meta = training_set(weights)
        X = set_features(weights, rows, sets)
        pooling = asdict(fit_level(train, oof, rows, X, chosen["served_share"]))
        fit = meta["pooling_fit"]
        fit["run11"] = {"level_share": chosen["served_share"], "run10_pooling": meta["pooling"], "report": "report/refit_level_dev.md",
                        "fitted_on": sorted({r["source"] for r in train + rows})}
        fit["method"] = ("run 10's rank fit mixed with a least-squares fit to VMAF (share in run11), over the training sources "
                         "and the five scored fresh sets (run 11)")
        meta["pooling"] = fit["by_saliency"][meta["saliency"]]["pooling"] = pooling
        weights.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        print(f"[refit level] {weights.stem}: run 11's pooling written (level share {chosen['served_share']})", flush=True)


def level_markdown(out: dict) -> str:
    names = list(next(iter(out["seeds"].values())))
    mean = lambda name, m: np.mean([s[name][m] for s in out["seeds"].values()])
    lines = ["# Run 11's pooling (run 10's rank fit mixed with a level fit to VMAF), on the five scored fresh sets", "",
             f"{len(out['folds'])} folds over {sum(map(len, out['folds']))} sources, each scored by poolings fitted without it "
             f"(the training sources in every fit); BRISQUE NSS + SVR fitted on the same folds. Rule: {out['rule']}. Chosen "
             f"share: **{out['chosen_share']}** (SRCC with VMAF {out['vmaf_gain_over_share_0']:+.3f} against share 0); served: "
             f"**{out['served_share']}**.", "",
             "| pooling | " + " | ".join(f"{seed} rung order / VMAF SRCC" for seed in out["seeds"]) +
             " | mean rung order | mean VMAF SRCC | seed 0 minus SVR, VMAF SRCC (95% CI) |", "|---|" + "---|" * (len(out["seeds"]) + 3)]
    first = next(iter(out["seeds"].values()))
    for name in names:
        cells = [f"{s[name]['qp_srcc']:.3f} / {s[name]['vmaf_srcc']:.3f}" for s in out["seeds"].values()]
        lo, hi = first[name]["reference_minus_this_vmaf_ci"]  # SVR minus this
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean(name, 'qp_srcc'):.3f} | {mean(name, 'vmaf_srcc'):.3f} | "
                     f"[{-hi:+.3f}, {-lo:+.3f}] |")
    return "\n".join(lines) + "\n"


EXPLORE_SETS = LEVEL_SETS + ("fresh6",)  # all six scored: what follows is exploration, not a test
EXPLORE_SHARES = (0.25, 0.5, 0.75)


def explore_nss() -> dict:
    """After run 11 lost the level comparison on the sixth set: which level model could beat BRISQUE NSS + SVR on SRCC
    with VMAF and keep rung order, with the 36 BRISQUE features beside the pooling's 14. The 103 sources of the six
    scored sets in 10 folds (training sources in every fit), 3 seeds: run 11's rank fit, a least-squares level fit
    (fit_pooling_level) and an RBF SVR on all 50 features, each level fit mixed into the rank fit at EXPLORE_SHARES,
    beside BRISQUE NSS + SVR on the same folds. Every set has been scored, so this only says what to pre-register next."""
    rows, sets = set_rows(EXPLORE_SETS)
    folds, fold_idx = source_folds(rows)
    vmaf_of = lambda rs: np.array([r["vmaf"] for r in rs], np.float64)
    linear = lambda p, A: 1.0 - (p.bias + A @ np.concatenate([p.weights, p.stat_weights]))  # unclipped quality
    out = {"sets": list(EXPLORE_SETS), "folds": folds, "seeds": {}}
    svr, nss_rows = nss_svr_out_of_fold(rows, fold_idx)
    train = rows_by_split(D.build_all())["train"]  # the pooling's training sources (every seed's), not the 20 earlier
    nss_train = np.stack([nss_features(r) for r in train])
    for weights in seed_weights():
        _, oof, _ = training_set(weights)
        X = set_features(weights, rows, sets)
        F, X50 = np.vstack([oof, X]), np.hstack([X, nss_rows])
        F50 = np.hstack([F, np.vstack([nss_train, nss_rows])])
        q = {name: np.zeros(len(rows)) for name in ("rank fit (run 11)", "level fit, 50 features", "SVR, 50 features")}
        for keep, idx in fold_idx:
            fit = list(range(len(train))) + [len(train) + i for i in keep]
            fit_rows = [(train + rows)[i] for i in fit]
            q["rank fit (run 11)"][idx] = linear(fit_pooling_rank(F[fit], fit_rows, vmaf_of(fit_rows)), X[idx])
            q["level fit, 50 features"][idx] = linear(fit_pooling_level(F50[fit], vmaf_of(fit_rows)), X50[idx])
            q["SVR, 50 features"][idx] = fit_nss_regressor(F50[fit], vmaf_of(fit_rows), [r["source"] for r in fit_rows])(X50[idx])
        for level in ("level fit, 50 features", "SVR, 50 features"):
            for share in EXPLORE_SHARES:
                q[f"rank fit + {share} x {level}"] = (1 - share) * q["rank fit (run 11)"] + share * q[level]
        q["BRISQUE NSS + SVR to VMAF"] = svr
        out["seeds"][weights.stem] = summarise(rows, q, "BRISQUE NSS + SVR to VMAF", f"[refit explore] {weights.stem}")
    write_report("refit_nss_explore", out, explore_markdown)
    return out


def explore_markdown(out: dict, title: str = "Exploration after the sixth set: level models with the BRISQUE features beside "
                                                 "the pooling's (not a test)") -> str:
    names = list(next(iter(out["seeds"].values())))
    seeds = list(out["seeds"].values())
    mean = lambda name, m: np.mean([s[name][m] for s in seeds])
    lines = [f"# {title}", "",
             *([f"Rule: {out['rule']}. Verdict: **{out['verdict']}**.", ""] if "verdict" in out else []),
             f"{len(out['folds'])} folds over {sum(map(len, out['folds']))} sources of the six scored sets, each scored by fits "
             "without it (training sources in every fit); 3 seeds (the networks' features differ by seed, BRISQUE + SVR does not).", "",
             "| method | mean rung order | mean SRCC with VMAF | seed 0 minus BRISQUE + SVR, VMAF (95% CI) | seed 0 minus BRISQUE + SVR, rung order (95% CI) |",
             "|---|---|---|---|---|"]
    for name in names:
        v, r = seeds[0][name]["reference_minus_this_vmaf_ci"], seeds[0][name]["reference_minus_this_qp_ci"]
        lines.append(f"| {name} | {mean(name, 'qp_srcc'):.3f} | {mean(name, 'vmaf_srcc'):.3f} | [{-v[1]:+.3f}, {-v[0]:+.3f}] | "
                     f"[{-r[1]:+.3f}, {-r[0]:+.3f}] |")
    return "\n".join(lines) + "\n"


NSS_SHARE = 0.5  # run 12's level share, fixed by the exploration above (no further choice)
MAX_ORDER_DROP_NSS = 0.015
NSS_RULE = (f"run 12 (rank fit on the 14 features mixed with {NSS_SHARE} x a least-squares level fit on them and BRISQUE's 36) "
            f"is served if, out of fold over the six scored sets, its seeds' mean SRCC with VMAF is above BRISQUE NSS + SVR's in "
            f"the same folds and its mean rung-order SRCC is within {MAX_ORDER_DROP_NSS} of the rank fit's; else run 11 stays")


def fit_run12(features: np.ndarray, nss: np.ndarray, rows) -> Pooling:
    """Run 12's pooling over `rows` (their 14 segment features and 36 BRISQUE features): run 11's rank fit on the 14,
    mixed with NSS_SHARE of the level fit on all 50: one linear pooling that weighs BRISQUE's features (Analyzer computes
    them when a pooling does)."""
    vmaf = np.array([r["vmaf"] for r in rows], np.float64)
    return mixed(fit_pooling_rank(features, rows, vmaf), fit_pooling_level(np.hstack([features, nss]), vmaf), NSS_SHARE)


def run12_data(weights: Path, rows, sets, nss_rows):
    """The training sources' and the scored sets' rows, 14 features (out of fold for the training sources) and 36
    BRISQUE features, for `weights`' seed."""
    train, oof, meta = training_set(weights)
    nss_train = np.stack([nss_features(r) for r in train])
    return train + rows, np.vstack([oof, set_features(weights, rows, sets)]), np.vstack([nss_train, nss_rows]), meta


def dev_nss() -> dict:
    """Run 12's check (NSS_RULE), after the exploration chose its form: the 103 sources of the six scored sets in the
    exploration's 10 folds, each scored by run 11's rank fit and by run 12's pooling fitted without it (the training
    sources in every fit), as served (Pooling.qualities on the Analyzer's features), beside BRISQUE NSS + SVR."""
    rows, sets = set_rows(EXPLORE_SETS)
    folds, fold_idx = source_folds(rows)
    out = {"rule": NSS_RULE, "sets": list(EXPLORE_SETS), "folds": folds, "seeds": {}}
    svr, nss_rows = nss_svr_out_of_fold(rows, fold_idx)
    for weights in seed_weights():
        both, F, N, _ = run12_data(weights, rows, sets, nss_rows)
        n_train = len(both) - len(rows)
        q = {name: np.zeros(len(rows)) for name in ("rank fit (run 11)", "run 12")}
        for keep, idx in fold_idx:
            fit = list(range(n_train)) + [n_train + i for i in keep]
            fit_rows, held = [both[i] for i in fit], [n_train + i for i in idx]
            q["rank fit (run 11)"][idx] = fit_pooling_rank(F[fit], fit_rows, np.array([r["vmaf"] for r in fit_rows])).qualities(F[held])
            q["run 12"][idx] = fit_run12(F[fit], N[fit], fit_rows).qualities(np.hstack([F[held], N[held]]))
        q["BRISQUE NSS + SVR to VMAF"] = svr
        out["seeds"][weights.stem] = summarise(rows, q, "BRISQUE NSS + SVR to VMAF", f"[refit nss] {weights.stem}")
    mean = lambda name, m: float(np.mean([s[name][m] for s in out["seeds"].values()]))
    passed = (mean("run 12", "vmaf_srcc") > mean("BRISQUE NSS + SVR to VMAF", "vmaf_srcc")
              and mean("run 12", "qp_srcc") >= mean("rank fit (run 11)", "qp_srcc") - MAX_ORDER_DROP_NSS)
    out["verdict"] = "run 12 served" if passed else "run 11 stays"
    write_report("refit_nss_dev", out, nss_markdown)
    return out


def nss_markdown(out: dict) -> str:
    return explore_markdown(out, "Run 12's check: BRISQUE's features in the pooling, out of fold over the six scored sets")


def store_pooling(weights: Path, meta: dict, run: str, pooling: dict, facts: dict, method: str, report: str, rows) -> None:
    """`pooling` served from `weights` from now on: written into its metadata (the fit's method, and under `run` the
    facts, the report and the sources it was fitted on, with the pooling it replaces kept beside them)."""
    fit = meta["pooling_fit"]
    fit[run] = facts | {"replaced_pooling": meta["pooling"], "report": report, "fitted_on": sorted({r["source"] for r in rows})}
    fit["method"] = method
    meta["pooling"] = fit["by_saliency"][meta["saliency"]]["pooling"] = pooling
    weights.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(f"[refit] {weights.stem}: {run}'s pooling written", flush=True)


def nss_apply() -> None:
    """Run 12, if report/refit_nss_dev.json served it: each seed's pooling fitted on the training sources and the six
    scored sets, written into its weights' metadata; run 11's kept beside it."""
    if json.loads((REPORT_DIR / "refit_nss_dev.json").read_text())["verdict"] != "run 12 served":
        raise SystemExit("report/refit_nss_dev.json keeps run 11: nothing to apply")
    rows, sets = set_rows(EXPLORE_SETS)
    nss_rows = np.stack([nss_features(r) for r in rows])
    for weights in seed_weights():
        both, F, N, meta = run12_data(weights, rows, sets, nss_rows)
        store_pooling(weights, meta, "run12", asdict(fit_run12(F, N, both)), {"level_share": NSS_SHARE},
                      f"run 11's rank fit on intensities + statistics mixed with {NSS_SHARE} x a least-squares fit to VMAF "
                      "on those and BRISQUE's 36 features, over the training sources and the six scored fresh sets (run 12)",
                      "report/refit_nss_dev.md", both)


SETS_SEVEN = EXPLORE_SETS + ("fresh7",)  # all seven scored: exploration after run 12, not a test


def explore_by_set() -> dict:
    """After run 12 lost the level comparison on the seventh set although folds over sources had put it ahead: each of
    the seven scored sets held out in turn (a fresh set's situation: its construction unseen), every level model fitted
    on the training sources and the other six sets, beside BRISQUE NSS + SVR fitted on the 20 earlier sources and the
    other six; 3 seeds. Exploration only: every set has been scored."""
    rows, sets = set_rows(SETS_SEVEN)
    vmaf_of = lambda rs: np.array([r["vmaf"] for r in rs], np.float64)
    nss_rows = np.stack([nss_features(r) for r in rows])
    earlier = D.build_all()
    nss_earlier = np.stack([nss_features(r) for r in earlier])
    held_sets = {name: [i for i, s in enumerate(sets) if s == name] for name in SETS_SEVEN}
    svr = np.zeros(len(rows))
    for name, idx in held_sets.items():
        keep = [i for i, s in enumerate(sets) if s != name]
        fit_rows = earlier + [rows[i] for i in keep]
        svr[idx] = fit_nss_regressor(np.vstack([nss_earlier, nss_rows[keep]]), vmaf_of(fit_rows),
                                     [r["source"] for r in fit_rows])(nss_rows[idx])
    out = {"sets": list(SETS_SEVEN), "seeds": {}}
    for weights in seed_weights():
        both, F, N, _ = run12_data(weights, rows, sets, nss_rows)
        n_train = len(both) - len(rows)
        F50 = np.hstack([F, N])
        q = {name: np.zeros(len(rows)) for name in ("rank fit (run 11)", "run 12 (rank fit + 0.5 x level fit, one pooling)",
                                                    "level fit, 50 features", "SVR, 50 features")}
        for name, idx in held_sets.items():
            fit = list(range(n_train)) + [n_train + i for i, s in enumerate(sets) if s != name]
            fit_rows, held = [both[i] for i in fit], [n_train + i for i in idx]
            q["rank fit (run 11)"][idx] = fit_pooling_rank(F[fit], fit_rows, vmaf_of(fit_rows)).qualities(F[held])
            q["run 12 (rank fit + 0.5 x level fit, one pooling)"][idx] = fit_run12(F[fit], N[fit], fit_rows).qualities(F50[held])
            q["level fit, 50 features"][idx] = fit_pooling_level(F50[fit], vmaf_of(fit_rows)).qualities(F50[held])
            q["SVR, 50 features"][idx] = fit_nss_regressor(F50[fit], vmaf_of(fit_rows), [r["source"] for r in fit_rows])(F50[held])
        for level in ("level fit, 50 features", "SVR, 50 features"):
            for share in (0.5, 0.75):  # mixes of the clipped qualities: monotone, as the rank order needs
                q[f"rank fit + {share} x {level}"] = (1 - share) * q["rank fit (run 11)"] + share * q[level]
        q["BRISQUE NSS + SVR to VMAF"] = svr
        out["seeds"][weights.stem] = {name: summarise([rows[i] for i in idx], {m: v[idx] for m, v in q.items()},
                                                      "BRISQUE NSS + SVR to VMAF", f"[refit by set] {weights.stem} {name}")
                                      for name, idx in held_sets.items()}
    write_report("refit_by_set_explore", out, by_set_markdown)
    return out


def by_set_markdown(out: dict) -> str:
    seeds = list(out["seeds"].values())
    names = list(seeds[0][out["sets"][0]])
    ref = "BRISQUE NSS + SVR to VMAF"
    mean = lambda name, m: np.mean([s[held][name][m] for s in seeds for held in out["sets"]])
    beats = lambda name: sum(np.mean([s[held][name]["vmaf_srcc"] for s in seeds]) > seeds[0][held][ref]["vmaf_srcc"]
                             for held in out["sets"])
    lines = ["# Exploration after run 12: each scored set held out in turn (not a test)", "",
             f"{len(out['sets'])} sets, each scored by fits on the training sources and the other sets; 3 seeds. Per held-out set, "
             "the seeds' mean SRCC with VMAF and rung order within that set, as a fresh scoring measures them.", "",
             "| method | " + " | ".join(f"{h}: rung order / VMAF" for h in out["sets"]) + " | mean rung order | mean VMAF | sets ahead of SVR on VMAF |",
             "|---|" + "---|" * (len(out["sets"]) + 3)]
    for name in names:
        cells = [f"{np.mean([s[h][name]['qp_srcc'] for s in seeds]):.3f} / {np.mean([s[h][name]['vmaf_srcc'] for s in seeds]):.3f}"
                 for h in out["sets"]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean(name, 'qp_srcc'):.3f} | {mean(name, 'vmaf_srcc'):.3f} | "
                     f"{beats(name) if name != ref else '–'} |")
    return "\n".join(lines) + "\n"


SVR_SHARE = 0.75  # run 13's share of the kernel level fit, read off the by-set table


def fit_run13(features: np.ndarray, nss: np.ndarray, rows) -> Pooling:
    """Run 13's pooling over `rows`: run 11's rank fit on the 14 features, mixed with SVR_SHARE of an RBF SVR to VMAF on
    the 14 and BRISQUE's 36 (the baseline's procedure, crossval.fit_level_regressor), kept as numbers (KernelLevel)."""
    vmaf = np.array([r["vmaf"] for r in rows], np.float64)
    level = fit_level_regressor(np.hstack([features, nss]), vmaf, [r["source"] for r in rows])
    return replace(fit_pooling_rank(features, rows, vmaf), level=KernelLevel.from_sklearn(level), level_share=SVR_SHARE)


def svr_apply() -> None:
    """Run 13 (pre-registered in models/video/README.md): each seed's pooling fitted on the training sources and the
    seven scored sets, written into its weights' metadata; run 12's kept beside it."""
    rows, sets = set_rows(SETS_SEVEN)
    nss_rows = np.stack([nss_features(r) for r in rows])
    for weights in seed_weights():
        both, F, N, meta = run12_data(weights, rows, sets, nss_rows)
        pooling = asdict(fit_run13(F, N, both))
        # 6 decimals of standardised features and coefficients (quality moves by 2.3e-6 at most on the fit rows): ~7 MB, not 11
        pooling["level"] = {k: np.round(v, 6).tolist() if isinstance(v, list) else v for k, v in pooling["level"].items()}
        store_pooling(weights, meta, "run13", pooling, {"level_share": SVR_SHARE},
                      f"run 11's rank fit on intensities + statistics mixed with {SVR_SHARE} x an RBF SVR to VMAF on those "
                      "and BRISQUE's 36 features, over the training sources and the seven scored fresh sets (run 13)",
                      "report/refit_by_set_explore.md", both)


JOINT_RULE = (f"the across with the highest seeds' mean of rung-order SRCC + SRCC with VMAF is chosen; run 10 replaces run 8 "
              f"if, over the three seeds, its mean rung-order SRCC rises and its mean SRCC with VMAF falls by <= {MAX_VMAF_DROP}")


def joint_markdown(out: dict) -> str:
    names = list(next(iter(out["seeds"].values())))
    lines = ["# Run 10's pooling (rung pairs + level pairs across sources) against run 8's, on the three scored fresh sets", "",
             f"Seven folds of four sources, each scored by poolings fitted without it. Rule: {out['rule']}. Chosen across: "
             f"**{out['chosen_across']}**; verdict: **{out['verdict']}** (mean change against run 8: rung order "
             f"{out['mean_change']['qp_srcc']:+.3f}, SRCC with VMAF {out['mean_change']['vmaf_srcc']:+.3f}).", "",
             "| pooling | " + " | ".join(f"{seed} rung order / VMAF SRCC" for seed in out["seeds"]) + " | mean rung order | mean VMAF SRCC |",
             "|---|" + "---|" * (len(out["seeds"]) + 2)]
    for name in names:
        cells = [f"{s[name]['qp_srcc']:.3f} / {s[name]['vmaf_srcc']:.3f}" for s in out["seeds"].values()]
        mq = np.mean([s[name]["qp_srcc"] for s in out["seeds"].values()])
        mv = np.mean([s[name]["vmaf_srcc"] for s in out["seeds"].values()])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mq:.3f} | {mv:.3f} |")
    lines += ["", "Network-free baselines on the same encodes (no fit):", ""]
    lines += [f"- {name}: rung order {b['qp_srcc']:.3f}, SRCC with VMAF {b['vmaf_srcc']:.3f}" for name, b in out["baselines"].items()]
    return "\n".join(lines) + "\n"


def markdown(out: dict) -> str:
    lad = lambda d: ", ".join(f"{k} {v:.3f}" for k, v in d.items() if k != "mean")
    blend = "run 8's blend (0.5)" if out.get("blend") is None else f"blend {out['blend']}"
    lines = [f"# Run 9's pooling ({blend}) against run 8's on the first fresh set, leave one source out", "",
             f"Rule: {out['rule']}. Verdict: **{out['verdict']}** (mean change: rung order "
             f"{out['mean_change']['qp_srcc']:+.3f}, SRCC with VMAF {out['mean_change']['vmaf_srcc']:+.3f}).", "",
             "| seed | run 8 rung order | run 9 rung order | run 9 − run 8 (95% CI) | run 8 VMAF SRCC | run 9 VMAF SRCC | run 9 − run 8 (95% CI) |",
             "|---|---|---|---|---|---|---|"]
    for name, s in out["seeds"].items():
        ci = s["run 9 minus run 8 CI"]
        lines.append(f"| {name} | {s['run 8']['qp_srcc']:.3f} | {s['run 9']['qp_srcc']:.3f} | [{ci['qp'][0]:+.3f}, {ci['qp'][1]:+.3f}] | "
                     f"{s['run 8']['vmaf_srcc']:.3f} | {s['run 9']['vmaf_srcc']:.3f} | [{ci['vmaf'][0]:+.3f}, {ci['vmaf'][1]:+.3f}] |")
    lines += ["", "Per ladder (rung-order SRCC):", ""]
    for name, s in out["seeds"].items():
        lines += [f"- {name}: run 8 {lad(s['per_ladder']['run 8'])}; run 9 {lad(s['per_ladder']['run 9'])}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    commands = {"joint-dev": dev_joint, "joint-apply": joint_apply, "level-dev": dev_level, "level-apply": level_apply,
                "nss-explore": explore_nss, "nss-dev": dev_nss, "nss-apply": nss_apply, "by-set-explore": explore_by_set,
                "svr-apply": svr_apply}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["dev", *commands])
    p.add_argument("--blend", type=float, default=None, help="dev: the candidate's blend (default: each seed's own, 0.5)")
    a = p.parse_args(argv)
    if a.command == "dev":
        dev(a.blend)
    else:
        commands[a.command]()


if __name__ == "__main__":
    main()
