"""The detail statistics, the pooling that uses them, the fresh test set's ladders and the cross-validation's
bootstrap: each on small inputs whose answer is known."""
import json

import cv2
import numpy as np
import pytest
import skimage.data
from scipy.stats import spearmanr

from models.nss import brisque_features
from models.video import data as D
from models.video import fresh
from models.video import crossval
from models.video.crossval import bootstrap
from models.video.decode import Frame, probe
from models.video.pipeline import NSS, STATS, STATS_EVERY, Analyzer, Pooling, frame_stats, hf_blocks, soft_clip
from models.video.train import fit_pooling_rank, ladder_srcc


def planes(rgb: np.ndarray):
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    h, w = rgb.shape[:2]
    return yuv[:h], yuv[h:h + h // 4].reshape(h // 2, w // 2), yuv[h + h // 4:].reshape(h // 2, w // 2)


PICTURE = skimage.data.astronaut()[:256, :256]


def stats_of(rgb):
    y, u, v = planes(rgb)
    return dict(zip(STATS, frame_stats(y, u, v, hf_blocks(y))))


def test_detail_statistics_move_the_documented_way_under_blur_and_blocking():
    clean = stats_of(PICTURE)
    blurred = stats_of(cv2.GaussianBlur(PICTURE, (0, 0), 2.0))
    assert blurred["detail"] < clean["detail"] - 0.3 and blurred["mscn_neighbour"] > clean["mscn_neighbour"]
    assert blurred["chroma_detail"] < clean["chroma_detail"]
    # each 8x8 block replaced by its mean: steps only across the grid's lines
    blocky = cv2.resize(cv2.resize(PICTURE, (32, 32), interpolation=cv2.INTER_AREA), (256, 256), interpolation=cv2.INTER_NEAREST)
    b = stats_of(blocky)
    assert b["blockiness_h"] > 1.0 and b["blockiness_v"] > 1.0
    assert abs(clean["blockiness_h"]) < 0.2 and abs(clean["blockiness_v"]) < 0.2


def test_a_segment_carries_the_mean_statistics_of_every_fourth_sampled_frame():
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(PICTURE[:128, :128], (0, 0), s) for s in rng.uniform(0.5, 3, 16)]
    block_fn = lambda y, uv: (np.zeros((len(y), 4, 8, 8), np.float32), np.zeros((len(y), 4, 8, 8), np.float32))
    temporal_fn = lambda tokens: np.zeros((len(tokens), 2), np.float32)
    pooling = Pooling(weights=[0] * 6, bias=0.5, stat_weights=[0.0] * len(STATS))
    an = Analyzer(block_fn, temporal_fn, pooling, seg_clips=2)
    segments = []
    for k, rgb in enumerate(frames):
        segments += an.push(Frame(k, k / 12.5, *planes(rgb)))
    segments += an.finish()
    assert len(segments) == 1
    expected = np.mean([list(stats_of(frames[k]).values()) for k in range(0, 16, STATS_EVERY)], 0)
    np.testing.assert_allclose(segments[0].stats, expected, rtol=1e-5)


def test_pooling_uses_the_statistics_only_when_it_has_weights_for_them():
    inten, stats = np.full(6, 0.2), np.ones(len(STATS))
    assert Pooling([0.5] * 6, 0.0).quality(inten, stats) == Pooling([0.5] * 6, 0.0).quality(inten)
    with_stats = Pooling([0.5] * 6, 0.0, [-0.05] * len(STATS))
    assert with_stats.quality(inten, stats) == pytest.approx(1 - (0.6 - 0.05 * len(STATS)))


