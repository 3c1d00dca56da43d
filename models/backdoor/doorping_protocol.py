"""DOORPING and NAIVEATTACK as the paper ran them, with a valid-range trigger (issue 24, item 3).

`python -m models.backdoor.doorping_protocol [run|report|all] [--seeds 0 1 2 3 4] [--iterations 200]`

- run: for every seed (seed-major, so an interrupted run still has whole seeds), five DC distillations — clean,
  NAIVEATTACK at 1 % and 10 % poison, DOORPING at 1 % and 10 % — with `PROTOCOL` (≥ 200 DC iterations, the
  DOORPING trigger projected onto [0, 1] after every Adam step: `Config.trigger_clamp`). On each distilled set a
  fresh ConvNet (the architecture the served scanner's zoo was calibrated on) and an MLP are trained (DC's
  protocol, `distill.train_on`); CTA on the test split, ASR on the non-target test images with the arm's final
  trigger, and the same trigger on the clean-distilled model of the same seed (the baseline). The ConvNet is
  exported to ONNX and scanned with the served scanner's code (`onnx_guard.check` + `scanner.scan`, 200 Neural
  Cleanse steps, the 100 platform reference images) and the zoo's white-patch sweep, so that the zoo's fused score
  can be computed with its frozen threshold (report/zoo.json). One JSON per (arm, seed) in
  build/backdoor/doorping_protocol/; resumable (a record with the same config is kept).
- report: mean ± std over seeds, bootstrap 95 % interval of the mean (resampling seeds), detection / false-alarm
  rates of NC (served verdict: anomaly index > 2) and of the fused score (threshold frozen in report/zoo.json)
  → report/doorping_protocol.{json,md}.

Neural Cleanse "properly scaled": the served NC searches patterns in [0, 1] (tanh-parametrised) on images in
[0, 1]; with the trigger kept in [0, 1] the real trigger lies inside NC's search space, which it did not when the
DOORPING trigger ended at ±100.
"""
import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .data import Trigger, load
from .distill import Config, cta_asr, distill, train_on

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "backdoor" / "doorping_protocol"
REPORT = Path(__file__).parent / "report"
ZOO_JSON = REPORT / "zoo.json"
CLEAN_REF = Path(__file__).parent / "weights" / "clean_reference.npy"
# DC's ipc-10 loops are 10 / 50; one such iteration costs ~13 s on this box (one thread), i.e. 45 min per 200-iteration
# distillation and 19 h for the 25 here. Outer/inner 2 / 10 (~0.6 s) keeps the 200 fresh networks and DOORPING's trigger
# update after every inner loop (200 updates), at 400 synthetic-image updates per distillation instead of DC's 10,000.
PROTOCOL = replace(Config(), iterations=200, outer_loop=2, inner_loop=10, trigger_clamp=True, trigger_steps=50)
# (arm, attack, poison fraction)
ARMS = (("clean", "none", 0.0), ("naive_1", "naive", 0.01), ("naive_10", "naive", 0.10),
        ("doorping_1", "doorping", 0.01), ("doorping_10", "doorping", 0.10))
NETS = ("convnet", "mlp")
SCANNED = "convnet"
TARGET = Trigger().target
WHITE = Trigger().mask()  # NAIVEATTACK's trigger: pattern 1 on the mask (the white patch)


def _scan(model) -> dict:
    """The served scanner on one model (in-process), plus the zoo's patch sweep: the fields the zoo's scorers read."""
    from .population import to_onnx
    from .zoo import scan_features

    features = scan_features(to_onnx(model), np.load(CLEAN_REF, allow_pickle=False).astype(np.float32))
    keep = ("verdict", "max_anomaly_index", "suspected_target", "mask_l1", "log_anomaly_index", "sweep_changed", "nc_seconds", "sweep_seconds")
    return {k: features[k] for k in keep}


