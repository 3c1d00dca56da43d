"""ISDA and RISDA as reusable losses, the long-tailed digits check, and RISDA on the bot / stance heads.

ISDA (Wang et al., 2019): implicit semantic augmentation. With features a (the classifier's input), class
covariances Σ_c estimated online, and a linear classifier (W, b), the expected cross-entropy over
augmentations a ~ N(a, λΣ_y) is bounded by cross-entropy on the *augmented logits*

    z̃_j = z_j + (λ/2) (w_j − w_y)ᵀ Σ_y (w_j − w_y),      λ ramped 0 → λ0 over training.

RISDA (Chen et al., 2022, "Reasoning-based implicit semantic data augmentation for long-tailed
classification"): tail classes have too few samples for a good Σ_c, so they borrow from the classes they are
confused with. After stage 1, the knowledge graph KG is the row-normalised confusion matrix (on the training
set); tail class c gets Σ̃_c = Σ_c' KG[c, c'] Σ_c' and a mean shift Δμ_c = Σ_c' KG[c, c'] μ_c' − μ_c; stage 2
retrains the classifier only, on frozen features, with class-balanced weights and logits

    z̃_j = z_j + β (w_j − w_y)ᵀ Δμ_y + (α/2) (w_j − w_y)ᵀ Σ̃_y (w_j − w_y).

Head classes keep their own Σ_c and Δμ = 0. The paper's exact terms are unconfirmed here (METHODS.md §9);
these are our reading, α = 0.5, β = 0.75.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class CovarianceEstimator:
    """Running per-class mean and covariance of features (the ISDA paper's online estimator, exact counts)."""

    def __init__(self, n_classes: int, dim: int):
        self.n = torch.zeros(n_classes)
        self.mean = torch.zeros(n_classes, dim)
        self.cov = torch.zeros(n_classes, dim, dim)

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        for c in labels.unique().tolist():
            f = features[labels == c]
            m, k = f.mean(0), len(f)
            cov_b = ((f - m).T @ (f - m)) / k
            n0 = self.n[c]
            tot = n0 + k
            delta = m - self.mean[c]
            self.cov[c] = (n0 * self.cov[c] + k * cov_b) / tot + (n0 * k / tot**2) * torch.outer(delta, delta)
            self.mean[c] = self.mean[c] + delta * k / tot
            self.n[c] = tot


def augmented_logits(logits, weight, labels, cov, shift=None, lam=0.5, beta=0.0):
    """z̃_j = z_j + β (w_j − w_y)ᵀ shift_y + (λ/2) (w_j − w_y)ᵀ cov_y (w_j − w_y); shape [B, C]."""
    dw = weight[None, :, :] - weight[labels][:, None, :]  # [B, C, D]
    sigma = cov[labels]  # [B, D, D]
    quad = torch.einsum("bcd,bde,bce->bc", dw, sigma, dw)
    out = logits + 0.5 * lam * quad
    if shift is not None and beta:
        out = out + beta * torch.einsum("bcd,bd->bc", dw, shift[labels])
    return out


class ISDALoss(nn.Module):
    """Cross-entropy on ISDA's augmented logits; updates the covariance estimate on every call."""

    def __init__(self, n_classes: int, dim: int, lam0: float = 0.5, weight=None):
        super().__init__()
        self.est, self.lam0, self.class_weight = CovarianceEstimator(n_classes, dim), lam0, weight

    def forward(self, features, logits, classifier_weight, labels, progress: float):
        self.est.update(features.detach(), labels)
        z = augmented_logits(logits, classifier_weight, labels, self.est.cov, lam=self.lam0 * progress)
        return F.cross_entropy(z, labels, weight=self.class_weight)


@dataclass
class RisdaStats:
    cov: torch.Tensor  # borrowed covariances Σ̃ [C, D, D]
    shift: torch.Tensor  # Δμ [C, D]
    kg: np.ndarray  # [C, C]
    tail: list


def risda_stats(features: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor, n_classes: int, tail: list) -> RisdaStats:
    """KG from the stage-1 confusion matrix; borrowed covariance and mean shift for the tail classes."""
    est = CovarianceEstimator(n_classes, features.shape[1])
    est.update(features, labels)
    conf = np.zeros((n_classes, n_classes))
    np.add.at(conf, (labels.numpy(), predictions.numpy()), 1)
    kg = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    kg_t = torch.from_numpy(kg).float()
    cov, shift = est.cov.clone(), torch.zeros_like(est.mean)
    for c in tail:
        cov[c] = torch.einsum("k,kde->de", kg_t[c], est.cov)
        shift[c] = kg_t[c] @ est.mean - est.mean[c]
    return RisdaStats(cov, shift, kg, list(tail))


def class_balanced_weights(counts, beta: float = 0.999) -> torch.Tensor:
    """Cui et al., 2019: w_c ∝ (1 − β) / (1 − β^{n_c}), normalised to mean 1."""
    counts = np.asarray(counts, np.float64)
    w = (1 - beta) / (1 - beta ** np.maximum(counts, 1))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def retrain_classifier(features, labels, stats: RisdaStats, n_classes: int, init: nn.Linear, epochs: int = 100, lr: float = 1e-2,
                       alpha: float = 0.5, beta: float = 0.75, class_weight=None, eval_fn=None) -> tuple[nn.Linear, list]:
    """RISDA stage 2: retrain only the linear classifier on frozen features. `eval_fn(head)` -> score picks the epoch."""
    head = nn.Linear(features.shape[1], n_classes)
    head.load_state_dict(init.state_dict())
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        z = augmented_logits(head(features), head.weight, labels, stats.cov, stats.shift, lam=alpha, beta=beta)
        loss = F.cross_entropy(z, labels, weight=class_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if eval_fn is not None:
            score = eval_fn(head)
            history.append(score)
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in head.state_dict().items()}
    if best_state is not None:
        head.load_state_dict(best_state)
    return head, history


# ------------------------------------------------------------------ faithful check: long-tailed digits


class DigitNet(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, hidden), nn.ReLU())
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x):
        a = self.body(x)
        return a, self.fc(a)


