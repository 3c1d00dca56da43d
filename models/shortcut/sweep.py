"""Shortcut audit that audits: does any Chroma-VAE configuration leave z2 free of the shortcut?

    python -m models.shortcut.sweep --phase broad   # 24 arms (β × z1 size × encoder) × 2 seeds, validation only
    python -m models.shortcut.sweep --phase final   # the leading arms and the served one to 5 seeds; ERM, JTT and
                                                    # the group-balanced oracle, 5 seeds; the choice (validation only)
    git commit models/shortcut/report/sweep.json    # freeze the choice
    python -m models.shortcut.sweep --phase test    # score the test split once, for the final arms and baselines

Everything is on the colour shortcut (the served one). For every arm and seed, on the **validation** split:

- *shortcut probe*: how well the shortcut attribute can be read off z2 (posterior means). A classifier is fit on
  the training images' z2 and scored on validation by **group-balanced accuracy**: the mean, over the four
  (label, attribute) groups, of the accuracy of predicting the attribute, with the fit weighted 1 / group size.
  Balancing matters: the label agrees with the colour in 90 % of images, so a z2 holding only the digit would
  predict the colour at ~0.7 unbalanced; balanced, any z2 that holds no colour scores 0.5 (in the balanced
  distribution the attribute is independent of the label and the digit). Two probes: logistic regression and
  15-NN on a group-balanced subsample (a z2 can hold the colour non-linearly).
- *z2 classifier*: the served core (best of kNN / linear, with or without z1-resampled reconstructions, by
  validation worst-group accuracy; ``models/shortcut/train.py: fit_cores``), worst-group and average accuracy.
- the z1 head's accuracy and the same probes on z1 (does z1 take the shortcut, as the paper intends?).

Rule (fixed before any run; ``choose``): an arm is *shortcut-free* when the larger of its two z2 probes, averaged
over seeds, is at most ``FREE_AT`` (chance 0.5). Among shortcut-free arms the served one has the best mean
validation worst-group accuracy of its z2 classifier. If no arm is shortcut-free, the arm with the lowest probe
(then best worst-group) is reported as the least-bad, and the card says plainly that z2 is not shortcut-free.

Baselines, same 5 seeds and splits, each with its epoch and hyper-parameters chosen on validation worst-group
accuracy (group labels of the validation split are used for selection by every method, as in the JTT paper):
ERM; JTT (Liu et al., 2021: ERM for T epochs, upweight its training errors by λ, retrain); the group-balanced
oracle (training loss weighted 1 / group size, with training group labels).

Trained states are cached in models/shortcut/.sweep_cache (not committed) so the test phase scores exactly the
models the choice was made from. Run with ``nice -n 19`` and ``OMP_NUM_THREADS=1``: it uses one core.
"""
import argparse
import json
import subprocess
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from .data import group_accuracies, make_benchmark
from .model import ENCODERS, MLPClassifier
from .train import Config, _batches, _predict, fit_cores, latents, served_core, train_vae

HERE = Path(__file__).parent
REPORT = HERE / "report"
CACHE = HERE / ".sweep_cache"
KIND = "colour"
BETAS = (0.25, 1.0, 4.0, 16.0)
SHORTCUT_DIMS = (1, 2, 4)
ENCODER_NAMES = ("mlp", "conv")
HIDDEN = {"mlp": 128, "conv": 16}
BROAD_SEEDS = (0, 1)
FINAL_SEEDS = (0, 1, 2, 3, 4)
FINAL_TOP = 3  # arms carried to 5 seeds by the rule, besides the served one and the best worst-group arm
FREE_AT = 0.60  # shortcut-free: mean group-balanced probe accuracy ≤ this (chance 0.5; one seed's SE is ~0.06)
PREVIOUS_ARM = "mlp_b1_z1"  # what shortcut_audit served before this sweep (train.Config defaults)
PROBE_K = 15
JTT_EPOCHS = (1, 3, 10)  # T: epochs of the identification ERM
JTT_UPWEIGHT = (5.0, 20.0)  # λ
BASELINES = ("erm", "jtt", "group_balanced_oracle")