def test_quality_keeps_the_order_of_scores_past_either_bound_and_is_the_linear_score_between():
    from models.video.pipeline import SOFT_EDGE, soft_clip

    z = np.array([-3.0, -1.0, -0.2, 0.0, SOFT_EDGE, 0.5, 1 - SOFT_EDGE, 1.0, 1.3, 3.0])
    q = np.array([Pooling([0.0] * 6, float(b)).quality(np.zeros(6)) for b in z])
    assert np.all(np.diff(q) < 0) and np.all((q > 0) & (q < 1))  # no two scores tie, none leaves (0, 1)
    assert q[5] == pytest.approx(0.5) and q[4] == pytest.approx(1 - SOFT_EDGE) and q[6] == pytest.approx(SOFT_EDGE)
    eps = 1e-7
    for edge in (SOFT_EDGE, 1 - SOFT_EDGE):  # continuous, and so is the slope (1 on both sides)
        assert soft_clip(edge - eps) == pytest.approx(soft_clip(edge + eps), abs=1e-6)
        assert (soft_clip(edge + eps) - soft_clip(edge - eps)) / (2 * eps) == pytest.approx(1.0, rel=1e-3)


def ladder_rows(sources=("a", "b", "c")):
    rows = []
    for s in sources:
        for name in D.LADDERS["x264"]:
            q = int(name.rsplit("qp", 1)[1])
            rows.append({"source": s, "encode": name, "q": q, "vmaf": 100 - q, "levels": {a: 0.0 for a in D.ARTIFACTS}})
    return rows


def test_rank_fit_gives_a_statistic_the_sign_that_orders_the_ladder():
    """Intensities that carry no order and a statistic (detail) that falls as QP rises: the fit must lean on the
    statistic, with a negative weight (less detail, lower quality)."""
    rows = ladder_rows()
    rng = np.random.default_rng(0)
    offsets = {"a": 0.0, "b": 1.0, "c": -0.5}  # each source's own detail level
    X = np.array([[*rng.uniform(0, 1, 6), offsets[r["source"]] - 0.03 * r["q"], rng.normal()] for r in rows])
    pooling = fit_pooling_rank(X, rows, np.array([r["vmaf"] for r in rows]), intensities=6)
    assert pooling.stat_weights[0] < 0 and abs(pooling.stat_weights[0]) > 10 * abs(pooling.stat_weights[1])
    quality = np.array([pooling.quality(x[:6], x[6:]) for x in X])
    assert ladder_srcc(rows, quality)["mean"] == pytest.approx(1.0)


def test_bootstrap_of_a_perfect_and_a_reversed_score():
    rows = ladder_rows(("a", "b", "c", "d"))
    q = -np.array([r["q"] for r in rows], float)
    out = bootstrap(rows, {"perfect": q, "reversed": -q}, "perfect", draws=50)
    assert out["perfect"]["qp_srcc"] == 1.0 and out["perfect"]["qp_srcc_ci"] == [1.0, 1.0]
    assert out["reversed"]["qp_srcc"] == -1.0 and out["reversed"]["reference_minus_this_qp_ci"] == [2.0, 2.0]


def test_brisque_shape_falls_with_blur_and_rises_with_noise():
    grey = cv2.cvtColor(PICTURE, cv2.COLOR_RGB2GRAY).astype(float)
    clean = brisque_features(grey)
    blurred = brisque_features(cv2.GaussianBlur(grey, (0, 0), 2))
    noisy = brisque_features(np.clip(grey + np.random.default_rng(0).normal(0, 15, grey.shape), 0, 255))
    assert clean.shape == (36,) and np.all(np.isfinite(clean))
    assert blurred[0] < clean[0] < noisy[0]  # the MSCN coefficients' generalised Gaussian shape


def test_fresh_ladders_have_six_rungs_of_four_codecs_and_encode_as_named(tmp_path):
    assert {len(v) for v in fresh.LADDERS.values()} == {6} and len(fresh.LADDERS) == 5
    assert not set(fresh.SOURCES) & {s.name for s in D.SOURCES}
    frames = fresh.source_frames("cartoon")
    assert frames.shape == (D.FRAMES, D.SIZE, D.SIZE, 3)
    np.testing.assert_array_equal(frames, fresh.source_frames("cartoon"))  # deterministic
    src = tmp_path / "source.yuv"
    src.write_bytes(b"".join(D._rgb_to_yuv420(f).tobytes() for f in frames))
    codecs = {"x264_crf": "h264", "x264_qp": "h264", "x265_crf": "hevc", "vp9_crf": "vp9", "mpeg2_q": "mpeg2video"}
    for ladder, names in fresh.LADDERS.items():
        sizes = []
        for name in (names[0], names[-1]):
            enc = next(e for e in fresh.ENCODES if e.name == name)
            path = tmp_path / f"{name}.{enc.ext}"
            D.encode(src, enc, path)
            assert probe(path)["codec"] == codecs[ladder]
            sizes.append(path.stat().st_size)
        assert sizes[0] > 2 * sizes[1], (ladder, sizes)  # the top rung is a much coarser encode


