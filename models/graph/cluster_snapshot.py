"""CCGC on the hosted graph: the clustering `account_clusters` serves.

    python -m models.graph.cluster_snapshot [--k 32] [--epochs 40]

Regenerates the hosted graph from weights/botrgcn.json's graph config (the same snapshot bot_detector
serves), fits CCGC with a fixed K (never chosen with labels: 24 planted groups + room for the rest), and
writes weights/clusters.npz (account_id, cluster, confidence, k) + clusters.json with ACC/NMI/ARI/F1 against
the planted coordinated groups, measured on the grouped bots only.
"""
import argparse
import json
import time

import numpy as np
import torch

from .ccgc import CCGCConfig, cluster_metrics, fit
from .synth import GraphConfig, generate
from .train import SERVED

OUT = SERVED.parent / "clusters.npz"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--dim", type=int, default=256)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    meta = json.loads(SERVED.with_suffix(".json").read_text()) if SERVED.with_suffix(".json").exists() else {"graph": {"edge_scale": 0.1, "seed": 0}}
    gcfg = {k: v for k, v in meta["graph"].items() if k != "edge_counts"}
    g = generate(GraphConfig(**gcfg))
    cfg = CCGCConfig(epochs=a.epochs, warmup=10, dim=a.dim)
    started = time.perf_counter()
    r = fit(g["x"], g["edge_index"], a.k, cfg, progress=lambda e, t, l: print(f"  epoch {e}/{t} loss {l:.4f}", flush=True) if e % 5 == 0 else None)
    grouped = g["group"] >= 0
    planted = cluster_metrics(g["group"][grouped], r["labels"][grouped])
    np.savez_compressed(OUT, account_id=g["account_id"], cluster=r["labels"].astype(np.int16), confidence=r["confidence"].astype(np.float32), k=np.int64(a.k))
    OUT.with_suffix(".json").write_text(json.dumps({"k": a.k, "config": cfg.__dict__, "graph": gcfg, "planted_groups": planted,
                                                   "seconds": time.perf_counter() - started, "losses": r["losses"]}, indent=1))
    print(f"wrote {OUT}: planted-group metrics {planted}")


if __name__ == "__main__":
    main()
