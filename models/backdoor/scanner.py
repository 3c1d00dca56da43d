"""The backdoor scanner: Neural Cleanse, then STRIP and spectral signatures on the recovered trigger.

- Neural Cleanse (Wang et al., S&P 2019), own PyTorch implementation: for every class t, the smallest mask m
  and pattern p such that (1 − m)·x + m·p sends clean images to t; all classes are optimised together in one
  batch. λ (the L1 weight) adapts per class as in NC (×1.5 when ≥ 99 % of images flip, ÷1.5 otherwise).
  Anomaly index of class t = (median(L1) − L1_t) / (1.4826 · MAD(L1)); a class with index > 2 (the small side)
  is flagged and the model is called backdoored.
- STRIP (Gao et al., ACSAC 2019): entropy of the model's prediction over an input superimposed with N clean
  images. Run on clean images and on clean images carrying the recovered trigger of the suspected class;
  the threshold is the clean entropies' `strip_frr` quantile (false-rejection rate), and we report the
  fraction of triggered inputs below it.
- Spectral signatures (Tran et al., NeurIPS 2018): on the penultimate representation of the images the model
  assigns to the suspected class (clean ones and triggered ones), the squared projection on the top singular
  vector; reported as the AUROC separating triggered from clean.
- The fused verdict (issue 24's zoo, models/backdoor/zoo.py): with the platform-held reference images, the verdict
  is the largest z-score, against the calibration zoo's clean models, of NC's anomaly index, −log of the smallest and
  of the median mask L1, and a white-patch sweep; above the calibration zoo's threshold, backdoored. The absolute
  norms are only comparable on the images the constants were measured with, so a scan on a client's own images
  keeps NC's anomaly index (> 2) as its verdict.
"""
import io
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .graph_torch import OnnxGraph


@dataclass
class ScanConfig:
    steps: int = 200
    batch: int = 16
    lr: float = 0.1
    init_cost: float = 1e-3
    success: float = 0.99
    threshold: float = 2.0
    strip_inputs: int = 50
    strip_blends: int = 16
    strip_frr: float = 0.01
    seed: int = 0


FUSED_FEATURES = ("nc_anomaly_index", "neg_log_min_l1", "neg_log_median_l1", "patch_sweep")


@dataclass(frozen=True)
class FusedCalibration:
    """The calibration zoo's clean models: mean and standard deviation of each fused feature, and the threshold on
    the fused score chosen there (models.backdoor.zoo.calibration; shipped in the served folder's scanner.json)."""

    mean: dict
    std: dict
    threshold: float

    def score(self, features: dict) -> tuple[float, dict]:
        z = {k: (features[k] - self.mean[k]) / max(self.std[k], 1e-9) for k in FUSED_FEATURES}
        return max(z.values()), z


def fused_features(max_anomaly_index: float, mask_l1, patch_changed: float) -> dict:
    """The fused score's inputs, each oriented "higher = more suspicious"."""
    l1 = np.asarray(mask_l1, np.float64)
    return {"nc_anomaly_index": float(max_anomaly_index), "neg_log_min_l1": float(-np.log(l1.min())),
            "neg_log_median_l1": float(-np.log(np.median(l1))), "patch_sweep": float(patch_changed)}


@torch.no_grad()
def patch_sweep(model, clean: torch.Tensor, sizes=(2, 3, 4), value: float = 1.0) -> dict:
    """Stamp a `value` square of each size at every position on the clean images: the largest fraction of
    predictions that one patch changes, and the largest fraction it sends to one single class."""
    started = time.perf_counter()
    base = model(clean).argmax(1)
    _, c, h, w = clean.shape
    changed_max, one_max = 0.0, 0.0
    for s in sizes:
        for top in range(h - s + 1):
            batch = []
            for left in range(w - s + 1):
                x = clean.clone()
                x[:, :, top:top + s, left:left + s] = value
                batch.append(x)
            pred = model(torch.cat(batch)).argmax(1).reshape(len(batch), len(clean))
            changed = (pred != base).float()
            changed_max = max(changed_max, float(changed.mean(1).max()))
            for k in range(int(pred.max()) + 1):
                moved = ((pred == k) & (base != k)).float().sum(1) / (base != k).float().sum().clamp_min(1)
                one_max = max(one_max, float(moved.max()))
    return {"changed_max": changed_max, "to_one_class_max": one_max, "seconds": time.perf_counter() - started}