@pytest.mark.parametrize("set_name", ["fresh", "fresh2", "fresh3", "fresh4", "fresh5"])
def test_fresh_scoring_refuses_a_commit_that_is_not_head_and_a_second_run(tmp_path, monkeypatch, set_name):
    done = tmp_path / f"{set_name}_test.json"
    monkeypatch.setitem(fresh.REPORTS, set_name, done)
    with pytest.raises(SystemExit, match="not the frozen commit"):
        fresh.main(["score", "--set", set_name, "--frozen-commit", "0000000"])
    done.write_text(json.dumps({}))
    with pytest.raises(SystemExit, match="scored once"):
        fresh.main(["score", "--set", set_name, "--frozen-commit", "0000000"])


@pytest.mark.parametrize("later", ["fresh2", "fresh3", "fresh4", "fresh5", "fresh6", "fresh7", "fresh8"])
def test_a_later_fresh_set_is_new_material_and_every_source_renders(later):
    earlier = {s.name for s in D.SOURCES} | {s.ref for s in D.SOURCES}
    sets = list(fresh.SETS)
    for before in sets[:sets.index(later)]:
        earlier |= set(fresh.SETS[before])
    assert not set(fresh.SETS[later]) & earlier
    for name in fresh.SETS[later]:
        frames = fresh.source_frames(name)
        assert frames.shape == (D.FRAMES, D.SIZE, D.SIZE, 3) and frames.dtype == np.uint8, name
        assert frames.std() > 5, name  # a picture, not a flat field
        assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.5, name  # the camera moves


def test_order_pairs_cover_a_fresh_ladder_by_rung_and_keep_flicker_fixed_from_labelled_pairs():
    from models.video.train import fit_pooling_rank, order_pairs

    ladder = [{"source": "s", "encode": f"vp9_crf{q}", "ladder": "vp9_crf", "q": q, "vmaf": 100 - q} for q in (34, 10, 63)]
    pairs = order_pairs(ladder)
    assert sorted(pairs) == sorted([(1, 0), (1, 2), (0, 2)])  # (better, worse) by q, whatever the row order
    rng = np.random.default_rng(0)
    labelled = [{"source": f"t{k}", "encode": e, "vmaf": 90 - 10 * i,
                 "levels": {a: (0.2 * i if a != "flickering" else 0.0) for a in D.ARTIFACTS}}
                for k in range(3) for i, e in enumerate(D.LADDERS["x264"])]
    rows = labelled + ladder
    vmaf = np.array([r["vmaf"] for r in rows], np.float64)
    X = rng.normal(size=(len(rows), 6))
    flicker = D.ARTIFACTS.index("flickering")
    X[:, flicker] = -0.05 * vmaf + 0.01 * rng.normal(size=len(rows))  # orders every pair: a free weight would take it
    assert fit_pooling_rank(X, rows, vmaf, intensities=6).weights[flicker] == 0.0
    assert fit_pooling_rank(X, ladder, vmaf[len(labelled):], intensities=6).weights[flicker] > 0  # no labels: free


