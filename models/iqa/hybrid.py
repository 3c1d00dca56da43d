"""Hybrid: an SVR on [PMT-IQA trunk outputs, NSS features, JPEG quality estimate], in the same leave-pictures-out CV.

For fold k and seed s the trunk is the CV-trained **progressive** run of models/iqa/crossval.py (trained on fold k's
training pictures only, its epoch chosen on two of them), never the served weights, whose training pictures lie in
the CV's folds. The arm was fixed before any CV number was seen (progressive is the method of the card). Per image:
the trunk's 14 features and its score (mean over the 4 fixed crops), the 36 NSS features (models/iqa/baselines.py)
and the JPEG quality read from the quantisation table (100 for an image that is not a JPEG file: lossless).
The SVR (standardised inputs, RBF) is fitted on fold k's training pictures, C / γ chosen by inner CV grouped by
picture (crossval.fit_nss), and predicts fold k's pictures.

Caveat on the JPEG feature: in this benchmark only the JPEG distortion arrives as a JPEG file, so the feature also
tells the regressor which images are JPEG-distorted; on real uploads, mostly JPEG files, it carries only the
quality. The baseline `nss_jpeg_svr` (the same SVR on NSS + JPEG quality, no trunk) gets the same feature, so the
trunk's contribution is the difference between the two rows.
"""
import numpy as np
import torch

from . import crossval as CV


@torch.no_grad()
def trunk_outputs(model, images: np.ndarray, batch_images: int = 128) -> np.ndarray:
    """(N, 15): the trunk's 14 features and the score, each the mean over the image's 4 fixed crops."""
    from .crops import fixed_crops

    model.eval()
    out = []
    for i in range(0, len(images), batch_images):
        crops = torch.from_numpy(fixed_crops(images[i : i + batch_images]))
        h = model.features(crops)
        s = model.score_head(h) * model.score_scale
        k = crops.shape[0] // len(images[i : i + batch_images])
        out.append(torch.cat([h, s], 1).view(-1, k, h.shape[1] + 1).mean(1).numpy())
    return np.concatenate(out)


def jpeg_feature(bench: dict) -> np.ndarray:
    from .baselines import jpeg_quality_for_benchmark

    q = jpeg_quality_for_benchmark(bench)
    return np.where(np.isnan(q), 100.0, q)[:, None]


def load_run(arm: str, profile: str, seed: int, fold: int):
    from safetensors.torch import load_file

    from .model import PMTIQA
    from .train import PROFILES

    cfg = PROFILES[profile]
    model = PMTIQA(cfg.backbone, cfg.width, cfg.score_scale)
    model.load_state_dict(load_file(str(CV.RUNS / f"{arm}_{profile}_seed{seed}_fold{fold}.safetensors")))
    return model.eval()


def nss_jpeg_predictions(bench: dict, log=print) -> np.ndarray:
    """Baseline: the SVR on NSS + JPEG quality (no trunk), out of fold."""
    x = np.hstack([CV.nss_cache(bench), jpeg_feature(bench)])
    fold, pred = CV.fold_of(bench), np.empty(len(bench["score"]))
    for k in range(CV.FOLDS):
        tr = fold != k
        model, params = CV.fit_nss(x[tr], bench["score"][tr], bench["source"][tr])
        pred[~tr] = model.predict(x[~tr])
        log(f"[iqa hybrid] nss+jpeg fold {k}: {params}")
    return pred


def hybrid_predictions(bench: dict, seeds: list[int], profile: str, arm: str = "progressive", log=print) -> np.ndarray:
    """(seeds, N) out-of-fold predictions of the hybrid; cached per (seed, fold) under crossval.RUNS."""
    def trunk(seed: int, k: int) -> np.ndarray:
        return trunk_outputs(load_run(arm, profile, seed, k), bench["image"])

    return _svr_over_trunk(bench, seeds, f"hybrid_{arm}_{profile}", trunk, log)


def _svr_over_trunk(bench: dict, seeds: list[int], name: str, trunk, log) -> np.ndarray:
    """(seeds, N): for each outer fold k, the SVR on [trunk(seed, k) outputs of every image + NSS + JPEG quality] fitted
    on the other folds' images, predicting fold k's; cached per (seed, fold) as RUNS/<name>_seed<S>_fold<k>.npy."""
    base = np.hstack([CV.nss_cache(bench), jpeg_feature(bench)])
    fold, preds = CV.fold_of(bench), []
    for seed in seeds:
        pred = np.empty(len(bench["score"]))
        for k in range(CV.FOLDS):
            path = CV.RUNS / f"{name}_seed{seed}_fold{k}.npy"
            held = fold == k
            if not path.exists():
                x = np.hstack([trunk(seed, k), base])
                model, params = CV.fit_nss(x[~held], bench["score"][~held], bench["source"][~held])
                np.save(path, model.predict(x[held]))
                log(f"[iqa hybrid] {name} seed {seed} fold {k}: {params}")
            pred[held] = np.load(path)
        preds.append(pred)
    return np.array(preds)


# ---- the same hybrid with out-of-fold trunk outputs (added after the table above showed the over-trust) ---------------
# For outer fold k the SVR is fitted on trunk outputs that no trunk produced for its own training pictures: the images
# of each other fold j come from a trunk trained without folds j and k. That trunk is the same for (k, j) and (j, k),
# so a seed needs C(5, 2) = 10 extra trunks, not 20. The held-out fold k is scored through the outer trunk of crossval
# (trained on all of fold k's training pictures), as before.

def pair_outputs(bench: dict, seed: int, j: int, k: int, profile: str, arm: str = "progressive", log=print) -> dict:
    """{fold: trunk outputs of its images} for folds j and k, from a trunk trained on the other three folds (its epoch
    chosen on 2 of those pictures). Cached under crossval.RUNS."""
    from safetensors.torch import save_file

    from .train import PROFILES, train

    j, k = sorted((j, k))
    path = CV.RUNS / f"pair_{arm}_{profile}_seed{seed}_folds{j}{k}.npz"
    if not path.exists():
        folds = CV.folds()
        pictures = [p for p in CV.SOURCES if p not in folds[j] + folds[k]]
        tr, va = CV.inner_split(pictures, 100 + 10 * j + k)
        model, info = train({"train": CV.subset(bench, tr), "val": CV.subset(bench, va)}, arm, seed, PROFILES[profile],
                            log=lambda *_: None)
        save_file({n: v.contiguous() for n, v in model.state_dict().items()}, str(path.with_suffix(".safetensors")))
        np.savez(path, **{str(f): trunk_outputs(model, CV.subset(bench, folds[f])["image"]) for f in (j, k)})
        log(f"[iqa hybrid] pair trunk seed {seed} without folds {j}, {k}: epoch {info['best_epoch']}")
    with np.load(path) as z:
        return {int(f): z[f] for f in z.files}


def oof_hybrid_predictions(bench: dict, seeds: list[int], profile: str, arm: str = "progressive", log=print) -> np.ndarray:
    """(seeds, N) out-of-fold predictions of the hybrid whose SVR sees out-of-fold trunk outputs only."""
    fold = CV.fold_of(bench)

    def trunk(seed: int, k: int) -> np.ndarray:
        out = np.empty((len(fold), 15))
        for j in range(CV.FOLDS):
            if j != k:
                out[fold == j] = pair_outputs(bench, seed, j, k, profile, arm, log)[j]
        out[fold == k] = trunk_outputs(load_run(arm, profile, seed, k), bench["image"][fold == k])
        return out

    return _svr_over_trunk(bench, seeds, f"hybrid_oof_{arm}_{profile}", trunk, log)
