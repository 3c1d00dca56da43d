"""Chroma-VAE: the benchmark's stated rates, the model's shapes, the two-stage run, and ONNX export parity."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from export.repository import write_model
from models.shortcut.export import CONFIG, NAME, export, load_trained
from models.shortcut.data import AGREEMENT, LABEL_NOISE, group_accuracies, make_benchmark, render
from models.shortcut.model import ChromaVAE, KNNProbe, LinearProbe, MLPClassifier, ShortcutAudit
from models.shortcut.train import QUICK, run

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["colour", "patch"])
@pytest.mark.parametrize("seed", [0, 3])
def test_benchmark_rates_are_exact(kind, seed):
    data = make_benchmark(kind, seed)
    for split, d in data.items():
        n = len(d["label"])
        assert d["image"].shape == (n, 3, 8, 8) and d["image"].dtype == np.float32
        assert 0.0 <= d["image"].min() and d["image"].max() <= 1.0
        assert abs((d["label"] != d["clean"]).sum() - LABEL_NOISE * n) <= 0.5
        assert abs((d["attribute"] == d["label"]).sum() - AGREEMENT[split] * n) <= 0.5
        assert np.array_equal(d["clean"], (d["digit"] < 5).astype(np.int64))
        assert np.array_equal(d["group"], 2 * d["label"] + d["attribute"])
    assert AGREEMENT == {"train": 0.9, "val": 0.9, "test": 0.1} and LABEL_NOISE == 0.25


def test_benchmark_is_deterministic_and_splits_differ_by_seed():
    a, b, c = make_benchmark("colour", 1), make_benchmark("colour", 1), make_benchmark("colour", 2)
    assert all(np.array_equal(a[s]["image"], b[s]["image"]) and np.array_equal(a[s]["label"], b[s]["label"]) for s in a)
    assert not np.array_equal(a["train"]["label"], c["train"]["label"])


def test_render_puts_the_shortcut_where_it_says():
    gray = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    attribute = np.array([0, 1, 0, 1])
    colour = render(gray, attribute, "colour")
    assert np.array_equal(colour[0, 0], gray[0]) and not colour[0, 1:].any()
    assert np.array_equal(colour[1, 1], gray[1]) and not colour[1, [0, 2]].any()
    patch = render(gray, attribute, "patch")
    assert (patch[1, :, :2, :2] == 1).all() and np.array_equal(patch[0], np.repeat(gray[0][None], 3, 0))
    with pytest.raises(ValueError, match="unknown shortcut kind"):
        render(gray, attribute, "texture")


@pytest.mark.parametrize("pred, label, group, average, worst", [
    ([1, 1, 0, 0], [1, 0, 0, 1], [3, 2, 0, 1], 0.5, 0.0),
    ([1, 0, 1, 0], [1, 0, 1, 0], [3, 0, 2, 1], 1.0, 1.0),
    ([1, 1, 1, 0], [1, 1, 0, 0], [3, 3, 0, 0], 0.75, 0.5),
])
def test_group_accuracies(pred, label, group, average, worst):
    got = group_accuracies(np.array(pred), np.array(label), np.array(group))
    assert got == pytest.approx({"average": average, "worst_group": worst})


def test_model_shapes_and_repr():
    vae = ChromaVAE(latent_dim=6, shortcut_dim=2, hidden=32)
    logit, recon, mu, logvar = vae.eval()(torch.rand(5, 3, 8, 8))
    assert logit.shape == (5,) and recon.shape == (5, 3, 8, 8) and mu.shape == logvar.shape == (5, 6)
    assert [t.shape[1] for t in vae.split(mu)] == [2, 4]
    assert repr(vae) == "ChromaVAE(in_shape=(3, 8, 8), latent_dim=6, shortcut_dim=2, hidden=32)"
    assert MLPClassifier(hidden=32)(torch.rand(5, 3, 8, 8)).shape == (5,)
    losses = vae.train().loss(torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 0, 1, 1]), alpha=2.0, beta=1.0)
    assert set(losses) == {"loss", "recon", "kl", "ce"} and torch.isfinite(losses["loss"])


def test_knn_probe_matches_sklearn():
    rng = np.random.default_rng(0)
    ref, labels, query = rng.normal(size=(60, 4)), rng.integers(0, 2, 60), rng.normal(size=(25, 4))
    probe = KNNProbe(60, 4, k=7)
    probe.reference.copy_(torch.from_numpy(ref).float()), probe.labels.copy_(torch.from_numpy(labels).float())
    want = KNeighborsClassifier(7).fit(ref, labels).predict_proba(query)[:, 1]
    got = probe(torch.from_numpy(query).float())[:, 0].numpy()
    assert np.allclose(got, want, atol=1e-6)


def test_two_stage_training_tiny_run_and_export(tmp_path):
    path = tmp_path / "chroma.safetensors"
    metrics = run("colour", 0, QUICK, save=True, out=path)
    for key in ("erm", "z1", "z2_knn", "z2_linear", "z2_knn_resampled", "z2_linear_resampled"):
        for split in ("val", "test"):
            assert 0.0 <= metrics[key][split]["worst_group"] <= metrics[key][split]["average"] <= 1.0
    assert metrics["z2_knn"]["k"] % 2 == 1  # odd k: a vote never ties at 0.5
    assert metrics["served_core"] in ("knn", "linear", "knn_resampled", "linear_resampled")
    model, loaded = load_trained(path=path)
    assert loaded["served_core"] == metrics["served_core"]
    images = make_benchmark("colour", 0)["test"]["image"]
    onnx_bytes, errors = export(model, images)  # raises if any output differs from PyTorch
    assert set(errors) == {"core_probability", "shortcut_probability", "disagree"}
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    core, shortcut, disagree, shortcut_only = session.run(None, {"image": images[:7]})
    assert core.shape == shortcut.shape == disagree.shape == (7, 1) and disagree.dtype == np.bool_
    assert np.array_equal(disagree, (core > 0.5) != (shortcut > 0.5))
    assert not shortcut_only.any()  # no labels: the optional input defaults to "unknown"
    labels = np.array([[0], [1], [1], [0], [1], [0], [1]], np.int64)
    core, shortcut, _, shortcut_only = session.run(None, {"image": images[:7], "label": labels})
    assert np.array_equal(shortcut_only, ((core > 0.5) != (labels == 1)) & ((shortcut > 0.5) == (labels == 1)))
    write_model(tmp_path / "repo", NAME, CONFIG, {1: ("model.onnx", onnx_bytes)}, "# card")


@pytest.mark.parametrize("core", [LinearProbe(15), KNNProbe(40, 15, 5)])
def test_audit_graph_parity_on_untrained_model(core):
    torch.manual_seed(0)
    if isinstance(core, KNNProbe):
        core.reference.normal_(), core.labels.bernoulli_(torch.full((40,), 0.5))
    else:
        core.weight.normal_()
    model = ShortcutAudit(ChromaVAE(latent_dim=16, shortcut_dim=1, hidden=32).eval(), core).eval()
    export(model, np.random.default_rng(0).random((33, 3, 8, 8), dtype=np.float32))