def long_tailed_digits(seed: int, imbalance: float = 20.0, n_max: int = 120, n_test: int = 50):
    """sklearn digits: a balanced test set of n_test per class, train n_c = n_max · imbalance^(−c/9)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    counts = [int(round(n_max * imbalance ** (-c / 9))) for c in range(10)]
    tr, te = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        te.extend(idx[:n_test])
        tr.extend(idx[n_test : n_test + counts[c]])
    tr, te = np.array(tr), np.array(te)
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr])), (torch.from_numpy(x[te]), torch.from_numpy(y[te])), counts


def _train_digits(method: str, train, counts, seed: int, epochs: int = 150, lr: float = 3e-3) -> DigitNet:
    torch.manual_seed(seed)
    x, y = train
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=5e-4)
    cb = class_balanced_weights(counts) if method == "cb_ce" else None
    isda = ISDALoss(10, net.fc.in_features) if method in ("isda", "risda") else None
    for epoch in range(epochs):
        for b in torch.randperm(len(y)).split(64):
            a, z = net(x[b])
            loss = isda(a, z, net.fc.weight, y[b], epoch / epochs) if isda else F.cross_entropy(z, y[b], weight=cb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    if method == "risda":  # stage 2 on the ISDA-trained features, fixed epochs (no validation set here)
        net.eval()
        with torch.no_grad():
            a, z = net(x)
        tail = [c for c in range(10) if counts[c] < np.median(counts)]
        stats = risda_stats(a, y, z.argmax(1), 10, tail)
        net.fc, _ = retrain_classifier(a, y, stats, 10, net.fc, epochs=100, class_weight=class_balanced_weights(counts))
    return net.eval()


def digits_check(seeds: int = 5, log=print, heads_seeds: int = 2) -> dict:
    methods = ("ce", "cb_ce", "isda", "risda")
    runs = {m: [] for m in methods}
    for seed in range(seeds):
        train, (xt, yt), counts = long_tailed_digits(seed)
        tail = [c for c in range(10) if counts[c] < np.median(counts)]
        for m in methods:
            net = _train_digits(m, train, counts, seed)
            with torch.no_grad():
                pred = net(xt)[1].argmax(1)
            acc = float((pred == yt).float().mean())
            t = torch.isin(yt, torch.tensor(tail))
            runs[m].append({"acc": acc, "tail": float((pred[t] == yt[t]).float().mean())})
        if log:
            log(f"risda digits seed {seed}: " + ", ".join(f"{m} {runs[m][-1]['acc']:.3f}/{runs[m][-1]['tail']:.3f}" for m in methods))
    summary = {m: {k: [float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs]))] for k in ("acc", "tail")} for m, rs in runs.items()}
    out = {"imbalance": 20, "seeds": seeds, "train_counts": counts, "tail": tail, "model": "MLP 64-128-64-10, Adam 3e-3, 150 epochs",
           "runs": runs, "summary": summary}
    if heads_seeds:
        out["heads"] = heads_check(heads_seeds, log)
    return out


# ------------------------------------------------------------------ RISDA on the BotRGCN heads


def penultimate(model, x, edge_index, edge_type) -> torch.Tensor:
    """BotRGCN's features just before its heads (eval mode)."""
    feats = {}
    hook = model.heads.register_forward_hook(lambda mod, inp, out: feats.setdefault("h", inp[0]))
    with torch.no_grad():
        model.eval()(x, edge_index, edge_type)
    hook.remove()
    return feats["h"]


