"""The scanner's zoo (issue 24): triggers stay in the pixel range, the generated backdoors work (and a clean
model does not respond to them), no two zoos share a model, and the calibration threshold rule keeps its promise."""
from itertools import combinations

import numpy as np
import pytest
import torch

from models.backdoor.data import load, stamp
from models.backdoor.population import ZOO_SEEDS, Attack, attack_success, train_attacked, zoo_spec
from models.backdoor.scanner import patch_sweep
from models.backdoor.zoo import bootstrap, choose_threshold, rates

torch.set_num_threads(1)
# (attack, training steps, lowest ASR accepted): all-to-all is the harder mapping (zoo patch models, 400 steps: ASR 0.70–0.89)
ATTACKS = {"patch all-to-one": (Attack("patch", "one", 4, 3, 0, "tl"), 200, 0.8),
           "blend all-to-one": (Attack("blend", "one", 6, alpha=0.2, pattern_seed=3), 200, 0.8),
           "patch all-to-all": (Attack("patch", "all", 0, 4, 1, "br"), 400, 0.6)}


@pytest.fixture(scope="module")
def data():
    return load()


@pytest.fixture(scope="module")
def clean_model(data):
    return train_attacked(None, 0.0, 7, steps=200, data=data)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_generated_backdoor_works_and_a_clean_model_ignores_it(name, data, clean_model):
    attack, steps, min_asr = ATTACKS[name]
    m, p = attack.mask_pattern()
    x = stamp(data["test"]["image"], m, p)
    assert 0 <= x.min() and x.max() <= 1 and 0 <= p.min() and p.max() <= 1  # a valid image, not an out-of-range trigger
    model = train_attacked(attack, 0.1, 7, steps=steps, data=data)
    cta, asr = attack_success(model, data["test"], attack)
    cta0, asr0 = attack_success(clean_model, data["test"], attack)
    assert cta > 0.85 and cta0 > 0.85
    assert asr > min_asr and asr0 < 0.2, (asr, asr0)
    if attack.kind == "patch":  # the practitioner's white-patch sweep sees a white-patch backdoor, and not the clean model
        x_ref = torch.from_numpy(data["val"]["image"][:40])
        planted, clean = patch_sweep(model, x_ref)["changed_max"], patch_sweep(clean_model, x_ref)["changed_max"]
        assert planted > 0.8 and planted > clean + 0.15, (planted, clean)  # a clean model loses 0.5–0.7 to a 4×4 white block


def test_calibration_and_heldout_zoos_are_disjoint_and_balanced():
    zoos = {z: zoo_spec(z) for z in ZOO_SEEDS}
    assert "calibration" in zoos and len(zoos) >= 2 and sum(map(len, zoos.values())) >= 40
    for a, b in combinations(zoos.values(), 2):
        assert not {r["id"] for r in a} & {r["id"] for r in b} and not {r["seed"] for r in a} & {r["seed"] for r in b}
    for zoo in zoos.values():
        kinds = {(r["attack"]["kind"], r["attack"]["mapping"]) for r in zoo if r["attack"] and r["source"] == "direct"}
        assert kinds == {("patch", "one"), ("patch", "all"), ("blend", "one"), ("blend", "all")}
        assert {r["net"] for r in zoo} == {"convnet", "convnet_wide"} and sum(r["attack"] is None for r in zoo) >= 10
        assert {r["attack"]["size"] for r in zoo if r["attack"] and r["attack"]["kind"] == "patch"} >= {2, 3, 4}
    assert zoo_spec("calibration") == zoos["calibration"]  # regenerable: the spec is a function of the zoo's seed


def test_threshold_rule_keeps_the_false_positive_bound():
    rng = np.random.default_rng(0)
    truth = np.r_[np.ones(12, bool), np.zeros(12, bool)]
    score = np.r_[rng.normal(2, 1, 12), rng.normal(0, 1, 12)]
    t = choose_threshold(score, truth)
    det, fp = rates(score, truth, t)
    assert fp <= 0.1 and det > 0.5
    assert all(rates(score, truth, u)[1] > 0.1 or rates(score, truth, u)[0] <= det for u in np.linspace(-3, 5, 200))
    ci = bootstrap(score, truth, t, n=200)
    assert ci["detection_ci"][0] <= det <= ci["detection_ci"][1] and ci["false_positive_ci"][0] <= fp <= ci["false_positive_ci"][1]


def test_the_shipped_calibration_reproduces_the_zoo_reports_held_out_verdicts():
    """weights/fused_calibration.json (what the served scan uses) is the report's calibration: scoring the held-out
    zoo's recorded features with it gives the report's detection and false-positive rates."""
    import json
    from dataclasses import asdict

    from models.backdoor.scanner import FusedCalibration, fused_features
    from models.backdoor.zoo import CALIBRATION, REPORT, calibration

    report = json.loads((REPORT / "zoo.json").read_text())
    shipped = FusedCalibration(**json.loads(CALIBRATION.read_text()))
    assert asdict(shipped) == asdict(calibration(report))
    held = [m for m in report["models"] if m["zoo"] != "calibration"]
    score = np.array([shipped.score(fused_features(m["max_anomaly_index"], m["mask_l1"], m["sweep_changed"]))[0] for m in held])
    truth = np.array([m["backdoored"] for m in held])
    detection, false_positive = rates(score, truth, shipped.threshold)
    assert (detection, false_positive) == (report["scorers"]["fused"]["heldout"]["detection"], report["scorers"]["fused"]["heldout"]["false_positive"])
    assert false_positive < rates(np.array([m["max_anomaly_index"] for m in held]), truth, 2.0)[1]  # fewer false alarms than NC's index
