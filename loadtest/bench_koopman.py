"""A 40-step NS rollout: the exported KNO against our solver at the resolution and time step it needs for the
same accuracy, with the KNO's error beside it, in one run:

    python -m loadtest.bench_koopman [--count 4] [--served] [--json models/koopman/report/bench.json]
    python -m loadtest.bench_koopman --nu 1e-4      # the harder flow: every trained model against the solver ladder
    python -m loadtest.bench_koopman --nu 1e-5      # the hardest: 10 → 10 frames
    python -m loadtest.bench_koopman --nu 1e-5 --split test2   # the same on its fresh second test split
    python -m loadtest.bench_koopman --nu 1e-5 --split test3 --kinds fno-m12 --model-grids 64 32 --served fno_ns2d_nu1e5
                                                     # the 12-mode FNO also run on 32² windows, on the third split
    python -m loadtest.bench_koopman --rung-timing 32 0.025   # each harder flow's FNO beside one solver rung, timing only
    python -m loadtest.bench_koopman --rung-timing 32 0.025 --kind fno-m12 --nu 1e-5   # one model kind, one flow
    python -m loadtest.bench_koopman --device-timing models/koopman/report/bench_nu1e-5_test3.json --device cuda \
        --members 32 1024                            # a scored table's rows timed on a GPU (loadtest/gpu_koopman.sh)
    python -m loadtest.bench_koopman --device-timing models/koopman/report/bench_nu1e-4_test2.json --device cpu \
        --members 2 4 8 16 32 64 128 256 --kinds fno-m12-1k   # where the solver catches up as the ensemble grows


1. The KNO as served (``kno_ns2d`` from the model repository, its own runtime, one thread, batch 1): time per
   40-step rollout from the first 10 test frames, and its relative L2 against the test solution (128², dt 5e-3,
   subsampled to 64²) over the first 10 steps and over all 40.
2. Our solver from the same state (the test solution at t = 10, spectrally truncated to n²) on a ladder of grids
   and time steps, each scored the same way (its field spectrally interpolated to 64²) and timed at batch 1.
3. The cheapest solver setting at least as accurate as the KNO over the first 10 steps, and over 40: the speed
   ratio is solver time / KNO time at equal accuracy (the issue's goal: ≥ 100× at < 5 % error over 10 steps).
4. With ``--served``: the same rollout through the real server (one gRPC ``ModelStreamInfer``), time to the first
   streamed step and to the last (goal: first step within 50 ms); and an ensemble of ``--members`` (32) as one
   ensemble request, beside the equal-accuracy solver setting run on the same members as one batch.

With ``--nu 1e-4`` or ``1e-5`` (:func:`harder_flow`, → ``report/bench_nu1e-4.json`` / ``bench_nu1e-5.json`` and
``.png``): every trained seed of each model kind for that flow (KNO, KNO-CNN, FNO), run as the server runs it (the
TorchScript trace of its one step, one thread) over all test trajectories, 10 → 20 frames (10 → 10 at ν=1e-5); the
solver ladder from the same t = 10 states; equal accuracy at horizons 5, 10 and 20 steps (those the forecast
reaches), for one forecast (batch 1) and for an ensemble of ``--members`` (one batch each).
This is the flow's test split scored: run it once, after the weights are frozen.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.koopman import data, solvers

REPORT = Path(__file__).resolve().parents[1] / "models" / "koopman" / "report" / "bench.json"
# Grids between the powers of two, and every time step that divides a time unit near each grid's stability limit, so
# that "the cheapest solve at least as accurate" is not a coarse ladder's artefact.
HARDER_LADDER = [(16, 0.05), (20, 0.05), (24, 0.05), (24, 0.04), (28, 0.04), (28, 1 / 30), (32, 0.05), (32, 0.04),
                 (32, 1 / 30), (32, 0.025), (32, 0.0125), (40, 1 / 30), (40, 0.025), (48, 0.025), (48, 0.02),
                 (64, 0.02), (64, 0.01), (64, 0.005), (128, 0.01)]
HORIZONS = (5, 10, 20)  # those within the flow's forecast: 10 → 20 frames at ν=1e-4, 10 → 10 at ν=1e-5
LADDER = [(8, 0.1), (8, 0.05), (16, 0.1), (16, 0.05), (16, 0.025), (32, 0.05), (32, 0.025), (32, 0.0125), (64, 0.025), (64, 0.0125), (64, 0.01)]


def resample(field: torch.Tensor, n: int) -> torch.Tensor:
    """Spectral resampling of ``[..., m, m]`` periodic fields to n × n: truncation (n < m) or zero padding."""
    m = field.shape[-1]
    if n == m:
        return field
    spectrum = torch.fft.fft2(field.to(torch.float64))
    k = min(n, m) // 2
    out = torch.zeros(*field.shape[:-2], n, n, dtype=spectrum.dtype)
    for rows_in, rows_out in ((slice(0, k), slice(0, k)), (slice(-k, None), slice(-k, None))):
        out[..., rows_out, :k] = spectrum[..., rows_in, :k]
        out[..., rows_out, -k:] = spectrum[..., rows_in, -k:]
    return torch.fft.ifft2(out).real * (n * n) / (m * m)


def relative_l2(pred: torch.Tensor, true: torch.Tensor) -> np.ndarray:
    """Per step, mean over trajectories: ``[N, T, X, Y] -> [T]``."""
    return ((pred - true).pow(2).sum((-2, -1)).sqrt() / true.pow(2).sum((-2, -1)).sqrt()).mean(0).numpy()


def timed(fn, repeats: int, sync=lambda: None) -> tuple[float, object]:
    """Mean seconds of ``repeats`` calls after one warm-up call; ``sync`` waits for queued device work."""
    result = fn()  # warm-up, and the answer that is scored
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - started) / repeats, result


def kno_rollouts(repository: Path, windows: np.ndarray, steps: int, repeats: int) -> tuple[float, torch.Tensor, str]:
    """Seconds per batch-1 rollout (mean over trajectories) and the predicted frames, through the served runtime."""
    from loadtest.stream_latency import step_runtime
    from serve.repository import load_model

    spec, runtime = load_model(repository / "kno_ns2d"), step_runtime(repository, "kno_ns2d")

    def rollout(window):
        frames = []
        for _ in range(steps):
            out = runtime.infer({"WINDOW": window})
            frames.append(out["FRAMES"])
            window = out["WINDOW_NEXT"]
        return np.concatenate(frames, axis=1)

    seconds, predictions = [], []
    for w in windows:
        s, pred = timed(lambda: rollout(w[None]), repeats)
        seconds.append(s)
        predictions.append(pred[0])
    return float(np.mean(seconds)), torch.from_numpy(np.stack(predictions)), f"{spec.platform} ({type(runtime).__name__})"


def solver_rollouts(start: torch.Tensor, n: int, dt: float, steps: int, repeats: int, grid: int) -> tuple[float, torch.Tensor]:
    """Seconds per batch-1 solve from ``start`` at n², dt, and its frames resampled to the scoring grid."""
    w0 = resample(start, n)
    seconds, frames = [], []
    for w in w0:
        s, out = timed(lambda: solvers.ns_solve(w[None], data.NS["nu"], float(steps), dt, record_every=1.0), repeats)
        seconds.append(s)
        frames.append(resample(out[0], grid).float())
    return float(np.mean(seconds)), torch.stack(frames)


def served_rollouts(repository: Path, window: np.ndarray, steps: int, members: int,
                    model: str = "kno_ns2d") -> tuple[list[float], list[float]]:
    """Arrival times of one streamed rollout's steps, then of one ensemble request's, through the real server."""
    from serve.testing import start_server, stop_server
    from loadtest.stream_latency import served

    server = start_server(repository.resolve(), Path(tempfile.mkdtemp(prefix="kno-bench-")))
    try:
        served(server.grpc, model, window, 3)  # warm-up: replica loaded, first batch run
        single = served(server.grpc, model, window, steps)
        return single, served(server.grpc, model, window, steps, members)
    finally:
        stop_server(server.process)


def solver_ensemble_seconds(start: torch.Tensor, n: int, dt: float, steps: int, members: int) -> float:
    """One batched solve of `members` perturbed copies of the first state at n², dt (what a solver-based ensemble costs)."""
    w0 = resample(start[:1], n).repeat(members, 1, 1)
    w0 = w0 + 0.01 * w0.std() * torch.randn_like(w0)
    seconds, _ = timed(lambda: solvers.ns_solve(w0, data.NS["nu"], float(steps), dt, record_every=1.0), 1)
    return seconds


def once(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def traced_step(model: torch.nn.Module, device: str = "cpu"):
    """The one-step function the server runs for ``model``: its TorchScript trace (`trace_one_step`, saved and loaded
    as the server loads it), traced on ``device``."""
    import io

    from models.koopman.kno import trace_one_step

    model = model.to(device)
    buffer = io.BytesIO()
    torch.jit.save(trace_one_step(model, torch.zeros(2, model.t_in, 64, 64, device=device)), buffer)
    buffer.seek(0)
    scripted = torch.jit.load(buffer, map_location=device).eval()

    def step(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return scripted(window)
    return step


def model_rollout(step, window: torch.Tensor, steps: int) -> torch.Tensor:
    frames = []
    for _ in range(steps):
        new, window = step(window)
        frames.append(new)
    return torch.cat(frames, dim=1)


def horizons(steps: int) -> tuple[int, ...]:
    return tuple(h for h in HORIZONS if h <= steps)


def horizon_errors(per_step: np.ndarray) -> dict:
    """Mean relative L2 over the first h steps, for each horizon h the forecast reaches."""
    return {str(h): float(per_step[:h].mean()) for h in horizons(len(per_step))}


def cheapest_as_accurate(ladder: list[dict], horizon: str, error: float, cost) -> dict | None:
    """The solver rung of ``ladder`` with the lowest ``cost(rung)`` among those whose error over ``horizon`` steps is at
    most ``error``; None when no rung is that accurate."""
    fits = [rung for rung in ladder if rung["horizon"][horizon] <= error]
    return min(fits, key=cost) if fits else None


def harder_flow(nu: float, members: int, repeats: int, json_path: Path, split: str = "test",
                served: tuple[Path, str, str] | None = None, model_grids: tuple[int, ...] = (64,),
                kinds: tuple[str, ...] | None = None) -> dict:
    """Every trained model for the flow ``nu`` (or those of ``kinds``) against the solver ladder, at equal accuracy (see
    the module doc), on the test split ``split`` (``test2``, ``test3``: fresh trajectories, for what was decided after
    the earlier splits were scored). Each model runs at every grid of ``model_grids``: its window spectrally truncated
    to that grid, its forecast interpolated back to 64² and scored like the solver's (a row ``kind @32²`` for 32).
    ``served`` = (repository, served model name, its model kind): also time that model through the real server at the
    last of ``model_grids``, one streamed forecast and one ensemble request of ``members``, beside the solver rung
    that matches that row."""
    from models.koopman import train as koopman_train
    from models.koopman.evaluate import trained_models

    flow = data.ns_flow(nu)
    t_in, steps = flow["t_in"], flow["frames"] - flow["t_in"]
    test = data.load("ns", split, 64, nu)                               # [N, 30, 64, 64] from the 128² solve
    truth = test[:, t_in : t_in + steps]
    start = data.load("ns", split, None, nu)[:, t_in - 1]               # t = 10 at 128²
    rng = torch.Generator().manual_seed(0)
    rows = []
    flow_models = sorted((kind, seeds) for (problem, kind, model_nu), seeds in trained_models().items()
                         if problem == "ns" and model_nu == nu and (kinds is None or kind in kinds))
    for (kind, seeds), grid in ((m, g) for m in flow_models for g in model_grids):
        windows = resample(test[:, :t_in], grid).float()
        per_seed, val = [], []
        for seed in sorted(seeds):
            model, metrics = koopman_train.load_trained("ns", kind, seed, nu)
            step = traced_step(model)
            forecast = torch.cat([model_rollout(step, w, steps) for w in windows.split(10)])
            per_seed.append(relative_l2(resample(forecast, 64).float(), truth))
            val.append(metrics["selected"]["val_rel_l2"])
        errors = np.stack(per_seed)                                     # [seeds, steps]
        one = windows[:1]
        ensemble = one.repeat(members, 1, 1, 1) + 0.01 * one.std() * torch.randn(members, *one.shape[1:], generator=rng)
        rows.append({"method": kind if grid == 64 else f"{kind} @{grid}²", "grid": grid, "seeds": sorted(seeds),
                     "parameters": metrics["parameters"],
                     "iters": metrics["iters"], "train_seconds": metrics["train_seconds"], "val_rel_l2": val,
                     "per_step": errors.mean(0).tolist(), "per_step_seed_std": errors.std(0).tolist(),
                     "horizon": horizon_errors(errors.mean(0)),
                     "horizon_seed_std": {str(h): float(errors[:, :h].mean(1).std()) for h in horizons(steps)},
                     "seconds": timed(lambda: model_rollout(step, one, steps), repeats)[0],
                     "ensemble_seconds": timed(lambda: model_rollout(step, ensemble, steps), 1)[0]})
        print(f"{kind}: rel. L2 {rows[-1]['horizon']} (seeds {sorted(seeds)}), {rows[-1]['seconds']:.3f} s per rollout, "
              f"{rows[-1]['ensemble_seconds']:.2f} s for {members} members", flush=True)
    for n, dt in HARDER_LADDER:
        w0 = resample(start, n)
        out = solvers.ns_solve(w0, nu, float(steps), dt, record_every=1.0)
        per_step = relative_l2(torch.stack([resample(o, 64).float() for o in out]), truth)
        ok = bool(np.isfinite(per_step).all())
        ensemble = w0[:1].repeat(members, 1, 1)
        rows.append({"method": "solver", "grid": n, "dt": dt, "per_step": per_step.tolist() if ok else None,
                     "horizon": horizon_errors(per_step) if ok else None,
                     "seconds": timed(lambda: solvers.ns_solve(w0[:1], nu, float(steps), dt, record_every=1.0), repeats)[0],
                     "ensemble_seconds": once(lambda: solvers.ns_solve(ensemble, nu, float(steps), dt, record_every=1.0))})
        print(f"solver {n}² dt {dt}: rel. L2 {rows[-1]['horizon']}, {rows[-1]['seconds']:.3f} s, "
              f"{rows[-1]['ensemble_seconds']:.2f} s for {members}", flush=True)
    models = [r for r in rows if r["method"] != "solver"]
    ladder = [r for r in rows if r["method"] == "solver" and r["horizon"]]
    matches = {}
    for r in models:
        for h in map(str, horizons(steps)):
            cheapest = {key: cheapest_as_accurate(ladder, h, r["horizon"][h], lambda s, key=key: s[key])
                        for key in ("seconds", "ensemble_seconds")}
            fits = cheapest["seconds"] is not None
            matches[f"{r['method']}@{h}"] = {
                "model_error": r["horizon"][h],
                "solver": None if not fits else {"grid": cheapest["seconds"]["grid"], "dt": cheapest["seconds"]["dt"],
                                                 "error": cheapest["seconds"]["horizon"][h]},
                # solver time ÷ model time: > 1 means the model is faster at that accuracy
                "solver_seconds": None if not fits else cheapest["seconds"]["seconds"],
                "solver_ensemble_seconds": None if not fits else cheapest["ensemble_seconds"]["ensemble_seconds"],
                "speedup_batch1": None if not fits else cheapest["seconds"]["seconds"] / r["seconds"],
                "speedup_ensemble": None if not fits else cheapest["ensemble_seconds"]["ensemble_seconds"] / r["ensemble_seconds"]}
    if served:
        repository, name, kind = served
        grid = model_grids[-1]
        window = resample(test[:1, :t_in], grid).float().numpy()
        arrivals, ensemble = served_rollouts(repository, window, steps, members, name)
        match = matches[f"{kind if grid == 64 else f'{kind} @{grid}²'}@{steps}"]
        report_served = {"model": name, "kind": kind, "grid": grid, "first_step_s": arrivals[0], "rollout_s": arrivals[-1],
                         "ensemble_rollout_s": ensemble[-1], "members": members}
        if match["solver"]:  # solver time ÷ served time at the matched accuracy
            report_served |= {"speedup_batch1": match["solver_seconds"] / arrivals[-1],
                              "speedup_ensemble": match["solver_ensemble_seconds"] / ensemble[-1]}
        print(f"served {name}: first step {arrivals[0] * 1e3:.0f} ms, forecast {arrivals[-1]:.3f} s, {members} members "
              f"{ensemble[-1]:.2f} s; solver ÷ served {report_served.get('speedup_batch1', float('nan')):.2f}× / "
              f"{report_served.get('speedup_ensemble', float('nan')):.2f}×", flush=True)
    command = (f"python -m loadtest.bench_koopman --nu {nu:g} --members {members}" + (f" --split {split}" if split != "test" else "")
               + (f" --kinds {' '.join(kinds)}" if kinds else "")
               + (f" --model-grids {' '.join(map(str, model_grids))}" if model_grids != (64,) else "")
               + (f" --served {served[1]}" if served else ""))
    report = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nu": nu, "steps": steps,
              "split": split, "test_trajectories": len(test), "members": members, "threads": 1, "model_grids": list(model_grids),
              "served": report_served if served else None, "rows": rows, "equal_accuracy": matches}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    pareto_plot(report, json_path.with_suffix(".png"))
    training_curves(nu, json_path.with_name(f"training_{flow['tag']}.png"))
    return report


def rung_timing(nus: list[float], kind: str, grid: int, dt: float, members: int, repeats: int) -> list[dict]:
    """Seconds per forecast of each flow's trained ``kind`` (seed 0, its served one-step trace) and of one solver rung,
    at batch 1 and for ``members``, in one window on this machine. Nothing is scored: the states are fresh random
    fields of the right shapes (a step costs the same whatever the field holds), so timings from two machines or
    two days can be put side by side without touching any test split again."""
    from models.koopman import train as koopman_train

    rng = torch.Generator().manual_seed(0)
    rows = []
    for nu in nus:
        flow = data.ns_flow(nu)
        steps = flow["frames"] - flow["t_in"]
        model, _ = koopman_train.load_trained("ns", kind, 0, nu)
        step = traced_step(model)
        window = solvers.ns_initial(flow["t_in"], 64, rng).float()[None]    # [1, t_in, 64, 64]
        state = solvers.ns_initial(1, grid, rng)
        model_s = timed(lambda: model_rollout(step, window, steps), repeats)[0]
        model_members_s = once(lambda: model_rollout(step, window.repeat(members, 1, 1, 1), steps))
        solver_s = timed(lambda: solvers.ns_solve(state, nu, float(steps), dt, record_every=1.0), repeats)[0]
        solver_members_s = once(lambda: solvers.ns_solve(state.repeat(members, 1, 1), nu, float(steps), dt, record_every=1.0))
        rows.append({"nu": nu, "steps": steps, "model": kind, "solver": {"grid": grid, "dt": dt}, "model_seconds": model_s,
                     "model_members_seconds": model_members_s, "solver_seconds": solver_s, "solver_members_seconds": solver_members_s,
                     "speedup_batch1": solver_s / model_s, "speedup_members": solver_members_s / model_members_s})
        print(f"ν={nu:g}, {steps} steps: {kind} {model_s:.3f} s ({model_members_s:.2f} s for {members}); solver {grid}², dt {dt:g} "
              f"{solver_s:.3f} s ({solver_members_s:.2f} s); solver ÷ model {rows[-1]['speedup_batch1']:.2f}× / "
              f"{rows[-1]['speedup_members']:.2f}×", flush=True)
    return rows


def rungs_that_can_match(models: list[dict], ladder: list[dict]) -> list[dict]:
    """The stable rungs of ``ladder`` that can be the cheapest one as accurate as some model row over some horizon, at
    any batch: among the rungs as accurate, one on a grid at least as fine with a time step at most as long as
    another's is never the cheaper (a pseudo-spectral step costs more on more points; a shorter step takes more)."""
    stable = [r for r in ladder if r["horizon"] is not None]

    def can_be_cheapest(rung, model, h):
        fits = [r for r in stable if r["horizon"][h] <= model["horizon"][h]]
        return rung in fits and not any(o is not rung and o["grid"] <= rung["grid"] and o["dt"] >= rung["dt"] for o in fits)

    return [rung for rung in stable if any(can_be_cheapest(rung, m, h) for m in models for h in m["horizon"])]


