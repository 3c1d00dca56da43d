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


def confusion_graph(labels: torch.Tensor, predictions: torch.Tensor, n_classes: int) -> np.ndarray:
    """Row-normalised confusion matrix KG[true, predicted] (a row with no samples stays zero)."""
    conf = np.zeros((n_classes, n_classes))
    np.add.at(conf, (np.asarray(labels), np.asarray(predictions)), 1)
    return conf / np.maximum(conf.sum(1, keepdims=True), 1)


def stratified_folds(labels, folds: int, seed: int) -> np.ndarray:
    """Fold id per sample, each class dealt round-robin over the folds in a random order."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = np.arange(len(idx)) % folds
    return fold


def crossfit_predictions(fit, x: torch.Tensor, y: torch.Tensor, folds: int = 3, seed: int = 0) -> torch.Tensor:
    """Out-of-fold predictions on the training set: `fit(x_part, y_part, k)` returns `predict(x) -> labels`; every
    sample is predicted by the model of the fold that left it out, so the confusion graph built from these is a
    held-out estimate (the training-set graph of a model that fits its data is near the identity)."""
    fold = torch.from_numpy(stratified_folds(y.numpy(), folds, seed))
    pred = torch.empty_like(y)
    for k in range(folds):
        out = fold == k
        predict = fit(x[~out], y[~out], k)
        pred[out] = torch.as_tensor(predict(x[out]), dtype=y.dtype)
    return pred


def risda_stats(features: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor, n_classes: int, tail: list) -> RisdaStats:
    """KG from the stage-1 confusion matrix; borrowed covariance and mean shift for the tail classes."""
    est = CovarianceEstimator(n_classes, features.shape[1])
    est.update(features, labels)
    kg = confusion_graph(labels, predictions, n_classes)
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
    train, _, test, counts = long_tailed_digits_split(seed, imbalance, n_max, n_test, n_val=0)
    return train, test, counts


def long_tailed_digits_split(seed: int, imbalance: float = 20.0, n_max: int = 120, n_test: int = 40, n_val: int = 15):
    """As `long_tailed_digits`, plus a balanced validation set of n_val per class (for model selection), drawn
    after the test rows and before the train rows of each class's permutation (n_val = 0 gives the old split)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    counts = [int(round(n_max * imbalance ** (-c / 9))) for c in range(10)]
    tr, va, te = [], [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        assert n_test + n_val + counts[c] <= len(idx), f"class {c}: {len(idx)} digits"
        te.extend(idx[:n_test])
        va.extend(idx[n_test : n_test + n_val])
        tr.extend(idx[n_test + n_val : n_test + n_val + counts[c]])
    part = lambda ix: (torch.from_numpy(x[np.array(ix, np.int64)]), torch.from_numpy(y[np.array(ix, np.int64)]))
    return part(tr), part(va), part(te), counts


def _accuracy(net, x, y) -> float:
    with torch.no_grad():
        return float((net(x)[1].argmax(1) == y).float().mean())


def _train_digits(method: str, train, counts, seed: int, epochs: int = 150, lr: float = 3e-3, val=None) -> DigitNet:
    """Train one DigitNet. With `val` = (x, y) the weights of the best validation-accuracy epoch are kept (the
    first best on ties) and RISDA's stage 2 picks its epoch the same way; without it, the last epoch (old check)."""
    torch.manual_seed(seed)
    x, y = train
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=5e-4)
    cb = class_balanced_weights(counts) if method == "cb_ce" else None
    isda = ISDALoss(10, net.fc.in_features) if method in ("isda", "risda") else None
    best, best_state = -1.0, None
    for epoch in range(epochs):
        net.train()
        for b in torch.randperm(len(y)).split(64):
            a, z = net(x[b])
            loss = isda(a, z, net.fc.weight, y[b], epoch / epochs) if isda else F.cross_entropy(z, y[b], weight=cb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if val is not None:
            score = _accuracy(net.eval(), *val)
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
    if best_state is not None:
        net.load_state_dict(best_state)
    if method == "risda":  # stage 2 on the ISDA-trained features (fixed epochs when there is no validation set)
        net.eval()
        with torch.no_grad():
            a, z = net(x)
        tail = [c for c in range(10) if counts[c] < np.median(counts)]
        stats = risda_stats(a, y, z.argmax(1), 10, tail)
        net.fc, _ = _stage2(net, a, y, stats, counts, val)
    return net.eval()


def _stage2(net: DigitNet, a, y, stats: RisdaStats, counts, val=None, epochs: int = 100):
    """RISDA stage 2 on frozen features `a`, class-balanced weights; the epoch picked on `val` when given."""
    eval_fn = None
    if val is not None:
        with torch.no_grad():
            av = net.body(val[0])

        def eval_fn(head):
            with torch.no_grad():
                return float((head(av).argmax(1) == val[1]).float().mean())

    return retrain_classifier(a, y, stats, 10, net.fc, epochs=epochs, class_weight=class_balanced_weights(counts), eval_fn=eval_fn)


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


HELDOUT_ARMS = ("ce", "cb_ce", "isda_cb", "risda_train", "risda_heldout")


def _scores(net, x, y, tail) -> dict:
    with torch.no_grad():
        pred = net(x)[1].argmax(1)
    t = torch.isin(y, torch.tensor(tail))
    return {"acc": float((pred == y).float().mean()), "tail": float((pred[t] == y[t]).float().mean()),
            "head": float((pred[~t] == y[~t]).float().mean())}


def paired_bootstrap(diffs, n_boot: int = 10000, seed: int = 0) -> list:
    """Mean of paired per-seed differences and a percentile bootstrap 95 % CI (seeds resampled)."""
    d = np.asarray(diffs, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    return [float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def heldout_check(seeds: int = 5, epochs: int = 150, stage2_epochs: int = 100, folds: int = 5, log=print) -> dict:
    """Issue 24 item 5: RISDA with the confusion graph from held-out (cross-fitted) predictions vs the train-set
    graph, an ISDA + class-balanced arm without the graph, CE and class-balanced CE. Long-tailed digits with a
    balanced validation split (15 / class) and test split (40 / class). Every network (and every stage 2) keeps
    its best-validation-accuracy epoch; trunks get `epochs`, stage 2 `stage2_epochs` classifier-only epochs.

    - ce, cb_ce: the DigitNet trained end to end with (class-balanced) cross-entropy.
    - isda_cb: the ISDA-trained trunk, stage 2 with class-balanced weights and each class's own covariance, no
      graph (KG = identity: no borrowing, no mean shift).
    - risda_train: the same trunk, stage 2 with KG from the trunk's predictions on its own training set (the old check).
    - risda_heldout: the same trunk, stage 2 with KG from `folds`-fold cross-fitted predictions on the training
      set (each sample predicted by an ISDA DigitNet trained, same recipe, on the other folds).
    Tail = classes with fewer training samples than the median count; head = the others."""
    runs = {m: [] for m in HELDOUT_ARMS}
    graphs = []
    for seed in range(seeds):
        train, val, (xt, yt), counts = long_tailed_digits_split(seed)
        tail = [c for c in range(10) if counts[c] < np.median(counts)]
        for m in ("ce", "cb_ce"):
            runs[m].append(_scores(_train_digits(m, train, counts, seed, epochs, val=val), xt, yt, tail))
        trunk = _train_digits("isda", train, counts, seed, epochs, val=val)
        x, y = train
        with torch.no_grad():
            a, z = trunk(x)

        def fit(xk, yk, k):
            net = _train_digits("isda", (xk, yk), np.bincount(yk.numpy(), minlength=10), 1000 * (seed + 1) + k, epochs, val=val)
            return lambda xx: net(xx)[1].argmax(1)

        held = crossfit_predictions(fit, x, y, folds, seed)
        stats = {"isda_cb": risda_stats(a, y, y, 10, tail),  # KG = identity: own covariance, no shift
                 "risda_train": risda_stats(a, y, z.argmax(1), 10, tail),
                 "risda_heldout": risda_stats(a, y, held, 10, tail)}
        for m, st in stats.items():
            net = DigitNet()
            net.load_state_dict(trunk.state_dict())
            torch.manual_seed(seed)
            net.fc, _ = _stage2(net, a, y, st, counts, val, stage2_epochs)
            runs[m].append(_scores(net.eval(), xt, yt, tail))
        off = {k: float(np.mean([1 - stats[k].kg[c, c] for c in tail])) for k in ("risda_train", "risda_heldout")}
        graphs.append({"seed": seed, "tail_offdiag": off, "kg_train": stats["risda_train"].kg.round(3).tolist(),
                       "kg_heldout": stats["risda_heldout"].kg.round(3).tolist()})
        if log:
            log(f"risda heldout seed {seed}: " + ", ".join(f"{m} {runs[m][-1]['acc']:.3f}/{runs[m][-1]['tail']:.3f}" for m in HELDOUT_ARMS)
                + f"; tail off-diagonal mass train {off['risda_train']:.3f}, held-out {off['risda_heldout']:.3f}")
    keys = ("acc", "tail", "head")
    summary = {m: {k: [float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs]))] for k in keys} for m, rs in runs.items()}
    vs_cb = {m: {k: paired_bootstrap([r[k] - b[k] for r, b in zip(runs[m], runs["cb_ce"])]) for k in keys}
             for m in HELDOUT_ARMS if m != "cb_ce"}
    return {"seeds": seeds, "train_counts": counts, "tail": tail, "split": "digits, balanced val 15/class, test 40/class",
            "model": f"MLP 64-128-64-10, Adam 3e-3, {epochs} epochs (+ {stage2_epochs} classifier-only stage-2 epochs for the "
                     f"ISDA-trunk arms), best validation accuracy epoch", "folds": folds, "runs": runs, "summary": summary,
            "vs_cb_ce": vs_cb, "graphs": graphs}


