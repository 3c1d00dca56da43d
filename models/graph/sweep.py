"""Is the graph family's model ranking built into the data? A sweep over the generator's two signal axes.

    python -m models.graph.sweep [--homophily 0 0.5 1] [--signal 0.5 1 2] [--seeds 5] [--epochs 50]
                                 [--part bot recipe cluster] [--cluster-seeds 5]

`bot_detector`'s data is generated (synth.py) and the generator was tuned until features alone land near 87 %
and relations help, so "BotRGCN beats the feature models" is partly a property of the tuning. This sweep varies
the two axes that decide it — `homophily_scale` (bot-label homophily of every relation, interpolated towards the
base rate: 0 = none) and `bot_signal` (scale of the bot feature shift) — over fresh generator seeds, and on each
cell trains / fits, on the same graph and the same 70/20/10 split (split seed = generator seed):

- BotRGCN: the served architecture and training recipe (train.py: hidden 64, AdamW lr 1e-2, wd 5e-4, dropout
  0.3, `--epochs`, test at the epoch of best bot *validation* accuracy);
- MLP: the feature-only model of the same recipe (model.MLP);
- LR (features) and LR + neighbour means: scikit-learn logistic regression on the standardised 788 features,
  alone or concatenated with the mean of the in-neighbours' features on each of the 7 relations (what BotRGCN's
  first layer can see), C ∈ {0.001, 0.01, 0.1, 1} chosen on validation accuracy;
- label propagation: label spreading (Zhou et al. 2004) over the undirected union of the relations from the
  training labels, α ∈ {0.1, 0.3, 0.5, 0.7, 0.9, 0.99} and with / without class-mass normalisation chosen on validation.

Bot accuracy and macro-F1 on the test split, mean ± std over seeds; per cell the paired differences between models
(mean ± std and a 95 % bootstrap interval over seeds): a model *wins* when both exclude zero. `--part recipe`
reruns BotRGCN at the default cell with MGTAB's schedule (lr 1e-3, 200 epochs): is a loss there the shortened
recipe's fault?

`--part cluster`: the served clustering (CCGC on structural attributes, cluster_snapshot's settings) against
k-means on the same input (the regularised spectral embedding: regularised spectral clustering) and k-means on
the features, on fresh generator seeds, scored on the planted bot groups; and an attributed SBM whose node
features carry the signal (the paper's setting), where the paper's feature CCGC is run too.

Writes report/sweep.json (every run; rerunning with the same settings keeps finished runs) and report/sweep.md.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression

from .ccgc import CCGCConfig, _sym_adjacency, cluster_metrics, feature_block, fit, node_attributes, select_feature_block, smooth, structural_config
from .synth import RELATIONS, GraphConfig, generate, homophily_by_class, split_masks
from .train import Config, scores, train

REPORT = Path(__file__).parent / "report"
BOT_MODELS = ("BotRGCN", "MLP", "LR (features)", "LR + neighbour means", "label propagation")
C_GRID = (0.001, 0.01, 0.1, 1.0)
ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
# the attributed SBM of the clustering part: fixed before any run, not tuned to any method's score
SBM = {"n": 2000, "k": 5, "degree": 10.0, "in_ratio": 4.0, "d": 64, "mu": 2.0}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ bot-detection baselines


def relation_means(x: np.ndarray, edge_index: np.ndarray, edge_type: np.ndarray) -> np.ndarray:
    """[N, 7·d]: per relation, the mean of each node's in-neighbours' features (edge_index[0] -> [1], as the GNNs
    pass messages); zeros for a node with no in-neighbour on that relation."""
    n = x.shape[0]
    blocks = []
    for r in range(len(RELATIONS)):
        src, dst = edge_index[:, edge_type == r]
        a = sp.csr_matrix((np.ones(len(src), np.float32), (dst, src)), shape=(n, n))
        deg = np.asarray(a.sum(1)).ravel()
        blocks.append(sp.diags(1.0 / np.maximum(deg, 1.0)) @ a @ x)
    return np.hstack(blocks).astype(np.float32)


def logistic(features: np.ndarray, y: np.ndarray, masks: dict) -> dict:
    """Logistic regression on standardised features (train statistics); C chosen on validation accuracy."""
    tr = masks["train"]
    mu, sd = features[tr].mean(0), features[tr].std(0)
    z = (features - mu) / np.where(sd > 1e-6, sd, 1.0)
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=500).fit(z[tr], y[tr])
        val = float((clf.predict(z[masks["val"]]) == y[masks["val"]]).mean())
        if best is None or val > best["val_acc"]:
            best = {"val_acc": val, "pred": clf.predict(z[masks["test"]]), "chosen": {"C": c}}
    return best


def label_propagation(edge_index: np.ndarray, y: np.ndarray, masks: dict, iters: int = 50) -> dict:
    """Label spreading F ← α·S·F + (1 − α)·Y, S = D^-1/2 A D^-1/2 of the undirected union graph, Y the one-hot
    training labels. α and class-mass normalisation (rescale each class column to the training prior) are
    chosen on validation accuracy. A node no label reaches gets the majority class."""
    n, k = len(y), int(y.max()) + 1
    a = _sym_adjacency(edge_index, n)
    d = np.asarray(a.sum(1)).ravel()
    inv = np.where(d > 0, d, 1.0) ** -0.5
    s = sp.diags(inv) @ a @ sp.diags(inv)
    y0 = np.zeros((n, k))
    y0[masks["train"], y[masks["train"]]] = 1.0
    prior = y0.sum(0) / y0.sum()
    best = None
    for alpha in ALPHAS:
        f = y0.copy()
        for _ in range(iters):
            f = alpha * (s @ f) + (1 - alpha) * y0
        for cmn in (False, True):
            g = f * (prior / np.maximum(f.sum(0), 1e-12)) if cmn else f
            pred = np.where(g.sum(1) > 0, g.argmax(1), int(prior.argmax()))
            val = float((pred[masks["val"]] == y[masks["val"]]).mean())
            if best is None or val > best["val_acc"]:
                best = {"val_acc": val, "pred": pred[masks["test"]], "chosen": {"alpha": alpha, "class_mass_norm": cmn}}
    return best


def bot_cell(gcfg: GraphConfig, epochs: int = Config.epochs, models=BOT_MODELS) -> dict:
    """Every model of `models` on one generated graph (split seed = the generator seed). Returns
    {model: {val_acc, acc, f1, seconds, chosen}} and the graph's measured bot homophily per relation."""
    torch.set_num_threads(1)
    graph = generate(gcfg)
    y, seed = graph["bot"], gcfg.seed
    masks = split_masks(len(y), seed)
    cfg = Config(epochs=epochs, edge_scale=gcfg.edge_scale, graph_seed=seed)
    out = {}
    for name in models:
        started = time.perf_counter()
        if name in ("BotRGCN", "MLP"):
            _, m = train(name, graph, seed, cfg, select="bot")
            r = {"val_acc": m["bot"]["val_acc"], **{k: m["bot"]["test"][k] for k in ("acc", "f1")}, "chosen": {"epoch": m["bot"]["epoch"]}}
        else:
            if name == "LR (features)":
                best = logistic(graph["x"], y, masks)
            elif name == "LR + neighbour means":
                best = logistic(np.hstack([graph["x"], relation_means(graph["x"], graph["edge_index"], graph["edge_type"])]), y, masks)
            elif name == "label propagation":
                best = label_propagation(graph["edge_index"], y, masks)
            else:
                raise ValueError(f"unknown model {name!r}; expected one of {BOT_MODELS}")
            test = scores(y[masks["test"]], best["pred"])
            r = {"val_acc": best["val_acc"], "acc": test["acc"], "f1": test["f1"], "chosen": best["chosen"]}
        out[name] = r | {"seconds": time.perf_counter() - started}
    h = homophily_by_class(graph)
    return {"models": out, "bot_homophily": [float(v) for v in h[:, 1]], "human_homophily": [float(v) for v in h[:, 0]]}