def test_level_pairs_join_different_sources_and_teach_the_fit_the_level_that_rung_pairs_cannot():
    from models.video.train import level_pairs

    rows = [{"source": f"s{k}", "encode": e, "ladder": "x264_qp", "q": q, "vmaf": 95 - 12 * k - 5 * rung}
            for k in range(4) for rung, (e, q) in enumerate(zip(fresh.LADDERS["x264_qp"], (16, 22, 28, 34, 40, 46)))]
    vmaf = np.array([r["vmaf"] for r in rows], np.float64)
    pairs = level_pairs(rows, vmaf)
    assert pairs and all(rows[i]["source"] != rows[j]["source"] and vmaf[i] - vmaf[j] >= 10 for i, j in pairs)
    assert len(level_pairs(rows, vmaf, limit=5)) == 5
    rung = np.array([r["q"] for r in rows], np.float64)
    level = np.array([-12.0 * int(r["source"][1:]) for r in rows])  # the same for every rung of a source
    X = np.stack([rung, level], 1)
    within = fit_pooling_rank(X, rows, vmaf, intensities=1)
    both = fit_pooling_rank(X, rows, vmaf, intensities=1, across=1.0)
    assert within.stat_weights == [0.0]  # rung pairs never see a column that is constant within a source
    assert both.stat_weights[0] < 0  # a higher level is a better encode
    srcc = lambda p: spearmanr(-(X[:, :1] @ p.weights + X[:, 1:] @ p.stat_weights), vmaf).statistic
    assert srcc(both) > srcc(within) + 0.1


def test_a_kernel_level_is_kept_as_numbers_that_predict_what_the_fitted_svr_predicts():
    from dataclasses import asdict

    from models.nss import KernelLevel
    from models.video.crossval import fit_level_regressor
    from models.video.pipeline import ARTIFACTS

    rng = np.random.default_rng(0)
    n_features = len(ARTIFACTS) + len(STATS) + len(NSS)
    X = rng.normal(size=(120, n_features))
    vmaf = 70 + 10 * np.tanh(X[:, 0] - X[:, 20]) + rng.normal(0, 1, 120)
    estimator = fit_level_regressor(X, vmaf, [f"s{k % 12}" for k in range(120)])
    level = KernelLevel.from_sklearn(estimator)
    Z = rng.normal(size=(10, n_features))
    np.testing.assert_allclose([level.predict(z) for z in Z], estimator.predict(Z), rtol=1e-9, atol=1e-12)
    # stored as JSON in the weights' metadata, read back by Pooling(**...): the same quality, BRISQUE's features needed
    stored = json.loads(json.dumps(asdict(Pooling(weights=[0.1] * 6, bias=0.2, stat_weights=[0.0] * 8, level=level,
                                                  level_share=0.75))))
    pooling = Pooling(**stored)
    assert isinstance(pooling.level, KernelLevel) and pooling.uses_nss
    z = Z[0]
    linear = 0.2 + 0.1 * z[:6].sum()
    expected = 1 - soft_clip(0.25 * linear + 0.75 * estimator.predict(z[None])[0])
    assert pooling.quality(z[:6], z[6:]) == pytest.approx(expected, abs=1e-9)
    assert not Pooling(weights=[0.1] * 6, stat_weights=[0.0] * 8, level=level, level_share=0.0).uses_nss  # share 0: unused


def test_the_level_fit_learns_the_level_across_sources_and_mixing_keeps_one_linear_pooling():
    from models.video.pipeline import Pooling
    from models.video.train import fit_pooling_level, mixed

    rng = np.random.default_rng(0)
    rows = [{"source": f"s{k}", "encode": e, "ladder": "x264_qp", "q": q, "vmaf": 95 - 12 * k - 5 * rung}
            for k in range(5) for rung, (e, q) in enumerate(zip(fresh.LADDERS["x264_qp"], (16, 22, 28, 34, 40, 46)))]
    vmaf = np.array([r["vmaf"] for r in rows], np.float64)
    rung = np.array([r["q"] for r in rows], np.float64)
    level = np.array([-12.0 * int(r["source"][1:]) for r in rows])  # the same for every rung of a source
    X = np.stack([rung, rng.normal(size=len(rows)), level], 1)  # an intensity, noise, a statistic
    within = fit_pooling_rank(X, rows, vmaf, intensities=1)
    fit = fit_pooling_level(X, vmaf, intensities=1)
    assert within.stat_weights[1] == 0.0 and fit.stat_weights[1] < 0  # only the level fit sees the column
    srcc = lambda p: spearmanr(-(X @ (p.weights + p.stat_weights)), vmaf).statistic
    assert srcc(fit) > srcc(within) + 0.1
    # on VMAF's scale: predictions track 1 - VMAF/100
    assert np.abs((fit.bias + X @ (fit.weights + fit.stat_weights)) - (1 - vmaf / 100)).mean() < 0.02
    # an intensity is held >= 0 even where the least-squares optimum is negative
    assert abs(fit_pooling_level(-X, vmaf, intensities=1).weights[0]) < 1e-12
    half = mixed(within, fit, 0.5)
    z = lambda p: p.bias + X @ (p.weights + p.stat_weights)
    np.testing.assert_allclose(z(half), 0.5 * z(within) + 0.5 * z(fit))
    no_stats = Pooling(weights=[0.2], bias=0.1)
    assert mixed(no_stats, fit, 0.25).stat_weights == [0.25 * v for v in fit.stat_weights]


