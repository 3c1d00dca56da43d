"""CCGC — Cluster-guided Contrastive deep Graph Clustering (Yang et al., AAAI 2023, arXiv:2301.01098).

1. Smooth: X̃ = Â^t X, Â = D^-1/2 (A + I) D^-1/2 of the undirected graph (t = 4): a parameter-free low-pass
   filter, done once with a sparse matrix.
2. Two linear encoders with **unshared** weights (the two "views"; no augmentation): Z_v = norm(X̃ W_v + b_v).
3. Warm-up: MSE(Z1 Z2ᵀ, I) — each node similar to itself across views, dissimilar to the others.
4. Then, every `refresh` epochs, k-means on (Z1 + Z2)/2; per cluster the τ = 0.5 fraction of nodes closest
   to their centre are *high-confidence*. Positives: a high-confidence node with itself across views,
   loss 2 − 2 cos(z1_i, z2_i). Negatives: the K cluster centres of the high-confidence nodes in view 1
   against those in view 2, off-diagonal similarities pushed to 0. Loss = pos + α·neg, α = 0.5.

What differs from the authors' code, on purpose: (a) the N×N similarity of the warm-up and every other
pairwise term is computed on mini-batches of `batch` nodes, so memory is O(batch² + N·d), not O(N²) — it runs
on the 10k-user graph; (b) no labels are ever used to choose an epoch (the original reports the best epoch
by ACC): we train a fixed number of epochs and cluster at the end; (c) positives are averaged over the
high-confidence nodes (METHODS writes pos/K; a per-node mean keeps the scale independent of N).

Output: hard clusters from k-means on (Z1 + Z2)/2 and a confidence per node, the Student-t soft assignment
q_ik ∝ (1 + ‖z_i − μ_k‖²)⁻¹ of DEC, taken at the assigned cluster.

Structural node attributes (`attributes="structural"`, an option; the default stays the paper's features):
CCGC only ever sees node *attributes*; when the communities live in the structure and every community has the
same feature distribution (our planted bot groups), smoothing features cannot separate them. The option gives
CCGC a structural attribute instead: the `struct_dim` (default K) leading eigenvectors of the *regularised*
normalised adjacency (D + τI)^-1/2 A (D + τI)^-1/2, τ = mean degree (regularised spectral embedding, Qin & Rohe
2013 / Amini et al. 2013 — on heavy-tailed sparse graphs the unregularised leading eigenvectors localise on
low-degree fringes), rows L2-normalised (Ng–Jordan–Weiss). Optionally `feat_weight` × PCA(Â^t_feat X) is
concatenated (each block scaled to unit mean squared row norm). The structural block is already a low-pass
filter of the graph (a projection on its top eigenspace), so use it with t = 0 (`structural_config`); a t > 0
still smooths the attributes with Â^t (which, unregularised, drifts back towards the low-degree fringe). Memory O(N·d): sparse eigsh (Lanczos), no N×N matrix.
`select_feature_block` picks (feat_weight, t_feat) without labels by the silhouette of k-means on the attributes.
"""
import threading
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score
from torch import nn


class Cancelled(Exception):
    """Raised by `fit` when its `cancel` event is set."""


@dataclass
class CCGCConfig:
    t: int = 4
    dim: int = 500
    epochs: int = 100
    warmup: int = 20
    refresh: int = 5
    tau: float = 0.5
    alpha: float = 0.5
    lr: float = 1e-3
    batch: int = 1024
    seed: int = 0
    attributes: str = "features"  # "features" (the paper) | "structural" (see module docstring)
    struct_dim: int = 0  # 0: K eigenvectors
    reg: float = 1.0  # τ = reg × mean degree
    feat_weight: float = 0.0  # weight of the PCA(smoothed features) block next to the structural one
    feat_dim: int = 32
    t_feat: int = 0


def structural_config(**kw) -> "CCGCConfig":
    """CCGC on structural attributes: t = 0 (the attributes are already graph-filtered), struct_dim = K."""
    return CCGCConfig(**{"attributes": "structural", "t": 0, **kw})


def smooth(x: np.ndarray, edge_index: np.ndarray, n: int, t: int) -> np.ndarray:
    """Â^t X with Â the symmetric-normalised adjacency (self-loops added) of the undirected union graph."""
    src, dst = edge_index
    a = sp.coo_matrix((np.ones(len(src), np.float32), (src, dst)), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float32) + sp.identity(n, np.float32, format="csr")
    d = np.asarray(a.sum(1)).ravel() ** -0.5
    a_hat = sp.diags(d) @ a @ sp.diags(d)
    out = x.astype(np.float32)
    for _ in range(t):
        out = a_hat @ out
    return np.asarray(out, np.float32)