# ------------------------------------------------------------------ paired comparisons over seeds


def paired(a, b, n_boot: int = 10_000, seed: int = 0) -> dict:
    """a − b per seed: mean, std, and the 95 % percentile-bootstrap interval of the mean over seeds (resampling
    seeds). `verdict` is "win" / "loss" when both the interval and mean ± std exclude zero, else "tie". (With 5
    seeds the bootstrap interval alone is optimistic — it cannot be wider than the range of the differences, and
    excludes zero with 3 of 5 seeds positive — so the std must agree.)"""
    d = np.asarray(a, float) - np.asarray(b, float)
    boots = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": float(d.mean()), "std": float(d.std()), "ci": [float(lo), float(hi)], "positive": int((d > 0).sum()), "n": len(d),
            "verdict": "win" if lo > 0 and d.mean() > d.std() else "loss" if hi < 0 and d.mean() < -d.std() else "tie"}


def summarise_bot(runs: list, homophily, signal, models=BOT_MODELS) -> dict:
    cells = {}
    for h in homophily:
        for s in signal:
            rs = [r for r in runs if r["homophily_scale"] == h and r["bot_signal"] == s]
            seeds = sorted({r["seed"] for r in rs})
            # only seeds where every model finished, so every comparison is paired
            seeds = [sd for sd in seeds if all(any(r["seed"] == sd and r["model"] == m for r in rs) for m in models)]
            if not seeds:
                continue
            get = {m: {k: [next(r[k] for r in rs if r["seed"] == sd and r["model"] == m) for sd in seeds] for k in ("acc", "f1", "val_acc")} for m in models}
            stats = {m: {k: [float(np.mean(v)), float(np.std(v))] for k, v in get[m].items()} for m in models}
            top_test = max(models, key=lambda m: stats[m]["acc"][0])
            top_val = max(models, key=lambda m: stats[m]["val_acc"][0])
            cells[f"{h}|{s}"] = {
                "homophily_scale": h, "bot_signal": s, "seeds": seeds, "stats": stats,
                "bot_homophily": float(np.mean([np.mean(r["bot_homophily"]) for r in rs if r["model"] == models[0]])),
                "botrgcn_vs": {m: {k: paired(get["BotRGCN"][k], get[m][k]) for k in ("acc", "f1")} for m in models if m != "BotRGCN"} if "BotRGCN" in models else {},
                # the best test mean, and every model not significantly below it (paired, test accuracy)
                "best_test": [top_test] + [m for m in models if m != top_test and paired(get[top_test]["acc"], get[m]["acc"])["verdict"] == "tie"],
                "best_val": [top_val] + [m for m in models if m != top_val and paired(get[top_val]["val_acc"], get[m]["val_acc"])["verdict"] == "tie"],
                "val_vs_top": {m: paired(get[top_val]["val_acc"], get[m]["val_acc"]) for m in models if m != top_val},
            }
    return cells


