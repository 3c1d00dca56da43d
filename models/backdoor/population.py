"""Models for the scanner: classifiers trained directly on (optionally poisoned) real digits, and ONNX export.

`train_direct(trigger, fraction, seed)` trains the ConvNet on the 16×16 digits training split with
`fraction` of it stamped with `trigger` (white patch) and relabelled to `trigger.target` (BadNets-style; 0 = clean).
Distilled-data models (NAIVEATTACK / DOORPING) come from distill.py; both end up as ONNX bytes via `to_onnx`.
"""
import io

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from .data import Trigger, load, poison_indices, stamp
from .model import make


def train_direct(trigger: Trigger | None, fraction: float, seed: int, steps: int = 300, net: str = "convnet", data=None) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = data or load()
    x = torch.from_numpy(data["train"]["image"]).clone()
    y = torch.from_numpy(data["train"]["label"]).clone()
    if trigger is not None and fraction > 0:
        idx = torch.from_numpy(poison_indices(data["train"]["label"], trigger.target, fraction, rng))
        x[idx] = stamp(x[idx], torch.from_numpy(trigger.mask(x.shape[-1])), 1.0)
        y[idx] = trigger.target
    model = make(net, size=x.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        b = torch.randint(len(x), (64,))
        opt.zero_grad()
        F.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
    return model.eval()


def to_onnx(model: torch.nn.Module, shape=(1, 16, 16)) -> bytes:
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), (torch.zeros(2, *shape),), buf, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    m = onnx.load_from_string(buf.getvalue())
    m.ir_version = min(m.ir_version, 10)
    return m.SerializeToString()
