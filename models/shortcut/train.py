"""Train Chroma-VAE (two stages) and the ERM baseline on one shortcut benchmark and one seed.

    python -m models.shortcut.train --kind colour --seed 0 [--save]

Stage 1 trains :class:`ChromaVAE` (fixed epochs, no selection). Stage 2 fits, on the posterior means of z2
of the training images, a kNN vote (k in K_GRID) and a logistic-regression probe (C in C_GRID). Every choice
(k, C, and the ERM epoch) is made on the *validation* split, drawn like train (90 % shortcut agreement), by
worst-group accuracy over its four (label, attribute) groups; test is scored once, at the chosen setting.
``--save`` writes weights/chroma_<kind>_seed<seed>.safetensors (+ .json) which models/shortcut/export.py serves.
"""
import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from safetensors.torch import save_file
from sklearn.linear_model import LogisticRegression

from .data import group_accuracies, make_benchmark
from .model import ENCODERS, ChromaVAE, KNNProbe, LinearProbe, MLPClassifier

WEIGHTS_DIR = Path(__file__).parent / "weights"
K_GRID = (5, 15, 31, 51)
C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass
class Config:
    latent_dim: int = 16
    shortcut_dim: int = 1
    hidden: int = 128  # MLP width, or the first convolution's channels when encoder == "conv"
    encoder: str = "mlp"  # a key of model.ENCODERS: "mlp" (ChromaVAE) or "conv" (ConvChromaVAE)
    alpha: float = 20.0  # weight of the z1 classification loss against the (summed-pixel) ELBO
    beta: float = 1.0
    vae_epochs: int = 300
    erm_epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3


QUICK = Config(vae_epochs=8, erm_epochs=5)  # for tests only


def weights_path(kind: str, seed: int) -> Path:
    return WEIGHTS_DIR / f"chroma_{kind}_seed{seed}.safetensors"


