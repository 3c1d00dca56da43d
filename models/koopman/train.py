"""Train a rollout model on the cached solver data.

    python -m models.koopman.train --problem ns --model kno --seed 0
    python -m models.koopman.train --problem ns --model fno --seed 0
    python -m models.koopman.train --problem ns --model kno-cnn --seed 0
    python -m models.koopman.train --problem burgers --model kno --seed 0 [--nu 0.1]
    python -m models.koopman.train --problem ns --nu 1e-4 --model fno --seed 0 --unroll 4   # the harder flow, 10 -> 20

Each iteration draws ``batch`` random windows (trajectory, start time) from the train split and
unrolls the model ``unroll`` steps from the true window (gradients flow through the slid window).
KNO models use the KoopmanLab loss (5·MSE prediction + 0.5·MSE reconstruction, summed over the
unrolled steps); the FNO baseline uses the FNO paper's relative L2 loss. Adam with a cosine learning
rate. Every ``eval_every`` iterations the full T_out-step rollout is scored on the validation split
(relative L2, mean over steps and trajectories); the best checkpoint by that number is kept. The
test split is never read here (``evaluate.py`` scores it once).

Writes ``weights/<name>_seed<seed>.safetensors`` and a JSON of the settings, the validation curve
and timings next to it.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm
from safetensors.torch import save_file

from . import data
from .fno import FNO
from .kno import KNO, kno_loss, rollout

WEIGHTS_DIR = Path(__file__).parent / "weights"

# Defaults per problem: sizes (similar parameter counts for KNO and FNO) and the CPU training budget.
PROFILES = {
    "ns": {"dims": 2, "resolution": 64, "t_in": 10, "t_out": 40, "iters": 400, "batch": 8, "unroll": 1, "lr": 3e-3,
           "eval_every": 100, "val_count": 10,
           "kno": {"width": 32, "modes": 16, "depth": 8}, "fno": {"width": 20, "modes": 9, "layers": 4}},
    "burgers": {"dims": 1, "resolution": 256, "t_in": 10, "t_out": 40, "iters": 200, "batch": 32, "unroll": 2, "lr": 3e-3,
                "eval_every": 100, "val_count": 50,
                "kno": {"width": 32, "modes": 16, "depth": 8}, "fno": {"width": 16, "modes": 16, "layers": 4}},
}


# Named variants of a profile's architecture: (base kind, overrides). The FNO paper's 2-D model keeps 12 modes; the
# profile's 9 were sized for ν=1e-3, and at ν=1e-5 the 9-mode FNO underfits (its train and validation rollout
# errors are equal), so the paper's setting is the one to try there.
# "kno-long" is the paper's KNO unchanged, under its own weight name: trained with the 12-mode FNO's budget (--iters
# 2400) so that the 700-iteration KNO's weights, which earlier tables score, stay as they are.
# "kno-cnn-long" is the CNN-encoder variant at that budget too, so that all three architectures have had it.
# "fno-m12-1k" is the 12-mode FNO trained on the train1k split (TRAINED_ON): the FNO paper trains on 1,000 trajectories.
VARIANTS = {"fno-m12": ("fno", {"modes": 12}), "kno-long": ("kno", {}), "kno-cnn-long": ("kno-cnn", {}),
            "fno-m12-1k": ("fno", {"modes": 12})}
TRAINED_ON = {"fno-m12-1k": "train1k"}  # the training split of a kind, where it is not "train"
KINDS = ["kno", "kno-cnn", "fno", *VARIANTS]


def resolve_kind(kind: str) -> tuple[str, dict]:
    """(base kind, the variant's overrides); a plain kind has none."""
    return VARIANTS.get(kind, (kind, {}))


def build_model(problem: str, kind: str, t_in: int | None = None, **overrides) -> torch.nn.Module:
    p = PROFILES[problem]
    t_in = t_in or p["t_in"]
    kind, variant = resolve_kind(kind)
    overrides = variant | overrides
    if kind in ("kno", "kno-cnn"):
        return KNO(t_in=t_in, dims=p["dims"], encoder="cnn" if kind == "kno-cnn" else "linear", **(p["kno"] | overrides))
    if kind == "fno":
        return FNO(t_in=t_in, dims=p["dims"], **(p["fno"] | overrides))
    raise ValueError(f"unknown model {kind!r}: use one of {', '.join(KINDS)}")


def model_name(problem: str, kind: str, nu: float | None = None) -> str:
    if problem == "burgers":
        suffix = f"_nu{nu:g}"
    else:  # the ν=1e-3 names predate the other flows
        suffix = "" if nu in (None, 1e-3) else "_" + data.ns_flow(nu)["tag"]
    return f"{problem}{suffix}_{kind.replace('-', '_')}"


def weights_path(problem: str, kind: str, seed: int, nu: float | None = None) -> Path:
    return WEIGHTS_DIR / f"{model_name(problem, kind, nu)}_seed{seed}.safetensors"


def relative_l2(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per sample and per frame: ``[B, T, ...] -> [B, T]``."""
    dims = tuple(range(2, pred.dim()))
    return (pred - true).pow(2).sum(dims).sqrt() / true.pow(2).sum(dims).sqrt()


@torch.no_grad()
def rollout_error(model, trajectories: torch.Tensor, t_in: int, t_out: int, batch: int = 10) -> torch.Tensor:
    """Relative L2 per trajectory and step, ``[N, t_out]``, of a t_out-step rollout from the first t_in frames."""
    model.eval()
    errors = []
    for i in range(0, len(trajectories), batch):
        u = trajectories[i : i + batch]
        errors.append(relative_l2(rollout(model, u[:, :t_in], t_out), u[:, t_in : t_in + t_out]))
    return torch.cat(errors)


def step_loss(model, window: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one call and the predicted frames."""
    if isinstance(model, KNO):
        outputs = model(window)
        return kno_loss(model, window, target, outputs=outputs), outputs[0][:, : target.shape[1]]
    pred = model(window)
    return relative_l2(pred, target).mean(), pred


def train(problem: str = "ns", kind: str = "kno", seed: int = 0, nu: float | None = None, iters: int | None = None,
          batch: int | None = None, unroll: int | None = None, lr: float | None = None, resolution: int | None = None,
          eval_every: int | None = None, val_count: int | None = None, out: Path | None = None,
          model_overrides: dict | None = None, train_data: torch.Tensor | None = None, val_data: torch.Tensor | None = None,
          device: str = "cpu", deadline: float | None = None) -> dict:
    """``deadline``: seconds after which training stops early (scored at that iteration, the best checkpoint kept and
    the stop recorded as ``stopped_at``), so that a run on a lent machine ends inside its time limit with weights."""
    p = PROFILES[problem]
    iters, batch, unroll, lr = iters or p["iters"], batch or p["batch"], unroll or p["unroll"], lr or p["lr"]
    resolution, eval_every, val_count = resolution or p["resolution"], eval_every or p["eval_every"], val_count or p["val_count"]
    t_in, t_out = p["t_in"], p["t_out"]
    if problem == "ns":  # predict what the flow's data holds after the window: 40 frames at ν=1e-3, 20 at ν=1e-4, 10 at ν=1e-5
        t_out = data.ns_flow(nu)["frames"] - t_in
    torch.manual_seed(seed)
    train_split = TRAINED_ON.get(kind, "train")
    u_train = (train_data if train_data is not None else data.load(problem, train_split, resolution, nu)).to(device)
    u_val = (val_data if val_data is not None else data.load(problem, "val", resolution, nu))[:val_count].to(device)
    model = build_model(problem, kind, t_in, **(model_overrides or {})).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, iters) / iters)))
    n, frames = u_train.shape[0], u_train.shape[1]
    last_start = frames - t_in - unroll
    history, best, stopped_at = [], {"val_rel_l2": float("inf")}, None
    started = time.perf_counter()
    for it in tqdm(range(1, iters + 1), desc="iterations", disable=None):
        if deadline is not None and time.perf_counter() - started > deadline and history:  # never without a checkpoint
            stopped_at = it - 1
            break
        model.train()
        idx = torch.randint(0, n, (batch,)).to(device)
        t0 = torch.randint(0, last_start + 1, (batch,)).to(device)  # drawn on the CPU: same draws on any device
        offsets = t0[:, None] + torch.arange(t_in + unroll, device=device)[None]
        clip = u_train[idx[:, None], offsets]               # [batch, t_in + unroll, ...]
        window, loss = clip[:, :t_in], 0.0
        for s in range(unroll):
            l, pred = step_loss(model, window, clip[:, t_in + s : t_in + s + 1])
            loss = loss + l
            window = torch.cat([window[:, 1:], pred], dim=1)
        optimizer.zero_grad()
        (loss / unroll).backward()
        optimizer.step()
        schedule.step()
        if it % max(1, eval_every // 5) == 0:
            print(f"iter {it:5d}/{iters}  loss {loss.item() / unroll:.5f}  {time.perf_counter() - started:.0f}s", flush=True)
        if it % eval_every == 0 or it == iters or (deadline is not None and time.perf_counter() - started > deadline):
            val = rollout_error(model, u_val, t_in, t_out).mean().item()
            history.append({"iter": it, "val_rel_l2": val, "seconds": round(time.perf_counter() - started, 1)})
            print(f"iter {it:5d}  val rel L2 (mean over {t_out} steps) {val:.4f}", flush=True)
            if val < best["val_rel_l2"]:
                best = {"iter": it, "val_rel_l2": val, "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    model = model.cpu()
    model.load_state_dict(best.pop("state"))
    base, variant = resolve_kind(kind)
    config = {"t_in": t_in} | p["fno" if base == "fno" else "kno"] | variant | (model_overrides or {})
    metrics = {
        "problem": problem, "model": kind, "nu": nu if problem == "burgers" else data.ns_flow(nu)["nu"], "seed": seed,
        "config": config, "parameters": sum(q.numel() for q in model.parameters()), "repr": repr(model),
        "train_resolution": resolution, "iters": iters, "batch": batch, "unroll": unroll, "lr": lr,
        "train_split": train_split, "train_trajectories": n, "val_trajectories": len(u_val), "t_out": t_out, "device": str(device),
        "selected": best, "val_history": history, "stopped_at": stopped_at, "train_seconds": round(time.perf_counter() - started, 1),
        "command": "python -m models.koopman.train " + " ".join(sys.argv[1:]) if out is None else None,
    }
    if out is not False:
        out = out or weights_path(problem, kind, seed, nu)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), str(out))
        out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    metrics["module"] = model
    return metrics


