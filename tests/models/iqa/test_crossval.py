"""IQA baselines (NSS features, JPEG quality from quantisation tables) and the leave-pictures-out CV harness."""
import io

import numpy as np
import pytest
from PIL import Image

from models.iqa import baselines as B
from models.iqa import crossval as CV
from models.iqa import data as D
from models.nss.brisque import FEATURE_NAMES, aggd_fit, brisque_features, ggd_fit


@pytest.fixture(scope="module")
def tile():
    return D.to_uint8(D.tiles(D.load_source("astronaut"))[0])


def _distort(tile, name, level):
    fn, params = D.DISTORTIONS[name]
    return D.to_uint8(fn(tile.astype(np.float32) / 255, params[level - 1], np.random.default_rng(0)))


def test_nss_features_shape_and_documented_directions(tile):
    clean = brisque_features(tile)
    assert clean.shape == (36,) == (len(FEATURE_NAMES),) and np.isfinite(clean).all()
    mscn_var, shape = FEATURE_NAMES.index("s1_mscn_var"), FEATURE_NAMES.index("s1_mscn_shape")
    blurred, noisy, blocky = (brisque_features(_distort(tile, n, 4)) for n in ("gaussian_blur", "white_noise", "jpeg"))
    # Mittal et al. 2012: blur flattens local contrast, so the normalised coefficients shrink; white noise makes
    # them more Gaussian (larger GGD shape) and larger; strong JPEG leaves flat blocks, a peakier (smaller-shape) law
    assert blurred[mscn_var] < 0.6 * clean[mscn_var]
    assert noisy[mscn_var] > 1.5 * clean[mscn_var] and noisy[shape] > clean[shape]
    assert blocky[shape] < clean[shape]


def test_ggd_fit_recovers_a_gaussian_and_a_laplacian():
    rng = np.random.default_rng(0)
    assert ggd_fit(rng.normal(0, 2, 200_000))[0] == pytest.approx(2.0, abs=0.05)
    assert ggd_fit(rng.laplace(0, 1, 200_000))[0] == pytest.approx(1.0, abs=0.05)
    # an asymmetric Gaussian with σ 1 on the left and 2 on the right puts 1/3 of its mass on the left
    shape, mean, var_l, var_r = aggd_fit(np.concatenate([-np.abs(rng.normal(0, 1, 100_000)), np.abs(rng.normal(0, 2, 200_000))]))
    assert shape == pytest.approx(2.0, abs=0.1) and mean > 0 and var_r == pytest.approx(4 * var_l, rel=0.05)


@pytest.mark.parametrize("quality", [5, 20, 50, 75, 92])
def test_jpeg_quality_recovered_from_the_tables(tile, quality):
    assert abs(B.jpeg_quality(B.jpeg_bytes(tile, quality)) - quality) <= 3


def test_jpeg_quality_is_nan_for_a_png(tile):
    buf = io.BytesIO()
    Image.fromarray(tile).save(buf, "PNG")
    assert np.isnan(B.jpeg_quality(buf.getvalue()))


def test_jpeg_bytes_decode_to_the_benchmark_image(tile):
    """The baseline's JPEG file is exactly the benchmark's JPEG distortion of the same tile."""
    reference = tile.astype(np.float32) / 255
    for level, quality in enumerate(D.DISTORTIONS["jpeg"][1], start=1):
        decoded = np.asarray(Image.open(io.BytesIO(B.jpeg_bytes(tile, quality))).convert("RGB"))
        assert np.array_equal(decoded, _distort(tile, "jpeg", level)), quality
        assert np.array_equal(decoded, D.to_uint8(D.jpeg(reference, quality, None)))


def test_folds_partition_the_pictures_and_inner_validation_stays_inside():
    folds = CV.folds()
    names = [p for f in folds for p in f]
    assert sorted(names) == sorted(D.SOURCES) and len(set(names)) == len(names) and len(folds) == CV.FOLDS
    assert all(3 <= len(f) <= 4 for f in folds) and folds == CV.folds()  # deterministic
    for k, held_out in enumerate(folds):
        train_pictures = [p for p in D.SOURCES if p not in held_out]
        tr, va = CV.inner_split(train_pictures, k)
        assert len(va) == CV.INNER_VAL and not set(va) & set(tr) and not (set(tr) | set(va)) & set(held_out)
        assert sorted(tr + va) == sorted(train_pictures)


def _toy_bench(n_pictures=6, refs_per_picture=2):
    rows = []
    for p in range(n_pictures):
        for r in range(refs_per_picture):
            ref = p * refs_per_picture + r
            rows.append((ref, 0, 0, 100.0, p))
            for t in (1, 2):
                rows += [(ref, t, lv, 100.0 - 15 * lv - 5 * t + ref % 3, p) for lv in range(1, 6)]
    ref, typ, level, score, source = map(np.array, zip(*rows))
    return {"ref": ref, "type": typ, "level": level, "score": score.astype(float), "source": source}