def device_timing(scored: Path, device: str, members: tuple[int, ...], repeats: int, kinds: tuple[str, ...] | None = None) -> dict:
    """The rows of a scored report (:func:`harder_flow`'s JSON: its models at their grids, or those of ``kinds``, and the
    solver rungs that can match them, :func:`rungs_that_can_match`) timed on ``device`` at batch 1 and for each ensemble
    size in ``members``, then matched at equal accuracy with the report's own errors. Nothing is scored again: the
    timed states are fresh random fields of the rows' shapes (a step costs the same whatever the field holds). What the
    errors need from the device, that a forecast and a solve come out the same there, is measured on one random window
    per row (``max_abs_vs_cpu``)."""
    from models.koopman import train as koopman_train

    report = json.loads(scored.read_text())
    nu, steps = report["nu"], report["steps"]
    t_in = data.ns_flow(nu)["t_in"]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rng = torch.Generator().manual_seed(0)
    models = [r for r in report["rows"] if r["method"] != "solver" and (kinds is None or r["method"].split(" @")[0] in kinds)]
    ladder = rungs_that_can_match(models, [r for r in report["rows"] if r["method"] == "solver"])
    rows = []
    for row in models + ladder:
        grid = row.get("grid") or 64  # reports from before --model-grids ran every model at 64²
        if row["method"] == "solver":
            state = solvers.ns_initial(1, grid, rng)

            def run(batch, state=state, dt=row["dt"], where=device):
                return solvers.ns_solve(state.to(where).repeat(batch, 1, 1), nu, float(steps), dt, record_every=1.0)
        else:
            kind = row["method"].split(" @")[0]
            model, _ = koopman_train.load_trained("ns", kind, row["seeds"][0], nu)
            window = resample(solvers.ns_initial(t_in, 64, rng)[None], grid).float()
            steppers = {where: traced_step(model, where) for where in {"cpu", device}}

            def run(batch, window=window, steppers=steppers, where=device):
                return model_rollout(steppers[where], window.to(where).repeat(batch, 1, 1, 1), steps)
        timings = {"1": timed(lambda: run(1), repeats, sync)[0]}
        for count in members:
            timings[str(count)] = timed(lambda: run(count), 1, sync)[0]
        on_device, on_cpu = run(1).cpu(), run(1, where="cpu")
        rows.append({key: row[key] for key in ("method", "dt", "horizon") if key in row}
                    | {"grid": grid, "seconds": timings, "max_abs_vs_cpu": float((on_device - on_cpu).abs().max())})
        print(f"{rows[-1]['method']} {grid}² {row.get('dt', '')}: " + ", ".join(f"{k}: {v:.4f} s" for k, v in timings.items())
              + f"; |device - cpu| ≤ {rows[-1]['max_abs_vs_cpu']:.1e}", flush=True)
    models, ladder = [r for r in rows if r["method"] != "solver"], [r for r in rows if r["method"] == "solver"]
    matches = {}
    for r in models:
        for h in r["horizon"]:
            for count in r["seconds"]:
                cheapest = cheapest_as_accurate(ladder, h, r["horizon"][h], lambda s, count=count: s["seconds"][count])
                matches[f"{r['method']}@{h}/{count}"] = None if cheapest is None else {
                    "model_error": r["horizon"][h], "solver": {"grid": cheapest["grid"], "dt": cheapest["dt"],
                                                             "error": cheapest["horizon"][h]},
                    "model_seconds": r["seconds"][count], "solver_seconds": cheapest["seconds"][count],
                    "speedup": cheapest["seconds"][count] / r["seconds"][count]}
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    out = {"command": f"python -m loadtest.bench_koopman --device-timing {scored.name} --device {device} "
                      f"--members {' '.join(map(str, members))} --repeats {repeats}" + (f" --kinds {' '.join(kinds)}" if kinds else ""),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": name, "scored_report": scored.name,
           "scored_date": report.get("date"), "nu": nu, "steps": steps, "torch": torch.__version__, "rows": rows,
           "equal_accuracy": matches}
    for key, m in matches.items():
        if m:
            print(f"{key}: model {m['model_seconds']:.4f} s, solver {m['solver']['grid']}² dt {m['solver']['dt']:g} "
                  f"{m['solver_seconds']:.4f} s = {m['speedup']:.1f}×", flush=True)
    return out