def arm_name(encoder: str, beta: float, shortcut_dim: int, alpha: float = Config.alpha) -> str:
    """``<encoder>_b<β>_z<dim z1>``, plus ``_a<α>`` when α is not the default (extension arms)."""
    return f"{encoder}_b{beta:g}_z{shortcut_dim}" + (f"_a{alpha:g}" if alpha != Config.alpha else "")


def arm_config(name: str, base: Config = Config()) -> Config:
    encoder, beta, dim, *alpha = name.split("_")
    return replace(base, encoder=encoder, hidden=HIDDEN[encoder], beta=float(beta[1:]), shortcut_dim=int(dim[1:]),
                   alpha=float(alpha[0][1:]) if alpha else Config.alpha)


def broad_arms() -> list[str]:
    return [arm_name(e, b, d) for e in ENCODER_NAMES for b in BETAS for d in SHORTCUT_DIMS]


# ----------------------------------------------------------------------------------------------- the probe

def group_weights(group: np.ndarray) -> np.ndarray:
    """1 / (size of the sample's group), scaled to mean 1: every (label, attribute) group weighs the same."""
    counts = np.bincount(group, minlength=4).astype(np.float64)
    w = 1.0 / counts[group]
    return w * len(w) / w.sum()


def group_balanced_accuracy(pred: np.ndarray, target: np.ndarray, group: np.ndarray) -> float:
    """Mean over the groups present of the accuracy of ``pred`` against ``target``."""
    return float(np.mean([(pred[group == g] == target[group == g]).mean() for g in np.unique(group)]))


def shortcut_probe(z_fit: np.ndarray, fit: dict, z_eval: np.ndarray, evaluate: dict, kind: str = "linear", seed: int = 0) -> float:
    """Group-balanced accuracy of predicting the shortcut attribute from ``z`` (chance 0.5).

    ``fit`` / ``evaluate`` are benchmark splits (``attribute`` and ``group`` are read). ``kind``: ``"linear"``
    (logistic regression, C = 1, weighted 1 / group size) or ``"knn"`` (15-NN on a seeded subsample with every
    group cut to the smallest group's size). Features are standardised with the fit split's mean and scale."""
    z_fit, z_eval = np.asarray(z_fit, np.float64), np.asarray(z_eval, np.float64)
    mean, scale = z_fit.mean(0), np.maximum(z_fit.std(0), 1e-6)
    a, g = fit["attribute"], fit["group"]
    x_fit, x_eval = (z_fit - mean) / scale, (z_eval - mean) / scale
    if kind == "linear":
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(x_fit, a, sample_weight=group_weights(g))
    elif kind == "knn":
        rng = np.random.default_rng(seed)
        smallest = np.bincount(g, minlength=4)[np.unique(g)].min()
        keep = np.concatenate([rng.choice(np.flatnonzero(g == k), smallest, replace=False) for k in np.unique(g)])
        clf = KNeighborsClassifier(min(PROBE_K, len(keep))).fit(x_fit[keep], a[keep])
    else:
        raise ValueError(f"unknown probe {kind!r}; choose 'linear' or 'knn'")
    return group_balanced_accuracy(clf.predict(x_eval), evaluate["attribute"], evaluate["group"])


def probes(z_fit, fit: dict, z_eval, evaluate: dict, seed: int) -> dict[str, float]:
    got = {kind: shortcut_probe(z_fit, fit, z_eval, evaluate, kind, seed) for kind in ("linear", "knn")}
    return got | {"max": max(got.values())}


# ------------------------------------------------------------------------------------------- Chroma-VAE arms