def risda_heads(model, graph: dict, seed: int, epochs: int = 100) -> dict:
    """Stage 2 of RISDA on a trained BotRGCN: retrain the bot and stance heads on frozen features; the epoch
    is picked on validation accuracy, test scored once. Tail: the bot class (27 %), the support stance (27 %)."""
    from .synth import split_masks
    from .train import scores, tensors

    x, ei, et = tensors(graph)
    h = penultimate(model, x, ei, et)
    masks = {k: torch.from_numpy(v) for k, v in split_masks(len(graph["bot"]), seed).items()}
    out = {}
    for task, head, k in (("bot", model.heads.bot, 2), ("stance", model.heads.stance, 3)):
        y = torch.from_numpy(graph[task])
        tr = masks["train"]
        counts = np.bincount(y[tr].numpy(), minlength=k)
        tail = [int(np.argmin(counts))]
        with torch.no_grad():
            pred = head(h[tr]).argmax(1)
        stats = risda_stats(h[tr], y[tr], pred, k, tail)

        def val_acc(hd):
            with torch.no_grad():
                return float((hd(h[masks["val"]]).argmax(1) == y[masks["val"]]).float().mean())

        torch.manual_seed(seed)
        new, _ = retrain_classifier(h[tr], y[tr], stats, k, head, epochs=epochs, class_weight=class_balanced_weights(counts), eval_fn=val_acc)
        with torch.no_grad():
            test_pred = new(h[masks["test"]]).argmax(1).numpy()
        out[task] = {"val_acc": val_acc(new), "test": scores(y[masks["test"]].numpy(), test_pred), "tail": tail}
    return out


def heads_check(seeds: int, log=print, epochs: int = 50) -> dict:
    """RISDA stage 2 against the cross-entropy heads *of the same trunk*: BotRGCN trained with CE (stage 1),
    weights at the best joint validation epoch, then both heads retrained with RISDA on the frozen features
    (epoch picked on validation). Tail classes: bot (27 %), support stance (27 %)."""
    from .train import Config, graph_for, train

    cfg = Config(epochs=epochs)
    graph = graph_for(cfg)
    runs = []
    for seed in range(seeds):
        model, m = train("BotRGCN", graph, seed, cfg, select="joint")
        r = risda_heads(model, graph, seed)
        runs.append({"seed": seed, "ce": {t: m["served"][t] for t in ("bot", "stance")}, "risda": {t: r[t]["test"] for t in ("bot", "stance")}})
        if log:
            log(f"risda heads seed {seed}: CE bot {m['served']['bot']['acc']:.4f}/{m['served']['bot']['f1']:.4f} -> RISDA "
                f"{r['bot']['test']['acc']:.4f}/{r['bot']['test']['f1']:.4f}; CE stance {m['served']['stance']['acc']:.4f} -> RISDA {r['stance']['test']['acc']:.4f}")
    keys = ("acc", "f1", "precision", "recall")
    summary = {h: {t: {k: [float(np.mean([r[h][t][k] for r in runs])), float(np.std([r[h][t][k] for r in runs]))] for k in keys}
                   for t in ("bot", "stance")} for h in ("ce", "risda")}
    return {"seeds": seeds, "runs": runs, "summary": summary}
