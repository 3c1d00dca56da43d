"""Export the trained DigitsCNN to ONNX (`digits_cnn`, and `digits_classifier` shaped for Triton's image_client.py)
and TorchScript (`digits_cnn_torchscript`).

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
from export.served_model import ServedModel, Tensor

SEEDS = {1: 0, 2: 1}  # version -> training seed
INPUTS, OUTPUTS = ["image"], ["probabilities", "label"]


def served_model(name: str, platform: str, policy: str = "") -> ServedModel:
    return ServedModel(
        name, platform=platform, max_batch_size=32, queue_delay_us=5000, instances=2, extra=policy,
        inputs=(Tensor("image", "FP32", (1, 8, 8), "an 8×8 grey digit scaled to [0, 1] (scikit-learn's digits / 16)"),),
        outputs=(
            Tensor("probabilities", "FP32", (10,), "softmax over the digits 0-9"),
            Tensor("label", "INT64", (1,), "the most probable digit"),
        ),
    )


LABELS = "digit_labels.txt"


class ProbabilitiesOnly(torch.nn.Module):
    """The classifier as Triton's image_client.py expects one: one image input of 0-255 pixels (what the client sends
    with `-s NONE`), one FP32 vector output."""

    def __init__(self, model: DigitsCNN):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model(image / 255.0)[0]


def classifier_model() -> ServedModel:
    return ServedModel(
        "digits_classifier", max_batch_size=32, queue_delay_us=5000,
        inputs=(Tensor("image", "FP32", (1, 8, 8), "an 8×8 grey digit, pixels 0-255 (white ink on black)",
                       format="FORMAT_NCHW"),),
        outputs=(Tensor("probabilities", "FP32", (10,), "softmax over the digits 0-9; ask for the top k with the "
                        "classification extension (`class_count=k`)", label_filename=LABELS),),
    )


def load_trained(seed: int) -> tuple[DigitsCNN, dict]:
    path = weights_path(seed)
    if not path.exists():  # the quick profile is the recorded one: 40 epochs, seconds on a CPU
        print(f"no weights at {path}: training (seed {seed}) ...", flush=True)
        train(seed=seed)
    model = DigitsCNN()
    model.load_state_dict(load_file(str(path)))
    return model.eval(), json.loads(path.with_suffix(".json").read_text())


def card(model: ServedModel, runtime: str, results: dict[int, dict]) -> str:
    rows = "\n".join(
        f"| {v} | {m['seed']} | {m['epoch']} | {m['val_accuracy']:.4f} | {m['test_accuracy']:.4f} | {m['parity_max_abs_error']:.2e} |"
        for v, m in results.items()
    )
    any_metrics = next(iter(results.values()))
    return f"""# {model.name}

DigitsCNN (`models/digits/model.py`, {any_metrics['parameters']:,} parameters) served with {runtime}.

{model.signature()}

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
    onnx_model = served_model("digits_cnn", "onnxruntime_onnx", "version_policy { latest { num_versions: 2 } }")
    write_model(root, onnx_model.name, onnx_model.config_pbtxt(), onnx_files, card(onnx_model, "ONNX Runtime", onnx_results))
    classifier = classifier_model()
    newest, _ = load_trained(SEEDS[max(SEEDS)])
    wrapped = ProbabilitiesOnly(newest).eval()
    classifier_bytes = export_onnx(wrapped, (torch.from_numpy(x_test[:2]),), INPUTS, OUTPUTS[:1])
    errors = check_parity(wrapped, classifier_bytes, {"image": x_test * 255})
    write_model(root, classifier.name, classifier.config_pbtxt(), {1: ("model.onnx", classifier_bytes)},
                card(classifier, "ONNX Runtime (the weights of digits_cnn version 2, its probabilities output only)",
                     {1: onnx_results[max(SEEDS)] | {"parity_max_abs_error": errors["probabilities"]}}),
                model_files={LABELS: "".join(f"digit {d}\n" for d in range(10)).encode()})
    ts_model = served_model("digits_cnn_torchscript", "pytorch_libtorch")
    write_model(root, ts_model.name, ts_model.config_pbtxt(), ts_files,
                card(ts_model, "TorchScript (the weights of digits_cnn version 2)", ts_results))


def _torchscript_bytes(module) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()