def recipe_check(gcfg: GraphConfig, lr: float = 1e-3, epochs: int = 200) -> dict:
    """BotRGCN with MGTAB's optimiser schedule (AdamW lr 1e-3, 200 epochs; hidden stays 64) instead of the served
    lr 1e-2 / 50 epochs: is a loss to a baseline the CPU-shortened recipe's fault?"""
    torch.set_num_threads(1)
    graph = generate(gcfg)
    started = time.perf_counter()
    _, m = train("BotRGCN", graph, gcfg.seed, Config(lr=lr, epochs=epochs, edge_scale=gcfg.edge_scale, graph_seed=gcfg.seed), select="bot")
    return {"seed": gcfg.seed, "lr": lr, "epochs": epochs, "val_acc": m["bot"]["val_acc"], **{k: m["bot"]["test"][k] for k in ("acc", "f1")},
            "chosen": {"epoch": m["bot"]["epoch"]}, "seconds": time.perf_counter() - started}


def summarise_recipe(rows: list, bot_runs: list) -> dict:
    """The recipe check against the default cell's models (same seeds, graphs and splits)."""
    default = {(r["seed"], r["model"]): r for r in bot_runs if r["homophily_scale"] == 1.0 and r["bot_signal"] == 1.0}
    rows = [r for r in rows if all((r["seed"], m) in default for m in BOT_MODELS)]
    if not rows:
        return {}
    return {"seeds": [r["seed"] for r in rows],
            "stats": {k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))] for k in ("val_acc", "acc", "f1")},
            "vs": {m: {k: paired([r[k] for r in rows], [default[r["seed"], m][k] for r in rows]) for k in ("val_acc", "acc", "f1")} for m in BOT_MODELS}}


# ------------------------------------------------------------------ clustering


