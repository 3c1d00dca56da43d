"""A second NS flow end to end on a tiny stand-in: its data cached under its own name, models trained on it under
their own weight names (the ν=1e-3 ones untouched), and `bench_koopman --nu` scoring every seed against the solver
ladder at equal accuracy."""
import json

import numpy as np
import pytest
import torch

from loadtest import bench_koopman
from models.koopman import data, evaluate, train

TINY_NU = 2e-3  # stands in for 1e-4: the same code path at a cost a test can pay


@pytest.fixture
def tiny_flow(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    flow = {"nu": TINY_NU, "tag": "nu2e-3", "t_end": 12.0, "record_every": 1.0, "frames": 12, "t_in": 4,
            "grf_n": 64, "n": 64, "dt": 0.05, "test_n": 64, "test_dt": 0.05, "store_n": 32,
            "sizes": {"train": 6, "val": 2, "test": 3, "test2": 2, "train1k": 8}}
    monkeypatch.setitem(data.NS_FLOWS, TINY_NU, flow)
    monkeypatch.setattr(data, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(evaluate, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setitem(train.PROFILES, "ns", train.PROFILES["ns"] | {"t_in": 4, "resolution": 32})
    monkeypatch.setattr(bench_koopman, "HARDER_LADDER", [(16, 0.1), (32, 0.05), (64, 0.025)])
    monkeypatch.setattr(bench_koopman, "HORIZONS", (2, 8, 20))  # 20: beyond the 8-step forecast
    data.generate_ns(("train", "val", "test", "test2", "train1k"), nu=TINY_NU)


@pytest.mark.usefixtures("tiny_flow")
def test_a_second_flow_trains_under_its_own_names_and_is_scored_against_the_solver_ladder(tmp_path):
    assert data.load("ns", "train", nu=TINY_NU).shape == (6, 12, 32, 32)
    assert data.load("ns", "test", nu=TINY_NU).shape == (3, 12, 64, 64)
    with pytest.raises(FileNotFoundError, match="models.koopman.data ns --nu 0.0001"):  # not generated in this data folder
        data.load("ns", "train", nu=1e-4)

    for kind, seed, overrides in (("kno", 0, {"width": 6, "modes": 4, "depth": 2}), ("kno", 1, {"width": 6, "modes": 4, "depth": 2}),
                                  ("fno", 0, {"width": 6, "modes": 4, "layers": 2})):
        metrics = train.train("ns", kind, seed, nu=TINY_NU, iters=4, batch=4, eval_every=2, model_overrides=overrides)
        assert metrics["t_out"] == 8 and metrics["nu"] == TINY_NU  # the flow's frames after the window
    assert sorted(p.name for p in (tmp_path / "weights").glob("*.safetensors")) == [
        "ns_nu2e-3_fno_seed0.safetensors", "ns_nu2e-3_kno_seed0.safetensors", "ns_nu2e-3_kno_seed1.safetensors"]
    assert evaluate.trained_models() == {("ns", "fno", TINY_NU): [0], ("ns", "kno", TINY_NU): [0, 1]}

    out = tmp_path / "bench.json"
    report = bench_koopman.harder_flow(TINY_NU, members=3, repeats=1, json_path=out)
    assert json.loads(out.read_text())["equal_accuracy"] == report["equal_accuracy"]
    assert out.with_suffix(".png").exists() and (tmp_path / "training_nu2e-3.png").exists()
    models = {r["method"]: r for r in report["rows"] if r["method"] != "solver"}
    assert set(models["kno"]["horizon"]) == {"2", "8"}  # only the horizons the forecast reaches
    assert models["kno"]["seeds"] == [0, 1] and models["fno"]["seeds"] == [0]
    ladder = [r for r in report["rows"] if r["method"] == "solver"]
    assert [(r["grid"], r["dt"]) for r in ladder] == [(16, 0.1), (32, 0.05), (64, 0.025)]
    # The finest rung solves the test flow's own grid with a step twice as long: far closer than the coarsest.
    assert ladder[-1]["horizon"]["8"] < 0.1 * ladder[0]["horizon"]["8"]
    for name, match in report["equal_accuracy"].items():
        kind, horizon = name.split("@")
        assert match["model_error"] == models[kind]["horizon"][horizon]
        if match["solver"] is None:  # no rung as accurate as the model
            assert all(r["horizon"][horizon] > match["model_error"] for r in ladder)
            continue
        rung = next(r for r in ladder if (r["grid"], r["dt"]) == (match["solver"]["grid"], match["solver"]["dt"]))
        assert rung["horizon"][horizon] <= match["model_error"]
        assert np.isclose(match["speedup_batch1"], rung["seconds"] / models[kind]["seconds"])

    # A named variant trains under its own weight name, with its overrides in the config it is rebuilt from, and
    # is scored beside the others on the fresh second test split (its own trajectories, its own report).
    train.train("ns", "fno-m12", 0, nu=TINY_NU, iters=2, batch=4, eval_every=2, model_overrides={"width": 6, "layers": 2})
    model, metrics = train.load_trained("ns", "fno-m12", 0, TINY_NU)
    assert (metrics["model"], metrics["config"]["modes"], model.modes) == ("fno-m12", 12, 12)
    assert (tmp_path / "weights" / "ns_nu2e-3_fno_m12_seed0.safetensors").exists()
    fresh = data.load("ns", "test2", nu=TINY_NU)
    assert fresh.shape == (2, 12, 64, 64) and not torch.allclose(fresh[:, 0], data.load("ns", "test", nu=TINY_NU)[:2, 0])
    report2 = bench_koopman.harder_flow(TINY_NU, members=2, repeats=1, json_path=tmp_path / "bench_test2.json", split="test2")
    assert (report2["split"], report2["test_trajectories"]) == ("test2", 2)
    assert {r["method"] for r in report2["rows"]} == {"fno", "fno-m12", "kno", "solver"}

    # One kind on coarser windows: truncated to 32² and 16², forecast there, scored at the test grid like the solver.
    report3 = bench_koopman.harder_flow(TINY_NU, members=2, repeats=1, json_path=tmp_path / "bench_coarse.json",
                                        kinds=("fno",), model_grids=(32, 16))
    coarse = {r["method"]: r for r in report3["rows"] if r["method"] != "solver"}
    assert {name: r["grid"] for name, r in coarse.items()} == {"fno @32²": 32, "fno @16²": 16}
    assert {"fno @16²@8", "fno @32²@8"} <= set(report3["equal_accuracy"])
    full = models["fno"]["per_step"]
    assert np.all(np.isfinite(coarse["fno @16²"]["per_step"])) and coarse["fno @16²"]["per_step"] != full
    assert "--kinds fno --model-grids 32 16" in report3["command"]

    # Timing only, for comparing machines: the flow's seed-0 FNO beside one rung, nothing scored.
    (row,) = bench_koopman.rung_timing([TINY_NU], "fno", 16, 0.1, members=2, repeats=1)
    assert (row["steps"], row["solver"]) == (8, {"grid": 16, "dt": 0.1})
    assert np.isclose(row["speedup_batch1"], row["solver_seconds"] / row["model_seconds"])
    assert np.isclose(row["speedup_members"], row["solver_members_seconds"] / row["model_members_seconds"])

    # The scored rows timed again on a device (here the CPU, so the forecasts agree exactly), unstable rungs left out,
    # and matched at equal accuracy with the report's own errors: the fastest rung at least as accurate, per size.
    timing = bench_koopman.device_timing(tmp_path / "bench_coarse.json", "cpu", (2,), repeats=1)
    assert all(r["max_abs_vs_cpu"] == 0.0 and set(r["seconds"]) == {"1", "2"} for r in timing["rows"])
    rows = {r["method"]: r for r in timing["rows"] if r["method"] != "solver"}
    assert set(rows) == {"fno @32²", "fno @16²"}
    # only the rungs that can match are timed: any other as accurate is on a grid as fine with a step as short as a
    # timed one's, so never the cheaper
    timed = [(r["grid"], r["dt"]) for r in timing["rows"] if r["method"] == "solver"]
    for rung in (r for r in report3["rows"] if r["method"] == "solver" and r["horizon"]):
        for model in rows.values():
            for h, error in model["horizon"].items():
                if rung["horizon"][h] <= error and (rung["grid"], rung["dt"]) not in timed:
                    assert any(o["method"] == "solver" and o["horizon"][h] <= error and o["grid"] <= rung["grid"]
                               and o["dt"] >= rung["dt"] for o in timing["rows"])
    assert set(bench_koopman.device_timing(tmp_path / "bench_coarse.json", "cpu", (2,), repeats=1,
                                           kinds=("kno",))["equal_accuracy"]) == set()  # no kno row in that report
    bench_koopman.crossover_plot(timing, tmp_path / "crossover.png")
    assert (tmp_path / "crossover.png").stat().st_size > 0
    for name, match in timing["equal_accuracy"].items():
        label, count = name.split("/")
        kind, horizon = label.rsplit("@", 1)
        fits = [r for r in timing["rows"] if r["method"] == "solver" and r["horizon"][horizon] <= rows[kind]["horizon"][horizon]]
        if match is None:
            assert not fits
            continue
        assert match["solver_seconds"] == min(r["seconds"][count] for r in fits)
        assert np.isclose(match["speedup"], match["solver_seconds"] / rows[kind]["seconds"][count])


@pytest.mark.usefixtures("tiny_flow")
def test_a_run_stopped_by_its_deadline_keeps_a_scored_checkpoint_and_a_kind_trains_on_its_own_split():
    overrides = {"width": 6, "modes": 4, "layers": 2}
    metrics = train.train("ns", "fno", 0, nu=TINY_NU, iters=50, batch=2, eval_every=25, model_overrides=overrides,
                          out=False, deadline=0.0)
    # past its deadline from the start, it still trains one iteration and scores it, so it has weights to keep
    assert metrics["stopped_at"] == 1 and [h["iter"] for h in metrics["val_history"]] == [1]
    assert metrics["selected"]["iter"] == 1 and metrics["train_split"] == "train"
    metrics = train.train("ns", "fno-m12-1k", 0, nu=TINY_NU, iters=2, batch=2, eval_every=2,
                          model_overrides=overrides, out=False)
    assert (metrics["stopped_at"], metrics["train_split"], metrics["train_trajectories"]) == (None, "train1k", 8)


def test_scoring_one_problem_keeps_the_other_problems_entries_as_scored():
    previous = {"command": "python -m models.koopman.evaluate", "models": {
        "ns_kno": {"seeds": [0, 1, 2]}, "burgers_nu0.1_fno": {"seeds": [0]}, "burgers_nu0.01_fno": {"seeds": [0]}}}
    scored = {"models": {"burgers_nu0.1_fno": {"seeds": [0, 1, 2]}, "burgers_nu0.01_fno": {"seeds": [0, 1, 2]}}}
    results = evaluate.merged(previous, scored, ["burgers"], "python -m models.koopman.evaluate --problems burgers")
    assert results["models"]["ns_kno"] == {"seeds": [0, 1, 2]}
    assert results["models"]["burgers_nu0.1_fno"]["seeds"] == [0, 1, 2] == results["models"]["burgers_nu0.01_fno"]["seeds"]
    assert results["command"] == "python -m models.koopman.evaluate"
    assert [r["command"] for r in results["rescored"]] == ["python -m models.koopman.evaluate --problems burgers"]
    dropped = evaluate.merged(previous, {"models": {}}, ["burgers"], "c")  # a problem with no weights left: its rows go
    assert set(dropped["models"]) == {"ns_kno"}