def run_one(arm: str, attack: str, fraction: float, seed: int, cfg: Config, data: dict, clean_images=None,
            scan: bool = True, log=None) -> tuple[dict, np.ndarray]:
    """One distillation of one arm and seed → (record, synthetic images). `clean_images`: the clean-distilled set of
    the same seed, whose models are scored with this arm's trigger (the baseline)."""
    out = distill(attack, seed, replace(cfg, poison_fraction=fraction), data=data, log=log)
    mask = out["mask"]
    # the arm's trigger: NAIVEATTACK's white patch, DOORPING's optimised one; the clean arm is scored with the white patch
    pattern = out["pattern"] if attack == "doorping" else np.ones_like(mask)
    on_patch = pattern[mask > 0]
    rec = {"arm": arm, "attack": attack, "poison_fraction": fraction, "seed": seed, "config": asdict(cfg),
           "distill_seconds": out["seconds"], "trigger_pixels": on_patch.tolist(),
           "trigger_min": float(on_patch.min()), "trigger_max": float(on_patch.max()),
           "synthetic_min": float(out["images"].min()), "synthetic_max": float(out["images"].max()),
           "synthetic_patch_mean_target": float(out["images"][out["labels"] == TARGET][:, 0][:, mask[0] > 0].mean()),
           "synthetic_patch_mean_other": float(out["images"][out["labels"] != TARGET][:, 0][:, mask[0] > 0].mean())}
    for net_name in NETS:
        net = train_on(out["images"], out["labels"], net_name, seed, cfg)
        cta, asr = cta_asr(net, data["test"], mask, pattern, TARGET)
        rec[net_name] = {"cta": cta, "asr": asr}
        if clean_images is not None:
            clean_net = train_on(clean_images, out["labels"], net_name, seed, cfg)
            rec[net_name]["asr_clean_distilled"] = cta_asr(clean_net, data["test"], mask, pattern, TARGET)[1]
        if scan and net_name == SCANNED:
            rec["scan"] = _scan(net)
    return rec, out["images"]


def run(seeds, cfg: Config = PROTOCOL, log=print) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = load()
    for seed in seeds:
        clean_images = None
        for arm, attack, fraction in ARMS:
            path, syn_path = OUT / f"{arm}_s{seed}.json", OUT / f"{arm}_s{seed}.npy"
            if path.exists() and json.loads(path.read_text())["config"] == asdict(cfg) and syn_path.exists():
                if attack == "none":
                    clean_images = np.load(syn_path)
                continue
            started = time.perf_counter()
            rec, images = run_one(arm, attack, fraction, seed, cfg, data, clean_images, log=log)
            rec["seconds"] = time.perf_counter() - started
            np.save(syn_path, images)
            path.write_text(json.dumps(rec, indent=1))
            if attack == "none":
                clean_images = images
            log(json.dumps({"arm": arm, "seed": seed, **{n: rec[n] for n in NETS}, "trigger": [rec["trigger_min"], rec["trigger_max"]],
                            "nc": rec["scan"]["verdict"], "seconds": round(rec["seconds"])}), flush=True)


def mean_ci(values, n: int = 2000, seed: int = 0) -> dict:
    """Mean, std (ddof 1) and the percentile-bootstrap 95 % interval of the mean, resampling seeds."""
    v = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    boots = rng.choice(v, (n, len(v))).mean(1)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))], "n": int(len(v)), "values": v.tolist()}


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def fused_scores(records: list[dict], zoo: dict) -> tuple[np.ndarray, float]:
    """The zoo's fused score of each record's scan, standardised with the calibration zoo's clean models, and the
    threshold frozen in report/zoo.json (nothing here is re-fitted on these models)."""
    from .zoo import scores

    cal = [r for r in zoo["models"] if r["zoo"] == "calibration"]
    return scores(cal, [r["scan"] for r in records])["fused"], float(zoo["scorers"]["fused"]["threshold"])