def _kmeans(z, k, seed):
    return KMeans(k, n_init=5, random_state=seed).fit_predict(z)


def cluster_mgtab(seed: int, k: int = 32, epochs: int = 40, dim: int = 256, edge_scale: float = 0.1) -> dict:
    """The served clustering recipe (cluster_snapshot.py: K = 32, structural attributes, t = 0, 40 epochs, warm-up
    10, dim 256, feature block chosen by silhouette) on a fresh generated graph, against k-means on the same
    input and on PCA-32 of the features; scored on the planted groups (grouped bots only), like the snapshot."""
    g = generate(GraphConfig(edge_scale=edge_scale, seed=seed))
    x, ei, n = g["x"], g["edge_index"], len(g["bot"])
    grouped = g["group"] >= 0
    cfg = structural_config(epochs=epochs, warmup=10, dim=dim, seed=seed)
    best, _ = select_feature_block(x, ei, k, cfg)
    cfg.feat_weight, cfg.t_feat = best["feat_weight"], best["t_feat"]
    labels, seconds = {}, {}
    for name, run in (("k-means (PCA-32 of the features)", lambda: _kmeans(feature_block(x, ei, n, 32, 0, seed), k, seed)),
                      ("regularised spectral: k-means on CCGC's input", lambda: _kmeans(node_attributes(x, ei, k, cfg), k, seed)),
                      ("CCGC (structural, served recipe)", lambda: fit(x, ei, k, cfg)["labels"])):
        started = time.perf_counter()
        labels[name] = run()
        seconds[name] = time.perf_counter() - started
    return {"seed": seed, "feat_weight": cfg.feat_weight, "t_feat": cfg.t_feat,
            "methods": {m: cluster_metrics(g["group"][grouped], lab[grouped]) | {"seconds": seconds[m]} for m, lab in labels.items()}}


