"""The network trained again on every picture scored so far, at the served network's budget, on this CPU.

    python -m models.iqa.retrain --seed 0   # weights/pmt_iqa_progressive_wide_seed0.{safetensors,json}, ~10 min a run

The served network (progressive, `gpu2`) saw 12 pictures. Since then three held-out sets were scored once and are
development data; this run trains the same model, loss schedule and budget (`gpu2`: 12 epochs × 32,768 random 64 × 64
crops, batch 64, the epoch chosen by validation severity SRCC; without its GPU time guard, ~45 s an epoch on one
thread of this box) on the tiles of 43 pictures: the benchmark's train and test pictures (16), the first held-out set
(5), the second (12) and the third set's ten scenes (its carphone frame and Minduka photograph are smaller than a
256 px picture, and upscaling them would teach upscaling blur as pristine). Validation: the benchmark's validation
pictures (chelsea, moon, ihc), as for the served network. Nothing here is a test: a set no run has seen judges it.
"""
import argparse
import json
from dataclasses import asdict, replace

import numpy as np
import torch
from safetensors.torch import save_file

from . import holdout as H
from .data import SOURCES, SPLITS, make_benchmark
from .train import PROFILES, WEIGHTS_DIR, train

CONFIG = replace(PROFILES["gpu2"], max_train_seconds=None)
SETS = ("holdout", "holdout2", "holdout3")  # the held-out sets scored before run 2, now its training pictures
LEFT_OUT = ("carphone_pristine_frame60", "minduka")


def training_sources() -> list[int]:
    """Source ids of run 2's training pictures: the benchmark's train and test pictures and SETS' minus LEFT_OUT."""
    ids = [SOURCES.index(n) for split in ("train", "test") for n in SPLITS[split]]
    return ids + [H.FIRST_ID[s] + i for s in SETS for i, n in enumerate(H.SETS[s]) if n not in LEFT_OUT]


def wide_data() -> dict[str, dict[str, np.ndarray]]:
    bench = make_benchmark()
    everything = [bench["train"], bench["test"], *(H.make_holdout(s) for s in SETS)]
    full = {k: np.concatenate([p[k] for p in everything]) for k in bench["train"]}
    keep = np.isin(full["source"], training_sources())
    return {"train": {k: v[keep] for k, v in full.items()}, "val": bench["val"]}


def weights_path(seed: int):
    return WEIGHTS_DIR / f"pmt_iqa_progressive_wide_seed{seed}.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = wide_data()
    model, info = train(data, "progressive", args.seed, CONFIG)
    out = weights_path(args.seed)
    metrics = {"mode": "progressive", "seed": args.seed, "config": asdict(CONFIG), **info,
               "pictures": int(len(np.unique(data["train"]["source"]))), "images": int(len(data["train"]["score"]))}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    out.with_suffix(".json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps({k: metrics[k] for k in ("best_epoch", "pictures", "images")}))


if __name__ == "__main__":
    main()