def summarise(records: list[dict], zoo: dict | None) -> dict:
    """Per arm: CTA / ASR (mean, std, bootstrap CI over seeds) per network, trigger range; per detector: flagged
    counts. 'Backdoored' = an attack arm (trigger planted); also given with the zoo's ground truth (planted and ASR ≥ 0.5)."""
    configs = {json.dumps(r["config"], sort_keys=True) for r in records}
    assert len(configs) == 1, "records from different configs; remove build/backdoor/doorping_protocol/ or pass the same config"
    fused, t_fused = fused_scores(records, zoo) if zoo else (None, None)
    for r, s in zip(records, fused if fused is not None else [None] * len(records)):
        r["flags"] = {"nc_served": r["scan"]["verdict"] == "backdoored"}
        if s is not None:
            r["flags"]["fused"] = bool(s > t_fused)
            r["scan"]["fused"] = float(s)
    out = {"config": records[0]["config"], "arms": {}, "detectors": {}, "fused_threshold": t_fused,
           "seeds": sorted({r["seed"] for r in records})}
    clean_by_seed = {r["seed"]: r for r in records if r["attack"] == "none"}
    for arm, attack, fraction in ARMS:
        rs = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"])
        if not rs:
            continue
        a = {"attack": attack, "poison_fraction": fraction, "seeds": [r["seed"] for r in rs],
             "trigger_range": [min(r["trigger_min"] for r in rs), max(r["trigger_max"] for r in rs)],
             "synthetic_range": [min(r["synthetic_min"] for r in rs), max(r["synthetic_max"] for r in rs)],
             "distill_seconds": mean_ci([r["distill_seconds"] for r in rs])["mean"]}
        for n in NETS:
            a[n] = {"cta": mean_ci([r[n]["cta"] for r in rs]), "asr": mean_ci([r[n]["asr"] for r in rs])}
            if attack != "none" and all(r["seed"] in clean_by_seed for r in rs):
                a[n]["cta_drop_vs_clean"] = mean_ci([clean_by_seed[r["seed"]][n]["cta"] - r[n]["cta"] for r in rs])
            if all("asr_clean_distilled" in r[n] for r in rs):
                a[n]["asr_clean_distilled"] = mean_ci([r[n]["asr_clean_distilled"] for r in rs])
        a["flagged"] = {d: int(sum(r["flags"][d] for r in rs)) for d in rs[0]["flags"]}
        a["scan"] = {"max_anomaly_index": [r["scan"]["max_anomaly_index"] for r in rs],
                     "suspected_target": [r["scan"]["suspected_target"] for r in rs],
                     "target_l1": [r["scan"]["mask_l1"][TARGET] for r in rs], "min_l1": [min(r["scan"]["mask_l1"]) for r in rs],
                     "fused": [r["scan"].get("fused") for r in rs]}
        out["arms"][arm] = a
    for d in records[0]["flags"]:
        for truth_name, truth in (("planted", lambda r: r["attack"] != "none"),
                                  ("planted_and_asr_ge_0.5", lambda r: r["attack"] != "none" and r[SCANNED]["asr"] >= 0.5)):
            pos = [r for r in records if truth(r)]
            neg = [r for r in records if r["attack"] == "none"]
            k, f = sum(r["flags"][d] for r in pos), sum(r["flags"][d] for r in neg)
            out["detectors"].setdefault(d, {})[truth_name] = {
                "detected": int(k), "backdoored": len(pos), "detection": k / len(pos) if pos else None, "detection_ci95": wilson(k, len(pos)),
                "false_alarms": int(f), "clean": len(neg), "false_alarm_rate": f / len(neg) if neg else None, "false_alarm_ci95": wilson(f, len(neg))}
    return out