def vae_arm(name: str, seed: int, cfg: Config | None = None, cache: Path | None = CACHE) -> dict:
    """Train one arm on one seed exactly as ``train.run`` does (same RNG order, so seed 0 of the chosen arm is
    the model ``train --save`` writes); return its validation record and cache the VAE."""
    cfg = cfg or arm_config(name)
    torch.manual_seed(seed)
    started = time.perf_counter()
    data = make_benchmark(KIND, seed)
    vae, history = train_vae(data["train"], cfg)
    record = {"arm": name, "seed": seed, "config": asdict(cfg), "final_losses": history[-1]} | validation_record(vae, data, seed)
    record["seconds"] = round(time.perf_counter() - started, 1)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        torch.save({"config": asdict(cfg), "state": vae.state_dict()}, cache / f"{name}_seed{seed}.pt")
    return record


def _head(vae, z1: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (vae.head(z1)[:, 0] > 0).numpy().astype(np.int64)


def validation_record(vae, data: dict, seed: int) -> dict:
    train, val = data["train"], data["val"]
    (z1_tr, z2_tr), (z1_va, z2_va) = (latents(vae, data[s]["image"]) for s in ("train", "val"))
    cores = fit_cores(vae, data, seed, z2_tr, z2_va)
    core = served_core(cores)
    return {
        "probe_z2": probes(z2_tr.numpy(), train, z2_va.numpy(), val, seed),
        "probe_z1": probes(z1_tr.numpy(), train, z1_va.numpy(), val, seed),
        "z1_head": group_accuracies(_head(vae, z1_va), val["label"], val["group"]),
        "z1_head_agrees_with_attribute": group_balanced_accuracy(_head(vae, z1_va), val["attribute"], val["group"]),
        "served_core": core, "core": cores[core]["val"],
        "cores": {n: c["hyper"] | c["val"] for n, c in cores.items()},
    }


def flag_record(vae, data: dict, seed: int, split: str) -> dict:
    """What the endpoint's flags pick out on ``split``: ``disagree`` (z1 head and served z2 core on different sides
    of 0.5) and ``shortcut_only`` (label given: z1 right, z2 wrong), against the images where the colour
    contradicts the label (``conflict``, the ones a shortcut audit should single out)."""
    (_, z2_tr), (_, z2_va), (z1, z2) = (latents(vae, data[s]["image"]) for s in ("train", "val", split))
    cores = fit_cores(vae, data, seed, z2_tr, z2_va)
    d = data[split]
    core, shortcut = _predict(cores[served_core(cores)]["probe"], z2), _head(vae, z1)
    conflict = d["attribute"] != d["label"]
    out = {"conflict_rate": float(conflict.mean())}
    for name, flag in (("disagree", core != shortcut), ("shortcut_only", (core != d["label"]) & (shortcut == d["label"]))):
        out |= {f"{name}_rate": float(flag.mean()),
                f"{name}_precision": float(conflict[flag].mean()) if flag.any() else float("nan"),  # P(conflict | flag)
                f"{name}_recall": float(flag[conflict].mean())}  # P(flag | conflict)
    return out


def load_vae(name: str, seed: int, cache: Path = CACHE):
    saved = torch.load(cache / f"{name}_seed{seed}.pt", weights_only=True)
    cfg = Config(**saved["config"])
    vae = ENCODERS[cfg.encoder]((3, 8, 8), cfg.latent_dim, cfg.shortcut_dim, cfg.hidden)
    vae.load_state_dict(saved["state"])
    return vae.eval()


def test_record_vae(name: str, seed: int, cache: Path = CACHE) -> dict:
    """The test split, scored for a cached arm: its served core, the z1 head, and the probes on test z2."""
    vae = load_vae(name, seed, cache)
    data = make_benchmark(KIND, seed)
    train, test = data["train"], data["test"]
    (z1_tr, z2_tr), (_, z2_va), (z1_te, z2_te) = (latents(vae, data[s]["image"]) for s in ("train", "val", "test"))
    cores = fit_cores(vae, data, seed, z2_tr, z2_va)  # deterministic given the VAE: the validation choice again
    core = served_core(cores)
    return {"served_core": core,
            "core": group_accuracies(_predict(cores[core]["probe"], z2_te), test["label"], test["group"]),
            "z1_head": group_accuracies(_head(vae, z1_te), test["label"], test["group"]),
            "probe_z2": probes(z2_tr.numpy(), train, z2_te.numpy(), test, seed),
            "flags": flag_record(vae, data, seed, "test")}


# ------------------------------------------------------------------------------------------------ baselines

def train_classifier(data: dict, weights: np.ndarray | None, epochs: int, cfg: Config, select: bool = True):
    """The ERM trunk (``MLPClassifier``), loss weighted per training image; with ``select`` the epoch with the best
    validation worst-group accuracy (then average) is kept. Returns (model, validation score, epoch)."""
    train, val = data["train"], data["val"]
    x, y = torch.from_numpy(train["image"]), torch.from_numpy(train["label"]).float()
    w = torch.ones(len(y)) if weights is None else torch.from_numpy(np.asarray(weights, np.float32))
    model = MLPClassifier(tuple(x.shape[1:]), cfg.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    best, state, best_epoch = None, None, epochs
    for epoch in range(epochs):
        model.train()
        for idx in _batches(len(x), cfg.batch_size):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx], reduction="none")
            loss = (loss * w[idx]).sum() / w[idx].sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if select:
            score = group_accuracies(classify(model, val["image"]), val["label"], val["group"])
            if best is None or (score["worst_group"], score["average"]) > (best["worst_group"], best["average"]):
                best, state, best_epoch = score, {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1
    if select:
        model.load_state_dict(state)
    model.eval()
    return model, best or group_accuracies(classify(model, val["image"]), val["label"], val["group"]), best_epoch


def classify(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return (model(torch.from_numpy(images)) > 0).numpy().astype(np.int64)


def baseline(method: str, seed: int, cfg: Config = Config(), cache: Path | None = CACHE) -> dict:
    torch.manual_seed(seed)
    started = time.perf_counter()
    data = make_benchmark(KIND, seed)
    train = data["train"]
    hyper = {}
    if method == "erm":
        model, val, epoch = train_classifier(data, None, cfg.erm_epochs, cfg)
    elif method == "group_balanced_oracle":
        model, val, epoch = train_classifier(data, group_weights(train["group"]), cfg.erm_epochs, cfg)
    elif method == "jtt":
        best = None
        for t in JTT_EPOCHS:
            torch.manual_seed(seed)
            first, _, _ = train_classifier(data, None, t, cfg, select=False)
            errors = classify(first, train["image"]) != train["label"]
            for lam in JTT_UPWEIGHT:
                torch.manual_seed(seed)
                got = train_classifier(data, np.where(errors, lam, 1.0), cfg.erm_epochs, cfg)
                key = (got[1]["worst_group"], got[1]["average"])
                if best is None or key > best[0]:
                    best = (key, got, {"T": t, "upweight": lam, "error_set_size": int(errors.sum())})
        (_, (model, val, epoch), hyper) = best
    else:
        raise ValueError(f"unknown baseline {method!r}; choose one of {BASELINES}")
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache / f"{method}_seed{seed}.pt")
    return {"arm": method, "seed": seed, "epoch": epoch, **hyper, "core": val, "seconds": round(time.perf_counter() - started, 1)}


def test_record_baseline(method: str, seed: int, cfg: Config = Config(), cache: Path = CACHE) -> dict:
    model = MLPClassifier((3, 8, 8), cfg.hidden)
    model.load_state_dict(torch.load(cache / f"{method}_seed{seed}.pt", weights_only=True))
    test = make_benchmark(KIND, seed)["test"]
    return {"core": group_accuracies(classify(model, test["image"]), test["label"], test["group"])}


# ------------------------------------------------------------------------------------------ the choice rule

def summarise(records: list[dict]) -> dict:
    """Mean, std and seeds of every number the rule and the table read, per arm."""
    by_arm: dict[str, list[dict]] = {}
    for r in records:
        by_arm.setdefault(r["arm"], []).append(r)
    out = {}
    for arm, rs in by_arm.items():
        fields = {"core_worst": [r["core"]["worst_group"] for r in rs], "core_average": [r["core"]["average"] for r in rs]}
        if "probe_z2" in rs[0]:
            for p in ("linear", "knn", "max"):
                fields[f"probe_z2_{p}"] = [r["probe_z2"][p] for r in rs]
                if "probe_z1" in rs[0]:
                    fields[f"probe_z1_{p}"] = [r["probe_z1"][p] for r in rs]
        out[arm] = {"seeds": sorted(r["seed"] for r in rs)} | {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": [round(x, 4) for x in v]} for k, v in fields.items()}
    return out


def rank(summary: dict) -> list[str]:
    """Arms in the rule's order: shortcut-free ones first, by mean validation worst-group accuracy (then
    average); then the rest, by mean probe (then worst-group)."""
    def key(arm):
        s = summary[arm]
        probe, worst, avg = s["probe_z2_max"]["mean"], s["core_worst"]["mean"], s["core_average"]["mean"]
        return (0, -worst, -avg, probe) if probe <= FREE_AT else (1, probe, -worst, -avg)
    return sorted((a for a in summary if "probe_z2_max" in summary[a]), key=key)


def choose(summary: dict) -> dict:
    order = rank(summary)
    best = order[0]
    free = [a for a in order if summary[a]["probe_z2_max"]["mean"] <= FREE_AT]
    return {"arm": best, "shortcut_free": bool(free), "shortcut_free_arms": free, "order": order, "free_at": FREE_AT}


def bootstrap_ci(values, n: int = 10_000, seed: int = 0) -> list[float]:
    """Percentile 95 % interval of the mean over seeds (with 5 seeds, a rough one)."""
    values = np.asarray(values, np.float64)
    means = values[np.random.default_rng(seed).integers(0, len(values), (n, len(values)))].mean(1)
    return [round(float(q), 4) for q in np.quantile(means, [0.025, 0.975])]


# -------------------------------------------------------------------------------------------------- phases

def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    (path.with_suffix(".md")).write_text(render(result))


def _have(records: list[dict], arm: str, seed: int) -> bool:
    return any(r["arm"] == arm and r["seed"] == seed for r in records)


def phase_broad(result: dict, path: Path, arms: list[str], seeds, cfg: Config, cache: Path) -> None:
    records = result.setdefault("broad", [])
    for arm in arms:
        for seed in seeds:
            if _have(records, arm, seed):
                continue  # resumable: a finished (arm, seed) is kept
            r = vae_arm(arm, seed, arm_config(arm, cfg), cache)
            records.append(r)
            print(f"[broad] {arm} seed {seed}: probe z2 {r['probe_z2']['linear']:.2f}/{r['probe_z2']['knn']:.2f} "
                  f"z1 {r['probe_z1']['max']:.2f}  core {r['served_core']} worst {r['core']['worst_group']:.3f} "
                  f"avg {r['core']['average']:.3f}  ({r['seconds']} s)", flush=True)
            _save(result, path)
    result["broad_summary"] = summarise(records)
    _save(result, path)


def phase_final(result: dict, path: Path, seeds, cfg: Config, cache: Path, top: int = FINAL_TOP) -> None:
    broad = result["broad_summary"]
    order = rank(broad)
    best_worst = max(broad, key=lambda a: (broad[a]["core_worst"]["mean"], broad[a]["core_average"]["mean"]))
    finalists = list(dict.fromkeys(order[:top] + [best_worst] + ([PREVIOUS_ARM] if PREVIOUS_ARM in broad else [])))
    result["finalists"] = finalists
    records = result.setdefault("final", [r for r in result["broad"] if r["arm"] in finalists])
    for arm in finalists:
        for seed in seeds:
            if not _have(records, arm, seed):
                records.append(vae_arm(arm, seed, arm_config(arm, cfg), cache))
                r = records[-1]
                print(f"[final] {arm} seed {seed}: probe z2 {r['probe_z2']['max']:.2f} worst {r['core']['worst_group']:.3f}", flush=True)
                _save(result, path)
    base = result.setdefault("baselines", [])
    for method in BASELINES:
        for seed in seeds:
            if not _have(base, method, seed):
                base.append(baseline(method, seed, cfg, cache))
                print(f"[final] {method} seed {seed}: worst {base[-1]['core']['worst_group']:.3f}", flush=True)
                _save(result, path)
    for r in records:
        if "flags_val" not in r:  # descriptive only (not read by the rule): what the flags mean on validation
            r["flags_val"] = flag_record(load_vae(r["arm"], r["seed"], cache), make_benchmark(KIND, r["seed"]), r["seed"], "val")
    result["final_summary"] = summarise(records)
    result["baseline_summary"] = summarise(base)
    result["choice"] = choose(result["final_summary"])
    _save(result, path)


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(HERE), *args], capture_output=True, text=True, check=True).stdout.strip()


