"""Model code on tiny inputs: shapes, CeCo's geometry and gradients, the pipeline's pooling and state."""
import numpy as np
import pytest
import torch

from models.ceco.ceco import CeCo, centre_geometry, class_centres, simplex_etf
from models.video.decode import Frame
from models.video.model import BlockCNN, TimeSformer
from models.video.pipeline import ARTIFACTS, CLIP, Analyzer, Pooling, mscn, region_pool, saliency, spectral_residual, token_dim

torch.set_num_threads(1)


@pytest.mark.parametrize("hw", [(128, 128), (144, 256), (16, 32)])
def test_block_cnn_is_fully_convolutional(hw):
    h, w = hw
    cnn = BlockCNN(8, 16)
    i, f = cnn(torch.rand(2, 1, h, w) * 255, torch.rand(2, 2, h // 2, w // 2) * 255)
    assert i.shape == (2, 4, h // 16, w // 16) and f.shape == (2, 16, h // 16, w // 16)
    assert 0 <= float(i.min()) and float(i.max()) <= 1
    assert "BlockCNN(width=8, feat=16)" == repr(cnn)


def test_block_cnn_mscn_luma_divides_out_brightness_and_contrast():
    torch.manual_seed(0)
    y = torch.nn.functional.interpolate(torch.rand(1, 1, 16, 16), size=(64, 64), mode="bilinear") * 60 + 40  # textured
    mscn = BlockCNN(8, 16, luma="mscn").mscn
    z = mscn(y)
    assert abs(float(z.mean())) < 0.2 and 0.3 < float(z.std()) < 3  # centred, unit-ish scale
    # a brighter, higher-contrast copy of the same picture gives nearly the same input (the +1 floor keeps it inexact)
    assert float((mscn(1.5 * y + 30) - z).abs().mean()) < 0.1 * float(z.abs().mean())
    assert float((mscn(y.flip(-1)) - z).abs().mean()) > 0.3 * float(z.abs().mean())  # but the structure is kept
    assert "BlockCNN(width=8, feat=16, luma='mscn')" == repr(BlockCNN(8, 16, luma="mscn"))
    with pytest.raises(ValueError, match="luma must be"):
        BlockCNN(8, 16, luma="rgb")


def test_the_served_mscn_is_the_networks_own():
    """pipeline.mscn (OpenCV, what the served graph is fed) against BlockCNN.mscn (torch, what it was trained on),
    on a textured picture with flat patches, from bytes and from floats."""
    rng = np.random.default_rng(0)
    y = np.clip(rng.normal(120, 40, (96, 160)), 0, 255).astype(np.uint8)
    y[20:50, 30:90] = 200  # flat: where E[y^2] - mu^2 cancels
    reference = BlockCNN(8, 16, luma="mscn").mscn(torch.from_numpy(y).float()[None, None])[0, 0].numpy()
    for luma in (y, y.astype(np.float32)):
        got = mscn(luma)
        assert got.dtype == np.float32 and got.shape == y.shape
        np.testing.assert_allclose(got, reference, atol=1e-2)
        assert np.abs(got - reference).mean() < 1e-4


def test_timesformer_shape_and_time_order_matters():
    torch.manual_seed(0)
    tsf = TimeSformer(token_dim(16), dim=16, heads=2, depth=1).eval()
    x = torch.randn(3, CLIP, 64, token_dim(16))
    y = tsf(x)
    assert y.shape == (3, 2) and ((y > 0) & (y < 1)).all()
    assert not torch.allclose(tsf(x.flip(1)), y)  # temporal position embedding: order is seen


@pytest.mark.parametrize("K", [2, 5, 19])
def test_simplex_etf_geometry(K):
    W = simplex_etf(K, 64)
    cos = W.T @ W
    assert torch.allclose(torch.diag(cos), torch.ones(K), atol=1e-5)
    off = cos[~torch.eye(K, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / (K - 1)), atol=1e-5)
    assert centre_geometry(W.T)["mean_abs_dev"] < 1e-4


def test_class_centres_are_per_image_means():
    f = torch.zeros(2, 3, 2, 2)
    f[0, :, 0, 0], f[0, :, 0, 1], f[0, :, 1, :] = 1.0, 3.0, 5.0
    f[1] = 7.0
    lab = torch.tensor([[[0, 0], [1, 1]], [[2, 2], [2, -1]]])
    c, k = class_centres(f, lab, 3)
    assert k.tolist() == [0, 1, 2]
    assert torch.allclose(c[:, 0], torch.tensor([2.0, 5.0, 7.0]))


def test_ceco_pulls_centres_toward_the_etf():
    torch.manual_seed(0)
    K, C = 4, 8
    feats = torch.nn.Parameter(torch.randn(K, C) * 0.1)  # one learnable feature per class
    ceco = CeCo(C, K, [0.7, 0.2, 0.05, 0.05], proj=16, hidden=32, lam=1.0)
    opt = torch.optim.Adam([feats, *ceco.parameters()], 0.05)
    lab = torch.arange(K).reshape(1, 2, 2)
    first = None
    for _ in range(60):
        loss = ceco(feats.T.reshape(1, C, 2, 2), lab)
        first = first if first is not None else loss.item()
        opt.zero_grad(), loss.backward(), opt.step()
    assert loss.item() < 0.5 * first
    with torch.no_grad():
        h = torch.nn.functional.normalize(ceco.projection(feats), dim=1)
    assert centre_geometry(h)["mean_cos"] < 0.0


@pytest.mark.parametrize("hw", [(3, 5), (8, 8), (45, 80)])
def test_region_pool_keeps_the_mean_of_a_constant(hw):
    a = np.full((2, *hw), 3.0)
    out = region_pool(a)
    assert out.shape == (2, 8, 8) and np.allclose(out, 3.0)


def test_region_pool_means_near_equal_rectangles():
    a = np.random.default_rng(0).normal(size=(3, 45, 80)).astype(np.float32)
    out = region_pool(a)
    assert out.dtype == np.float32
    rows = np.array_split(np.arange(45), 8)  # 6 or 5 rows; 80 columns split evenly into 10
    for i, r in enumerate(rows):
        for j in range(8):
            np.testing.assert_allclose(out[:, i, j], a[:, r[0]:r[-1] + 1, 10 * j:10 * j + 10].mean((-2, -1)), atol=1e-6)


def test_saliency_methods():
    rng = np.random.default_rng(0)
    th = rng.normal(100, 2, (18, 32)).astype(np.float32)
    th[6:10, 12:18] += 80  # a bright object
    sr = spectral_residual(th)
    assert sr.shape == th.shape and sr.min() >= 0 and sr.max() <= 1
    assert sr[6:10, 12:18].mean() > sr.mean()
    s = saliency(th, th * 0.9, "sstam")
    assert s.min() >= 0.1 - 1e-6 and s.max() <= 1 + 1e-6
    assert np.all(saliency(th, None, "uniform") == 1)


def _fake(n_frames, h=64, w=96, fps=12.5):
    rng = np.random.default_rng(1)
    for k in range(n_frames):
        yield Frame(k, k / fps, rng.integers(0, 255, (h, w), dtype=np.uint8), np.full((h // 2, w // 2), 128, np.uint8),
                    np.full((h // 2, w // 2), 128, np.uint8))


def _analyzer(**kw):
    torch.manual_seed(0)
    cnn, tsf = BlockCNN(8, 16).eval(), TimeSformer(token_dim(16), dim=16, heads=2, depth=1).eval()
    block_fn = lambda y, uv: tuple(t.detach().numpy() for t in cnn(torch.from_numpy(y).float(), torch.from_numpy(uv).float()))
    temporal_fn = lambda x: tsf(torch.from_numpy(x)).detach().numpy()
    return Analyzer(block_fn, temporal_fn, Pooling(), **kw)


@pytest.mark.parametrize("n, expected", [(16, [16]), (20, [16, 4]), (3, [3]), (33, [16, 16, 1])])
def test_analyzer_segments(n, expected):
    an = _analyzer()
    segs = []
    for f in _fake(n):
        segs += an.push(f)
    segs += an.finish()
    assert [s.frames for s in segs] == expected
    assert [s.index for s in segs] == list(range(len(expected)))
    for s in segs:
        assert s.intensities.shape == (6,) and 0 <= s.quality <= 1


def test_analyzer_state_roundtrip():
    an = _analyzer()
    for f in _fake(3):
        an.push(f)
    an.finish()
    st = an.state()
    other = _analyzer()
    other.load_state(st)
    assert np.array_equal(other.prev_thumb, an.prev_thumb)
    assert _analyzer().state().shape == (2,)


def test_pooling_is_monotone():
    p = Pooling([0.2, 0.3, 0.0, 0.1, 0.4, 0.1], 0.05)
    base = np.full(6, 0.2)
    for k in range(6):
        up = base.copy()
        up[k] += 0.3
        assert p.quality(up) <= p.quality(base)


def test_rank_pooling_orders_qp_within_source_with_nonnegative_weights():
    from models.video.train import fit_pooling_rank, order_pairs

    rng = np.random.default_rng(0)
    rows, X = [], []
    for s in range(4):
        offset = rng.uniform(0, 0.5, 6)  # content level: differs between sources, irrelevant to the order
        for name, q in zip(["x264_qp18", "x264_qp28", "x264_qp36", "x264_qp44"], [18, 28, 36, 44]):
            rows.append({"source": f"s{s}", "encode": name, "q": q})
            x = offset + rng.normal(0, 0.02, 6)
            x[1] += 0.01 * q   # blocking rises with QP
            x[4] -= 0.01 * q   # flickering falls with QP (a false positive on clean encodes)
            X.append(x)
    X = np.array(X)
    pairs = order_pairs(rows)
    assert len(pairs) == 4 * 6 and all(rows[i]["q"] < rows[j]["q"] and rows[i]["source"] == rows[j]["source"] for i, j in pairs)
    vmaf = np.array([100 - 1.5 * (r["q"] - 18) for r in rows])
    p = fit_pooling_rank(X, rows, vmaf)
    assert min(p.weights) >= 0
    assert p.weights[1] > 0 and p.weights[4] == 0
    q = np.array([p.quality(x) for x in X]).reshape(4, 4)
    assert (np.diff(q, axis=1) < 0).all()  # quality falls along every source's ladder
    assert q.std() > 0.5 * (vmaf / 100).std()  # on VMAF's scale, not squashed into a narrow band


def test_rank_pooling_holds_artifacts_without_label_change_at_zero():
    from models.video.train import fit_pooling_rank

    rng = np.random.default_rng(1)
    rows, X = [], []
    for s in range(3):
        for name, q in zip(["x265_qp24", "x265_qp36", "x265_qp46"], [24, 36, 46]):
            levels = {"blurring": q / 50, "blocking": q / 60, "bleeding": 0.0, "ringing": q / 70, "flickering": 0.0, "floating": 0.0}
            rows.append({"source": f"s{s}", "encode": name, "q": q, "levels": levels})
            x = rng.normal(0.3, 0.01, 6)
            x[0] += 0.01 * q
            x[4] += 0.02 * q  # flickering rises with QP here, but its label never changes along the ladder
            X.append(x)
    p = fit_pooling_rank(np.array(X), rows, np.array([100.0 - r["q"] for r in rows]))
    assert p.weights[0] > 0 and p.weights[4] == 0 and p.weights[2] == 0 and p.weights[5] == 0


def test_crossval_scores_each_source_with_a_fit_that_never_saw_it():
    """models.video.crossval.methods on synthetic features: blocking rises with QP on every source, bleeding and the
    NSS features are content only. Every score is a mean SRCC with QP order over held-out (source, ladder) pairs."""
    from models.video.crossval import methods
    from models.video.pipeline import STATS
    from models.video.train import SALIENCY_METHODS, ladder_srcc

    rng = np.random.default_rng(2)
    rows, X = [], []
    ladder = [("x264_qp18", 18), ("x264_qp28", 28), ("x264_qp36", 36), ("x264_qp44", 44)]
    for s in range(6):
        content = rng.uniform(0, 0.5, 6 + len(STATS))
        for name, q in ladder:
            x = content + rng.normal(0, 0.01, len(content))
            x[1] += 0.01 * q
            rows.append({"source": f"s{s}", "encode": name, "codec": "x264", "q": q, "vmaf": 100.0 - q,
                         "levels": {a: 0.0 for a in ARTIFACTS} | {"blocking": q / 44},
                         "blockdetect": float(x[1]), "blurdetect": 0.0, "blur_effect": float(-q)})
            X.append(x)
    X = np.array(X)
    fold_of = np.array([int(r["source"][1:]) % 3 for r in rows])
    out = methods(rows, fold_of, 3, {sal: X for sal in SALIENCY_METHODS}, rng.normal(size=(len(rows), 36)))
    score = {name: ladder_srcc(rows, q)["x264"] for name, q in out.items()}
    assert score["SSTAM, sstam saliency: intensities (pooling served before)"] == pytest.approx(1.0)
    assert score["ffmpeg blockdetect"] == pytest.approx(1.0)  # it rises with QP here: higher = worse, negated
    assert score["scikit-image blur_effect"] == pytest.approx(-1.0)  # higher blur_effect = worse, here it falls with QP
    assert abs(score["BRISQUE NSS + SVR to VMAF"]) < 0.9  # noise features cannot order every ladder

