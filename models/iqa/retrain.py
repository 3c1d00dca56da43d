"""The network trained again on every picture scored so far, at the served network's budget, on this CPU.

    python -m models.iqa.retrain --seed 0   # weights/pmt_iqa_progressive_wide_seed0.{safetensors,json}, ~10 min a run

The served network (progressive, `gpu2`) saw 12 pictures. Since then three held-out sets were scored once and are
development data; this run trains the same model, loss schedule and budget (`gpu2`: 12 epochs × 32,768 random 64 × 64
crops, batch 64, the epoch chosen by validation severity SRCC; without its GPU time guard, ~45 s an epoch on one
thread of this box) on the tiles of 43 pictures: the benchmark's train and test pictures (16), the first held-out set
(5), the second (12) and the third set's ten scenes (its carphone frame and Minduka photograph are smaller than a
256 px picture, and upscaling them would teach upscaling blur as pristine). Validation: the benchmark's validation
pictures (chelsea, moon, ihc), as for the served network. Nothing here is a test: a set no run has seen judges it.

    python -m models.iqa.retrain --run 3 --seed 0   # weights/pmt_iqa_progressive_wide3_seed0.*: run 3

Run 3 adds the fourth and fifth held-out sets (scored once, now development data; the fifth's 200 × 200 contact sheet
of faces is left out for the reason above): 66 pictures. The sixth set stays out: it decides between runs 2 and 3.

    python -m models.iqa.retrain --run 4 --seed 0   # every epoch kept under epochs_dir(4); then `whole select`

Run 4 is run 3 again (the same pictures, budget and seeds) with every epoch's weights kept: its epoch is chosen on the
sixth and seventh held-out sets as whole pictures (`python -m models.iqa.whole select`), 20 pictures, where run 3's
3 validation pictures picked epoch 1 for every seed.
"""
import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from . import holdout as H
from .data import SOURCES, SPLITS, cache_path, make_benchmark
from .train import PROFILES, WEIGHTS_DIR, train

CONFIG = replace(PROFILES["gpu2"], max_train_seconds=None)
# the held-out sets scored before each run, now its training pictures
SETS = {2: ("holdout", "holdout2", "holdout3"), 3: ("holdout", "holdout2", "holdout3", "holdout4", "holdout5")}
SETS[4] = SETS[3]
LEFT_OUT = ("carphone_pristine_frame60", "minduka", "faces")  # smaller than a 256 px picture


def training_sources(run: int = 2) -> list[int]:
    """Source ids of a run's training pictures: the benchmark's train and test pictures and its SETS' minus LEFT_OUT."""
    ids = [SOURCES.index(n) for split in ("train", "test") for n in SPLITS[split]]
    return ids + [H.FIRST_ID[s] + i for s in SETS[run] for i, n in enumerate(H.SETS[s]) if n not in LEFT_OUT]


def wide_data(run: int = 2) -> dict[str, dict[str, np.ndarray]]:
    bench = make_benchmark()
    everything = [bench["train"], bench["test"], *(H.make_holdout(s) for s in SETS[run])]
    full = {k: np.concatenate([p[k] for p in everything]) for k in bench["train"]}
    keep = np.isin(full["source"], training_sources(run))
    return {"train": {k: v[keep] for k, v in full.items()}, "val": bench["val"]}


def weights_path(seed: int, run: int = 2):
    return WEIGHTS_DIR / f"pmt_iqa_progressive_wide{'' if run == 2 else run}_seed{seed}.safetensors"


def epochs_dir(run: int) -> Path:
    """Where a run that keeps every epoch writes them (`seed{S}_epoch{E}.safetensors`): a cache, not the repository."""
    return cache_path().parent / f"run{run}_epochs"


def save_weights(model, path: Path) -> None:
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))


def epoch_record(seed: int, epoch: int, run: int = 4) -> dict:
    return {"mode": "progressive", "run": run, "seed": seed, "epoch": epoch, "config": asdict(CONFIG)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", type=int, default=2, choices=sorted(SETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = wide_data(args.run)
    kept = epochs_dir(args.run)

    def keep(epoch, model):  # the weights and what `train.load` needs to build the model
        save_weights(model, path := kept / f"seed{args.seed}_epoch{epoch}.safetensors")
        path.with_suffix(".json").write_text(json.dumps(epoch_record(args.seed, epoch)) + "\n")

    if args.run == 4:
        kept.mkdir(parents=True, exist_ok=True)
    model, info = train(data, "progressive", args.seed, CONFIG, each_epoch=keep if args.run == 4 else None)
    out = weights_path(args.seed, args.run) if args.run < 4 else kept / f"seed{args.seed}_validation.safetensors"
    metrics = {"mode": "progressive", "run": args.run, "seed": args.seed, "config": asdict(CONFIG), **info,
               "pictures": int(len(np.unique(data["train"]["source"]))), "images": int(len(data["train"]["score"]))}
    save_weights(model, out)
    out.with_suffix(".json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps({k: metrics[k] for k in ("best_epoch", "pictures", "images")}))


if __name__ == "__main__":
    main()
