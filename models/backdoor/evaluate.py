"""Every number in models/backdoor/report: `python -m models.backdoor.evaluate [attacks|population|report|all]`.

- attacks: DC distillation clean / NAIVEATTACK / DOORPING (target 0, 2×2 patch one pixel in from the
  bottom-right, 10 % poisoned) for `--seeds`, each distilled set evaluated by training convnet,
  convnet_wide and mlp from scratch on it → CTA and ASR on the test split. Writes build/backdoor/attacks.json
  (keeping other seeds already there with the same configuration, so `attacks --seeds 3 4` adds two) and the
  synthetic sets / triggers (report/triggers.png).
- population: the scanner (jobs.run_scan, separate limited process, platform clean set = validation split)
  on clean models and backdoored models trained on poisoned real data with several targets, trigger sizes
  and corners, plus the convnet models trained on the distilled sets. Writes build/backdoor/population.json.
- report: results.json, results.md, attacks.png, roc.png, triggers.png from the two JSON files.
"""
import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .data import Trigger, load
from .distill import Config, cta_asr, distill, train_on
from .population import to_onnx, train_direct

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "backdoor"
REPORT = Path(__file__).parent / "report"
NETS = ("convnet", "convnet_wide", "mlp")
ATTACKS = ("none", "naive", "doorping")
VARIANTS = [Trigger(2, 1, "br", 0), Trigger(3, 1, "br", 7), Trigger(4, 2, "tl", 3), Trigger(2, 1, "tr", 5),
            Trigger(3, 2, "bl", 9), Trigger(4, 1, "br", 1)]


def attacks(seeds, iterations) -> None:
    BUILD.mkdir(parents=True, exist_ok=True)
    data, cfg = load(), (Config() if iterations is None else replace(Config(), iterations=iterations))
    # Seeds already in attacks.json with the same configuration are kept, so seeds can be added run by run.
    path = BUILD / "attacks.json"
    rows = [r for r in (json.loads(path.read_text()) if path.exists() else []) if r["seed"] not in seeds and r["config"] == asdict(cfg)]
    for seed in seeds:
        clean_models = {}
        for attack in ATTACKS:
            out = distill(attack, seed, cfg, data=data, log=print)
            row = {"attack": attack, "seed": seed, "seconds": out["seconds"], "config": asdict(cfg)}
            for net in NETS:
                model = train_on(out["images"], out["labels"], net, seed, cfg)
                row[net] = dict(zip(("cta", "asr"), cta_asr(model, data["test"], out["mask"], out["pattern"], 0)))
                if attack == "none":
                    clean_models[net] = model
                elif clean_models:  # control: the clean distilled model's "ASR" under this attack's final trigger
                    row[net]["asr_clean_model"] = cta_asr(clean_models[net], data["test"], out["mask"], out["pattern"], 0)[1]
                if net == "convnet":
                    (BUILD / f"distilled_{attack}_seed{seed}.onnx").write_bytes(to_onnx(model))
            np.savez(BUILD / f"distilled_{attack}_seed{seed}.npz", **{k: out[k] for k in ("images", "labels", "mask", "pattern")})
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("attack", "seed", *NETS)}), flush=True)
            path.write_text(json.dumps(sorted(rows, key=lambda r: (r["seed"], ATTACKS.index(r["attack"]))), indent=1))


def population(seeds, steps) -> None:
    from .jobs import Limits, scan_once

    data = load()
    clean_ref = np.load(Path(__file__).parent / "weights" / "clean_reference.npy", allow_pickle=False)
    cases = [("clean", None, s) for s in seeds] + [("direct", v, s) for s in seeds[:2] for v in VARIANTS]
    rows = []
    for kind, trig, seed in cases:
        model = train_direct(trig, 0.1 if trig else 0.0, seed, data=data)
        t = trig or Trigger()
        cta, asr = cta_asr(model, data["test"], t.mask(), np.ones((1, 16, 16), np.float32), t.target)
        rows.append(_scan_row(scan_once(to_onnx(model), clean_ref, Limits(steps=steps)), kind, seed, trig, cta, asr))
        (BUILD / "population.json").write_text(json.dumps(rows, indent=1))
    for f in sorted(BUILD.glob("distilled_*_seed*.onnx")):  # models trained on the distilled sets, if attacks ran
        attack, seed = f.stem.split("_")[1], int(f.stem.split("seed")[1])
        z = np.load(f.with_suffix(".npz"))
        import onnx
        from .graph_torch import OnnxGraph
        net = OnnxGraph(onnx.load_from_string(f.read_bytes()))
        cta, asr = cta_asr(net, data["test"], z["mask"], z["pattern"], 0)
        rows.append(_scan_row(scan_once(f.read_bytes(), clean_ref, Limits(steps=steps)), f"distilled_{attack}", seed, Trigger() if attack != "none" else None, cta, asr))
        (BUILD / "population.json").write_text(json.dumps(rows, indent=1))