def _sym_adjacency(edge_index: np.ndarray, n: int) -> sp.csr_matrix:
    src, dst = edge_index
    a = sp.coo_matrix((np.ones(len(src), np.float64), (src, dst)), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    return a


def structural_embedding(edge_index: np.ndarray, n: int, dim: int, reg: float = 1.0, seed: int = 0) -> np.ndarray:
    """Row-normalised leading `dim` eigenvectors of (D + τI)^-1/2 A (D + τI)^-1/2, τ = reg × mean degree, of the
    undirected union graph. Sparse Lanczos (O(N·dim) memory); dense only for tiny graphs."""
    a = _sym_adjacency(edge_index, n)
    deg = np.asarray(a.sum(1)).ravel()
    tau = reg * max(deg.mean(), 1e-12)
    di = (deg + tau) ** -0.5
    m = sp.diags(di) @ a @ sp.diags(di)
    dim = max(1, min(dim, n - 2)) if n > 2 else 1
    if n <= 200 or dim >= n // 2:
        vals, vecs = np.linalg.eigh(m.toarray())
        vecs = vecs[:, np.argsort(vals)[::-1][:dim]]
    else:
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(seed).random(n) + 0.5
        vals, vecs = eigsh(m, k=dim, which="LA", v0=v0)
        vecs = vecs[:, np.argsort(vals)[::-1]]
    u = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return u.astype(np.float32)


def _unit_block(z: np.ndarray) -> np.ndarray:
    return (z / max(np.sqrt((z ** 2).sum(1).mean()), 1e-12)).astype(np.float32)


def feature_block(x: np.ndarray, edge_index: np.ndarray, n: int, dim: int, t: int, seed: int = 0) -> np.ndarray:
    """PCA(Â^t standardised X) to `dim` components, scaled to unit mean squared row norm."""
    from sklearn.decomposition import PCA

    xs = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    xs = smooth(xs, edge_index, n, t) if t else xs.astype(np.float32)
    dim = max(1, min(dim, xs.shape[1], n - 1))
    return _unit_block(PCA(dim, random_state=seed).fit_transform(xs))


def node_attributes(x: np.ndarray, edge_index: np.ndarray, k: int, cfg: "CCGCConfig") -> np.ndarray:
    """What CCGC encodes: the raw features (the paper) or the structural attributes (see the module docstring)."""
    n = x.shape[0]
    if cfg.attributes == "features":
        return x
    if cfg.attributes != "structural":
        raise ValueError(f"attributes must be 'features' or 'structural', not {cfg.attributes!r}")
    u = structural_embedding(edge_index, n, cfg.struct_dim or k, cfg.reg, cfg.seed)
    if cfg.feat_weight > 0:
        u = np.hstack([_unit_block(u), cfg.feat_weight * feature_block(x, edge_index, n, cfg.feat_dim, cfg.t_feat, cfg.seed)])
    return u.astype(np.float32)


def select_feature_block(x: np.ndarray, edge_index: np.ndarray, k: int, cfg: "CCGCConfig", weights=(0.0, 0.5, 1.0),
                         depths=(0, 1, 2, 4), sample: int = 3000) -> tuple[dict, list[dict]]:
    """Label-free choice of (feat_weight, t_feat): the silhouette (sampled, Euclidean) of k-means (K = k) on
    [structural, w × PCA(Â^t X)] for each w, t; the highest wins (ties → the smaller w, then t). Returns the
    choice and the table. The structural block is shared, so every candidate is scored on the same footing."""
    from sklearn.metrics import silhouette_score

    n = x.shape[0]
    u = _unit_block(structural_embedding(edge_index, n, cfg.struct_dim or k, cfg.reg, cfg.seed))
    rows = []
    for t in depths:
        f = feature_block(x, edge_index, n, cfg.feat_dim, t, cfg.seed)
        for w in weights:
            if w == 0 and t != depths[0]:
                continue  # same attributes as w = 0 at the first depth
            z = np.hstack([u, w * f]) if w > 0 else u
            lab = _kmeans(z, k, cfg.seed).labels_
            s = float(silhouette_score(z, lab, sample_size=min(sample, n), random_state=cfg.seed))
            rows.append({"feat_weight": w, "t_feat": t if w > 0 else 0, "silhouette": s})
    best = max(rows, key=lambda r: (round(r["silhouette"], 4), -r["feat_weight"], -r["t_feat"]))
    return best, rows


class Encoders(nn.Module):
    def __init__(self, d_in: int, dim: int):
        super().__init__()
        self.v1, self.v2 = nn.Linear(d_in, dim), nn.Linear(d_in, dim)

    def forward(self, x):
        return F.normalize(self.v1(x), dim=1), F.normalize(self.v2(x), dim=1)


def _kmeans(z: np.ndarray, k: int, seed: int, check_cancel: Callable[[], None] | None = None) -> KMeans:
    """Best of 5 k-means initialisations. With `check_cancel` (a served job), the 5 run one at a time with a check
    between them, so a client that left stops the job within one initialisation instead of five."""
    if check_cancel is None:
        return KMeans(k, n_init=5, random_state=seed).fit(z)
    best = None
    for init_seed in np.random.default_rng(seed).integers(0, 2**31 - 1, size=5):
        check_cancel()
        km = KMeans(k, n_init=1, random_state=int(init_seed)).fit(z)
        best = km if best is None or km.inertia_ < best.inertia_ else best
    return best


def high_confidence(z: np.ndarray, km: KMeans, tau: float) -> np.ndarray:
    """Indices of the τ fraction of each cluster's nodes nearest its centre."""
    dist = np.linalg.norm(z - km.cluster_centers_[km.labels_], axis=1)
    keep = []
    for c in range(km.n_clusters):
        idx = np.flatnonzero(km.labels_ == c)
        if len(idx):
            keep.append(idx[np.argsort(dist[idx])[: max(1, int(np.ceil(tau * len(idx))))]])
    return np.concatenate(keep)


def soft_assignment(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    q = 1.0 / (1.0 + ((z[:, None, :] - centres[None]) ** 2).sum(-1))
    return q / q.sum(1, keepdims=True)


def fit(x: np.ndarray, edge_index: np.ndarray, k: int, cfg: CCGCConfig | None = None,
        progress: Callable[[int, int, float], None] | None = None, cancel: threading.Event | None = None) -> dict:
    """Cluster the nodes into k groups. Returns labels [N], confidence [N], embedding [N, dim], losses.
    `cancel`: once set, the fit raises `Cancelled` at its next mini-batch or k-means initialisation (a served job's
    client left)."""
    cfg = cfg or CCGCConfig()

    def check_cancel():
        if cancel is not None and cancel.is_set():
            raise Cancelled()

    kmeans_check = check_cancel if cancel is not None else None  # offline runs keep sklearn's own 5 inits

    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    n = x.shape[0]
    xs = torch.from_numpy(smooth(node_attributes(x, edge_index, k, cfg), edge_index, n, cfg.t))
    enc = Encoders(xs.shape[1], cfg.dim)
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr)
    losses, hc, pseudo = [], None, None

    def embed():
        with torch.no_grad():
            z1, z2 = enc(xs)
        return ((z1 + z2) / 2).numpy()

    for epoch in range(cfg.epochs):
        if epoch >= cfg.warmup and (hc is None or (epoch - cfg.warmup) % cfg.refresh == 0):
            check_cancel()
            km = _kmeans(embed(), k, cfg.seed, kmeans_check)
            hc, pseudo = high_confidence(embed(), km, cfg.tau), km.labels_
        order = rng.permutation(n if hc is None else hc)
        total = 0.0
        for i in range(0, len(order), cfg.batch):
            check_cancel()
            b = torch.from_numpy(order[i : i + cfg.batch])
            z1, z2 = enc(xs[b])
            if hc is None:  # warm-up on the batch's B×B block
                loss = F.mse_loss(z1 @ z2.T, torch.eye(len(b)))
            else:
                pos = (2 - 2 * (z1 * z2).sum(1)).mean()
                lab = torch.from_numpy(pseudo[b.numpy()].astype(np.int64))
                onehot = F.one_hot(lab, k).float()
                present = onehot.sum(0) > 0
                c1 = F.normalize(onehot.T @ z1, dim=1)[present]
                c2 = F.normalize(onehot.T @ z2, dim=1)[present]
                s = c1 @ c2.T
                neg = (s - torch.diag_embed(torch.diagonal(s))).pow(2).mean() if len(s) > 1 else s.sum() * 0
                loss = pos + cfg.alpha * neg
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        losses.append(total / len(order))
        if progress:
            progress(epoch + 1, cfg.epochs, losses[-1])
    check_cancel()
    z = embed()
    km = _kmeans(z, k, cfg.seed, kmeans_check)
    q = soft_assignment(z, km.cluster_centers_)
    return {"labels": km.labels_.astype(np.int64), "confidence": q[np.arange(n), km.labels_].astype(np.float32),
            "embedding": z, "centres": km.cluster_centers_.astype(np.float32), "losses": losses, "config": asdict(cfg)}


def cluster_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """ACC and macro-F1 after the best one-to-one matching of clusters to classes (Hungarian), NMI, ARI."""
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    cost = np.zeros((len(clusters), len(classes)))
    for i, c in enumerate(clusters):
        for j, l in enumerate(classes):
            cost[i, j] = -np.sum((y_pred == c) & (y_true == l))
    rows, cols = linear_sum_assignment(cost)
    mapping = {clusters[r]: classes[c] for r, c in zip(rows, cols)}
    mapped = np.array([mapping.get(p, -1) for p in y_pred])
    return {
        "acc": float((mapped == y_true).mean()),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, mapped, labels=classes, average="macro", zero_division=0)),
    }
