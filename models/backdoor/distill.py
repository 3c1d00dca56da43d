"""Dataset Condensation with gradient matching, clean and under NAIVEATTACK / DOORPING.

DC (Zhao, Mopuri & Bilen, ICLR 2021): synthetic images S (``ipc`` per class, initialised from random real images of
each class of the — possibly poisoned — training set, DC's ``--init real``; ``Config.init="noise"`` for noise) are
learnt so that, for freshly initialised networks θ along their training trajectory on S, the per-class
gradients of the loss on real data and on S agree:
``D(∇θ L_real,c, ∇θ L_S,c) = Σ_layers Σ_out (1 − cos(g_real[out], g_S[out]))`` (biases skipped, as in DC).

Backdoors (Liu et al., NDSS 2023, "Backdoor Attacks Against Dataset Distillation"):
- NAIVEATTACK: a fraction of the real training images (non-target classes) is stamped once with a white
  patch and relabelled to the target class *before* distilling; DC then distils the poisoned real set.
- DOORPING: as NAIVEATTACK, but the trigger (random start) is re-optimised during distillation, as in the authors'
  code after every network update of the inner loop: the top-k penultimate neurons of the current network (by
  summed |incoming weight|) are pushed towards 10× their starting activation (MSE, Adam lr 0.08, ≤ trigger_steps
  steps, early stop at MSE < 0.5, gradient masked to the patch, *no* clamp to the pixel range — the authors' code
  has none, and the trigger's pixels end far above 1), and the poisoned subset is re-stamped with the new trigger.

`python -m models.backdoor.distill --attack doorping --seed 0` distils once and evaluates (prints JSON).
"""
import argparse
import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import NUM_CLASSES, Trigger, load, poison_indices, stamp
from .model import make


@dataclass
class Config:
    ipc: int = 10  # synthetic images per class
    iterations: int = 3  # fresh networks drawn (DC: 1000; 3 is what the loaded 2-core box allowed for 3 seeds × 3 attacks)
    outer_loop: int = 10  # synthetic-image updates per network (DC's get_loops: 10 for ipc 10)
    inner_loop: int = 50  # network updates on S between them (DC: 50 for ipc 10)
    init: str = "real"  # "real": random real images of each class of the (poisoned) training set; "noise"
    lr_img: float = 0.5
    lr_net: float = 0.01
    batch_real: int = 64
    poison_fraction: float = 0.1
    trigger_every: int = 1  # DOORPING: trigger update after every inner loop (as in the authors' code) if 1, else every n-th
    trigger_steps: int = 50  # per update (≤ 1000 in the authors' code); stops early when the MSE < trigger_stop
    trigger_stop: float = 0.5  # the authors' cost threshold
    trigger_clamp: bool = False  # True: keep the trigger in the valid pixel range [0, 1] (the authors' code does not)
    trigger_lr: float = 0.08
    topk: int = 8
    eval_steps: int = 300  # fresh-network training on S
    eval_lr: float = 0.01


QUICK = Config(iterations=1, outer_loop=10, inner_loop=10, trigger_steps=100, eval_steps=150)  # tests / --quick


def match_distance(g_real, g_syn) -> torch.Tensor:
    dist = 0.0
    for a, b in zip(g_real, g_syn):
        if a.dim() == 1:  # biases: skipped, as in DC's "ours" distance
            continue
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        dist = dist + (1 - F.cosine_similarity(a, b, dim=1, eps=1e-6)).sum()
    return dist


def optimise_trigger(net, images: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor, cfg: Config) -> torch.Tensor:
    """DOORPING's trigger step: raise the top-k penultimate neurons (by summed |incoming weight|) to 10× their
    activation at the start of the step, changing only the patch pixels."""
    weight = net.fc1.weight.detach()
    neurons = weight.abs().sum(1).topk(cfg.topk).indices
    pattern = pattern.clone().requires_grad_(True)
    with torch.no_grad():
        start = net.penultimate(stamp(images, mask, pattern))[:, neurons].mean(0)
        goal = 10 * start.clamp_min(0.1)  # a dead neuron (0 after ReLU) still gets a goal above zero
    opt = torch.optim.Adam([pattern], lr=cfg.trigger_lr, betas=(0.9, 0.99))
    for _ in range(cfg.trigger_steps):
        act = net.penultimate(stamp(images, mask, pattern))[:, neurons]
        loss = F.mse_loss(act, goal.expand_as(act))
        if loss.item() < cfg.trigger_stop:  # the authors' early stop
            break
        opt.zero_grad()
        loss.backward()
        pattern.grad *= mask  # only the patch may change
        opt.step()
        if cfg.trigger_clamp:  # not in the authors' code: their trigger is unconstrained outside the mask only
            with torch.no_grad():
                pattern.clamp_(0, 1)
    return pattern.detach()


