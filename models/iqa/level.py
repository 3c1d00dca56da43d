"""The NSS level the served score mixes with the network (models/iqa/serving.py, `mixed_score`), and the evidence for
the mix.

    python -m models.iqa.level dev    # report/level_dev.md: the mix against its parts on the 9 development pictures
    python -m models.iqa.level fit    # weights/nss_level.json: the SVR on all 24 pictures, kept as numbers
    python -m models.iqa.level fit --wide   # weights/nss_level_wide.json: run 2's, on retrain.py's 46 pictures
    python -m models.iqa.level fit --wide --run 3   # weights/nss_level_wide3.json: run 3's, on its 69

The level is the NSS baseline's own procedure (crossval.fit_nss: standardised BRISQUE features, RBF SVR, C / γ by
3-fold CV grouped by picture) fitted on the benchmark's 19 pictures and the first held-out set's 5 (scored once on
2026-12-04, so now development data), 24 pictures, 6,156 images. Not the JPEG quantisation table, although the
baseline that reads it is measured: in the benchmark only JPEG-distorted images are JPEG files, so there the table also
tells which distortion an image has, which real uploads (mostly JPEG files, of any content) do not.

``dev`` scores, on the 9 pictures the served network never trained on (the card's test split, 4, whose level is
fitted on the other 15; the first held-out set, 5, whose level is fitted on the 19), the network alone, the level
alone, and the mix at shares 0.25 / 0.5 / 0.75 for the networks of seeds 0-2: the numbers the served share
(IqaParams.nss_share, 0.5) was chosen from.
"""
import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from models.nss import KernelLevel

from . import crossval as CV
from . import holdout as H
from .data import SOURCES, SPLITS
from .serving import mixed_score

WEIGHTS = Path(__file__).resolve().parent / "weights"
LEVEL_PATH = WEIGHTS / "nss_level.json"  # run 1: the benchmark and the first held-out set
LEVEL_WIDE_PATH = WEIGHTS / "nss_level_wide.json"  # run 2: every picture run 2's network trains or validates on
LEVEL_WIDE3_PATH = WEIGHTS / "nss_level_wide3.json"  # run 3: the same for run 3
FITTED_ON = ("benchmark", "holdout")


def training_images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BRISQUE features, pseudo-MOS and picture id of every image of the benchmark and the first held-out set."""
    bench, hold = CV.all_images(), H.make_holdout("holdout")
    features = np.vstack([CV.nss_cache(bench), H.nss_features(hold, "holdout")])
    return features, np.concatenate([bench["score"], hold["score"]]), np.concatenate([bench["source"], hold["source"]])


def wide_training_images(run: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same for a retrain.py run: every tile of its training and validation pictures (run 2: 46, run 3: 69)."""
    from .baselines import nss_matrix
    from .retrain import wide_data

    parts = wide_data(run).values()
    return (nss_matrix(np.concatenate([p["image"] for p in parts])), np.concatenate([p["score"] for p in parts]),
            np.concatenate([p["source"] for p in parts]))


def fit(path: Path = LEVEL_PATH, wide: bool = False, run: int = 2) -> dict:
    features, score, pictures = wide_training_images(run) if wide else training_images()
    estimator, params = CV.fit_nss(features, score, pictures)
    level = KernelLevel.from_sklearn(estimator, decimals=6)
    fitted_on = [f"retrain.wide_data({run})"] if wide else list(FITTED_ON)
    record = {"fitted_on": fitted_on, "pictures": len(np.unique(pictures)), "images": len(score), "params": params,
              "support_vectors": len(level.dual_coef), "level": asdict(level)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    tmp.replace(path)
    return {k: v for k, v in record.items() if k != "level"}


def dev(report: Path) -> dict:
    """The mix against its parts on the 9 development pictures (module docstring), seeds 0-2 of the network."""
    import torch

    from .train import load, predict

    torch.set_num_threads(1)
    bench, hold = CV.all_images(), H.make_holdout("holdout")
    x_bench, x_hold = CV.nss_cache(bench), H.nss_features(hold, "holdout")
    test = np.isin(bench["source"], [SOURCES.index(p) for p in SPLITS["test"]])
    level_test = KernelLevel.from_sklearn(CV.fit_nss(x_bench[~test], bench["score"][~test], bench["source"][~test])[0])
    level_hold = KernelLevel.from_sklearn(CV.fit_nss(x_bench, bench["score"], bench["source"])[0])
    pictures = {k: np.concatenate([bench[k][test], hold[k]]) for k in ("score", "ref", "type", "level", "source")}
    level = np.concatenate([level_test.predict_many(x_bench[test]), level_hold.predict_many(x_hold)])
    network = np.stack([np.concatenate([predict(net, bench["image"][test])[0], predict(net, hold["image"])[0]])
                        for net in (load(WEIGHTS / f"pmt_iqa_progressive_seed{s}.safetensors")[0] for s in range(3))])
    methods = {"nss_level": level[None], "network": network}
    for share in (0.25, 0.5, 0.75):
        methods[f"mix_{share}"] = np.stack([mixed_score(n, level, share) for n in network])
    results = CV.summarise(methods, pictures, ["nss_level"], per_fold=False)
    lines = ["# The served mix on the 9 development pictures (test split + first held-out set), networks of seeds 0-2", "",
             "| method | seeds | SRCC | PLCC | severity SRCC | − NSS level: SRCC | PLCC | severity |", "|---|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        minus = row.get("minus", {}).get("nss_level")
        diff = CV.fmt_diff(minus) if minus else "– | – | –"
        lines.append(f"| {name} | {row['seeds']} | {CV.fmt(row, 'srcc')} | {CV.fmt(row, 'plcc')} | {CV.fmt(row, 'severity')} | {diff} |")
    CV.write_report(report / "level_dev", results, lines)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["dev", "fit"])
    parser.add_argument("--wide", action="store_true", help="fit: a retrain.py run's level on its pictures")
    parser.add_argument("--run", type=int, default=2, choices=[2, 3], help="fit --wide: which run")
    parser.add_argument("--report", type=Path, default=CV.REPORT)
    args = parser.parse_args()
    if args.command == "dev":
        dev(args.report)
        print((args.report / "level_dev.md").read_text())
    else:
        path = {2: LEVEL_WIDE_PATH, 3: LEVEL_WIDE3_PATH}[args.run] if args.wide else LEVEL_PATH
        print(json.dumps(fit(path, args.wide, args.run), indent=1))


if __name__ == "__main__":
    main()