def render_heldout(h: dict) -> str:
    names = {"ce": "CE", "cb_ce": "class-balanced CE", "isda_cb": "ISDA + class-balanced (no graph)",
             "risda_train": "RISDA, train-set graph", "risda_heldout": f"RISDA, held-out graph ({h['folds']}-fold cross-fit)"}
    pct = lambda v: f"{100 * v[0]:.2f} ± {100 * v[1]:.2f}"
    ci = lambda v: f"{100 * v[0]:+.2f} [{100 * v[1]:+.2f}, {100 * v[2]:+.2f}]"
    out = [f"### RISDA with a held-out confusion graph (long-tailed digits, {h['seeds']} seeds, epoch on validation)", "",
           f"Train counts {h['train_counts']}; tail = classes {h['tail']} (count < median), head = the rest; {h['split']}. "
           f"{h['model']}. Mean ± std over seeds; Δ = paired difference vs class-balanced CE, mean [bootstrap 95 % CI over seeds], points.", "",
           "| arm | overall acc | tail acc | head acc | Δ overall | Δ tail | Δ head |", "|---|---|---|---|---|---|---|"]
    for m, s_ in h["summary"].items():
        d = h["vs_cb_ce"].get(m)
        out.append(f"| {names[m]} | {pct(s_['acc'])} | {pct(s_['tail'])} | {pct(s_['head'])} | "
                   + (" | ".join(ci(d[k]) for k in ("acc", "tail", "head")) if d else "— | — | —") + " |")
    off = {k: np.mean([g["tail_offdiag"][k] for g in h["graphs"]]) for k in ("risda_train", "risda_heldout")}
    out += ["", f"Tail rows' off-diagonal mass of the confusion graph (mean over tail classes and seeds): train-set "
                f"{off['risda_train']:.3f}, held-out {off['risda_heldout']:.3f}.", ""]
    return "\n".join(out)


def main(argv=None):
    """python -m models.graph.risda --heldout [--seeds 5]: the held-out-graph comparison, into report/risda.json
    (key "heldout"; the old keys are kept) and report/risda.md, then report/results.md is rebuilt."""
    import argparse
    import json
    import time
    from pathlib import Path

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--heldout", action="store_true", help="run the held-out-graph comparison (issue 24 item 5)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--folds", type=int, default=5)
    a = p.parse_args(argv)
    if not a.heldout:
        p.error("nothing to do: pass --heldout (the other RISDA checks run from models.graph.evaluate --part risda)")
    torch.set_num_threads(1)
    report = Path(__file__).parent / "report"
    started = time.perf_counter()
    h = heldout_check(a.seeds, a.epochs, folds=a.folds)
    h["seconds"] = time.perf_counter() - started
    path = report / "risda.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res["heldout"] = h
    path.write_text(json.dumps(res, indent=1))
    (report / "risda.md").write_text(render_heldout(h) + "\n")
    from .evaluate import rebuild_report

    rebuild_report()
    print(render_heldout(h))


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


if __name__ == "__main__":
    main()
