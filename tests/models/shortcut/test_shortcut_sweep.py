"""The shortcut-audit sweep: the group-balanced probe, the choice rule, a tiny end-to-end run, the conv VAE export."""
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from models.shortcut import sweep
from models.shortcut.data import make_benchmark
from models.shortcut.export import export
from models.shortcut.model import ConvChromaVAE, LinearProbe, ShortcutAudit

torch.set_num_threads(1)


def _latents(split: dict, with_attribute: bool, seed: int) -> np.ndarray:
    """A fake z2: the noisy label and the digit (both correlated with the colour at 90 % / ~70 %), noise, and
    optionally the colour itself."""
    rng = np.random.default_rng(seed)
    n = len(split["label"])
    cols = [2.0 * split["label"], np.eye(10)[split["digit"]] @ rng.normal(size=(10, 3)), rng.normal(size=(n, 2))]
    if with_attribute:
        cols.append(3.0 * split["attribute"] + 0.3 * rng.normal(size=n))
    return np.column_stack(cols)


@pytest.mark.parametrize("kind", ["linear", "knn"])
def test_probe_finds_the_shortcut_only_where_it_is(kind):
    data = make_benchmark("colour", 0)
    train, val = data["train"], data["val"]
    leaky = sweep.shortcut_probe(_latents(train, True, 1), train, _latents(val, True, 2), val, kind)
    clean = sweep.shortcut_probe(_latents(train, False, 1), train, _latents(val, False, 2), val, kind)
    assert leaky > 0.85
    assert abs(clean - 0.5) < 0.1
    # the reason for balancing: an unweighted probe reads the colour off the label and calls the clean z2 leaky
    z_tr, z_va = _latents(train, False, 1), _latents(val, False, 2)
    naive = LogisticRegression(max_iter=2000).fit(z_tr, train["attribute"]).score(z_va, val["attribute"])
    assert naive > 0.8


def test_group_weights_balance_the_groups():
    group = np.array([0] * 10 + [1] * 90 + [2] * 30 + [3] * 70)
    w = sweep.group_weights(group)
    assert w.mean() == pytest.approx(1.0)
    assert np.allclose([w[group == g].sum() for g in range(4)], len(group) / 4)
    assert sweep.group_balanced_accuracy(np.array([1, 0, 1, 1]), np.array([1, 1, 1, 1]), np.array([0, 0, 1, 1])) == 0.75


def _summary(probe, worst, average=0.7):
    return {"probe_z2_max": {"mean": probe}, "core_worst": {"mean": worst}, "core_average": {"mean": average}}


def test_choice_rule_prefers_a_shortcut_free_z2_then_worst_group():
    summary = {"leaky_but_good": _summary(0.95, 0.6), "free_worse": _summary(0.55, 0.3), "free_better": _summary(0.58, 0.4)}
    choice = sweep.choose(summary)
    assert choice["arm"] == "free_better" and choice["shortcut_free"]
    assert choice["shortcut_free_arms"] == ["free_better", "free_worse"]
    none_free = sweep.choose({"a": _summary(0.9, 0.5), "b": _summary(0.7, 0.1)})
    assert none_free == {"arm": "b", "shortcut_free": False, "shortcut_free_arms": [], "order": ["b", "a"], "free_at": sweep.FREE_AT}


def test_arm_names_round_trip():
    assert len(sweep.broad_arms()) == len(set(sweep.broad_arms())) == 24
    for name in sweep.broad_arms():
        cfg = sweep.arm_config(name)
        assert sweep.arm_name(cfg.encoder, cfg.beta, cfg.shortcut_dim) == name and cfg.hidden == sweep.HIDDEN[cfg.encoder]
    assert sweep.PREVIOUS_ARM in sweep.broad_arms()
    cfg = sweep.arm_config("conv_b0.05_z2_a100")
    assert (cfg.encoder, cfg.beta, cfg.shortcut_dim, cfg.alpha, cfg.hidden) == ("conv", 0.05, 2, 100.0, 16)
    assert sweep.arm_name("conv", 0.05, 2, 100.0) == "conv_b0.05_z2_a100"


def test_tiny_sweep_end_to_end(tmp_path):
    out, cache = tmp_path / "sweep.json", tmp_path / "cache"
    common = ["--out", str(out), "--cache", str(cache), "--epochs", "2", "--erm-epochs", "2"]
    sweep.main(["--phase", "broad", "--arms", "conv_b4_z2", sweep.PREVIOUS_ARM, "--seeds", "0", *common])
    sweep.main(["--phase", "final", "--seeds", "0", "1", "--top", "1", *common])
    result = json.loads(out.read_text())
    assert {"protocol", "broad", "broad_summary", "finalists", "final", "final_summary", "baselines", "baseline_summary", "choice"} <= set(result)
    assert "test" not in result  # validation phases never score test
    assert sweep.PREVIOUS_ARM in result["finalists"] and result["choice"]["arm"] in result["finalists"]
    for r in result["final"]:
        assert {"probe_z2", "probe_z1", "z1_head", "core", "served_core", "cores"} <= set(r)
        assert 0.0 <= r["probe_z2"]["linear"] <= 1.0 and r["probe_z2"]["max"] == max(r["probe_z2"]["linear"], r["probe_z2"]["knn"])
        assert 0.0 <= r["core"]["worst_group"] <= r["core"]["average"] <= 1.0
    assert sorted({(r["arm"], r["seed"]) for r in result["baselines"]}) == [(m, s) for m in sorted(sweep.BASELINES) for s in (0, 1)]
    assert all({"T", "upweight"} <= set(r) for r in result["baselines"] if r["arm"] == "jtt")
    assert (cache / f"{sweep.PREVIOUS_ARM}_seed1.pt").exists() and (cache / "jtt_seed1.pt").exists()
    assert "Final arms and baselines" in out.with_suffix(".md").read_text()
    test = sweep.test_record_vae(sweep.PREVIOUS_ARM, 1, cache)  # the test phase's scorer on a cached arm
    assert set(test) == {"served_core", "core", "z1_head", "probe_z2", "flags"}
    assert all(0.0 <= r["flags_val"]["disagree_recall"] <= 1.0 for r in result["final"])
    with pytest.raises(ValueError):  # the test phase refuses a result file outside the repository's history
        sweep.phase_test(result, out, sweep.Config(), cache)


def test_conv_vae_audit_graph_exports_with_parity():
    torch.manual_seed(0)
    core = LinearProbe(14)
    core.weight.normal_()
    model = ShortcutAudit(ConvChromaVAE(latent_dim=16, shortcut_dim=2, hidden=8).eval(), core).eval()
    export(model, np.random.default_rng(0).random((9, 3, 8, 8), dtype=np.float32))


def test_served_weights_are_the_sweeps_choice():
    """The committed weights behind shortcut_audit were trained with the arm the validation rule chose."""
    from dataclasses import asdict

    from models.shortcut.export import served_arm, sweep_result
    from models.shortcut.train import weights_path

    metrics = json.loads(weights_path("colour", 0).with_suffix(".json").read_text())
    assert metrics["config"] == asdict(sweep.arm_config(served_arm()))
    result = sweep_result()
    assert served_arm() == sweep.choose(result["final_summary"])["arm"]  # the rule, re-applied to the stored summary
    ours = [r for r in result["final"] if r["arm"] == served_arm() and r["seed"] == 0][0]
    assert metrics[f"z2_{metrics['served_core']}"]["val"] == ours["core"]  # the same model as the sweep's seed 0