def png(array: np.ndarray) -> bytes:
    """[C, H, W] or [H, W] in [0, 1] → PNG bytes (grey or RGB), native resolution."""
    from PIL import Image

    a = np.asarray(array, np.float32)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    img = Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def anomaly_indices(l1: np.ndarray) -> np.ndarray:
    med = np.median(l1)
    mad = 1.4826 * np.median(np.abs(l1 - med))
    return (med - l1) / max(mad, 1e-12)


def _logits(out: torch.Tensor, probabilities: bool) -> torch.Tensor:
    return torch.log(out.clamp_min(1e-12)) if probabilities else out


def neural_cleanse(model, clean: torch.Tensor, classes: int, cfg: ScanConfig, progress=None):
    g = torch.Generator().manual_seed(cfg.seed)
    _, c, h, w = clean.shape
    m_raw = torch.full((classes, 1, h, w), -2.0).add_(0.1 * torch.randn(classes, 1, h, w, generator=g)).requires_grad_(True)
    p_raw = (0.1 * torch.randn(classes, c, h, w, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([m_raw, p_raw], lr=cfg.lr, betas=(0.5, 0.9))
    cost = torch.full((classes,), cfg.init_cost)
    best_l1 = torch.full((classes,), float(h * w))
    best_m = torch.zeros(classes, 1, h, w)
    best_p = torch.zeros(classes, c, h, w)
    succ_acc = torch.zeros(classes)
    targets = torch.arange(classes)
    probabilities = None
    for step in range(cfg.steps):
        idx = torch.randint(len(clean), (cfg.batch,), generator=g)
        x = clean[idx]
        m = torch.tanh(m_raw) / 2 + 0.5
        p = torch.tanh(p_raw) / 2 + 0.5
        xs = ((1 - m[:, None]) * x[None] + (m * p)[:, None]).reshape(classes * cfg.batch, c, h, w)
        out = model(xs)
        if probabilities is None:
            probabilities = bool((out.detach() >= 0).all() and torch.allclose(out.detach().sum(1), torch.ones(len(out)), atol=1e-3))
        logits = _logits(out, probabilities)
        y = targets.repeat_interleave(cfg.batch)
        ce = F.cross_entropy(logits, y, reduction="none").reshape(classes, cfg.batch).mean(1)
        l1 = m.reshape(classes, -1).sum(1)
        loss = (ce + cost * l1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            acc = (logits.argmax(1) == y).float().reshape(classes, cfg.batch).mean(1)
            succ_acc += acc
            better = (acc >= cfg.success) & (l1 < best_l1)
            best_l1[better] = l1[better]
            best_m[better], best_p[better] = m[better], p[better]
            if step % 10 == 9:
                ok = succ_acc / 10 >= cfg.success
                cost = torch.where(ok, cost * 1.5, cost / 1.5 ** 1.5)
                succ_acc.zero_()
        if progress and step % 25 == 24:
            progress("neural_cleanse", (step + 1) / cfg.steps)
    never = best_l1 >= h * w
    with torch.no_grad():  # a class never reached: keep its last mask, so the L1 is still informative
        m = torch.tanh(m_raw) / 2 + 0.5
        best_m[never], best_p[never] = m[never], (torch.tanh(p_raw) / 2 + 0.5)[never]
        best_l1[never] = m[never].flatten(1).sum(1) * 2  # penalised: no success at that size
    return best_l1.numpy(), best_m.numpy(), best_p.numpy(), bool(probabilities)


@torch.no_grad()
def strip_stats(model, clean, triggered, probabilities, cfg: ScanConfig) -> dict:
    g = torch.Generator().manual_seed(cfg.seed + 1)

    def entropy(x):
        n = min(len(x), cfg.strip_inputs)
        others = clean[torch.randint(len(clean), (n, cfg.strip_blends), generator=g)]
        blended = (0.5 * x[:n, None] + 0.5 * others).reshape(-1, *clean.shape[1:])
        prob = F.softmax(_logits(model(blended), probabilities), 1).clamp_min(1e-12)
        return (-(prob * prob.log()).sum(1)).reshape(n, cfg.strip_blends).mean(1).numpy()

    e_clean, e_trig = entropy(clean), entropy(triggered)
    threshold = float(np.quantile(e_clean, cfg.strip_frr))
    return {"clean_entropy_mean": float(e_clean.mean()), "clean_entropy_std": float(e_clean.std()),
            "triggered_entropy_mean": float(e_trig.mean()), "triggered_entropy_std": float(e_trig.std()),
            "threshold": threshold, "false_rejection_rate": cfg.strip_frr,
            "triggered_flagged": float((e_trig < threshold).mean()), "inputs": int(len(e_clean))}


@torch.no_grad()
def spectral_stats(model, clean, triggered, target: int, probabilities) -> dict:
    x = torch.cat([clean, triggered])
    is_trig = np.r_[np.zeros(len(clean)), np.ones(len(triggered))].astype(bool)
    pred = _logits(model(x), probabilities).argmax(1).numpy()
    feats = model.features
    if feats is None:
        return {"available": False, "reason": "no Gemm/MatMul before the output"}
    feats = feats.reshape(len(x), -1).numpy().astype(np.float64)
    keep = pred == target
    if keep.sum() < 4 or is_trig[keep].all() or not is_trig[keep].any():
        return {"available": False, "reason": "too few clean and triggered images in the suspected class", "in_class": int(keep.sum())}
    r = feats[keep] - feats[keep].mean(0)
    v = np.linalg.svd(r, full_matrices=False)[2][0]
    score = (r @ v) ** 2
    from sklearn.metrics import roc_auc_score

    return {"available": True, "auroc_triggered_vs_clean": float(roc_auc_score(is_trig[keep], score)),
            "in_class": int(keep.sum()), "triggered_in_class": int(is_trig[keep].sum())}


def scan(model_proto, clean_images: np.ndarray, cfg: ScanConfig = ScanConfig(), progress=None,
         calibration: FusedCalibration | None = None) -> dict:
    """Scan one (already checked) ONNX classifier with clean reference images [N, C, H, W] in [0, 1]. With
    `calibration` (the images are the platform-held set it was measured on), the verdict is the fused score's."""
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = OnnxGraph(model_proto).eval()
    clean = torch.from_numpy(np.ascontiguousarray(clean_images, np.float32))
    with torch.no_grad():
        out = model(clean[:2])
    if out.dim() != 2 or out.shape[1] < 2:
        raise ValueError(f"the model's output has shape {list(out.shape)}; expected class scores [N, K], K ≥ 2")
    classes = int(out.shape[1])
    if progress:
        progress("loaded", 0.0)
    l1, masks, patterns, probabilities = neural_cleanse(model, clean, classes, cfg, progress)
    index = anomaly_indices(l1)
    target = int(np.argmax(index))
    backdoored = bool(index[target] > cfg.threshold)
    m, p = torch.from_numpy(masks[target]), torch.from_numpy(patterns[target])
    triggered = (1 - m) * clean + m * p
    if progress:
        progress("strip", 0.0)
    strip = strip_stats(model, clean, triggered, probabilities, cfg)
    spectral = spectral_stats(model, clean, triggered, target, probabilities)
    verdict = {"verdict_rule": "nc_anomaly_index", "threshold": cfg.threshold}
    if calibration is not None:
        if progress:
            progress("patch_sweep", 0.0)
        sweep = patch_sweep(model, clean)
        fused, z = calibration.score(fused_features(index[target], l1, sweep["changed_max"]))
        backdoored = bool(fused > calibration.threshold)
        verdict = {"verdict_rule": "fused", "threshold": calibration.threshold,
                   "fused": {"score": fused, "z": z, "patch_sweep": sweep}}
    return {"verdict": "backdoored" if backdoored else "clean", "anomaly_index": index.tolist(), "mask_l1": l1.tolist(),
            "suspected_target": target, "max_anomaly_index": float(index[target]), **verdict,
            "classes": classes, "mask": masks[target], "pattern": patterns[target], "strip": strip,
            "spectral": spectral, "seconds": time.perf_counter() - started, "clean_images": int(len(clean))}