def load_trained(problem: str, kind: str, seed: int = 0, nu: float | None = None) -> tuple[torch.nn.Module, dict]:
    from safetensors.torch import load_file

    path = weights_path(problem, kind, seed, nu)
    metrics = json.loads(path.with_suffix(".json").read_text())
    model = build_model(problem, kind, **{k: v for k, v in metrics["config"].items() if k != "t_in"})
    model.load_state_dict(load_file(str(path)))
    return model.eval(), metrics


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", choices=sorted(PROFILES), default="ns")
    parser.add_argument("--model", choices=KINDS, default="kno")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nu", type=float, default=None, help="viscosity: Burgers 0.1 (default) or 0.01; NS 1e-3 (default), 1e-4 or 1e-5")
    for name in ("iters", "batch", "unroll", "resolution", "eval_every", "val_count"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--device", default="cpu", help="cuda on the GPU machine (the committed NS weights came from there)")
    parser.add_argument("--deadline", type=float, default=None, help="stop after this many seconds, keeping the best checkpoint so far")
    args = parser.parse_args()
    nu = (args.nu or 0.1) if args.problem == "burgers" else args.nu
    metrics = train(args.problem, args.model, args.seed, nu, args.iters, args.batch, args.unroll, args.lr, args.resolution,
                    args.eval_every, args.val_count, device=args.device, deadline=args.deadline)
    metrics.pop("module")
    print(json.dumps({k: v for k, v in metrics.items() if k != "val_history"}, indent=2))


if __name__ == "__main__":
    main()
