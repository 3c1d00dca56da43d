"""The DOORPING protocol (issue 24, item 3) at tiny size: the trigger stays a valid image, records and summaries
have the promised fields, and the fused score reproduces the zoo's own flags with its frozen threshold."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.backdoor.data import load
from models.backdoor.doorping_protocol import ARMS, NETS, PROTOCOL, ZOO_JSON, fused_scores, mean_ci, run_one, summarise, wilson

torch.set_num_threads(1)
TINY = replace(PROTOCOL, iterations=2, outer_loop=2, inner_loop=2, batch_real=16, trigger_steps=20, trigger_stop=0.0, eval_steps=150)


@pytest.fixture(scope="module")
def data():
    return load()


def test_protocol_is_the_one_the_issue_asks_for():
    assert PROTOCOL.iterations >= 200 and PROTOCOL.trigger_clamp and PROTOCOL.outer_loop >= 2  # ≥ 2: a trigger update per iteration
    assert {f for _, a, f in ARMS if a != "none"} == {0.01, 0.1} and {a for _, a, _ in ARMS} == {"none", "naive", "doorping"}


def test_tiny_run_keeps_the_trigger_valid_and_reports_rates(data):
    clean, clean_images = run_one("clean", "none", 0.0, 0, TINY, data, scan=False)
    rec, images = run_one("doorping_10", "doorping", 0.1, 0, TINY, data, clean_images, scan=False)
    assert images.shape == clean_images.shape == (100, 1, 16, 16)
    assert len(rec["trigger_pixels"]) == 4 and 0 <= rec["trigger_min"] <= rec["trigger_max"] <= 1  # projected every step
    for r in (clean, rec):
        for n in NETS:
            assert 0 <= r[n]["cta"] <= 1 and 0 <= r[n]["asr"] <= 1
    assert 0 <= rec["convnet"]["asr_clean_distilled"] <= 1 and "asr_clean_distilled" not in clean["convnet"]
    assert rec["convnet"]["cta"] > 0.3, rec["convnet"]  # two tiny iterations from real-image init already classify


def test_fused_score_reproduces_the_zoo_flags():
    zoo = json.loads(ZOO_JSON.read_text())
    held = [r for r in zoo["models"] if r["zoo"] != "calibration"]
    score, t = fused_scores([{"scan": r} for r in held], zoo)
    assert t == zoo["scorers"]["fused"]["threshold"]
    assert [bool(s > t) for s in score] == [zoo["scorers"]["fused"]["heldout_flagged"][r["id"]] for r in held]


def test_summary_counts_and_intervals():
    rng = np.random.default_rng(0)
    records = []
    for arm, attack, fraction in ARMS:
        for seed in range(3):
            asr = 0.9 if arm == "doorping_10" else 0.05
            records.append({"arm": arm, "attack": attack, "poison_fraction": fraction, "seed": seed, "config": {"x": 1},
                            "distill_seconds": 1.0, "trigger_min": 0.0, "trigger_max": 1.0, "synthetic_min": 0.0, "synthetic_max": 1.0,
                            **{n: {"cta": 0.8 + 0.01 * seed, "asr": asr, **({"asr_clean_distilled": 0.01} if attack != "none" else {})} for n in NETS},
                            "scan": {"verdict": "backdoored" if arm == "doorping_10" or (arm == "clean" and seed == 0) else "clean",
                                     "max_anomaly_index": 1.0, "suspected_target": 0, "mask_l1": rng.uniform(5, 30, 10).tolist()}})
    s = summarise(records, None)
    assert set(s["arms"]) == {a for a, _, _ in ARMS}
    nc = s["detectors"]["nc_served"]
    assert (nc["planted"]["detected"], nc["planted"]["backdoored"], nc["planted"]["false_alarms"], nc["planted"]["clean"]) == (3, 12, 1, 3)
    assert (nc["planted_and_asr_ge_0.5"]["detected"], nc["planted_and_asr_ge_0.5"]["backdoored"]) == (3, 3)
    cta = s["arms"]["clean"]["convnet"]["cta"]
    assert cta["ci95"][0] <= cta["mean"] <= cta["ci95"][1] and cta["std"] > 0 and cta["n"] == 3
    assert s["arms"]["naive_1"]["convnet"]["cta_drop_vs_clean"]["mean"] == pytest.approx(0.0)
    assert wilson(0, 5)[0] == 0 and wilson(5, 5)[1] == 1 and 0 < wilson(2, 5)[0] < 0.4 < wilson(2, 5)[1] < 1
    assert mean_ci([1.0, 1.0])["ci95"] == [1.0, 1.0]