def _fmt(s: dict) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def report(log=print) -> dict:
    records = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    zoo = json.loads(ZOO_JSON.read_text()) if ZOO_JSON.exists() else None
    s = summarise(records, zoo)
    s["records"] = records
    cfg = s["config"]
    names = {"clean": "clean distillation (baseline)", "naive_1": "NAIVEATTACK 1 %", "naive_10": "NAIVEATTACK 10 %",
             "doorping_1": "DOORPING 1 %", "doorping_10": "DOORPING 10 %"}
    lines = ["# DOORPING / NAIVEATTACK with a valid-range trigger (issue 24, item 3)", "",
             "Generated by `python -m models.backdoor.doorping_protocol` (records: build/backdoor/doorping_protocol/*.json).", "",
             f"DC with gradient matching, {cfg['iterations']} iterations, outer/inner loop {cfg['outer_loop']}/{cfg['inner_loop']}, "
             f"ipc {cfg['ipc']}, real-image init; DOORPING trigger projected onto [0, 1] after every Adam step "
             f"(≤ {cfg['trigger_steps']} steps per update, lr {cfg['trigger_lr']}, top-{cfg['topk']} neurons). Seeds {s['seeds']}. "
             "Mean ± std over seeds [bootstrap 95 % interval of the mean, resampling seeds]. ASR on the non-target test images "
             "with the arm's trigger (the clean row: the white patch); 'ASR, clean-distilled model' = the same trigger on the "
             "model distilled without poison, same seed.", "",
             "| arm | trigger range | ConvNet CTA | ConvNet ASR | ConvNet ASR, clean-distilled model | MLP CTA | MLP ASR | NC flags (index > 2) | fused flags |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, a in s["arms"].items():
        n = len(a["seeds"])
        c = a["convnet"].get("asr_clean_distilled")
        lines.append(f"| {names[arm]} | [{a['trigger_range'][0]:.2f}, {a['trigger_range'][1]:.2f}] | {_fmt(a['convnet']['cta'])} | "
                     f"{_fmt(a['convnet']['asr'])} | {_fmt(c) if c else '–'} | {_fmt(a['mlp']['cta'])} | {_fmt(a['mlp']['asr'])} | "
                     f"{a['flagged']['nc_served']}/{n} | {a['flagged'].get('fused', '–')}/{n} |")
    lines += ["", "Detectors on the scanned ConvNets (served Neural Cleanse: anomaly index > 2; fused score: threshold "
              f"{s['fused_threshold']:.3f} frozen from report/zoo.json). Wilson 95 % intervals.", "",
              "| detector | ground truth | detected / backdoored [95 % CI] | false alarms / clean-distilled [95 % CI] |", "|---|---|---|---|"]
    for d, by in s["detectors"].items():
        for t, v in by.items():
            det = f"{v['detected']}/{v['backdoored']} [{v['detection_ci95'][0]:.2f}, {v['detection_ci95'][1]:.2f}]" if v["backdoored"] else "0/0"
            lines.append(f"| {d} | {t} | {det} | {v['false_alarms']}/{v['clean']} [{v['false_alarm_ci95'][0]:.2f}, {v['false_alarm_ci95'][1]:.2f}] |")
    lines += ["", "Per-model scan (ConvNet): max anomaly index, suspected target, NC mask L1 of the target class (the true trigger's L1 is 4), fused score.", "",
              "| arm | seed | ASR | max anomaly index | suspected target | target-class L1 | min L1 | fused |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: ([a for a, _, _ in ARMS].index(r["arm"]), r["seed"])):
        sc = r["scan"]
        lines.append(f"| {names[r['arm']]} | {r['seed']} | {r['convnet']['asr']:.3f} | {sc['max_anomaly_index']:.2f} | {sc['suspected_target']} | "
                     f"{sc['mask_l1'][TARGET]:.1f} | {min(sc['mask_l1']):.1f} | {sc.get('fused', float('nan')):.2f} |")
    lines += ["", "The paper's numbers: not available here (../shared/seeds holds the abstract only: 'DOORPING reaches higher "
              "ASR scores (close to 1.0) in all cases', 'NAIVEATTACK achieves decent ASR in some cases'; METHODS.md §6: "
              "'CTA barely hurt; both evade common defences'). No per-dataset numbers are quoted so none are invented."]
    REPORT.mkdir(exist_ok=True)
    (REPORT / "doorping_protocol.md").write_text("\n".join(lines) + "\n")
    (REPORT / "doorping_protocol.json").write_text(json.dumps(s, indent=1))
    log("\n".join(lines))
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["run", "report", "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--iterations", type=int, default=PROTOCOL.iterations)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what in ("run", "all"):
        run(args.seeds, replace(PROTOCOL, iterations=args.iterations))
    if args.what in ("report", "all"):
        report()


if __name__ == "__main__":
    main()
