"""Whole pictures: `iqa` scored the way it is called, one picture at the size it is served, not a 128 × 128 tile.

    python -m models.iqa.whole dev                 # holdout2's 12 pictures, whole: report/whole_dev.{md,json}
    python -m models.iqa.whole score --set holdout3   # once: report/whole_holdout3.{md,json}
    python -m models.iqa.whole score --set holdout4   # once: run 2 (models/iqa/retrain.py) and run 1 beside it
    python -m models.iqa.whole score --set holdout5   # once: the same rows, judging run 2 as served
    python -m models.iqa.whole score --set holdout6   # once: judging run 2 with the JPEG cap (models/iqa/jpeg.py)
    python -m models.iqa.whole runs --set holdout6    # run 3 against run 2 on development data: which one is served
    python -m models.iqa.whole score --set holdout7   # once: runs 2 and 3 with the cap, judging the one served
    python -m models.iqa.whole select                 # run 4's epoch for each seed, on holdout6 + holdout7 whole
    python -m models.iqa.whole score --set holdout8   # once: runs 3 and 4 with the cap, judging run 4

Every other number of this family scores 128 × 128 tiles, where the served handler sees the tile whole. What users send
is a picture: the handler rescales it to short side 256 when larger, the network reads 4 fixed 64 × 64 crops of it and
BRISQUE reads a central window of at most `nss_max_side` px a side. Here each picture is brought to its served size
(the handler's own `rescale`), distorted whole by the benchmark's 13 distortions × 5 levels (the same seeded draws),
given a pseudo-MOS over the whole picture, and reduced by the handler's own `reduce` (crops and features); the
networks of seeds 0-2 score the crops, so the served rows are what the handler computes (its ONNX graph is seed 0's,
checked against PyTorch to 1e-4). Rows: the served mix at each window given, the network alone, and the baselines a
practitioner would run on the whole picture (BRISQUE + SVR, with the JPEG quality too, fitted on the same pictures'
tiles as the last run's level; `blur_effect`; the quantisation table on the JPEG subset).

``dev`` uses holdout2's pictures (scored once as tiles, so development data); ``score`` a set listed for this and
never scored, once (it refuses a second run unless --again).
"""
import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import crossval as CV
from . import holdout as H
from .data import DISTORTIONS, SEED, TYPES, is_grey, pseudo_mos, to_uint8

WINDOWS = (512, 128)  # nss_max_side values compared by `dev`


MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "iqa" / "1"


def handler(nss_max_side: int = 512, model_dir: Path = MODEL_DIR):
    """The served handler over the built version folder (`python -m export.build --only iqa`)."""
    from .serving import IqaHandler

    if not (model_dir / "model.onnx").exists():
        raise SystemExit(f"{model_dir}/model.onnx missing: run `python -m export.build --only iqa` first")
    params = {"nss_max_side": str(nss_max_side), "jpeg_cap": "false"}  # its `reduce` is what is used here
    return IqaHandler(model_dir, params, ["IMAGE", "IMAGE_RAW"], ["SCORE", "LEVEL_PROBS"], 1, "cpu")


def generate(set_name: str) -> dict:
    """{image: list of uint8 arrays (sizes differ), ref, type, level, score, source} of a set's pictures, whole."""
    served = handler()
    rows = []
    for i, name in enumerate(H.SETS[set_name]):
        source = H.FIRST_ID[set_name] + i
        ref = 4 * source
        picture = served.rescale(H.raw_picture(name)).astype(np.float32) / 255.0
        rows.append((to_uint8(picture), ref, 0, 0, 100.0, source))
        for t_i, (dname, (fn, params)) in enumerate(DISTORTIONS.items(), start=1):
            if dname == "saturation" and is_grey(picture):
                continue
            for lv, p in enumerate(params, start=1):
                out = to_uint8(fn(picture, p, np.random.default_rng([SEED, ref, t_i, lv])))
                rows.append((out, ref, t_i, lv, pseudo_mos(picture, out.astype(np.float32) / 255.0), source))
    images, refs, types, levels, scores, sources = zip(*rows)
    return {"image": list(images), "ref": np.array(refs), "type": np.array(types), "level": np.array(levels),
            "score": np.array(scores, np.float32), "source": np.array(sources)}