def crossover_plot(report: dict, path: Path) -> None:
    """Solver ÷ model time at equal accuracy against the ensemble size, one line per model row and horizon (a
    :func:`device_timing` report): where a line crosses 1 the solver becomes the cheaper way to the same error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    lines: dict[str, list] = {}
    for key, match in report["equal_accuracy"].items():
        if match:
            row, count = key.rsplit("/", 1)
            lines.setdefault(row, []).append((int(count), match["speedup"]))
    for row, points in sorted(lines.items()):
        method, h = row.rsplit("@", 1)
        ax.plot(*zip(*sorted(points)), "o-", markersize=3, label=f"{method.strip()}, {h} steps")
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("ensemble members (one batch)")
    ax.set_ylabel("solver ÷ model seconds, equal accuracy")
    ax.set_title(f"NS ν={report['nu']:g} on {report['device']}: where the solver catches up", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves(nu: float, path: Path) -> None:
    """Each run's validation curve (the checkpoint selection's number) against training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.koopman import train as koopman_train

    fig, ax = plt.subplots(figsize=(6, 4))
    for path_json in sorted(koopman_train.WEIGHTS_DIR.glob(f"ns_{data.ns_flow(nu)['tag']}_*.json")):
        run = json.loads(path_json.read_text())
        history = run["val_history"]
        ax.plot([h["seconds"] for h in history], [h["val_rel_l2"] for h in history], "o-", markersize=3,
                label=f"{run['model']} seed {run['seed']} ({run['iters']} it., {run['unroll']}-step loss)")
    ax.set_xlabel("training seconds (one CPU core, or one H200 shared by the runs of one call)")
    ax.set_ylabel(f"validation rel. L2 ({data.ns_flow(nu)['frames'] - data.ns_flow(nu)['t_in']}-step rollout)")
    ax.set_yscale("log")
    ax.legend(fontsize=6)
    ax.set_title(f"NS ν={nu:g}: validation curves", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto_plot(report: dict, path: Path) -> None:
    """Error against cost: the solver ladder as a curve, each model as a point, per horizon and batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = horizons(report["steps"])
    fig, axes = plt.subplots(2, len(shown), figsize=(4 * len(shown), 7), sharey="row", squeeze=False)
    for row, (key, label) in enumerate((("seconds", "batch 1"), ("ensemble_seconds", f"{report['members']} members"))):
        for ax, h in zip(axes[row], map(str, shown)):
            ladder = sorted((r for r in report["rows"] if r["method"] == "solver" and r["horizon"]), key=lambda r: r[key])
            ax.plot([r[key] for r in ladder], [r["horizon"][h] for r in ladder], "o-", color="gray", label="solver ladder")
            for r in ladder:
                ax.annotate(f"{r['grid']}²/{r['dt']:g}", (r[key], r["horizon"][h]), fontsize=6)
            for r in report["rows"]:
                if r["method"] != "solver":
                    ax.plot(r[key], r["horizon"][h], "*", markersize=12, label=r["method"])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())  # a ladder within one decade labels every minor tick
            ax.set_title(f"ν={report['nu']:g}, steps 1-{h}, {label}", fontsize=9)
            ax.set_xlabel("seconds per forecast (one thread)")
    axes[0, 0].set_ylabel("relative L2 (test)")
    axes[1, 0].set_ylabel("relative L2 (test)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--count", type=int, default=4, help="test trajectories")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--served", nargs="?", const="kno_ns2d", default=None, metavar="MODEL",
                        help="also time the rollout and an ensemble through the real server (with --nu: name the served "
                             "model of that flow, e.g. fno_ns2d_nu1e5)")
    parser.add_argument("--members", type=int, nargs="+", default=[32],
                        help="ensemble size for --served (with --device-timing: one or more sizes)")
    parser.add_argument("--json", type=Path, default=None, help=f"default {REPORT} (--nu: bench_nu<ν>.json beside it)")
    parser.add_argument("--nu", type=float, default=None, choices=[v for v in data.NS_FLOWS if v != data.NS["nu"]],
                        help="score the trained models of a harder flow against the solver ladder instead")
    parser.add_argument("--split", choices=data.TEST_SPLITS, default="test",
                        help="with --nu: the test split to score (test2: the fresh one, bench_nu<ν>_test2.json)")
    parser.add_argument("--model-grids", nargs="+", type=int, default=[64], metavar="N",
                        help="with --nu: run each model at these grids (window truncated to N², forecast scored at 64²); "
                             "--served runs at the last")
    parser.add_argument("--kinds", nargs="+", default=None, help="with --nu or --device-timing: only these model kinds (default: every trained one)")
    parser.add_argument("--rung-timing", nargs=2, metavar=("GRID", "DT"), type=float,
                        help="time each harder flow's seed-0 model (--kind) and this solver rung side by side (nothing "
                             "scored); with --nu, that flow only")
    parser.add_argument("--kind", default="fno", help="with --rung-timing: the model kind to time (fno, fno-m12, kno, ...)")
    parser.add_argument("--device-timing", type=Path, metavar="REPORT",
                        help="time the rows of this scored report (a --nu run's JSON; --kinds: those models only) on "
                             "--device, batch 1 and each --members size, and match at equal accuracy with its errors "
                             "(→ <report>_<device>.json and the crossover plot .png)")
    parser.add_argument("--device", default="cpu", help="with --device-timing: cuda on the GPU machine")
    args = parser.parse_args(argv)
    if args.device_timing:
        report = device_timing(args.device_timing, args.device, tuple(args.members), args.repeats,
                               tuple(args.kinds) if args.kinds else None)
        out = args.json or args.device_timing.with_name(f"{args.device_timing.stem}_{args.device.split(':')[0]}.json")
        out.write_text(json.dumps(report, indent=2) + "\n")
        crossover_plot(report, out.with_suffix(".png"))
        return
    if len(args.members) > 1:
        parser.error("--members takes one size except with --device-timing")
    args.members = args.members[0]
    if args.rung_timing:
        grid, dt = int(args.rung_timing[0]), args.rung_timing[1]
        nus = [args.nu] if args.nu else [v for v in data.NS_FLOWS if v != data.NS["nu"]]
        rows = rung_timing(nus, args.kind, grid, dt, args.members, args.repeats)
        tag = "" if args.kind == "fno" else f"_{args.kind}"
        out = args.json or REPORT.with_name(f"rung_timing_{grid}_{dt:g}{tag}.json")
        command = (f"python -m loadtest.bench_koopman --rung-timing {grid} {dt:g}" + (f" --kind {args.kind}" if tag else "")
                   + (f" --nu {args.nu:g}" if args.nu else "") + f" --repeats {args.repeats}")
        out.write_text(json.dumps({"command": command,
                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": 1, "rows": rows}, indent=2) + "\n")
        return
    if args.nu:
        suffix = "" if args.split == "test" else f"_{args.split}"
        served = None
        if args.served:
            from models.koopman.export import MODELS

            served = (args.repository, args.served, MODELS[args.served][1])
        harder_flow(args.nu, args.members, args.repeats,
                    args.json or REPORT.with_name(f"bench_{data.ns_flow(args.nu)['tag']}{suffix}.json"), args.split, served,
                    tuple(args.model_grids), tuple(args.kinds) if args.kinds else None)
        return
    args.json = args.json or REPORT
    steps, t_in = 40, data.NS["t_in"]
    test = data.load("ns", "test", 64)[: args.count]                 # [N, 50, 64, 64], from the 128² solve
    truth = test[:, t_in : t_in + steps]
    start = data.load("ns", "test")[: args.count, t_in - 1]          # t = 10 at 128²: the solver's initial state

    kno_seconds, kno_pred, runtime = kno_rollouts(args.repository, test[:, :t_in].numpy(), steps, args.repeats)
    kno_err = relative_l2(kno_pred, truth)
    rows = [{"method": f"KNO, served model ({runtime})", "grid": 64, "dt": None, "seconds": kno_seconds,
             "err10": float(kno_err[:10].mean()), "err40": float(kno_err.mean())}]
    print(f"KNO: {kno_seconds:.3f} s per rollout, rel. L2 {rows[0]['err10']:.4f} (10 steps) / {rows[0]['err40']:.4f} (40)", flush=True)
    for n, dt in LADDER:
        seconds, pred = solver_rollouts(start, n, dt, steps, args.repeats, truth.shape[-1])
        err = relative_l2(pred, truth)
        ok = bool(np.isfinite(err).all())
        rows.append({"method": "solver", "grid": n, "dt": dt, "seconds": seconds,
                     "err10": float(err[:10].mean()) if ok else None, "err40": float(err.mean()) if ok else None})
        print(f"solver {n}² dt {dt}: {seconds:.3f} s, rel. L2 {rows[-1]['err10']} (10) / {rows[-1]['err40']} (40)", flush=True)

    kno = rows[0]
    matches = {}
    for horizon in ("err10", "err40"):
        fits = [r for r in rows[1:] if r[horizon] is not None and r[horizon] <= kno[horizon]]
        best = min(fits, key=lambda r: r["seconds"]) if fits else None
        matches[horizon] = None if best is None else {"grid": best["grid"], "dt": best["dt"], "seconds": best["seconds"],
                                                      "error": best[horizon], "speedup": best["seconds"] / kno["seconds"]}
    report = {"command": "python -m loadtest.bench_koopman" + (f" --served --members {args.members}" if args.served else ""), "trajectories": args.count,
              "threads": 1, "batch": 1, "rows": rows, "equal_accuracy": matches}
    if args.served:
        arrivals, ensemble = served_rollouts(args.repository, test[:1, :t_in].numpy(), steps, args.members)
        report["served"] = {"first_step_s": arrivals[0], "rollout_s": arrivals[-1],
                            "per_step_s": (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)}
        report["ensemble"] = {"members": args.members, "served_first_step_s": ensemble[0], "served_rollout_s": ensemble[-1]}
        for horizon in ("err10", "err40"):
            if (m := matches[horizon]) is not None:
                solver_s = solver_ensemble_seconds(start, m["grid"], m["dt"], steps, args.members)
                report["ensemble"][f"solver_{horizon}"] = {"grid": m["grid"], "dt": m["dt"], "seconds": solver_s,
                                                           "speedup": solver_s / ensemble[-1]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n40-step NS rollout, batch 1, one thread; rel. L2 against the 128² test solution ({args.count} trajectories)\n")
    print("| method | grid | dt | s / rollout | rel. L2, steps 1-10 | rel. L2, steps 1-40 |\n|---|---|---|---|---|---|")
    for r in rows:
        fmt = lambda v: "unstable" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"| {r['method']} | {r['grid']}² | {r['dt'] or '–'} | {r['seconds']:.3f} | {fmt(r['err10'])} | {fmt(r['err40'])} |")
    for horizon, label in (("err10", "10 steps"), ("err40", "40 steps")):
        m = matches[horizon]
        print(f"equal accuracy over {label}: " + ("no solver setting on the ladder is as accurate" if m is None else
              f"solver {m['grid']}², dt {m['dt']} ({m['error']:.4f}) takes {m['seconds']:.3f} s = {m['speedup']:.1f}× the KNO's time"))
    if args.served:
        s = report["served"]
        print(f"served (gRPC stream): first step {s['first_step_s'] * 1e3:.0f} ms, {s['per_step_s'] * 1e3:.0f} ms per step, "
              f"whole rollout {s['rollout_s']:.2f} s")
        e = report["ensemble"]
        print(f"served ensemble of {e['members']} (one request): first step {e['served_first_step_s'] * 1e3:.0f} ms, "
              f"whole rollout {e['served_rollout_s']:.2f} s")
        for horizon in ("err10", "err40"):
            if f"solver_{horizon}" in e:
                m = e[f"solver_{horizon}"]
                print(f"  solver at equal accuracy ({horizon}): {m['grid']}², dt {m['dt']}, {m['seconds']:.2f} s for the "
                      f"{e['members']} members = {m['speedup']:.2f}× the served ensemble's time")


if __name__ == "__main__":
    main()