def test_metrics_perfect_reversed_and_bootstrap_pairs():
    bench = _toy_bench()
    good, bad = bench["score"].copy(), -bench["score"]
    assert CV.scores(good, bench)["srcc"] == pytest.approx(1.0) and CV.scores(good, bench)["severity"] == pytest.approx(1.0)
    assert CV.scores(bad, bench)["severity"] == pytest.approx(-1.0)
    constant = np.zeros_like(good)
    assert CV.severity_from_groups(*CV.group_rhos(constant, bench))[0] == 0.0
    draws = CV.bootstrap({"good": good[None], "bad": bad[None]}, bench, n=50)
    assert (draws["good"]["srcc"] - draws["bad"]["srcc"] > 1.5).all() and np.allclose(draws["good"]["severity"], 1.0)
    # seeds are averaged: a good and a reversed seed order nothing on average
    assert np.allclose(CV.bootstrap({"mixed": np.stack([good, bad])}, bench, n=20)["mixed"]["severity"], 0.0)


@pytest.mark.parametrize("set_name", ["holdout", "holdout2", "holdout3", "holdout4", "holdout5"])
def test_holdout_pictures_are_none_of_the_benchmark_sources_nor_an_earlier_sets(set_name):
    from models.iqa import holdout as H

    nearest = H.check_unseen(set_name)  # raises if a name or a thumbnail matches one of the 19 or an earlier set's
    assert set(nearest) == set(H.SETS[set_name]) and max(nearest.values()) < 0.9
    assert not set(H.SETS[set_name]) & set(D.SOURCES)
    # source ids: the benchmark's, then each set's, never overlapping
    first = [0, *H.FIRST_ID.values()]
    assert first == sorted(first) and all(b - a >= len(n) for a, b, n in zip(first, first[1:], [D.SOURCES, *H.SETS.values()]))


def test_loss_weights_of_the_three_arms():
    from models.iqa.train import loss_weights

    assert [loss_weights("progressive", t, 5) for t in (0, 4)] == [(0.0, 1.0), (1.0, 0.0)]
    assert all(loss_weights("fixed", t, 5) == (0.5, 0.5) for t in range(5))
    assert all(loss_weights("plain", t, 5) == (1.0, 0.0) for t in range(5))


def test_trunk_outputs_end_with_the_models_score():
    import torch

    from models.iqa.hybrid import trunk_outputs
    from models.iqa.model import PMTIQA
    from models.iqa.train import predict

    torch.manual_seed(0)
    model = PMTIQA("resnet18", 8).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    out = trunk_outputs(model, images, batch_images=2)
    assert out.shape == (3, 15) and np.allclose(out[:, -1], predict(model, images)[0], atol=1e-4)


@pytest.mark.parametrize("run, pictures, unseen", [(2, 43, ("holdout4", "holdout5")), (3, 66, ("holdout6", "holdout7")),
                                                    (4, 66, ("holdout6", "holdout7", "holdout8"))])
def test_a_run_trains_on_the_scored_sets_never_on_validation_or_the_sets_that_decide_and_judge_it(run, pictures, unseen):
    from models.iqa import holdout as H
    from models.iqa.retrain import LEFT_OUT, training_sources

    ids = training_sources(run)
    assert len(ids) == len(set(ids)) == pictures
    assert not set(ids) & {D.SOURCES.index(n) for n in D.SPLITS["val"]}  # the epoch is chosen on these
    judging = {H.FIRST_ID[s] + i for s in unseen for i in range(len(H.SETS[s]))}
    left_out = {H.FIRST_ID[s] + H.SETS[s].index(n) for s in H.SETS for n in LEFT_OUT if n in H.SETS[s]}
    assert len(left_out) == len(LEFT_OUT) and not set(ids) & (judging | left_out)


def test_run_4_is_chosen_on_the_selection_sets_and_judged_by_a_set_nothing_has_seen():
    import json

    from models.iqa import holdout as H
    from models.iqa.level import WEIGHTS
    from models.iqa.whole import RUNS, SELECTION_SETS

    assert set(SELECTION_SETS).isdisjoint({"holdout8"}) and RUNS["run 4"][1] == RUNS["run 3"][1]  # run 3's pictures, its level
    earlier = {n for s, names in H.SETS.items() if s != "holdout8" for n in names} | set(D.SOURCES)
    assert not set(H.SETS["holdout8"]) & earlier and len(set(H.SETS["holdout8"])) == 12
    for seed in (0, 1, 2):
        record = json.loads((WEIGHTS / f"{RUNS['run 4'][0].format(seed)}.json").read_text())
        assert record["selected_on"] == " + ".join(SELECTION_SETS) + " whole"
        assert 1 <= record["best_epoch"] <= 11 and len(record["history"]) == 12  # never the untrained head of epoch 0