def _scan_row(event, kind, seed, trig, cta, asr) -> dict:
    row = {"kind": kind, "seed": seed, "trigger": asdict(trig) if trig else None, "cta": cta, "asr": asr, "event": event.get("event")}
    if event.get("event") == "result":
        row.update({k: event[k] for k in ("verdict", "anomaly_index", "suspected_target", "max_anomaly_index", "seconds", "strip", "spectral")})
    else:
        row["message"] = event.get("message")
    print(json.dumps({k: row.get(k) for k in ("kind", "seed", "cta", "asr", "verdict", "suspected_target", "max_anomaly_index", "seconds")}), flush=True)
    return row


def report() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    REPORT.mkdir(exist_ok=True)
    lines = ["# Backdoors in dataset distillation: reproduction and scanner evaluation", "",
             "Generated by `python -m models.backdoor.evaluate` (numbers below are read from build/backdoor/*.json).", ""]
    results = {}
    att_path, pop_path = BUILD / "attacks.json", BUILD / "population.json"
    if att_path.exists():
        rows = json.loads(att_path.read_text())
        results["attacks"] = rows
        seeds = sorted({r["seed"] for r in rows})
        c = rows[0]["config"]
        lines += [f"## Attacks (DC, ipc {c['ipc']}, {c['iterations']} iterations, outer/inner loop {c['outer_loop']}/{c['inner_loop']}, "
                  f"init {c.get('init', 'noise')}, poison {c['poison_fraction']:.0%}; seeds {seeds}; test split)", "",
                  f"DOORPING trigger: updated after every inner loop, ≤ {c['trigger_steps']} Adam steps (stop at MSE < {c.get('trigger_stop', 0)}), "
                  "top-8 fc neurons. CTA on the clean test split; ASR on the non-target test images stamped with the final trigger. "
                  "Mean ± std over seeds.", "",
                  "| distillation | net | CTA | ASR | ASR of the clean distilled model with the same trigger |", "|---|---|---|---|---|"]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        for a_i, attack in enumerate(ATTACKS):
            for n_i, net in enumerate(NETS):
                cta = np.array([r[net]["cta"] for r in rows if r["attack"] == attack])
                asr = np.array([r[net]["asr"] for r in rows if r["attack"] == attack])
                ctl = np.array([r[net]["asr_clean_model"] for r in rows if r["attack"] == attack and "asr_clean_model" in r[net]])
                if len(cta):
                    lines.append(f"| {attack} | {net} | {cta.mean():.3f} ± {cta.std():.3f} | {asr.mean():.3f} ± {asr.std():.3f} | "
                                 + (f"{ctl.mean():.3f} ± {ctl.std():.3f} |" if len(ctl) else "– |"))
                    ax[0].bar(a_i * 4 + n_i, cta.mean(), yerr=cta.std(), color=f"C{n_i}", label=net if a_i == 0 else None)
                    ax[1].bar(a_i * 4 + n_i, asr.mean(), yerr=asr.std(), color=f"C{n_i}")
        for a, title in zip(ax, ("CTA", "ASR")):
            a.set_xticks([1, 5, 9], ["clean", "NAIVEATTACK", "DOORPING"])
            a.set_title(title)
            a.set_ylim(0, 1)
        ax[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(REPORT / "attacks.png", dpi=110)
        plt.close(fig)
        fig, axes = plt.subplots(3, 11, figsize=(11, 3.3))
        for r_i, attack in enumerate(ATTACKS):
            z = np.load(BUILD / f"distilled_{attack}_seed{seeds[0]}.npz")
            axes[r_i, 0].imshow((z["mask"] * z["pattern"])[0] if attack != "none" else np.zeros((16, 16)), cmap="gray", vmin=0, vmax=1)
            axes[r_i, 0].set_title("trigger" if attack != "none" else "(none)", fontsize=7)
            axes[r_i, 0].set_ylabel(attack, fontsize=7)
            for c in range(10):
                axes[r_i, c + 1].imshow(z["images"][c * 10, 0], cmap="gray", vmin=0, vmax=1)
        for a in axes.ravel():
            a.set_xticks([])
            a.set_yticks([])
        fig.suptitle(f"triggers and one synthetic image per class (seed {seeds[0]})", fontsize=9)
        fig.tight_layout()
        fig.savefig(REPORT / "triggers.png", dpi=110)
        plt.close(fig)
    if pop_path.exists():
        rows = [r for r in json.loads(pop_path.read_text()) if r["event"] == "result"]
        results["population"] = rows
        # ground truth: the model carries a working backdoor (ASR ≥ 0.5 on the test split)
        truth = np.array([r["trigger"] is not None and r["asr"] >= 0.5 for r in rows])
        score = np.array([r["max_anomaly_index"] for r in rows])
        flagged = np.array([r["verdict"] == "backdoored" for r in rows])
        hit_target = [r["suspected_target"] == r["trigger"]["target"] for r, t, f in zip(rows, truth, flagged) if t and f]
        secs = np.array([r["seconds"] for r in rows])
        lines += ["", f"## Scanner (Neural Cleanse, anomaly index > 2) on {len(rows)} models", "",
                  "Ground truth 'backdoored' = a trigger was planted and its ASR on the test split is ≥ 0.5.", "",
                  "| group | models | flagged | mean max anomaly index | mean ASR |", "|---|---|---|---|---|"]
        for kind in dict.fromkeys(r["kind"] for r in rows):
            sel = [r for r in rows if r["kind"] == kind]
            lines.append(f"| {kind} | {len(sel)} | {sum(r['verdict'] == 'backdoored' for r in sel)} | "
                         f"{np.mean([r['max_anomaly_index'] for r in sel]):.2f} | {np.mean([r['asr'] for r in sel]):.3f} |")
        det = flagged[truth].mean() if truth.any() else float("nan")
        fpr = flagged[~truth].mean() if (~truth).any() else float("nan")
        auc = roc_auc_score(truth, score) if 0 < truth.sum() < len(truth) else float("nan")
        lines += ["", f"- detection rate {det:.3f} ({flagged[truth].sum()}/{truth.sum()}), false-positive rate {fpr:.3f} "
                  f"({flagged[~truth].sum()}/{(~truth).sum()}), ROC AUC of the max anomaly index {auc:.3f}",
                  f"- target class right on {np.mean(hit_target) if hit_target else float('nan'):.3f} of detected backdoors",
                  f"- seconds per scan (inside the worker, this loaded 2-core box): mean {secs.mean():.1f}, max {secs.max():.1f}",
                  f"- STRIP with the recovered trigger: fraction of triggered inputs under the 1 % FRR threshold, backdoored "
                  f"{np.mean([r['strip']['triggered_flagged'] for r, t in zip(rows, truth) if t]):.3f} vs clean "
                  f"{np.mean([r['strip']['triggered_flagged'] for r, t in zip(rows, truth) if not t]):.3f}"]
        results["scanner"] = {"detection_rate": det, "false_positive_rate": fpr, "auc": auc, "seconds_mean": float(secs.mean())}
        if 0 < truth.sum() < len(truth):
            fp, tp, _ = roc_curve(truth, score)
            fig, ax = plt.subplots(figsize=(4, 4))
            ax.plot(fp, tp, marker="o")
            ax.plot([0, 1], [0, 1], "k:")
            ax.set_xlabel("false-positive rate")
            ax.set_ylabel("detection rate")
            ax.set_title(f"Neural Cleanse max anomaly index, AUC {auc:.2f}", fontsize=9)
            fig.tight_layout()
            fig.savefig(REPORT / "roc.png", dpi=110)
            plt.close(fig)
    (REPORT / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (REPORT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["attacks", "population", "report", "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--iterations", type=int, default=None, help="DC iterations (default: Config().iterations)")
    parser.add_argument("--scan-steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what in ("attacks", "all"):
        attacks(args.seeds, args.iterations)
    if args.what in ("population", "all"):
        population(args.seeds, args.scan_steps)
    if args.what in ("report", "all"):
        report()


if __name__ == "__main__":
    main()