# the served configurations: (weights of the network, seed by seed; the NSS level)
RUNS = {"run 1": ("pmt_iqa_progressive_seed{}", "nss_level.json"),
        "run 2": ("pmt_iqa_progressive_wide_seed{}", "nss_level_wide.json"),
        "run 3": ("pmt_iqa_progressive_wide3_seed{}", "nss_level_wide3.json"),
        "run 4": ("pmt_iqa_progressive_wide4_seed{}", "nss_level_wide3.json")}  # run 3's pictures, so its level
SELECTION_SETS = ("holdout6", "holdout7")  # run 4's epochs are chosen on these, whole


def network_score(crops: np.ndarray, weights_file: Path) -> np.ndarray:
    """(N,): one network on the handler's crops (N, 4, 3, 64, 64), mean over the crops."""
    import torch

    from .train import load

    net, _ = load(weights_file)
    with torch.no_grad():
        scores = [net(torch.from_numpy(crops[i : i + 64].reshape(-1, *crops.shape[2:])))[0].view(-1, crops.shape[1]).mean(1)
                  for i in range(0, len(crops), 64)]
    return torch.cat(scores).numpy()


def network_scores(crops: np.ndarray, seeds=(0, 1, 2), weights: str = RUNS["run 1"][0]) -> np.ndarray:
    """(seeds, N): each seed's network of a run (``weights``, formatted with the seed) on the handler's crops."""
    from .level import WEIGHTS

    return np.stack([network_score(crops, WEIGHTS / f"{weights.format(seed)}.safetensors") for seed in seeds])


def methods_for(bench: dict, windows=WINDOWS, runs=("run 1",), cap: bool = False, baselines: bool = True) -> dict[str, np.ndarray]:
    """The served mix of each run at each window, each run's network alone, and (``baselines``) the baselines fitted on
    the last run's level's data (run 1: the benchmark and the first held-out set; runs 2 and 3: retrain.py's pictures
    with the validation ones). With ``cap``, also each mix with the JPEG cap (weights/jpeg_cap.json), the JPEG-distorted
    images arriving as their JPEG files."""
    from models.nss import brisque_features

    from .baselines import blur_quality, jpeg_quality_for_benchmark
    from .hybrid import jpeg_feature
    from .cap import CAP_PATH
    from .jpeg import load_cap
    from .level import WEIGHTS, training_images, wide_training_images
    from .serving import IqaParams, load_level, mixed_score

    share, methods = IqaParams().nss_share, {}
    quality = jpeg_quality_for_benchmark(bench)  # NaN for every image that is not a JPEG file
    jpeg_cap = load_cap(CAP_PATH) if cap else None
    for window in windows:
        served = handler(window)
        crops, nss = zip(*(served.reduce(Image.fromarray(x)) for x in bench["image"]))
        for run in runs:
            weights, level_file = RUNS[run]
            suffix = "" if runs == ("run 1",) else f" ({run})"
            if f"network alone{suffix}" not in methods:
                methods[f"network alone{suffix}"] = network_scores(np.stack(crops), weights=weights)
            level = load_level(WEIGHTS / level_file).predict_many(np.stack(nss))  # one level for every seed's network
            methods[f"served, window {window}{suffix}"] = np.stack([mixed_score(n, level, share) for n in methods[f"network alone{suffix}"]])
            if jpeg_cap:
                methods[f"served with the JPEG cap, window {window}{suffix}"] = np.stack(
                    [jpeg_cap.apply(m, quality) for m in methods[f"served, window {window}{suffix}"]])
    if not baselines:
        return methods
    # baselines: BRISQUE of the whole picture, as a practitioner computes it, and an SVR fitted on the level's data
    whole = np.stack([brisque_features(x) for x in bench["image"]])
    run = int(runs[-1].split()[-1])
    wide = run > 1
    features, target, pictures = wide_training_images(run) if wide else training_images()
    methods["nss_svr"] = CV.fit_nss(features, target, pictures)[0].predict(whole)[None]
    if wide:
        from .retrain import wide_data

        tile_jpeg = np.vstack([jpeg_feature(p) for p in wide_data(run).values()])
    else:
        tile_jpeg = np.vstack([jpeg_feature(CV.all_images()), jpeg_feature(H.make_holdout("holdout"))])
    methods["nss_jpeg_svr"] = CV.fit_nss(np.hstack([features, tile_jpeg]), target, pictures)[0].predict(
        np.hstack([whole, jpeg_feature(bench)]))[None]
    methods["blur_effect"] = np.concatenate([blur_quality(x[None]) for x in bench["image"]])[None]
    methods["jpeg_quality"] = quality[None]
    return methods


