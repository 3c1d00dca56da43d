"""Export the trained DigitsCNN to ONNX (`digits_cnn`) and TorchScript (`digits_cnn_torchscript`).

Versions 1 and 2 of `digits_cnn` are the weights trained with seeds 0 and 1, so a client can address
either and the version policy (latest two) is exercised by a real model.
"""
import json

import numpy as np
import torch
from safetensors.torch import load_file

from models.digits.data import load_splits
from models.digits.model import DigitsCNN
from models.digits.train import train, weights_path

from export.onnx_export import check_parity, export_onnx

SEEDS = {1: 0, 2: 1}  # version -> training seed
INPUTS, OUTPUTS = ["image"], ["probabilities", "label"]


def config(name: str, platform: str, policy: str) -> str:
    return f"""
name: "{name}"
platform: "{platform}"
max_batch_size: 32
input [ {{ name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] }} ]
output [
  {{ name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] }},
  {{ name: "label" data_type: TYPE_INT64 dims: [ 1 ] }}
]
{policy}
dynamic_batching {{ max_queue_delay_microseconds: 5000 }}
instance_group [ {{ count: 2 kind: KIND_CPU }} ]
"""


def load_trained(seed: int) -> tuple[DigitsCNN, dict]:
    path = weights_path(seed)
    if not path.exists():  # the quick profile is the recorded one: 40 epochs, seconds on a CPU
        print(f"no weights at {path}: training (seed {seed}) ...", flush=True)
        train(seed=seed)
    model = DigitsCNN()
    model.load_state_dict(load_file(str(path)))
    return model.eval(), json.loads(path.with_suffix(".json").read_text())


def card(name: str, runtime: str, results: dict[int, dict]) -> str:
    rows = "\n".join(
        f"| {v} | {m['seed']} | {m['epoch']} | {m['val_accuracy']:.4f} | {m['test_accuracy']:.4f} | {m['parity_max_abs_error']:.2e} |"
        for v, m in results.items()
    )
    any_metrics = next(iter(results.values()))
    return f"""# {name}

DigitsCNN (`models/digits/model.py`, {any_metrics['parameters']:,} parameters) served with {runtime}.
Input `image` FP32 [batch, 1, 8, 8] scaled to [0, 1]; outputs `probabilities` [batch, 10] and `label` INT64 [batch, 1].

- Data: scikit-learn's bundled digits (1,797 8×8 images), stratified split 70/15/15 with seed 0:
  {any_metrics['split_sizes']['train']} train / {any_metrics['split_sizes']['val']} validation / {any_metrics['split_sizes']['test']} test.
- Training: `python -m models.digits.train --seed S` (Adam lr {any_metrics['lr']}, batch {any_metrics['batch_size']}, {any_metrics['epochs']} epochs);
  the epoch is picked on validation accuracy, test accuracy is measured once at that epoch.
- Export: `python -m export.build` ({runtime}); parity against PyTorch on the whole test split.

| version | seed | chosen epoch | val accuracy | test accuracy | export max abs error vs PyTorch |
|---|---|---|---|---|---|
{rows}

Not a research model: it proves the serving core with an image classifier. No published anchor applies.
"""


def build(root) -> None:
    from export.repository import write_model

    x_test = load_splits()["test"][0]
    onnx_files, ts_files, onnx_results, ts_results = {}, {}, {}, {}
    for version, seed in SEEDS.items():
        model, metrics = load_trained(seed)
        onnx_bytes = export_onnx(model, (torch.from_numpy(x_test[:2]),), INPUTS, OUTPUTS)
        errors = check_parity(model, onnx_bytes, {"image": x_test})
        onnx_files[version] = ("model.onnx", onnx_bytes)
        onnx_results[version] = metrics | {"parity_max_abs_error": errors["probabilities"]}
        if version == max(SEEDS):
            scripted = torch.jit.trace(model, torch.from_numpy(x_test[:2]))
            with torch.no_grad():
                got = scripted(torch.from_numpy(x_test))[0].numpy()
                want = model(torch.from_numpy(x_test))[0].numpy()
            ts_files[1] = ("model.pt", _torchscript_bytes(scripted))
            ts_results[1] = metrics | {"parity_max_abs_error": float(np.abs(got - want).max())}
    write_model(root, "digits_cnn", config("digits_cnn", "onnxruntime_onnx", "version_policy { latest { num_versions: 2 } }"),
                onnx_files, card("digits_cnn", "ONNX Runtime", onnx_results))
    write_model(root, "digits_cnn_torchscript", config("digits_cnn_torchscript", "pytorch_libtorch", ""),
                ts_files, card("digits_cnn_torchscript", "TorchScript (the weights of digits_cnn version 2)", ts_results))


def _torchscript_bytes(module) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()