def phase_test(result: dict, path: Path, cfg: Config, cache: Path) -> None:
    """Scores test once. Refuses if test was scored already, or if the choice is not committed as it stands."""
    if "test" in result:
        raise SystemExit("test split already scored for this sweep (report/sweep.json has a 'test' key)")
    rel = str(path.resolve().relative_to(Path(_git("rev-parse", "--show-toplevel"))))
    if _git("status", "--porcelain", "--", rel):
        raise SystemExit(f"commit {rel} first: the test phase records the commit that froze the choice")
    commit = _git("rev-parse", "HEAD")
    committed = json.loads(_git("show", f"HEAD:{rel}"))
    assert committed["choice"] == result["choice"], "the committed choice differs from the working file"
    seeds = sorted({r["seed"] for r in result["final"]})
    test = {"frozen_commit": commit, "arms": [], "baselines": []}
    for arm in result["finalists"]:
        for seed in seeds:
            test["arms"].append({"arm": arm, "seed": seed} | test_record_vae(arm, seed, cache))
    for method in BASELINES:
        for seed in seeds:
            test["baselines"].append({"arm": method, "seed": seed} | test_record_baseline(method, seed, cfg, cache))
    test["arm_summary"], test["baseline_summary"] = summarise(test["arms"]), summarise(test["baselines"])
    result["test"] = test
    _save(result, path)