def report(set_name: str, bench: dict, methods: dict, out: Path, title: str) -> dict:
    jpeg = methods.pop("jpeg_quality")
    baselines = ["nss_svr", "nss_jpeg_svr", "blur_effect"]
    results = {"set": set_name, "pictures": H.SETS[set_name], "images": len(bench["score"]),
               "sizes": sorted({f"{x.shape[1]}x{x.shape[0]}" for x in bench["image"]}),
               "all": CV.summarise(methods, bench, baselines, per_fold=False),
               "jpeg": CV.summarise({"jpeg_quality": jpeg, **methods}, bench, ["jpeg_quality"],
                                    only_type=TYPES.index("jpeg"), per_fold=False)}
    lines = H.results_markdown(title, results)
    lines[1:1] = ["", f"{', '.join(H.SETS[set_name])}: {results['images']} images, sizes {', '.join(results['sizes'])}"]
    CV.write_report(out, results, lines)
    return results


def compare_runs(set_name: str, out: Path) -> str:
    """Runs 3 and 2 as served (with the JPEG cap) on a scored set: run 3 minus run 2, paired over pictures."""
    bench = generate(set_name)
    methods = {k: v for k, v in methods_for(bench, (512,), ("run 2", "run 3"), cap=True, baselines=False).items()
               if k.startswith("served with the JPEG cap")}
    base = "served with the JPEG cap, window 512 (run 2)"
    results = CV.summarise(methods, bench, [base], per_fold=False)
    diff = results["served with the JPEG cap, window 512 (run 3)"]["minus"][base]
    lines = [f"# Run 3 against run 2, both served with the JPEG cap, on {set_name} whole (development data)", "",
             "| method | SRCC | PLCC | severity SRCC |", "|---|---|---|---|"]
    lines += [f"| {n} | {CV.fmt(r, 'srcc')} | {CV.fmt(r, 'plcc')} | {CV.fmt(r, 'severity')} |" for n, r in results.items()]
    lines += ["", "Run 3 − run 2, SRCC / PLCC / severity: " + CV.fmt_diff(diff, " / ")]
    CV.write_report(out, results, lines)
    return "\n".join(lines)


