"""The fresh test set scored once: the served configuration's seeds beside the baselines, with bootstrap CIs.

Called by `python -m models.video.fresh score [--set fresh2] --frozen-commit SHA` (which refuses a second scoring). The
baselines that need a fit (BRISQUE + SVR, the detail statistics alone) are fitted on every encode of the 20 earlier
sources, the data the served model was trained on, by the procedures cross-validation compared (crossval.py).
"""
import json
from pathlib import Path

import numpy as np

from . import data as D
from .crossval import ANCHORS, bootstrap, fit_nss_regressor, nss_features, rank_fitted
from .train import WEIGHTS, encode_stats, ladder_srcc, load, segment_features, torch_fns

SEEDS_GLOB = "sstam_seed*.safetensors"  # the served configuration trained with other seeds, beside the served weights


def seed_weights() -> list[Path]:
    return [WEIGHTS] + sorted(WEIGHTS.parent.glob(SEEDS_GLOB))


def sstam_quality(weights: Path, rows) -> np.ndarray:
    cnn, tsf, pooling, meta = load(weights)
    X = segment_features(torch_fns(cnn, tsf), rows, meta["saliency"], pooling)
    return pooling.qualities(X)


def score_fresh(fresh_rows: list[dict], commit: str, report: Path, earlier: list[dict] | None = None) -> dict:
    """`earlier`: the encodes the fitted baselines are fitted on (default: the 20 earlier sources'), the same data the
    served pooling was fitted on."""
    import torch

    torch.set_num_threads(1)
    earlier = D.build_all() if earlier is None else earlier
    qualities = {}
    for i, weights in enumerate(seed_weights()):
        name = "SSTAM served (seed 0)" if i == 0 else f"SSTAM, served configuration, {weights.stem.split('_')[-1].replace('seed', 'seed ')}"
        qualities[name] = sstam_quality(weights, fresh_rows)
        print(f"[fresh] scored {weights.name}", flush=True)
    vmaf = np.array([r["vmaf"] for r in earlier], np.float64)
    nss_earlier = np.stack([nss_features(r) for r in earlier])
    nss_fresh = np.stack([nss_features(r) for r in fresh_rows])
    qualities["BRISQUE NSS + SVR to VMAF"] = fit_nss_regressor(nss_earlier, vmaf, [r["source"] for r in earlier])(nss_fresh)
    qualities["BRISQUE NSS, rank fit"] = rank_fitted(nss_earlier, earlier, vmaf, 0)(nss_fresh)
    stats = lambda rows: np.stack([encode_stats(r) for r in rows])  # network-free
    qualities["detail statistics alone, rank fit"] = rank_fitted(stats(earlier), earlier, vmaf, 0)(stats(fresh_rows))
    for anchor in ANCHORS:
        qualities[f"ffmpeg {anchor}" if anchor != "blur_effect" else "scikit-image blur_effect"] = -np.nan_to_num(
            np.array([r[anchor] for r in fresh_rows], np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    results = bootstrap(fresh_rows, qualities, "SSTAM served (seed 0)")
    seeds = [k for k in qualities if k.startswith("SSTAM")]
    spread = {m: (float(np.mean([results[k][m] for k in seeds])), float(np.std([results[k][m] for k in seeds])))
              for m in ("qp_srcc", "vmaf_srcc")}
    per_ladder = {name: ladder_srcc(fresh_rows, q) for name, q in qualities.items()}
    out = {"frozen_commit": commit, "sources": sorted({r["source"] for r in fresh_rows}), "encodes": len(fresh_rows),
           "baselines_fitted_on": sorted({r["source"] for r in earlier}),
           "methods": results, "per_ladder": per_ladder, "seeds_mean_std": spread,
           "quality": {name: np.round(q, 5).tolist() for name, q in qualities.items()},
           "rows": [{k: r[k] for k in ("source", "encode", "ladder", "q", "vmaf")} for r in fresh_rows]}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(out, indent=1))
    from .crossval import table

    md = [f"# Fresh test set {fresh_rows[0]['split']}, scored once (model frozen at {commit})", "",
          f"{len(out['sources'])} sources never used before ({', '.join(out['sources'])}), {len(fresh_rows)} encodes, "
          "ladders of 6 rungs: x264 CRF and QP, x265 CRF, VP9 CRF, MPEG-2 qscale. CIs resample sources (1000 draws); "
          "differences are the served model minus the method. Fitted baselines fitted on "
          f"{len(out['baselines_fitted_on'])} sources' encodes.", "", *table(results, "SSTAM served (seed 0)"), "",
          f"Served configuration over {len(seeds)} seeds: rung-order SRCC {spread['qp_srcc'][0]:.3f} ± {spread['qp_srcc'][1]:.3f}, "
          f"SRCC with VMAF {spread['vmaf_srcc'][0]:.3f} ± {spread['vmaf_srcc'][1]:.3f}.", "",
          "Per ladder (mean within-source SRCC with the rung order):", "",
          "| method | " + " | ".join(k for k in per_ladder[seeds[0]] if k != "mean") + " |",
          "|---|" + "---|" * (len(per_ladder[seeds[0]]) - 1)]
    md += [f"| {name} | " + " | ".join(f"{v:.3f}" for k, v in lad.items() if k != "mean") + " |" for name, lad in per_ladder.items()]
    report.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return out


def rescore(fresh_rows: list[dict], scored: Path, out: Path) -> dict:
    """The current served configuration on a set already scored, beside the baselines' scores as that scoring recorded
    them: a look after the fact (the set chose what is being measured, or was seen before it), never a test result."""
    import torch

    torch.set_num_threads(1)
    before = json.loads(scored.read_text())
    qualities = {f"now: {w.stem}": sstam_quality(w, fresh_rows) for w in seed_weights()}
    qualities.update({name: np.array(q) for name, q in before["quality"].items()})
    results = bootstrap(fresh_rows, qualities, f"now: {WEIGHTS.stem}")
    for o in results.values():
        for key in [k for k in o if k.endswith("_ci")]:
            o[key] = [round(x, 3) for x in o[key]]
    out.write_text(json.dumps({"after_the_fact": True, "scored_at": before["frozen_commit"], "methods": results}, indent=1))
    for name, o in results.items():
        print(f"{name:40} rung order {o['qp_srcc']:.3f}  VMAF {o['vmaf_srcc']:.3f}  "
              f"now minus this {o['reference_minus_this_qp_ci']} / {o['reference_minus_this_vmaf_ci']}")
    return results


def pooled(reports: list[Path], out: Path) -> dict:
    """Sets scored once against the same frozen model, judged together: each set's stored scores (no model runs),
    the bootstrap over the union of their sources. The sets must share their methods and their baselines' fit."""
    scored = [json.loads(r.read_text()) for r in reports]
    fits = {tuple(s["baselines_fitted_on"]) for s in scored}
    if len(fits) != 1 or len({frozenset(s["quality"]) for s in scored}) != 1:
        raise SystemExit("pooled sets must share their methods and the data their baselines were fitted on")
    rows = [row for s in scored for row in s["rows"]]
    qualities = {name: np.concatenate([np.array(s["quality"][name], np.float64) for s in scored]) for name in scored[0]["quality"]}
    reference = "SSTAM served (seed 0)"
    results = bootstrap(rows, qualities, reference)
    seeds = [k for k in qualities if k.startswith("SSTAM")]
    spread = {m: (float(np.mean([results[k][m] for k in seeds])), float(np.std([results[k][m] for k in seeds])))
              for m in ("qp_srcc", "vmaf_srcc")}
    result = {"sets": [r.name for r in reports], "frozen_commits": [s["frozen_commit"] for s in scored],
              "sources": sorted({r["source"] for r in rows}), "encodes": len(rows), "methods": results, "seeds_mean_std": spread}
    out.write_text(json.dumps(result, indent=1))
    from .crossval import table

    md = [f"# {' + '.join(r.stem for r in reports)}, pooled", "",
          f"{len(result['sources'])} sources, {len(rows)} encodes, each set scored once (frozen at "
          f"{', '.join(result['frozen_commits'])}); scores as stored by those runs. CIs resample the sources (1000 draws); "
          "differences are the served model minus the method.", "", *table(results, reference), "",
          f"Served configuration over {len(seeds)} seeds: rung-order SRCC {spread['qp_srcc'][0]:.3f} ± {spread['qp_srcc'][1]:.3f}, "
          f"SRCC with VMAF {spread['vmaf_srcc'][0]:.3f} ± {spread['vmaf_srcc'][1]:.3f}."]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result