# ------------------------------------------------------------------------------------------------- report

def _ms(s: dict, key: str) -> str:
    return f"{s[key]['mean']:.3f} ± {s[key]['std']:.3f}"


def _summary_rows(*summaries) -> list[str]:
    """Table rows (arm, z2 probe, worst-group and average accuracy with bootstrap CIs) of arms and baselines."""
    rows = []
    for summary in summaries:
        for arm, s in summary.items():
            probe = _ms(s, "probe_z2_max") if "probe_z2_max" in s else "—"
            rows.append(f"| {arm} | {probe} | {_ms(s, 'core_worst')} | {bootstrap_ci(s['core_worst']['values'])} | "
                        f"{_ms(s, 'core_average')} | {bootstrap_ci(s['core_average']['values'])} |")
    return rows


def _flags_table(records: list[dict], key: str) -> list[str]:
    lines = ["| arm | conflict rate | `disagree` rate | P(conflict \\| disagree) | P(disagree \\| conflict) | "
             "`shortcut_only` rate | P(conflict \\| shortcut_only) | P(shortcut_only \\| conflict) |", "|---|---|---|---|---|---|---|---|"]
    fields = ("conflict_rate", "disagree_rate", "disagree_precision", "disagree_recall",
              "shortcut_only_rate", "shortcut_only_precision", "shortcut_only_recall")
    for arm in dict.fromkeys(r["arm"] for r in records if key in r):
        rs = [r[key] for r in records if r["arm"] == arm and key in r]
        cells = [[r[f] for r in rs if not np.isnan(r[f])] for f in fields]  # precision is undefined where a flag never fires
        lines.append(f"| {arm} | " + " | ".join(f"{np.mean(c):.3f}" if c else "—" for c in cells) + " |")
    return lines


