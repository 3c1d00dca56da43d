"""The JPEG cap of the served score (models/iqa/jpeg.py applies it): fitted here, and the evidence for it.

    python -m models.iqa.cap fit   # weights/jpeg_cap.json: the cap, from run 2's training pictures
    python -m models.iqa.cap dev   # report/jpeg_dev.{md,json}: the served score with and without it, on development data

The served score uses a JPEG file's quality (models/iqa/jpeg.py, ``quality_of``) as a ceiling, not as a feature:
``JpegCap.caps[q - 1]`` is the pseudo-MOS a JPEG of quality q reaches on a typical picture (a quantile over run 2's
training pictures of 100 × SSIM between each picture and its JPEG at q), and a JPEG file of quality q scores at most
that. Why a ceiling: coding at quality q loses at least what q loses, whatever else happened to the picture, so the cap
only ever lowers a score that the quantisation table shows is too high; a picture blurred, noisy or dark and then saved
at a high quality (what most uploads are) keeps the score the network and the NSS level give it, because caps at high
qualities sit above any such score. As a feature of the level, the table would also tell which distortion an image has
in a benchmark where only JPEG-distorted images are JPEG files, which real uploads do not (models/iqa/level.py).
"""
import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from .jpeg import JpegCap

CAP_PATH = Path(__file__).resolve().parent / "weights" / "jpeg_cap.json"


def pseudo_mos_by_quality(pictures: np.ndarray) -> np.ndarray:
    """(pictures, 100): the pseudo-MOS of each uint8 RGB picture coded as a JPEG at qualities 1-100 (data.jpeg's call)."""
    from .data import jpeg, pseudo_mos

    out = np.empty((len(pictures), 100))
    for i, x in enumerate(pictures):
        reference = x.astype(np.float32) / 255.0
        for q in range(1, 101):
            out[i, q - 1] = pseudo_mos(reference, jpeg(reference, q, None))
    return out


def reference_tiles() -> tuple[np.ndarray, np.ndarray]:
    """The undistorted tiles of run 2's training pictures (models/iqa/retrain.py, wide_data) and their picture ids."""
    from .retrain import wide_data

    train = wide_data()["train"]
    pristine = train["type"] == 0
    return train["image"][pristine], train["source"][pristine]


def cap_at(by_quality: np.ndarray, quantile: float, decimals: int | None = None) -> JpegCap:
    """The cap whose value at each quality is that quantile over the pictures, made non-decreasing in the quality."""
    caps = np.maximum.accumulate(np.quantile(by_quality, quantile, axis=0))
    return JpegCap(caps=(caps if decimals is None else np.round(caps, decimals)).tolist(), quantile=quantile)


def fit(quantile: float = 0.5, path: Path = CAP_PATH) -> dict:
    """The cap from the reference tiles of run 2's training pictures."""
    references, sources = reference_tiles()
    record = {"fitted_on": "retrain.wide_data reference tiles", "tiles": len(references), "pictures": int(len(np.unique(sources))),
              "cap": asdict(cap_at(pseudo_mos_by_quality(references), quantile, decimals=3))}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    tmp.replace(path)
    return record


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)  # the caps `dev` compares
DEV_SETS = ("holdout4", "holdout5")  # scored once already, and no picture of run 2's training


def served_parts(bench: dict, upload_quality: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run 2's network per seed (3, N) and its NSS level (N,) on the handler's reduction of each image; with
    ``upload_quality``, every image that is not JPEG-distorted first goes through a JPEG file of that quality, as an
    upload saved by a camera or an editor would."""
    from .data import TYPES, jpeg, to_uint8
    from .level import WEIGHTS
    from .serving import load_level
    from .whole import RUNS, handler, network_scores

    served, jpeg_type = handler(), TYPES.index("jpeg")
    images = [x if upload_quality is None or t == jpeg_type else to_uint8(jpeg(x.astype(np.float32) / 255.0, upload_quality, None))
              for x, t in zip(bench["image"], bench["type"])]
    crops, nss = zip(*(served.reduce(Image.fromarray(x)) for x in images))
    weights, level_file = RUNS["run 2"]
    return network_scores(np.stack(crops), weights=weights), load_level(WEIGHTS / level_file).predict_many(np.stack(nss))


def dev(report: Path) -> dict:
    """The served score (run 2) without a cap and with the cap at each of QUANTILES, on DEV_SETS' pictures whole, as
    the benchmark delivers them (the JPEG-distorted images as their JPEG files, the rest as pixels) and as uploads
    (every other image through a JPEG file of quality 90, where a cap must change nothing)."""
    import torch

    from . import crossval as CV
    from .baselines import jpeg_quality_for_benchmark
    from .serving import IqaParams, mixed_score
    from .whole import generate

    torch.set_num_threads(1)
    parts = [generate(s) for s in DEV_SETS]
    bench = {k: (sum((p[k] for p in parts), []) if k == "image" else np.concatenate([p[k] for p in parts])) for k in parts[0]}
    by_quality = pseudo_mos_by_quality(reference_tiles()[0])
    caps = {q: cap_at(by_quality, q) for q in QUANTILES}
    quality, share = jpeg_quality_for_benchmark(bench), IqaParams().nss_share
    results, lines = {}, [f"# The JPEG cap on development data: {', '.join(DEV_SETS)} whole, run 2 as served (seeds 0-2)", "",
                          f"{len(bench['score'])} images. Caps (pseudo-MOS) at qualities 2 / 6 / 12 / 25 / 50 / 75 / 90 / 95:"]
    for q, cap in caps.items():
        lines.append(f"- quantile {q}: " + " / ".join(f"{cap.caps[k - 1]:.1f}" for k in (2, 6, 12, 25, 50, 75, 90, 95)))
    for arm, upload in (("as delivered", None), ("uploads at quality 90", 90)):
        network, level = served_parts(bench, upload)
        mix = np.stack([mixed_score(n, level, share) for n in network])
        q_arm = quality if upload is None else np.where(np.isnan(quality), float(upload), quality)
        methods = {"served, no cap": mix, **{f"cap at quantile {q}": np.stack([c.apply(m, q_arm) for m in mix]) for q, c in caps.items()}}
        results[arm] = {"all": CV.summarise(methods, bench, ["served, no cap"], per_fold=False),
                        "capped share": {name: float(np.mean(m < mix - 1e-9)) for name, m in methods.items()}}
        lines += ["", f"## {arm}", "", "| method | SRCC | PLCC | severity | − no cap: SRCC | PLCC | severity | images capped |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in results[arm]["all"].items():
            minus = row.get("minus", {}).get("served, no cap")
            diff = CV.fmt_diff(minus) if minus else "– | – | –"
            lines.append(f"| {name} | {CV.fmt(row, 'srcc')} | {CV.fmt(row, 'plcc')} | {CV.fmt(row, 'severity')} | {diff} | "
                         f"{results[arm]['capped share'][name]:.1%} |")
    CV.write_report(report / "jpeg_dev", results, lines)
    return results


def main() -> None:
    from . import crossval as CV

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["dev", "fit"])
    parser.add_argument("--quantile", type=float, default=0.5, help="fit: the quantile of the pseudo-MOS at each quality")
    parser.add_argument("--report", type=Path, default=CV.REPORT)
    args = parser.parse_args()
    if args.command == "dev":
        dev(args.report)
        print((args.report / "jpeg_dev.md").read_text())
    else:
        record = fit(args.quantile)
        print(json.dumps({k: v for k, v in record.items() if k != "cap"}))


if __name__ == "__main__":
    main()