def _batches(n: int, batch_size: int):
    order = torch.randperm(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def train_vae(split: dict, cfg: Config) -> tuple[ChromaVAE, list[dict]]:
    x, y = torch.from_numpy(split["image"]), torch.from_numpy(split["label"])
    vae = ENCODERS[cfg.encoder](tuple(x.shape[1:]), cfg.latent_dim, cfg.shortcut_dim, cfg.hidden)
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    history = []
    for epoch in tqdm(range(cfg.vae_epochs), desc="VAE epochs", disable=None):
        vae.train()
        for idx in _batches(len(x), cfg.batch_size):
            losses = vae.loss(x[idx], y[idx], cfg.alpha, cfg.beta)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
        if (epoch + 1) % 25 == 0 or epoch + 1 == cfg.vae_epochs:
            history.append({"epoch": epoch + 1} | {k: round(v.item(), 4) for k, v in losses.items()})
    return vae.eval(), history


@torch.no_grad()
def latents(vae: ChromaVAE, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return vae.split(vae.encode(torch.from_numpy(images))[0])


@torch.no_grad()
def resampled_latents(vae: ChromaVAE, images: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """z2 of counterfactual reconstructions: decode each image with the z1 of a random other training image,
    then encode again. An extension of ours (not in the paper): it shows the z2 classifier both shortcut values
    per image, so a z2 that still carries the shortcut cannot use it."""
    mu = vae.encode(torch.from_numpy(images))[0]
    z1, z2 = vae.split(mu)
    swapped = torch.cat([z1[torch.randperm(len(z1), generator=generator)], z2], dim=1)
    return vae.split(vae.encode(torch.sigmoid(vae.decode(swapped)))[0])[1]


def _predict(probe: torch.nn.Module, z: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (probe(z)[:, 0] > 0.5).numpy().astype(np.int64)


def fit_linear(z: torch.Tensor, y: np.ndarray, c: float) -> LinearProbe:
    mean, scale = z.mean(0), z.std(0).clamp_min(1e-6)
    clf = LogisticRegression(C=c, max_iter=2000).fit(((z - mean) / scale).numpy(), y)
    probe = LinearProbe(z.shape[1])
    probe.mean.copy_(mean), probe.scale.copy_(scale)
    probe.weight.copy_(torch.from_numpy(clf.coef_[0]).float()), probe.bias.fill_(float(clf.intercept_[0]))
    return probe


def fit_knn(z: torch.Tensor, y: np.ndarray, k: int) -> KNNProbe:
    mean, scale = z.mean(0), z.std(0).clamp_min(1e-6)
    probe = KNNProbe(len(z), z.shape[1], k)
    probe.mean.copy_(mean), probe.scale.copy_(scale)
    probe.reference.copy_((z - mean) / scale), probe.labels.copy_(torch.from_numpy(y).float())
    return probe


def select(fits: dict, z_val: torch.Tensor, val: dict) -> tuple[object, torch.nn.Module, dict]:
    """The setting with the best validation worst-group accuracy (ties: best average, then first)."""
    scored = {key: group_accuracies(_predict(p, z_val), val["label"], val["group"]) for key, p in fits.items()}
    best = max(scored, key=lambda k: (scored[k]["worst_group"], scored[k]["average"]))
    return best, fits[best], scored[best]


def train_erm(data: dict, cfg: Config) -> dict:
    train, val, test = data["train"], data["val"], data["test"]
    x, y = torch.from_numpy(train["image"]), torch.from_numpy(train["label"]).float()
    model = MLPClassifier(tuple(x.shape[1:]), cfg.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    best = {"val": {"worst_group": -1.0, "average": -1.0}}
    for epoch in tqdm(range(cfg.erm_epochs), desc="ERM epochs", disable=None):
        model.train()
        for idx in _batches(len(x), cfg.batch_size):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            score = group_accuracies((model(torch.from_numpy(val["image"])) > 0).numpy(), val["label"], val["group"])
        if (score["worst_group"], score["average"]) > (best["val"]["worst_group"], best["val"]["average"]):
            best = {"epoch": epoch + 1, "val": score, "state": {k: v.clone() for k, v in model.state_dict().items()}}
    model.load_state_dict(best.pop("state"))
    with torch.no_grad():
        best["test"] = group_accuracies((model(torch.from_numpy(test["image"])) > 0).numpy(), test["label"], test["group"])
    return best


def _attribute_decodability(z_train: torch.Tensor, z_test: torch.Tensor, data: dict) -> float:
    """Test accuracy of a logistic regression predicting the shortcut attribute (a diagnostic, not a selection)."""
    mean, scale = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    clf = LogisticRegression(max_iter=2000).fit(((z_train - mean) / scale).numpy(), data["train"]["attribute"])
    return float(clf.score(((z_test - mean) / scale).numpy(), data["test"]["attribute"]))


def fit_cores(vae: ChromaVAE, data: dict, seed: int, z2_tr: torch.Tensor, z2_va: torch.Tensor) -> dict[str, dict]:
    """Stage 2: the four z2 classifiers (kNN and linear, with and without z1-resampled reconstructions), each with
    its k or C chosen on validation worst-group accuracy: ``{name: {"probe", "hyper", "val"}}``."""
    train, val = data["train"], data["val"]
    k, knn, knn_val = select({k: fit_knn(z2_tr, train["label"], k) for k in K_GRID}, z2_va, val)
    c, linear, lin_val = select({c: fit_linear(z2_tr, train["label"], c) for c in C_GRID}, z2_va, val)
    z2_cf = torch.cat([z2_tr, resampled_latents(vae, train["image"], torch.Generator().manual_seed(seed))])
    y_cf = np.concatenate([train["label"], train["label"]])
    k_cf, knn_cf, knn_cf_val = select({k: fit_knn(z2_cf, y_cf, k) for k in K_GRID}, z2_va, val)
    c_cf, linear_cf, lin_cf_val = select({c: fit_linear(z2_cf, y_cf, c) for c in C_GRID}, z2_va, val)
    return {"knn": {"probe": knn, "hyper": {"k": k}, "val": knn_val},
            "linear": {"probe": linear, "hyper": {"C": c}, "val": lin_val},
            "knn_resampled": {"probe": knn_cf, "hyper": {"k": k_cf}, "val": knn_cf_val},
            "linear_resampled": {"probe": linear_cf, "hyper": {"C": c_cf}, "val": lin_cf_val}}


def served_core(cores: dict[str, dict]) -> str:
    """Which z2 classifier the endpoint serves: the best validation worst-group accuracy (then average)."""
    return max(cores, key=lambda p: (cores[p]["val"]["worst_group"], cores[p]["val"]["average"]))


def run(kind: str = "colour", seed: int = 0, cfg: Config = Config(), save: bool = False, out: Path | None = None) -> dict:
    torch.manual_seed(seed)
    started = time.perf_counter()
    data = make_benchmark(kind, seed)
    train, val, test = data["train"], data["val"], data["test"]
    vae, history = train_vae(train, cfg)
    (z1_tr, z2_tr), (z1_va, z2_va), (z1_te, z2_te) = (latents(vae, data[s]["image"]) for s in ("train", "val", "test"))

    head = lambda z1: (vae.head(z1)[:, 0] > 0).numpy().astype(np.int64)  # noqa: E731
    with torch.no_grad():
        z1_result = {"val": group_accuracies(head(z1_va), val["label"], val["group"]),
                     "test": group_accuracies(head(z1_te), test["label"], test["group"]),
                     "test_agreement_with_attribute": float((head(z1_te) == test["attribute"]).mean())}
    cores = fit_cores(vae, data, seed, z2_tr, z2_va)
    metrics = {
        "kind": kind, "seed": seed, "config": asdict(cfg), "vae_history": history,
        "split_sizes": {s: len(d["label"]) for s, d in data.items()},
        "erm": train_erm(data, cfg),
        "z1": z1_result,
        **{f"z2_{name}": {**core["hyper"], "val": core["val"],
                          "test": group_accuracies(_predict(core["probe"], z2_te), test["label"], test["group"])}
           for name, core in cores.items()},
        "attribute_decodable_from": {"z1": _attribute_decodability(z1_tr, z1_te, data), "z2": _attribute_decodability(z2_tr, z2_te, data)},
    }
    probes = {name: core["probe"] for name, core in cores.items()}
    metrics["served_core"] = served_core(cores)
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    if save:
        out = out or weights_path(kind, seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"vae.{n}": t for n, t in vae.state_dict().items()}
        for prefix, probe in probes.items():
            tensors |= {f"{prefix}.{n}": t for n, t in probe.state_dict().items()}
        save_file({n: t.contiguous() for n, t in tensors.items()}, str(out))
        out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("colour", "patch"), default="colour")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--encoder", choices=("mlp", "conv"), default=Config.encoder)
    parser.add_argument("--beta", type=float, default=Config.beta)
    parser.add_argument("--shortcut-dim", type=int, default=Config.shortcut_dim)
    parser.add_argument("--alpha", type=float, default=Config.alpha)
    parser.add_argument("--hidden", type=int, default=None, help="default: 128 for mlp, 16 for conv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    hidden = args.hidden or (128 if args.encoder == "mlp" else 16)
    cfg = Config(encoder=args.encoder, beta=args.beta, shortcut_dim=args.shortcut_dim, hidden=hidden, alpha=args.alpha)
    metrics = run(args.kind, args.seed, cfg, save=args.save)
    print(json.dumps({k: v for k, v in metrics.items() if k != "vae_history"}, indent=2))


if __name__ == "__main__":
    main()