def distill(attack: str = "none", seed: int = 0, cfg: Config = Config(), trigger: Trigger = Trigger(),
            data=None, log=None) -> dict:
    """Returns {"images": [C·ipc, 1, H, W], "labels", "mask", "pattern", "seconds"} (numpy)."""
    assert attack in ("none", "naive", "doorping")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = data or load()
    x = torch.from_numpy(data["train"]["image"]).clone()
    y = torch.from_numpy(data["train"]["label"]).clone()
    hw = x.shape[-1]
    mask = torch.from_numpy(trigger.mask(hw))
    if attack == "naive":
        pattern = torch.ones(1, hw, hw)
    else:
        pattern = torch.rand(1, hw, hw) * mask  # DOORPING starts from a random patch
    poisoned = torch.from_numpy(poison_indices(data["train"]["label"], trigger.target, cfg.poison_fraction, rng)) if attack != "none" else torch.zeros(0, dtype=torch.long)
    clean_x = x.clone()
    if len(poisoned):
        x[poisoned] = stamp(clean_x[poisoned], mask, pattern)
        y[poisoned] = trigger.target
    by_class = [torch.nonzero(y == c).flatten() for c in range(NUM_CLASSES)]

    syn = torch.randn(NUM_CLASSES * cfg.ipc, 1, hw, hw).mul_(0.2).add_(0.5)  # noise init
    init_idx = torch.cat([by_class[c][torch.randperm(len(by_class[c]))[: cfg.ipc]] for c in range(NUM_CLASSES)])
    if cfg.init == "real":  # DC's --init real: random real images of each class of the (poisoned) training set
        syn = x[init_idx].clone()
    syn.requires_grad_(True)
    syn_y = torch.arange(NUM_CLASSES).repeat_interleave(cfg.ipc)
    opt_img = torch.optim.SGD([syn], lr=cfg.lr_img, momentum=0.5)
    started, updates = time.perf_counter(), 0
    for it in tqdm(range(cfg.iterations), desc="distillation", disable=None):
        net = make("convnet", size=hw)
        params = list(net.parameters())
        opt_net = torch.optim.SGD(params, lr=cfg.lr_net)
        for ol in range(cfg.outer_loop):
            loss = 0.0
            for c in range(NUM_CLASSES):
                idx = by_class[c][torch.randperm(len(by_class[c]))[: cfg.batch_real]]
                g_real = torch.autograd.grad(F.cross_entropy(net(x[idx]), y[idx]), params)
                g_real = [g.detach() for g in g_real]
                s = syn[c * cfg.ipc : (c + 1) * cfg.ipc]
                g_syn = torch.autograd.grad(F.cross_entropy(net(s), syn_y[c * cfg.ipc : (c + 1) * cfg.ipc]), params, create_graph=True)
                loss = loss + match_distance(g_real, g_syn)
            opt_img.zero_grad()
            loss.backward()
            opt_img.step()
            if ol == cfg.outer_loop - 1:
                break
            s_det = syn.detach()
            for _ in range(cfg.inner_loop):
                opt_net.zero_grad()
                F.cross_entropy(net(s_det), syn_y).backward()
                opt_net.step()
            if attack == "doorping" and len(poisoned):
                # DOORPING (authors' code): after the network update, re-optimise the trigger on the current
                # network and re-stamp the poisoned subset of the real data
                if updates % cfg.trigger_every == 0:
                    pattern = optimise_trigger(net, clean_x[poisoned[:16]], mask, pattern, cfg)
                    x[poisoned] = stamp(clean_x[poisoned], mask, pattern)
                updates += 1
        if log and (it % 25 == 0 or it == cfg.iterations - 1):
            log(f"[distill {attack} seed {seed}] iteration {it + 1}/{cfg.iterations} match loss {float(loss.detach()):.2f} ({time.perf_counter() - started:.0f}s)")
    # not clamped: DC keeps the learnt values (only its visualisation clamps)
    return {"images": syn.detach().numpy(), "labels": syn_y.numpy(), "mask": mask.numpy(),
            "pattern": pattern.numpy(), "seconds": time.perf_counter() - started}


def train_on(images: np.ndarray, labels: np.ndarray, net_name: str, seed: int, cfg: Config = Config()) -> torch.nn.Module:
    """A fresh network trained on the synthetic set only (full batch, SGD with momentum)."""
    torch.manual_seed(1000 + seed)
    net = make(net_name, size=images.shape[-1])
    opt = torch.optim.SGD(net.parameters(), lr=cfg.eval_lr, momentum=0.9, weight_decay=5e-4)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    for step in range(cfg.eval_steps):
        if step == cfg.eval_steps // 2:
            for g in opt.param_groups:
                g["lr"] *= 0.1
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def cta_asr(net, split: dict, mask: np.ndarray, pattern: np.ndarray, target: int) -> tuple[float, float]:
    """Clean test accuracy, and attack success rate: non-target test images stamped with the trigger → target."""
    x, y = torch.from_numpy(split["image"]), torch.from_numpy(split["label"])
    cta = float((net(x).argmax(1) == y).float().mean())
    keep = y != target
    triggered = stamp(x[keep], torch.from_numpy(mask), torch.from_numpy(pattern))
    asr = float((net(triggered).argmax(1) == target).float().mean())
    return cta, asr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack", default="doorping", choices=["none", "naive", "doorping"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iterations", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = QUICK if args.quick else Config()
    if args.iterations:
        cfg = replace(cfg, iterations=args.iterations)
    data = load()
    out = distill(args.attack, args.seed, cfg, data=data, log=print)
    result = {"attack": args.attack, "seed": args.seed, "seconds": out["seconds"], "config": asdict(cfg)}
    for net_name in ("convnet", "convnet_wide", "mlp"):
        net = train_on(out["images"], out["labels"], net_name, args.seed, cfg)
        result[net_name] = dict(zip(("cta", "asr"), cta_asr(net, data["test"], out["mask"], out["pattern"], 0)))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