def test_sets_scored_against_one_model_are_judged_on_the_union_of_their_sources(tmp_path):
    from models.video.scoring import pooled

    def report(name, sources, fitted_on=("a", "b")):
        rows = [{"source": s, "encode": f"x264_qp{q}", "ladder": "x264_qp", "q": q, "vmaf": 100.0 - q} for s in sources for q in (16, 28, 40)]
        quality = {"SSTAM served (seed 0)": [100.0 - r["q"] for r in rows], "reversed": [float(r["q"]) for r in rows]}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"frozen_commit": "abc", "baselines_fitted_on": list(fitted_on), "rows": rows, "quality": quality}))
        return path

    out = pooled([report("one", ["s1", "s2"]), report("two", ["s3"])], tmp_path / "pooled.json")
    assert out["sources"] == ["s1", "s2", "s3"] and out["encodes"] == 9
    assert out["methods"]["SSTAM served (seed 0)"]["qp_srcc"] == 1.0 and out["methods"]["reversed"]["qp_srcc"] == -1.0
    with pytest.raises(SystemExit, match="share"):
        pooled([report("one", ["s1"]), report("three", ["s3"], fitted_on=("a",))], tmp_path / "bad.json")


def test_a_later_window_of_a_clip_is_other_frames_of_the_same_film():
    first = D.source_frames(D.Source("c", "clip", "bikes", (0, 0, 256)))
    later = D.source_frames(D.Source("c", "clip", "bikes", (0, 0, 256), start=200))
    assert first.shape == later.shape == (D.FRAMES, D.SIZE, D.SIZE, 3)
    assert np.abs(first.astype(int) - later).mean() > 10  # 8 s later the scene has moved on


def test_encode_stats_are_the_analysers_without_the_networks(tmp_path, monkeypatch):
    from models.video.train import encode_stats, whole_encode_segment

    frames = fresh.source_frames("blobs")
    planes_ = [planes(f) for f in frames]
    np.savez(tmp_path / "e.npz", y=np.stack([p[0] for p in planes_]), u=np.stack([p[1] for p in planes_]), v=np.stack([p[2] for p in planes_]))
    monkeypatch.setattr(D, "ROOT", tmp_path)
    row = {"file": "e.mp4", "encode": "e"}
    fns = (lambda y, uv: (np.zeros((len(y), 4, 8, 8), np.float32), np.zeros((len(y), 4, 8, 8), np.float32)),
           lambda tokens: np.zeros((len(tokens), 2), np.float32))
    np.testing.assert_allclose(encode_stats(row), whole_encode_segment(fns, row).stats, rtol=1e-5)
    # a pooling that weighs BRISQUE's features gets them after the 8 statistics, on the frames the baseline's features
    # are averaged over, and its quality is computed from them
    nss_weights = np.zeros(len(STATS) + len(NSS))
    nss_weights[len(STATS) + NSS.index("nss_s1_mscn_var")] = -0.5
    pooling = Pooling(weights=[0.0] * 6, bias=0.0, stat_weights=nss_weights.tolist())
    segment = whole_encode_segment(fns, row, pooling=pooling)
    np.testing.assert_allclose(segment.stats[:len(STATS)], encode_stats(row), rtol=1e-5)
    np.testing.assert_allclose(segment.stats[len(STATS):], crossval.nss_features(row), rtol=1e-5)
    assert segment.quality == pytest.approx(pooling.quality(segment.intensities, segment.stats)) and segment.quality > 0.5
