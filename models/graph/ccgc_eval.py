"""CCGC against k-means on raw features and spectral clustering, on graphs whose communities we know.

- karate: networkx's karate club (34 nodes, the two clubs); features = identity (structure only).
- sbm: a 4-block stochastic block model (4 × 100 nodes, p_in 0.10, p_out 0.02), features = noisy one-hot
  block indicators (signal 0.5, noise 1.0, 32 dims) so raw-feature k-means has something, but not enough.
- digits_knn: sklearn digits (1,797 images, 10 classes), a symmetric 10-NN graph on the pixels; features = pixels.
- bot_groups: the planted coordinated bot groups of the generated MGTAB-shaped graph (training profile,
  edge scale 0.1): the subgraph induced by grouped bots, K = number of groups; features = the 788 columns.

Spectral clustering is scikit-learn's on the (symmetrised) adjacency as a precomputed affinity.
"CCGC (structural)" is the served mode (`structural_config`: CCGC on the regularised spectral embedding,
t = 0, K eigenvectors), with the feature block (weight, depth) chosen per dataset and seed by the label-free
silhouette criterion of `select_feature_block`, exactly as `cluster_snapshot` does. No method sees labels
except to score the result.
"""
import networkx as nx
import numpy as np
from sklearn.cluster import KMeans, SpectralClustering

from .ccgc import CCGCConfig, cluster_metrics, fit, select_feature_block, structural_config


def karate():
    g = nx.karate_club_graph()
    y = np.array([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in g.nodes])
    return np.eye(34, dtype=np.float32), np.array(g.edges).T.astype(np.int64), y


def sbm(seed: int = 0, sizes=(100, 100, 100, 100), p_in=0.10, p_out=0.02):
    k = len(sizes)
    probs = np.full((k, k), p_out) + np.eye(k) * (p_in - p_out)
    g = nx.stochastic_block_model(list(sizes), probs.tolist(), seed=seed)
    y = np.repeat(np.arange(k), sizes)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(y), 32)).astype(np.float32)
    x[np.arange(len(y)), y] += 0.5
    return x, np.array(g.edges).T.astype(np.int64), y


def digits_knn(k: int = 10):
    from sklearn.datasets import load_digits
    from sklearn.neighbors import kneighbors_graph

    d = load_digits()
    a = kneighbors_graph(d.data, k, include_self=False).tocoo()
    return (d.data / 16.0).astype(np.float32), np.stack([a.row, a.col]).astype(np.int64), d.target


def bot_groups(edge_scale: float = 0.1):
    from .synth import GraphConfig, generate

    g = generate(GraphConfig(edge_scale=edge_scale))
    keep = np.flatnonzero(g["group"] >= 0)
    remap = np.full(len(g["group"]), -1)
    remap[keep] = np.arange(len(keep))
    src, dst = remap[g["edge_index"]]
    m = (src >= 0) & (dst >= 0)
    return g["x"][keep], np.stack([src[m], dst[m]]), g["group"][keep]


DATASETS = {"karate": karate, "sbm": sbm, "digits_knn": digits_knn, "bot_groups": bot_groups}


def spectral(edge_index, n, k, seed):
    import scipy.sparse as sp

    a = sp.coo_matrix((np.ones(edge_index.shape[1]), tuple(edge_index)), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(float)
    return SpectralClustering(k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr").fit_predict(a)


def configs_for(n: int) -> CCGCConfig:
    """Fixed per-size settings (never tuned on labels): small graphs get smaller batches."""
    return CCGCConfig(epochs=60, warmup=20, batch=min(1024, max(32, n // 4)), dim=min(500, 4 * n) if n < 125 else 500)


def run_all(seeds: int = 3, log=print) -> dict:
    out = {"seeds": seeds, "config": configs_for(10_000).__dict__, "datasets": {}}
    for name, make in DATASETS.items():
        x, ei, y = make()
        n, k = len(y), len(np.unique(y))
        runs = {"k-means (features)": [], "spectral (graph)": [], "CCGC": [], "CCGC (structural)": []}
        for seed in range(seeds):
            runs["k-means (features)"].append(cluster_metrics(y, KMeans(k, n_init=10, random_state=seed).fit_predict(x)))
            runs["spectral (graph)"].append(cluster_metrics(y, spectral(ei, n, k, seed)))
            cfg = configs_for(n)
            cfg.seed = seed
            runs["CCGC"].append(cluster_metrics(y, fit(x, ei, k, cfg)["labels"]))
            scfg = structural_config(**{**cfg.__dict__, "attributes": "structural", "t": 0})
            best, _ = select_feature_block(x, ei, k, scfg)
            scfg.feat_weight, scfg.t_feat = best["feat_weight"], best["t_feat"]
            runs["CCGC (structural)"].append(cluster_metrics(y, fit(x, ei, k, scfg)["labels"]))
            if log:
                log(f"ccgc {name} seed {seed}: " + ", ".join(f"{m} acc {r[-1]['acc']:.3f} nmi {r[-1]['nmi']:.3f}" for m, r in runs.items()))
        out["datasets"][name] = {"n": n, "k": k, "edges": int(ei.shape[1]),
                                 "methods": {m: {key: [float(np.mean([r[key] for r in rs])), float(np.std([r[key] for r in rs]))]
                                             for key in ("acc", "nmi", "ari", "f1")} for m, rs in runs.items()}}
    return out