def select(out: Path, run: int = 4, seeds=(0, 1, 2)) -> str:
    """Each seed's epoch of `run` (every epoch kept by `retrain --run 4`): the one whose served score (the network mixed
    with run 3's level, with the JPEG cap, as `iqa` serves) has the highest mean of SRCC, PLCC and severity SRCC on
    SELECTION_SETS whole, among the epochs whose score head was trained (λ1 > 0: from epoch 1). Copies it to the run's
    weights and writes every epoch's numbers to ``out``. Development data only: both sets were scored once before."""
    import shutil

    from .baselines import jpeg_quality_for_benchmark
    from .cap import CAP_PATH
    from .jpeg import load_cap
    from .level import WEIGHTS
    from .retrain import CONFIG, epochs_dir
    from .serving import IqaParams, load_level, mixed_score

    parts = [generate(s) for s in SELECTION_SETS]
    bench = {k: (sum((p[k] for p in parts), []) if k == "image" else np.concatenate([p[k] for p in parts])) for k in parts[0]}
    crops, nss = zip(*(handler(512).reduce(Image.fromarray(x)) for x in bench["image"]))
    crops = np.stack(crops)
    level = load_level(WEIGHTS / RUNS[f"run {run}"][1]).predict_many(np.stack(nss))
    cap, quality, share = load_cap(CAP_PATH), jpeg_quality_for_benchmark(bench), IqaParams().nss_share
    kept, chosen, rows = epochs_dir(run), {}, []
    for seed in seeds:
        best = (-np.inf, None)
        for epoch in range(1, CONFIG.epochs):  # epoch 0's score head is untrained (λ1 = 0)
            network = network_score(crops, kept / f"seed{seed}_epoch{epoch}.safetensors")
            served = cap.apply(mixed_score(network, level, share), quality)
            m = {k: v for k, v in CV.scores(served, bench).items() if k != "severity_per_type"}
            alone = CV.scores(network, bench)
            criterion = float(np.mean([m["srcc"], m["plcc"], m["severity"]]))
            rows.append(f"| {seed} | {epoch} | {m['srcc']:.3f} | {m['plcc']:.3f} | {m['severity']:.3f} | {criterion:.3f} | "
                        f"{alone['srcc']:.3f} / {alone['plcc']:.3f} / {alone['severity']:.3f} |")
            best = max(best, (criterion, epoch))
        chosen[seed] = best[1]
        target = WEIGHTS / f"{RUNS[f'run {run}'][0].format(seed)}.safetensors"
        shutil.copyfile(kept / f"seed{seed}_epoch{best[1]}.safetensors", target)
        record = json.loads((kept / f"seed{seed}_validation.json").read_text())  # the training run's record and history
        record |= {"run": run, "best_epoch": best[1], "selected_on": f"{' + '.join(SELECTION_SETS)} whole",
                   "selection_criterion": round(best[0], 4)}
        target.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# Run {run}: each seed's epoch chosen on {' + '.join(SELECTION_SETS)} whole (development data)", "",
             f"{len(bench['score'])} images of {len(np.unique(bench['source']))} pictures; the served score is the network "
             f"mixed with {RUNS[f'run {run}'][1]} at share {share}, with the JPEG cap. Criterion: the mean of SRCC, PLCC and "
             "severity SRCC of the served score.", "",
             "| seed | epoch | served SRCC | PLCC | severity | criterion | network alone SRCC / PLCC / severity |",
             "|---|---|---|---|---|---|---|", *rows, "", "Chosen: " + ", ".join(f"seed {s} epoch {e}" for s, e in chosen.items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["dev", "runs", "select", "score"])
    parser.add_argument("--set", dest="set_name", default="holdout4",
                        choices=["holdout3", "holdout4", "holdout5", "holdout6", "holdout7", "holdout8"])
    parser.add_argument("--window", type=int, default=512, help="score: the served nss_max_side")
    parser.add_argument("--again", action="store_true")
    parser.add_argument("--report", type=Path, default=CV.REPORT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "dev":
        bench = generate("holdout2")
        report("holdout2", bench, methods_for(bench), args.report / "whole_dev", "holdout2's pictures whole (development data)")
        print((args.report / "whole_dev.md").read_text())
        return
    if args.command == "runs":
        print(compare_runs(args.set_name, args.report / f"whole_runs_{args.set_name}"))
        return
    if args.command == "select":
        print(select(args.report / "whole_select_run4"))
        return
    out = args.report / f"whole_{args.set_name}"
    if out.with_suffix(".json").exists() and not args.again:
        raise SystemExit(f"{out}.json exists: the set has been scored (--again to override)")
    print("thumbnail correlation with the nearest earlier picture:", H.check_unseen(args.set_name))
    bench = generate(args.set_name)
    runs = {"holdout3": ("run 1",), "holdout7": ("run 2", "run 3"), "holdout8": ("run 3", "run 4")}.get(args.set_name, ("run 1", "run 2"))
    cap = args.set_name not in ("holdout3", "holdout4", "holdout5")  # sets listed with the JPEG cap judge it
    report(args.set_name, bench, methods_for(bench, (args.window,), runs, cap), out, f"{args.set_name}: whole pictures, scored once")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
