"""The generator sweep (models/graph/sweep.py) on tiny cells: the two axes do what they say, the baselines react
to them, and the command writes its report. Seconds, not minutes."""
import json

import numpy as np
import pytest
import torch

from models.graph import sweep
from models.graph.synth import GraphConfig, generate, homophily_by_class

torch.set_num_threads(1)
TINY = dict(n_users=3000, edge_scale=0.05, n_groups=6, seed=7)
BASELINES = ("LR (features)", "LR + neighbour means", "label propagation")


@pytest.fixture(scope="module")
def by_homophily():
    return {h: sweep.bot_cell(GraphConfig(**TINY, homophily_scale=h), models=BASELINES) for h in (0.0, 1.0)}


def test_defaults_are_the_tuned_generator():
    a, b = generate(GraphConfig(**TINY)), generate(GraphConfig(**TINY, homophily_scale=1.0, bot_signal=1.0))
    assert all(np.array_equal(a[k], b[k]) for k in ("x", "edge_index", "edge_type", "bot"))


def test_homophily_scale_zero_is_the_base_rate(by_homophily):
    share = 0.2694
    assert np.allclose(by_homophily[0.0]["bot_homophily"], share, atol=0.04)  # bots hear from bots at the base rate
    g = generate(GraphConfig(**TINY, homophily_scale=0.0))
    assert np.allclose(homophily_by_class(g)[:, 0], 1 - share, atol=0.03)  # and humans from humans
    assert np.mean(by_homophily[1.0]["bot_homophily"]) > 0.6


def test_without_homophily_relations_do_not_help(by_homophily):
    none, full = ({m: r["acc"] for m, r in by_homophily[h]["models"].items()} for h in (0.0, 1.0))
    majority = 1 - 0.2694
    # no homophily: neighbour means add nothing over the features, and propagated labels are at the majority rate
    assert none["LR + neighbour means"] < none["LR (features)"] + 0.02, none
    assert none["label propagation"] < majority + 0.03, none
    # with the tuned homophily the same baselines gain clearly (same seed, same features)
    assert full["LR + neighbour means"] > full["LR (features)"] + 0.03, full
    assert full["label propagation"] > majority + 0.08, full


def test_bot_signal_moves_the_feature_model():
    weak = sweep.bot_cell(GraphConfig(**TINY, bot_signal=0.0, homophily_scale=0.0), models=("MLP",))["models"]["MLP"]
    strong = sweep.bot_cell(GraphConfig(**TINY, bot_signal=3.0, camouflage=0.0, homophily_scale=0.0), models=("MLP",))["models"]["MLP"]
    assert weak["acc"] < 1 - 0.2694 + 0.03, weak  # no bot feature signal: the MLP can only guess the majority
    assert strong["acc"] > 0.97, strong  # strong signal, no camouflage: features alone nearly solve it


def test_paired_verdicts():
    assert sweep.paired([0.9, 0.91, 0.92], [0.8, 0.8, 0.8])["verdict"] == "win"
    assert sweep.paired([0.8, 0.8, 0.8], [0.9, 0.91, 0.92])["verdict"] == "loss"
    tie = sweep.paired([0.9, 0.8, 0.85], [0.85, 0.85, 0.85])
    assert tie["verdict"] == "tie" and tie["ci"][0] < 0 < tie["ci"][1]


def test_command_writes_the_report(tmp_path):
    out = tmp_path / "sweep.json"
    sweep.main(["--part", "bot", "--homophily", "0", "1", "--signal", "1", "--seeds", "2", "--epochs", "3",
                "--n-users", "800", "--edge-scale", "0.01", "--out", str(out)])
    res = json.loads(out.read_text())
    assert len(res["bot"]["runs"]) == 2 * 2 * len(sweep.BOT_MODELS)
    cell = res["bot"]["cells"]["1.0|1.0"]
    assert cell["seeds"] == [0, 1] and set(cell["botrgcn_vs"]) == set(sweep.BOT_MODELS) - {"BotRGCN"}
    md = out.with_suffix(".md").read_text()
    assert "| 1.0 | 1.0 |" in md and "BotRGCN minus each baseline" in md


def test_attributed_sbm_has_the_stated_shape():
    x, ei, y = sweep.attributed_sbm(0, **sweep.SBM)
    n, k = sweep.SBM["n"], sweep.SBM["k"]
    assert x.shape == (n, sweep.SBM["d"]) and np.bincount(y).tolist() == [n // k] * k
    assert abs(2 * ei.shape[1] / n - sweep.SBM["degree"]) < 0.5  # mean degree
    inside = (y[ei[0]] == y[ei[1]]).mean()
    r = sweep.SBM["in_ratio"]
    assert abs(inside - r / (r + k - 1)) < 0.03  # share of edges inside a block
    # the features carry the signal: block means are far apart relative to the noise
    means = np.stack([x[y == c].mean(0) for c in range(k)])
    assert np.allclose(np.linalg.norm(means, axis=1), sweep.SBM["mu"], atol=0.3)
