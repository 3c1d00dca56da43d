"""Train SSTAM on the graded encodes: block CNN (with / without CeCo, chosen on validation), TimeSformer,
then the pooling weights. Writes models/video/weights/sstam.safetensors + sstam.json.

    python -m models.video.train            # builds the data first if build/video/data is empty (~4 min)
    python -m models.video.train --reuse-cnn --out /tmp/x/sstam.safetensors   # keep the block CNN, redo the rest

Selection uses the validation sources only (gravel, rocket); the test sources are never read here. The pooling
is fitted to QP order within source on out-of-fold intensities of the training encodes (cross_fit_intensities,
fit_pooling_rank).
"""
import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from safetensors.torch import save_file

from models.ceco.ceco import CeCo

from . import data as D
from .decode import Frame
from .model import BlockCNN, TimeSformer
from .pipeline import CLIP, STATS, STATS_EVERY, Analyzer, Pooling, frame_stats, frame_tokens, hf_blocks, saliency, thumbnail, to_blocks, token_dim

WEIGHTS = Path(__file__).resolve().parent / "weights" / "sstam.safetensors"
SAMPLE_STRIDE = 2  # the training clips are 25 fps; 12.5 fps sampling keeps every 2nd frame
CLEAN_THRESHOLD = 0.25  # a block / clip counts as showing an artifact above this intensity


@dataclass
class Config:
    width: int = 24
    feat: int = 32
    # BlockCNN's luma input: "mscn" (contrast-normalised) ordered QP on unseen sources better than "raw" in
    # source cross-validation (models/video/report/crossval_*.md)
    cnn_luma: str = "mscn"
    cnn_steps: int = 600
    cnn_batch: int = 24
    cnn_lr: float = 3e-3
    ceco_lam: float = 0.4
    rank_weight: float = 2.0  # paired-settings ranking loss (0 = off); see train_cnn
    # CeCo's arm tied plain CE on validation (0.791 vs 0.790) and lost the tie when the run was reproduced: it is no
    # longer trained by default (`--arms ce ce+ceco` repeats the comparison)
    arms: tuple = ("ce",)
    eval_every: int = 150
    t_dim: int = 48
    t_depth: int = 2
    t_steps: int = 300
    t_batch: int = 16
    t_lr: float = 1e-3
    # token subsets for the TimeSformer: 0 = all, 32 = without the CNN features. Both were tried with the run-5
    # CNN (validation flicker AUC 0.55 with, 0.78 without: the features let it memorise training sources);
    # the default keeps the winner only, `--t-use-from 0 32` repeats the comparison.
    t_use_from: tuple = (32,)
    seed: int = 0
    # the saliency the served pooling is fitted for and the server uses by default, and the share of the
    # intensities-only fit in it (fit_pooling_blend); both chosen by source cross-validation (crossval.py)
    saliency: str = "spectral_residual"
    pooling_blend: float = 0.5


def rows_by_split(rows=None):
    rows = rows if rows is not None else D.build_all()
    return {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}


def frames_tensor(rows):
    """(y, uv, block labels, source id per frame): all frames of the rows, in row order (32 per row)."""
    ys, us, vs, bl, clips = [], [], [], [], []
    for r in rows:
        d = D.load_encode(r)
        ys.append(d["y"]), us.append(d["u"]), vs.append(d["v"]), bl.append(d["blocks"].astype(np.float32)), clips.append(d["clip"])
    names = sorted({r["source"] for r in rows})
    source = torch.tensor(np.concatenate([np.full(len(y), names.index(r["source"])) for r, y in zip(rows, ys)]))
    return (torch.from_numpy(np.concatenate(ys))[:, None].float(), torch.from_numpy(np.stack([np.concatenate(us), np.concatenate(vs)], 1)).float(),
            torch.from_numpy(np.concatenate(bl)), source)