def render(result: dict) -> str:
    lines = ["# Shortcut-audit sweep (colour shortcut)", "",
             "Generated by `python -m models.shortcut.sweep` (see its docstring); numbers are mean ± std over seeds.",
             f"Probe = group-balanced accuracy of predicting the colour from z2 (chance 0.5); shortcut-free ⇔ "
             f"max(linear, kNN) probe ≤ {FREE_AT}.", ""]
    if "broad_summary" in result:
        seeds = sorted({r["seed"] for r in result["broad"]})
        lines += [f"## Broad sweep (validation; seeds {seeds}; rows in the rule's order)", "",
                  "| arm | z2 probe linear | z2 probe kNN | z2 probe max (rule) | z1 probe max | z2 core val worst-group | z2 core val average |",
                  "|---|---|---|---|---|---|---|"]
        for arm, s in sorted(result["broad_summary"].items(), key=lambda kv: rank(result["broad_summary"]).index(kv[0])):
            lines.append(f"| {arm} | {_ms(s, 'probe_z2_linear')} | {_ms(s, 'probe_z2_knn')} | {_ms(s, 'probe_z2_max')} | {_ms(s, 'probe_z1_max')} | "
                         f"{_ms(s, 'core_worst')} | {_ms(s, 'core_average')} |")
        lines.append("")
    if "final_summary" in result:
        seeds = sorted({r["seed"] for r in result["final"]})
        lines += [f"## Final arms and baselines (validation; seeds {seeds}; 95 % bootstrap CI of the mean over seeds)", "",
                  "| arm | z2 probe (max of linear, kNN) | val worst-group | CI | val average | CI |", "|---|---|---|---|---|---|"]
        lines += _summary_rows(result["final_summary"], result["baseline_summary"])
        lines += ["", "What the endpoint's flags pick out on validation (conflict = the colour contradicts the label; "
                  "means over seeds):", "", *_flags_table(result["final"], "flags_val")]
        c = result["choice"]
        lines += ["", f"**Choice (validation only):** `{c['arm']}`; shortcut-free arms: {c['shortcut_free_arms'] or 'none'}.", ""]
    if "test" in result:
        t = result["test"]
        lines += [f"## Test split, scored once (choice frozen at commit `{t['frozen_commit']}`)", "",
                  "| arm | test z2 probe (max) | test worst-group | CI | test average | CI |", "|---|---|---|---|---|---|"]
        lines += _summary_rows(t["arm_summary"], t["baseline_summary"])
        lines += ["", "Flags on test (10 % colour agreement, so conflict images are the majority):", "", *_flags_table(t["arms"], "flags"), ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("broad", "final", "test"), required=True)
    parser.add_argument("--out", type=Path, default=REPORT / "sweep.json")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--epochs", type=int, default=Config.vae_epochs, help="VAE epochs (tests use a handful)")
    parser.add_argument("--erm-epochs", type=int, default=Config.erm_epochs)
    parser.add_argument("--arms", nargs="*", help="broad phase: these arms only (default: the full grid)")
    parser.add_argument("--seeds", type=int, nargs="*", help="default: 0 1 (broad), 0-4 (final)")
    parser.add_argument("--top", type=int, default=FINAL_TOP)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = Config(vae_epochs=args.epochs, erm_epochs=args.erm_epochs)
    result = _load(args.out)
    result.setdefault("protocol", {"kind": KIND, "vae_epochs": cfg.vae_epochs, "erm_epochs": cfg.erm_epochs, "alpha": cfg.alpha,
                                   "latent_dim": cfg.latent_dim, "free_at": FREE_AT, "probe_k": PROBE_K,
                                   "jtt_grid": {"T": JTT_EPOCHS, "upweight": JTT_UPWEIGHT}})
    if args.phase == "broad":
        phase_broad(result, args.out, args.arms or broad_arms(), args.seeds or BROAD_SEEDS, cfg, args.cache)
    elif args.phase == "final":
        phase_final(result, args.out, args.seeds or FINAL_SEEDS, cfg, args.cache, args.top)
    else:
        phase_test(result, args.out, cfg, args.cache)
    print(render(result))


if __name__ == "__main__":
    main()
