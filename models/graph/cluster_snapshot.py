"""CCGC on the hosted graph: the clustering `account_clusters` serves.

    python -m models.graph.cluster_snapshot [--k 32] [--epochs 40] [--attributes structural|features]
                                            [--no-select] [--no-reference]

Regenerates the hosted graph from weights/botrgcn.json's graph config (the same snapshot bot_detector
serves), fits CCGC with a fixed K (never chosen with labels: 24 planted groups + room for the rest), and
writes weights/clusters.npz (account_id, cluster, confidence, k) + clusters.json with ACC/NMI/ARI/F1 against
the planted coordinated groups, measured on the grouped bots only.

Default (`--attributes structural`): CCGC encodes structural node attributes — the K leading eigenvectors
of the regularised normalised adjacency of all 7 relations (τ = mean degree), rows L2-normalised — with t = 0
(see models/graph/ccgc.py). Whether to concatenate PCA(Â^t X) of the 788 features, and with which weight /
depth, is chosen without labels (`select_feature_block`: the silhouette of k-means on each candidate; the
table goes to clusters.json). `--attributes features` is the paper's CCGC on Â⁴X (the previous snapshot).
Labels are used only to score the final clustering (and the reference rows: k-means on the same attributes,
scikit-learn spectral clustering of the union graph), never to choose anything.
"""
import argparse
import json
import time

import numpy as np
import torch

from .ccgc import CCGCConfig, cluster_metrics, fit, node_attributes, select_feature_block, structural_config
from .synth import GraphConfig, generate
from .train import SERVED

OUT = SERVED.parent / "clusters.npz"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--attributes", choices=["structural", "features"], default="structural")
    p.add_argument("--no-select", action="store_true", help="structural only (feat_weight 0), no silhouette selection")
    p.add_argument("--no-reference", action="store_true", help="skip the k-means / spectral reference rows")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    meta = json.loads(SERVED.with_suffix(".json").read_text()) if SERVED.with_suffix(".json").exists() else {"graph": {"edge_scale": 0.1, "seed": 0}}
    gcfg = {k: v for k, v in meta["graph"].items() if k != "edge_counts"}
    g = generate(GraphConfig(**gcfg))
    started = time.perf_counter()
    selection = None
    if a.attributes == "structural":
        cfg = structural_config(epochs=a.epochs, warmup=10, dim=a.dim)
        if not a.no_select:
            best, rows = select_feature_block(g["x"], g["edge_index"], a.k, cfg)
            for r in rows:
                print(f"  feature block w {r['feat_weight']} t {r['t_feat']}: silhouette {r['silhouette']:.4f}", flush=True)
            cfg.feat_weight, cfg.t_feat = best["feat_weight"], best["t_feat"]
            selection = {"criterion": "silhouette of k-means (K) on the attributes, 3000-node sample", "candidates": rows, "chosen": best}
    else:
        cfg = CCGCConfig(epochs=a.epochs, warmup=10, dim=a.dim)
    selected = time.perf_counter()
    r = fit(g["x"], g["edge_index"], a.k, cfg, progress=lambda e, t, l: print(f"  epoch {e}/{t} loss {l:.4f}", flush=True) if e % 5 == 0 else None)
    fitted = time.perf_counter()
    grouped = g["group"] >= 0
    planted = cluster_metrics(g["group"][grouped], r["labels"][grouped])
    np.savez_compressed(OUT, account_id=g["account_id"], cluster=r["labels"].astype(np.int16), confidence=r["confidence"].astype(np.float32), k=np.int64(a.k))
    reference = {}
    if not a.no_reference:  # scored with the labels for the README only; nothing is chosen from them
        from sklearn.cluster import KMeans

        from .ccgc_eval import spectral

        z = node_attributes(g["x"], g["edge_index"], a.k, cfg)
        reference[f"k-means on the CCGC input ({cfg.attributes})"] = cluster_metrics(g["group"][grouped], KMeans(a.k, n_init=5, random_state=0).fit_predict(z)[grouped])
        reference["spectral clustering (sklearn, union graph)"] = cluster_metrics(g["group"][grouped], spectral(g["edge_index"], len(grouped), a.k, 0)[grouped])
    OUT.with_suffix(".json").write_text(json.dumps({"k": a.k, "config": cfg.__dict__, "graph": gcfg, "planted_groups": planted,
                                                   "selection": selection, "reference": reference,
                                                   "seconds": fitted - started, "seconds_selection": selected - started, "seconds_fit": fitted - selected,
                                                   "losses": r["losses"]}, indent=1))
    print(f"wrote {OUT}: planted-group metrics {planted}; reference {reference}; {fitted - started:.0f} s")


if __name__ == "__main__":
    main()