def block_classes(blocks: torch.Tensor) -> torch.Tensor:
    """Dense classes for CeCo: 0 = clean, 1 + argmax artifact where its intensity > CLEAN_THRESHOLD."""
    m, a = blocks.max(1)
    return torch.where(m > CLEAN_THRESHOLD, a + 1, torch.zeros_like(a))


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    positive = positive.astype(bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def block_aucs(cnn, y, uv, blocks, source=None, batch=64) -> list[float]:
    with torch.no_grad():
        preds = torch.cat([cnn(y[i:i + batch], uv[i:i + batch])[0] for i in range(0, len(y), batch)])
    return [auc(preds[:, k].flatten().numpy(), (blocks[:, k] > CLEAN_THRESHOLD).flatten().numpy()) for k in range(4)], preds


def order_accuracy(preds, blocks, source) -> float:
    """Paired settings on validation: over pairs of encodes of the same source at the same frame whose labels
    differ (frame-mean label difference > 0.02), the fraction where the frame-mean prediction moves the same way."""
    F_ = D.FRAMES
    p = preds.mean((2, 3)).reshape(-1, F_, 4)
    l = blocks.mean((2, 3)).reshape(-1, F_, 4)
    src = source.reshape(-1, F_)[:, 0]
    hits, total = 0.0, 0.0
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            if src[i] != src[j]:
                continue
            dl, dp = l[j] - l[i], p[j] - p[i]
            m = dl.abs() > 0.02
            hits += float(((torch.sign(dl) == torch.sign(dp)) & m).sum())
            total += float(m.sum())
    return hits / max(total, 1.0)


def train_cnn(cfg: Config, arm: str, train, val, log=print):
    torch.manual_seed(cfg.seed)
    cnn = BlockCNN(cfg.width, cfg.feat, cfg.cnn_luma)
    y, uv, blocks, source = train
    frames = D.FRAMES
    params = list(cnn.parameters())
    ceco = None
    if arm == "ce+ceco":
        prior = torch.bincount(block_classes(blocks).flatten(), minlength=5).float()
        ceco = CeCo(cfg.feat, 5, prior, lam=cfg.ceco_lam, seed=cfg.seed)
        params += list(ceco.parameters())
    opt = torch.optim.Adam(params, cfg.cnn_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.cnn_steps)
    g = torch.Generator().manual_seed(cfg.seed)
    best = (-1.0, None, 0, None)
    for step in tqdm(range(1, cfg.cnn_steps + 1), desc="block CNN steps", disable=None):
        idx = torch.randint(0, len(y), (cfg.cnn_batch // 2,), generator=g)
        if cfg.rank_weight > 0:
            # partners: the same frame of the same source under another encode (rows are 32 frames each)
            rows_n = len(y) // frames
            cand = torch.randint(0, rows_n, (len(idx), 64), generator=g) * frames + (idx % frames)[:, None]
            same = source[cand] == source[idx][:, None]
            partner = cand[torch.arange(len(idx)), same.float().argmax(1)]
            idx = torch.cat([idx, partner])
        else:
            idx = torch.cat([idx, torch.randint(0, len(y), (cfg.cnn_batch - len(idx),), generator=g)])
        yb, uvb, tb = y[idx], uv[idx], blocks[idx]
        if torch.rand(1, generator=g).item() < 0.5:  # horizontal flip keeps the 16-px block grid aligned (128 = 8 blocks)
            yb, uvb, tb = yb.flip(-1), uvb.flip(-1), tb.flip(-1)
        pred, feat = cnn(yb, uvb)
        loss = F.binary_cross_entropy(pred, tb)
        if cfg.rank_weight > 0:
            # paired settings: where the partner's frame carries more of an artifact (by its labels), its mean
            # predicted intensity must be higher by a margin (QP order within a source)
            h = len(idx) // 2
            dl = tb[h:].mean((2, 3)) - tb[:h].mean((2, 3))
            dp = pred[h:].mean((2, 3)) - pred[:h].mean((2, 3))
            mask = (dl.abs() > 0.02).float()
            hinge = F.relu(0.5 * dl.abs() - torch.sign(dl) * dp) * mask
            loss = loss + cfg.rank_weight * hinge.sum() / mask.sum().clamp_min(1)
        if ceco is not None:
            loss = loss + ceco(feat, block_classes(tb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == cfg.cnn_steps:
            cnn.eval()
            aucs, preds = block_aucs(cnn, *val)
            order = order_accuracy(preds, val[2], val[3])
            cnn.train()
            # selection: block detection and QP order both matter (the video score needs the second)
            score = 0.5 * float(np.nanmean(aucs)) + 0.5 * order
            log(f"[cnn {arm}] step {step} loss {loss.item():.4f} val block AUC {np.round(aucs, 3).tolist()} "
                f"mean {np.nanmean(aucs):.3f}, pair order accuracy {order:.3f}")
            if score > best[0]:
                best = (score, {k: v.clone() for k, v in cnn.state_dict().items()}, step, aucs, order)
    cnn.load_state_dict(best[1])
    return cnn.eval(), {"val_score": best[0], "val_mean_auc": float(np.nanmean(best[3])), "val_aucs": best[3],
                        "val_order_accuracy": best[4], "best_step": best[2]}


def torch_fns(cnn, tsf):
    def block_fn(y, uv):
        with torch.no_grad():
            i, f = cnn(torch.from_numpy(y).float(), torch.from_numpy(uv).float())
        return i.numpy(), f.numpy()

    def temporal_fn(tokens):
        with torch.no_grad():
            return tsf(torch.from_numpy(tokens)).numpy()

    return block_fn, temporal_fn


def encode_tokens(cnn, row, phase=0, saliency_method="sstam"):
    """Tokens [frames, 64, D] of one encode sampled every 2nd frame from `phase`."""
    d = D.load_encode(row)
    idx = np.arange(phase, d["y"].shape[0], SAMPLE_STRIDE)
    with torch.no_grad():
        inten, feats = cnn(torch.from_numpy(d["y"][idx])[:, None].float(), torch.from_numpy(np.stack([d["u"][idx], d["v"][idx]], 1)).float())
    toks, prev = [], None
    for k in range(len(idx)):
        th = thumbnail(d["y"][idx[k]])
        sal_b = to_blocks(saliency(th, prev, saliency_method))
        toks.append(frame_tokens(feats[k].numpy(), inten[k].numpy(), sal_b, th, prev, hf_blocks(d["y"][idx[k]])))
        prev = th
    return np.stack(toks), d["clip"]


def clip_set(cnn, rows, phases=(0,), starts=(0, 8)):
    X, Y = [], []
    for r in rows:
        for p in phases:
            toks, lab = encode_tokens(cnn, r, p)
            for s in starts:
                if s + CLIP <= len(toks):
                    X.append(toks[s:s + CLIP]), Y.append(lab)
    return torch.from_numpy(np.stack(X)), torch.from_numpy(np.stack(Y)).float()


def train_temporal(cfg: Config, train, val, in_dim, log=print, use_from: int = 0):
    torch.manual_seed(cfg.seed)
    tsf = TimeSformer(in_dim, cfg.t_dim, depth=cfg.t_depth, use_from=use_from)
    opt = torch.optim.AdamW(tsf.parameters(), cfg.t_lr, weight_decay=0.05)
    X, Y = train
    g = torch.Generator().manual_seed(cfg.seed)
    best = (-1.0, None, 0, None)
    for step in tqdm(range(1, cfg.t_steps + 1), desc="TimeSformer steps", disable=None):
        idx = torch.randint(0, len(X), (cfg.t_batch,), generator=g)
        xb = X[idx]
        if torch.rand(1, generator=g).item() < 0.5:  # mirror the 8x8 region grid left-right
            xb = xb.reshape(*xb.shape[:2], 8, 8, -1).flip(3).reshape(xb.shape)
        loss = F.binary_cross_entropy(tsf(xb), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.t_steps:
            tsf.eval()
            with torch.no_grad():
                p = tsf(val[0]).numpy()
            tsf.train()
            aucs = [auc(p[:, k], val[1][:, k].numpy() > CLEAN_THRESHOLD) for k in range(2)]
            score = float(np.nanmean(aucs))
            log(f"[timesformer from {use_from}] step {step} loss {loss.item():.4f} val clip AUC (flicker, floating) {np.round(aucs, 3).tolist()}")
            if score > best[0]:
                best = (score, {k: v.clone() for k, v in tsf.state_dict().items()}, step, aucs)
    tsf.load_state_dict(best[1])
    return tsf.eval(), {"val_mean_auc": best[0], "val_aucs": best[3], "best_step": best[2]}


def analyse_encode(analyzer_factory, row) -> dict:
    """Run the served pipeline over one cached encode (12.5 fps sampling) -> segment results."""
    d = D.load_encode(row)
    an = analyzer_factory()
    segs = []
    for k, t in enumerate(range(0, d["y"].shape[0], SAMPLE_STRIDE)):
        segs += an.push(Frame(k, t / D.FPS, d["y"][t], d["u"][t], d["v"][t]))
    segs += an.finish()
    return segs


def order_pairs(rows) -> list[tuple[int, int]]:
    """(i, j) index pairs of encodes of the same source where j is known to be the worse one: every pair along
    each QP ladder (data.LADDERS, higher QP = worse), x264 without deblocking QP 36 < 44, and every pair along a fresh
    set's ladders (rows that name their `ladder`; a higher `q` is a worse rung on each)."""
    ladders = list(D.LADDERS.values()) + [["x264_nodb_qp36", "x264_nodb_qp44"]]
    at = {(r["source"], r["encode"]): i for i, r in enumerate(rows)}
    pairs = []
    for src in sorted({r["source"] for r in rows}):
        for names in ladders:
            idx = [at[(src, n)] for n in names if (src, n) in at]
            pairs += [(idx[a], idx[b]) for a in range(len(idx)) for b in range(a + 1, len(idx))]
    named: dict = {}
    for i, r in enumerate(rows):
        if "ladder" in r:
            named.setdefault((r["source"], r["ladder"]), []).append(i)
    for idx in named.values():
        idx = sorted(idx, key=lambda i: rows[i]["q"])
        pairs += [(idx[a], idx[b]) for a in range(len(idx)) for b in range(a + 1, len(idx))]
    return pairs


def level_pairs(rows, vmaf: np.ndarray, margin: float = 10.0, limit: int = 100_000, seed: int = 0) -> list[tuple[int, int]]:
    """(i, j) pairs of encodes of *different* sources where j's VMAF is lower by at least `margin` points: the level
    across sources, which rung pairs (order_pairs) never see. At most `limit`, drawn with a fixed seed."""
    source = np.array([r["source"] for r in rows])
    v = np.asarray(vmaf, np.float64)
    i, j = np.nonzero((v[:, None] - v[None, :] >= margin) & (source[:, None] != source[None, :]))
    if len(i) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(i), limit, replace=False))
        i, j = i[keep], j[keep]
    return list(zip(i.tolist(), j.tolist()))


def fit_pooling_rank(features: np.ndarray, rows, vmaf: np.ndarray, l2: float = 1e-2, temp: float = 0.1,
                     intensities: int = 6, across: float = 0.0) -> Pooling:
    """Pooling fitted to QP order within source: w minimises a pairwise logistic loss (RankNet) over `order_pairs` on
    the features standardised per column, + l2 |w|^2; then one scale a > 0 and a bias map the ranking score w . x onto
    VMAF's scale (below), so quality reads like 1 - VMAF/100 but its order within a source is the rank fit's.
    `features` [n, intensities + k]: the first `intensities` columns are the artifact intensities, whose weights are
    held >= 0 so quality is monotone in each; the other k (pipeline.STATS) may take either sign. `across` > 0 adds
    `across` x the same loss over `level_pairs` (encodes of different sources ordered by VMAF), so the fit keeps the
    level across sources as well as the order within one."""
    from scipy.optimize import minimize

    X = np.asarray(features, np.float64)
    sd = X.std(0) + 1e-6
    pairs = order_pairs(rows)
    # an artifact whose label never changes along these pairs (flickering: the ladders are constant-QP encodes)
    # carries no QP-order information: the pairs could only fit noise into its weight, so it is held at 0. Judged on
    # the pairs with labels (a fresh set's rows have none; its ladders are constant-quality encodes too).
    labelled = [(i, j) for i, j in pairs if "levels" in rows[i] and "levels" in rows[j]]
    lev = lambda i, k: rows[i]["levels"][D.ARTIFACTS[k]]
    free = (np.array([any(abs(lev(j, k) - lev(i, k)) > 1e-6 for i, j in labelled) for k in range(intensities)])
            if labelled else np.ones(intensities, bool))

    def differences(pairs):  # rows that should score positive (j is the worse encode)
        i, j = np.asarray(pairs).T
        return (X[j] - X[i]) / sd

    terms = [(1.0, differences(pairs))]
    if across > 0:
        terms.append((across, differences(level_pairs(rows, vmaf))))

    def f(w):
        loss, g = l2 * w @ w, 2 * l2 * w
        for weight, D_ in terms:
            z = -(D_ @ w) / temp
            loss += weight * np.logaddexp(0, z).mean()
            g -= weight * (D_ * (1 / (1 + np.exp(-z)))[:, None]).mean(0) / temp
        return loss, g

    bounds = [(0, None) if fr else (0, 0) for fr in free] + [(None, None)] * (X.shape[1] - intensities)
    start = np.concatenate([np.where(free, 0.1, 0.0), np.zeros(X.shape[1] - intensities)])
    w = minimize(f, start, jac=True, method="L-BFGS-B", bounds=bounds).x / sd
    # Scale: the ranking score's mean and spread on the training encodes matched to those of 1 - VMAF/100, so the
    # quality reads on VMAF's scale. (A least-squares fit to VMAF shrank the scale: VMAF varies across sources far
    # more than any artifact intensity explains, and every score landed in 0.80-0.83.)
    s, target = X @ w, 1.0 - np.asarray(vmaf, np.float64) / 100.0
    a = target.std() / max(s.std(), 1e-9)
    return Pooling(weights=[float(a * x) for x in w[:intensities]], bias=float(target.mean() - a * s.mean()),
                   stat_weights=[float(a * x) for x in w[intensities:]])


def fit_pooling_level(features: np.ndarray, vmaf: np.ndarray, l2: float = 1e-2, intensities: int = 6) -> Pooling:
    """Pooling fitted to VMAF's level across sources: ridge least squares of 1 - VMAF/100 on the features standardised
    per column (`l2` per encode, as fit_pooling_rank's), the artifact intensities' weights held >= 0 as the rank fit
    holds them. The rank fit only ever compares encodes of one source; this fit is what knows the level across them."""
    from scipy.optimize import lsq_linear

    X = np.asarray(features, np.float64)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    target = 1.0 - np.asarray(vmaf, np.float64) / 100.0
    n, k = X.shape
    A = np.vstack([(X - mu) / sd, np.sqrt(n * l2) * np.eye(k)])
    b = np.concatenate([target - target.mean(), np.zeros(k)])
    lower = np.concatenate([np.zeros(intensities), np.full(k - intensities, -np.inf)])
    w = lsq_linear(A, b, bounds=(lower, np.inf)).x / sd
    return Pooling(weights=w[:intensities].tolist(), bias=float(target.mean() - mu @ w), stat_weights=w[intensities:].tolist())


def mixed(a: Pooling, b: Pooling, share_b: float) -> Pooling:
    """(1 - share_b) x a + share_b x b: both linear on VMAF's scale, so their mix is one linear pooling (a pooling
    without statistics counts as zero weight on them)."""
    stats = max(len(a.stat_weights), len(b.stat_weights))
    pad = lambda v: list(v) + [0.0] * (stats - len(v))
    return Pooling(weights=[(1 - share_b) * x + share_b * y for x, y in zip(a.weights, b.weights)],
                   bias=(1 - share_b) * a.bias + share_b * b.bias,
                   stat_weights=[(1 - share_b) * x + share_b * y for x, y in zip(pad(a.stat_weights), pad(b.stat_weights))])


def fit_pooling_blend(features: np.ndarray, rows, vmaf: np.ndarray, blend: float) -> Pooling:
    """Run 8's pooling: (1 - blend) x the rank fit on intensities + statistics, blend x the rank fit on the intensities
    alone. In source cross-validation (report/crossval.md) the statistics order the rungs of a held-out source's ladder
    best (SRCC ~0.94 with them, ~0.82 without) but, varying with content far more than with coding, they blur the level
    across sources (SRCC with VMAF ~0.46 with them, ~0.60 without); the blend keeps most of both."""
    return mixed(fit_pooling_rank(features, rows, vmaf), fit_pooling_rank(features[:, :len(D.ARTIFACTS)], rows, vmaf), blend)


def whole_encode_segment(fns, row, saliency_method: str = "sstam", pooling: Pooling | None = None):
    """The pipeline's (12.5 fps) result over a whole cached encode, as one segment; with `pooling`, the statistics it
    weighs (BRISQUE's too, if it uses them) and its quality, as served."""
    return analyse_encode(lambda: Analyzer(*fns, pooling or Pooling(), saliency_method=saliency_method, seg_clips=1 << 20), row)[0]


def encode_stats(row) -> np.ndarray:
    """[len(STATS)]: the detail statistics of a whole cached encode, as whole_encode_segment computes them (the
    mean of frame_stats over every STATS_EVERY-th sampled frame) but without the networks, which they do not need."""
    d = D.load_encode(row)
    frames = range(0, d["y"].shape[0], SAMPLE_STRIDE * STATS_EVERY)
    return np.mean([frame_stats(d["y"][t], d["u"][t], d["v"][t], hf_blocks(d["y"][t])) for t in frames], 0)


def segment_features(fns, rows, saliency_method: str = "sstam", pooling: Pooling | None = None) -> np.ndarray:
    """[len(rows), 6 + len(STATS) (+ len(NSS) if `pooling` uses them)]: the intensities and statistics of each whole
    cached encode."""
    segments = [whole_encode_segment(fns, r, saliency_method, pooling) for r in rows]
    return np.stack([np.concatenate([s.intensities, s.stats]).astype(np.float64) for s in segments])


SALIENCY_METHODS = ("sstam", "spectral_residual", "uniform")


def fit_statistics_pooling(rows) -> Pooling:
    """The detail statistics alone, rank-fitted to the rung order of `rows` (no network): the "detail statistics alone"
    row of crossval.py and of every fresh scoring, as a Pooling with zero intensity weights. Served beside the quality as
    the summary's `rung_score`, which orders encodes of one source better than the quality does (models/video/README.md)."""
    X = np.stack([encode_stats(r) for r in rows])
    fit = fit_pooling_rank(X, rows, np.array([r["vmaf"] for r in rows], np.float64), intensities=0)
    return Pooling(weights=[0.0] * len(D.ARTIFACTS), bias=fit.bias, stat_weights=fit.stat_weights)


def write_statistics_pooling(weights_files) -> Pooling:
    """fit_statistics_pooling on every encode of the 20 earlier sources (as the fresh scorings fitted it), into each
    weights file's metadata."""
    rows = D.build_all()
    pooling = fit_statistics_pooling(rows)
    for weights in weights_files:
        meta = json.loads(weights.with_suffix(".json").read_text())
        meta["pooling_fit"]["statistics_only"] = {"pooling": asdict(pooling), "fitted_on": sorted({r["source"] for r in rows})}
        weights.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return pooling


def cross_fit_intensities(cfg: Config, arm: str, rows, folds: int = 3, log=print, always_train=()) -> dict:
    """Out-of-fold segment features of `rows` (train.py: the training encodes; crossval.py: every non-fresh source),
    {saliency method: [len(rows), 6 + len(STATS)]} (intensities, then the statistics, which no network computes).

    The pooling must learn which intensities still move with QP on a source the networks have not seen; on their
    own training encodes every intensity does (in-sample), so a fit there cannot tell them apart. The rows'
    sources are split into `folds` groups; for each, a block CNN (`arm`, cfg.cnn_steps, last step: no selection)
    and a TimeSformer (fewer windows: phase 0, starts 0/4/8) are trained on the other groups and score the group's
    encodes. Sources in `always_train` are in every training group and never held out (their rows stay 0)."""
    sources = sorted({r["source"] for r in rows} - set(always_train))
    out = {m: np.zeros((len(rows), 6 + len(STATS))) for m in SALIENCY_METHODS}
    for k in range(folds):
        held = sources[k::folds]
        tr = [r for r in rows if r["source"] not in held]
        ho = [i for i, r in enumerate(rows) if r["source"] in held]
        ho_rows = [rows[i] for i in ho]
        c = replace(cfg, eval_every=cfg.cnn_steps)
        cnn, m = train_cnn(c, arm, frames_tensor(tr), frames_tensor(ho_rows), log)
        use_from = cfg.t_use_from[0]
        tsf, _ = train_temporal(replace(cfg, eval_every=cfg.t_steps), clip_set(cnn, tr, phases=(0,), starts=(0, 4, 8)),
                                clip_set(cnn, ho_rows), token_dim(cfg.feat), log, use_from)
        fns = torch_fns(cnn, tsf)
        for sal in SALIENCY_METHODS:
            out[sal][ho] = segment_features(fns, ho_rows, sal)
        log(f"[pooling cross-fit] fold {k + 1}/{folds}: held out {held}, pair order accuracy {m['val_order_accuracy']:.3f}")
    return out


def fit_pooling_for(fns, split, saliency_method: str, train_features: np.ndarray, blend: float) -> tuple[Pooling, dict]:
    """fit_pooling_blend on the training encodes' out-of-fold features (cross_fit_intensities), and the validation
    SRCC of its quality with QP order (validation is not used by the fit)."""
    tr = split["train"]
    pooling = fit_pooling_blend(train_features, tr, np.array([r["vmaf"] for r in tr]), blend)
    q = pooling.qualities(segment_features(fns, split["val"], saliency_method))
    return pooling, {"method": "rank blend", "blend": blend, "saliency": saliency_method, "val_qp_srcc": ladder_srcc(split["val"], q)}


def ladder_of(row: dict) -> str | None:
    """The QP / quality ladder an encode is a rung of (fresh rows name theirs; data.LADDERS for the others)."""
    return row.get("ladder") or next((name for name, encodes in D.LADDERS.items() if row["encode"] in encodes), None)


def ladder_srccs(rows, scores) -> dict[tuple[str, str], float]:
    """{(source, ladder): SRCC of `scores` (higher = better) with the rung order (-QP)} for every ladder of >= 3 rungs."""
    from scipy.stats import spearmanr

    groups: dict = {}
    for i, r in enumerate(rows):
        if (ladder := ladder_of(r)) is not None:
            groups.setdefault((r["source"], ladder), []).append((r["q"], scores[i]))
    return {key: float(spearmanr(-np.array([q for q, _ in pts]), [s for _, s in pts]).statistic)
            for key, pts in sorted(groups.items()) if len(pts) >= 3}


def ladder_srcc(rows, scores) -> dict:
    """Mean SRCC of `scores` (higher = better) with -QP within (source, ladder): per ladder over sources, and the mean
    of the ladders' means. A constant score along a ladder (no order at all) counts as 0."""
    per = {k: (0.0 if np.isnan(v) else v) for k, v in ladder_srccs(rows, scores).items()}
    ladders = sorted({ladder for _, ladder in per})
    out = {ladder: float(np.mean([v for (_, lad), v in per.items() if lad == ladder])) for ladder in ladders}
    out["mean"] = float(np.mean([out[k] for k in ladders])) if ladders else float("nan")
    return out


def run(cfg: Config, rows=None, out: Path = WEIGHTS, log=print, reuse_cnn: Path | None = None) -> dict:
    """`reuse_cnn`: take the block CNN (and its selection record) from an earlier run's weights and
    redo only the TimeSformer and the pooling fit."""
    torch.set_num_threads(1)
    t0 = time.time()
    split = rows_by_split(rows)
    if reuse_cnn is not None:
        cnn, _, _, old = load(reuse_cnn)
        arm_metrics, chosen = old["cnn"], old["chosen_arm"]
        log(f"[cnn] reused from {reuse_cnn} ({chosen})")
    else:
        train, val = frames_tensor(split["train"]), frames_tensor(split["val"])
        log(f"[data] train {len(split['train'])} encodes / {len(train[0])} frames, val {len(split['val'])} / {len(val[0])}")
        arms = {}
        for arm in cfg.arms:
            arms[arm] = train_cnn(cfg, arm, train, val, log)
        chosen = max(arms, key=lambda a: arms[a][1]["val_score"])
        cnn = arms[chosen][0]
        arm_metrics = {a: m for a, (_, m) in arms.items()}
        log(f"[cnn] chosen on validation: {chosen}")
    Xtr = clip_set(cnn, split["train"], phases=(0, 1), starts=(0, 2, 4, 6, 8))
    Xva = clip_set(cnn, split["val"])
    variants = {u: train_temporal(cfg, Xtr, Xva, token_dim(cfg.feat), log, u) for u in cfg.t_use_from}
    use_from = max(variants, key=lambda u: variants[u][1]["val_mean_auc"])
    tsf = variants[use_from][0]
    tmetrics = {**variants[use_from][1], "use_from": use_from,
                "variants": {str(u): m for u, (_, m) in variants.items()}}
    log(f"[timesformer] chosen on validation: tokens from feature {use_from}")
    block_fn, temporal_fn = torch_fns(cnn, tsf)
    oof = cross_fit_intensities(cfg, chosen, split["train"], log=log)
    by_saliency = {}
    for sal in SALIENCY_METHODS:  # the served pooling is cfg.saliency's; the others are for evaluate.py's comparison
        by_saliency[sal] = fit_pooling_for((block_fn, temporal_fn), split, sal, oof[sal], cfg.pooling_blend)
        log(f"[pooling, {sal} saliency] weights {np.round(by_saliency[sal][0].weights, 3).tolist()} "
            f"bias {by_saliency[sal][0].bias:.3f}; validation SRCC with QP order {by_saliency[sal][1]['val_qp_srcc']}")
    pooling, pool_meta = by_saliency[cfg.saliency]
    pool_meta = {**pool_meta, "by_saliency": {k: {"pooling": asdict(p), **m} for k, (p, m) in by_saliency.items()},
                 "out_of_fold_train_intensities": {k: np.round(v, 5).tolist() for k, v in oof.items()}}
    meta = {"config": asdict(cfg), "chosen_arm": chosen, "saliency": cfg.saliency, "pooling": asdict(pooling), "pooling_fit": pool_meta,
            "cnn": arm_metrics, "timesformer": tmetrics, "token_dim": token_dim(cfg.feat),
            "splits": {s: sorted({r["source"] for r in rs}) for s, rs in split.items()},
            "train_seconds": round(time.time() - t0, 1)}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"block.{k}": v.contiguous() for k, v in cnn.state_dict().items()}
        tensors.update({f"temporal.{k}": v.contiguous() for k, v in tsf.state_dict().items()})
        save_file(tensors, str(out))
        out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return {"cnn": cnn, "tsf": tsf, "pooling": pooling, "meta": meta}


def load(path: Path = WEIGHTS):
    from safetensors.torch import load_file

    meta = json.loads(path.with_suffix(".json").read_text())
    cfg = meta["config"]
    t = load_file(str(path))
    cnn = BlockCNN(cfg["width"], cfg["feat"], cfg.get("cnn_luma", "raw"))
    cnn.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("block.")})
    tsf = TimeSformer(meta["token_dim"], cfg["t_dim"], depth=cfg["t_depth"], use_from=meta["timesformer"].get("use_from", 0))
    tsf.load_state_dict({k[9:]: v for k, v in t.items() if k.startswith("temporal.")})
    return cnn.eval(), tsf.eval(), Pooling(**meta["pooling"]), meta


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnn-steps", type=int, default=Config.cnn_steps)
    ap.add_argument("--t-steps", type=int, default=Config.t_steps)
    ap.add_argument("--cnn-luma", choices=("raw", "mscn"), default=Config.cnn_luma)
    ap.add_argument("--arms", nargs="+", default=list(Config.arms))
    ap.add_argument("--t-use-from", nargs="+", type=int, default=list(Config.t_use_from))
    ap.add_argument("--reuse-cnn", type=Path, nargs="?", const=WEIGHTS, default=None,
                    help="keep the block CNN of these weights (default: the committed ones); retrain the TimeSformer and pooling")
    ap.add_argument("--saliency", choices=SALIENCY_METHODS, default=Config.saliency, help="the served pooling's saliency")
    ap.add_argument("--seed", type=int, default=Config.seed)
    ap.add_argument("--out", type=Path, default=WEIGHTS, help="where to write the .safetensors (+ .json)")
    ap.add_argument("--statistics-only", action="store_true",
                    help="only fit the rung score's statistics pooling into the committed weights' metadata (no network)")
    a = ap.parse_args()
    if a.statistics_only:
        write_statistics_pooling([WEIGHTS, *sorted(WEIGHTS.parent.glob("sstam_seed*.safetensors"))])
        sys.exit(0)
    run(Config(cnn_steps=a.cnn_steps, t_steps=a.t_steps, cnn_luma=a.cnn_luma, arms=tuple(a.arms), t_use_from=tuple(a.t_use_from),
               saliency=a.saliency, seed=a.seed),
        out=a.out, log=lambda m: print(m, flush=True), reuse_cnn=a.reuse_cnn)