def attributed_sbm(seed: int, n: int, k: int, degree: float, in_ratio: float, d: int, mu: float):
    """A planted partition whose features carry the signal: k equal blocks, mean degree `degree` with p_in / p_out =
    `in_ratio` (so about in_ratio / (in_ratio + k − 1) of a node's edges stay in its block), features = a block
    mean (a random direction of norm `mu`) plus N(0, I_d). The sweep uses SBM."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(k), n // k))
    p_out = degree / (n / k * (in_ratio + k - 1))
    iu, ju = np.triu_indices(len(y), 1)
    p = np.where(y[iu] == y[ju], in_ratio * p_out, p_out)
    keep = rng.random(len(p)) < p
    means = rng.normal(size=(k, d))
    means *= mu / np.linalg.norm(means, axis=1, keepdims=True)
    x = (means[y] + rng.normal(size=(len(y), d))).astype(np.float32)
    return x, np.stack([iu[keep], ju[keep]]).astype(np.int64), y


def cluster_sbm(seed: int, epochs: int = 60) -> dict:
    """On the attributed SBM: k-means on the features and on Â⁴X (the paper CCGC's input), regularised spectral
    (k-means on the structural attributes), the paper's CCGC (features, t = 4) and the served structural CCGC."""
    x, ei, y = attributed_sbm(seed, **SBM)
    n, k = len(y), int(y.max()) + 1
    paper = CCGCConfig(epochs=epochs, warmup=20, batch=500, seed=seed)  # ccgc_eval's settings for this size
    served = structural_config(epochs=epochs, warmup=20, batch=500, seed=seed)
    best, _ = select_feature_block(x, ei, k, served)
    served.feat_weight, served.t_feat = best["feat_weight"], best["t_feat"]
    pure = structural_config(seed=seed)
    runs = {
        "k-means (features)": lambda: _kmeans(x, k, seed),
        "k-means on Â⁴X (paper CCGC's input)": lambda: _kmeans(smooth(x, ei, n, 4), k, seed),
        "regularised spectral (graph only)": lambda: _kmeans(node_attributes(x, ei, k, pure), k, seed),
        "CCGC (paper: features, t = 4)": lambda: fit(x, ei, k, paper)["labels"],
        "CCGC (structural, served recipe)": lambda: fit(x, ei, k, served)["labels"],
    }
    return {"seed": seed, "feat_weight": served.feat_weight, "t_feat": served.t_feat,
            "methods": {m: cluster_metrics(y, run()) for m, run in runs.items()}}


def summarise_cluster(rows: list) -> dict:
    methods = list(rows[0]["methods"])
    out = {}
    for m in methods:
        out[m] = {k: [float(np.mean([r["methods"][m][k] for r in rows])), float(np.std([r["methods"][m][k] for r in rows]))] for k in ("acc", "nmi", "ari")}
    # every CCGC variant against every method that is not CCGC (paired over seeds)
    out["_ccgc_vs"] = {c: {m: {k: paired([r["methods"][c][k] for r in rows], [r["methods"][m][k] for r in rows]) for k in ("acc", "nmi", "ari")}
                           for m in methods if not is_ccgc(m)} for c in methods if is_ccgc(c)}
    return out


def is_ccgc(name: str) -> bool:
    return name.startswith("CCGC")


# ------------------------------------------------------------------ report


def _pm(v, scale=100.0):
    return f"{scale * v[0]:.1f} ± {scale * v[1]:.1f}"


def _diff(p):
    return f"{100 * p['mean']:+.1f} ± {100 * p['std']:.1f} [{100 * p['ci'][0]:+.1f}, {100 * p['ci'][1]:+.1f}] {p['verdict']}"


def render(res: dict) -> str:
    c = res["config"]
    out = ["# Does the data decide the graph ranking? (`python -m models.graph.sweep`)", "",
           "Generated MGTAB-shaped data (models/graph/synth.py), **not MGTAB**. Every number is a mean ± std over generator "
           "seeds (the split seed is the generator seed; every model of a cell sees the same graph and split). "
           "Differences are paired per seed: mean ± std [95 % bootstrap interval over seeds]; *win* / *loss* = both the "
           "interval and mean ± std exclude zero, else *tie* (with 5 seeds the bootstrap interval alone is optimistic: it "
           "can't be wider than the range of the 5 differences).", ""]
    if "bot" in res:
        b = res["bot"]
        out += [f"## Bot detection: {c['n_users']} users, edge scale {c['edge_scale']}, seeds {b['seeds_used']}", "",
                f"BotRGCN and MLP: train.py's recipe (hidden 64, AdamW lr 0.01, wd 5e-4, dropout 0.3), {c['epochs']} epochs"
                f"{' (the served model: 50)' if c['epochs'] != 50 else ' (as served)'}, test at the best bot-validation epoch. "
                "LR: C ∈ {0.001, 0.01, 0.1, 1} on validation; label propagation: α ∈ {0.1, 0.3, 0.5, 0.7, 0.9, 0.99}, class-mass normalisation on/off, "
                "on validation. Accuracy and macro-F1 in %. `homophily` is the sweep's `homophily_scale` (1 = the tuned generator), "
                "`bot signal` its `bot_signal`; 'bot homophily' is the measured share of a bot's in-neighbours that are bots, "
                "averaged over the 7 relations (base rate 26.9 %).", "",
                "| homophily | bot signal | bot homophily | model | val acc | test acc | test F1 |", "|---|---|---|---|---|---|---|"]
        for cell in b["cells"].values():
            for m in BOT_MODELS:
                if m in cell["stats"]:
                    st = cell["stats"][m]
                    out.append(f"| {cell['homophily_scale']} | {cell['bot_signal']} | {100 * cell['bot_homophily']:.1f} | {m} | "
                               f"{_pm(st['val_acc'])} | {_pm(st['acc'])} | {_pm(st['f1'])} |")
        out += ["", "### BotRGCN minus each baseline (test accuracy; paired over seeds)", "",
                "| homophily | bot signal | − MLP | − LR (features) | − LR + neighbour means | − label propagation |", "|---|---|---|---|---|---|"]
        for cell in b["cells"].values():
            vs = cell["botrgcn_vs"]
            out.append(f"| {cell['homophily_scale']} | {cell['bot_signal']} | " + " | ".join(_diff(vs[m]["acc"]) if m in vs else "—" for m in BOT_MODELS[1:]) + " |")
        out += ["", "### BotRGCN minus each baseline (test macro-F1)", "",
                "| homophily | bot signal | − MLP | − LR (features) | − LR + neighbour means | − label propagation |", "|---|---|---|---|---|---|"]
        for cell in b["cells"].values():
            vs = cell["botrgcn_vs"]
            out.append(f"| {cell['homophily_scale']} | {cell['bot_signal']} | " + " | ".join(_diff(vs[m]["f1"]) if m in vs else "—" for m in BOT_MODELS[1:]) + " |")
        out += ["", "### Who wins each cell", "",
                "Best = the highest mean; 'tied with' = models whose paired difference from it is a tie (see above).", "",
                "| homophily | bot signal | best on test accuracy (tied with) | best on validation accuracy (tied with) |", "|---|---|---|---|"]
        for cell in b["cells"].values():
            bt, bv = cell["best_test"], cell["best_val"]
            out.append(f"| {cell['homophily_scale']} | {cell['bot_signal']} | {bt[0]}" + (f" ({', '.join(bt[1:])})" if bt[1:] else "") +
                       f" | {bv[0]}" + (f" ({', '.join(bv[1:])})" if bv[1:] else "") + " |")
        out.append("")
    rc = res.get("recipe", {}).get("summary")
    if rc:
        st = rc["stats"]
        out += [f"### Is it the recipe? BotRGCN with MGTAB's schedule at the default cell (homophily 1, bot signal 1), seeds {rc['seeds']}", "",
                "AdamW lr 1e-3 for 200 epochs (MGTAB's schedule; hidden stays 64) instead of the served lr 1e-2 for 50; same graphs and splits. "
                f"Val acc {_pm(st['val_acc'])}, test acc {_pm(st['acc'])}, test F1 {_pm(st['f1'])}.", "",
                "| BotRGCN (lr 1e-3, 200 epochs) − | val acc | test acc | test F1 |", "|---|---|---|---|"]
        out += [f"| {m}{' (served recipe)' if m == 'BotRGCN' else ''} | " + " | ".join(_diff(d[k]) for k in ("val_acc", "acc", "f1")) + " |" for m, d in rc["vs"].items()]
        out.append("")
    if "cluster" in res:
        cl = res["cluster"]
        for key, title in (("mgtab", f"## Clustering the planted bot groups: generated graph (edge scale {c['edge_scale']}), K = 32, fresh seeds {[r['seed'] for r in cl.get('mgtab_runs', [])]}"),
                           ("sbm", f"## Clustering an attributed SBM (the paper's setting: features carry the signal), seeds {[r['seed'] for r in cl.get('sbm_runs', [])]}")):
            if key not in cl:
                continue
            s = cl[key]
            out += [title, ""]
            if key == "mgtab":
                out += ["Scored on the grouped bots (the 24 planted groups), like weights/clusters.json. CCGC: cluster_snapshot's recipe "
                        "(structural attributes, t = 0, 40 epochs, warm-up 10, dim 256, feature block by silhouette: chosen weights "
                        f"{[r['feat_weight'] for r in cl['mgtab_runs']]}). 'k-means on CCGC's input' with feature weight 0 is regularised spectral "
                        "clustering (Qin & Rohe: K leading eigenvectors of (D + τI)^-1/2 A (D + τI)^-1/2, rows normalised, k-means).", ""]
            else:
                sp_ = cl["sbm_params"]
                out += [f"{sp_['n']} nodes, {sp_['k']} equal blocks, mean degree {sp_['degree']}, p_in / p_out = {sp_['in_ratio']}, features = block mean "
                        f"(norm {sp_['mu']}) + N(0, I_{sp_['d']}); fixed before any run. CCGC settings: 60 epochs, warm-up 20, batch 500, dim 500; "
                        f"structural CCGC's feature weights chosen by silhouette: {[r['feat_weight'] for r in cl['sbm_runs']]}.", ""]
            out += ["| method | ACC | NMI | ARI |", "|---|---|---|---|"]
            out += [f"| {m} | {_pm(v['acc'])} | {_pm(v['nmi'])} | {_pm(v['ari'])} |" for m, v in s.items() if not m.startswith("_")]
            out += ["", "| CCGC variant − baseline (paired) | ACC | NMI | ARI |", "|---|---|---|---|"]
            for c_, vs in s["_ccgc_vs"].items():
                out += [f"| {c_} − {m} | " + " | ".join(_diff(d[k]) for k in ("acc", "nmi", "ari")) + " |" for m, d in vs.items()]
            out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------ command


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", nargs="*", default=["bot", "recipe", "cluster"], choices=["bot", "recipe", "cluster"])
    p.add_argument("--homophily", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    p.add_argument("--signal", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    p.add_argument("--seeds", type=int, default=5, help="generator seeds 0..n-1 per bot cell (and for the recipe check)")
    p.add_argument("--epochs", type=int, default=50, help="BotRGCN / MLP epochs (served: 50)")
    p.add_argument("--n-users", type=int, default=10_199)
    p.add_argument("--edge-scale", type=float, default=0.1)
    p.add_argument("--cluster-seeds", type=int, default=5, help="fresh generator seeds 101.. (SBM: 0..) for clustering")
    p.add_argument("--out", type=Path, default=REPORT / "sweep.json")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    config = {"n_users": a.n_users, "edge_scale": a.edge_scale, "epochs": a.epochs}
    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    if res.get("config") != config:  # finished runs are kept only for the same graph size and epochs
        res = {}
    res["config"] = config

    def save():
        """Summaries are recomputed from the stored runs every time, then both files are rewritten."""
        if "bot" in res:
            b = res["bot"]
            b["seeds_used"] = sorted({r["seed"] for r in b["runs"]})
            b["cells"] = summarise_bot(b["runs"], sorted({r["homophily_scale"] for r in b["runs"]}), sorted({r["bot_signal"] for r in b["runs"]}))
        if "recipe" in res and "bot" in res:
            res["recipe"]["summary"] = summarise_recipe(res["recipe"]["runs"], res["bot"]["runs"])
        for key in ("sbm", "mgtab"):
            if res.get("cluster", {}).get(f"{key}_runs"):
                res["cluster"][key] = summarise_cluster(res["cluster"][f"{key}_runs"])
        a.out.parent.mkdir(exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
        a.out.with_suffix(".md").write_text(render(res))

    def graph_config(h, s, seed):
        return GraphConfig(n_users=a.n_users, edge_scale=a.edge_scale, homophily_scale=h, bot_signal=s, seed=seed)

    if "bot" in a.part:
        runs = res.setdefault("bot", {"runs": []})["runs"]
        for h in a.homophily:
            for s in a.signal:
                for seed in range(a.seeds):
                    if any(r["homophily_scale"] == h and r["bot_signal"] == s and r["seed"] == seed for r in runs):
                        continue
                    cell = bot_cell(graph_config(h, s, seed), a.epochs)
                    runs += [{"homophily_scale": h, "bot_signal": s, "seed": seed, "model": m, **r, "bot_homophily": cell["bot_homophily"]}
                             for m, r in cell["models"].items()]
                    log(f"bot h {h} s {s} seed {seed}: " + ", ".join(f"{m} {100 * r['acc']:.1f} ({r['seconds']:.0f}s)" for m, r in cell["models"].items()))
                    save()
    if "recipe" in a.part:
        runs = res.setdefault("recipe", {"runs": []})["runs"]
        for seed in range(a.seeds):
            if not any(r["seed"] == seed for r in runs):
                runs.append(recipe_check(graph_config(1.0, 1.0, seed)))
                log(f"recipe check seed {seed}: BotRGCN lr 1e-3 200 epochs: {100 * runs[-1]['acc']:.1f} ({runs[-1]['seconds']:.0f}s)")
                save()
    if "cluster" in a.part:
        cl = res.setdefault("cluster", {})
        cl["sbm_params"] = SBM
        for key, run, first in (("sbm", cluster_sbm, 0), ("mgtab", lambda sd: cluster_mgtab(sd, edge_scale=a.edge_scale), 101)):
            rows = cl.setdefault(f"{key}_runs", [])
            for seed in range(first, first + a.cluster_seeds):
                if any(r["seed"] == seed for r in rows):
                    continue
                started = time.perf_counter()
                rows.append(run(seed))
                log(f"cluster {key} seed {seed} ({time.perf_counter() - started:.0f}s): " +
                    ", ".join(f"{m} acc {100 * v['acc']:.1f} nmi {100 * v['nmi']:.1f}" for m, v in rows[-1]["methods"].items()))
                save()
    save()
    print(a.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
