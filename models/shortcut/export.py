"""Export Chroma-VAE as `shortcut_audit`: one ONNX graph, image in, core / shortcut probabilities and a flag out.

The graph holds the VAE encoder, the z1 head and the stage-two z2 classifier chosen on validation (a kNN
vote over an embedded reference set — MatMul, TopK, Gather — or a linear probe). Exported from the weights
`python -m models.shortcut.evaluate` writes (colour shortcut, seed 0); if they are missing, that one run is
trained here first (about a minute on one CPU core).
"""
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import torch
from safetensors.torch import load_file

from models.shortcut.data import make_benchmark
from models.shortcut.model import ENCODERS, KNNProbe, LinearProbe, ShortcutAudit
from models.shortcut.train import Config, run, weights_path

from export.onnx_export import check_parity, export_onnx
from export.served_model import ServedModel, Tensor

NAME, KIND, SEED = "shortcut_audit", "colour", 0
INPUTS, OUTPUTS = ["image"], ["core_probability", "shortcut_probability", "disagree"]
REPORT = Path(__file__).resolve().parent / "report" / "results.md"

MODEL = ServedModel(
    NAME, max_batch_size=32, queue_delay_us=2000,
    inputs=(
        Tensor("image", "FP32", (3, 8, 8), "RGB in [0, 1]: the digit drawn in the red or the green channel (blue empty), 8×8 "
               "pixels, exactly the format of `models/shortcut/data.py` (`render`, kind \"colour\")"),
        Tensor("label", "INT64", (1,), "the true label (0/1), for `shortcut_only`", optional=True),
    ),
    outputs=(
        Tensor("core_probability", "FP32", (1,), "P(digit < 5) from the z2 classifier (the core side; which one is chosen on validation, below)"),
        Tensor("shortcut_probability", "FP32", (1,), "P(digit < 5) from the z1 head (the shortcut side)"),
        Tensor("disagree", "BOOL", (1,), "the two fall on different sides of 0.5"),
        Tensor("shortcut_only", "BOOL", (1,), "with `label`: the shortcut side is right and the core side wrong (all false without labels)"),
    ),
)
CONFIG = MODEL.config_pbtxt()


def load_trained(kind: str = KIND, seed: int = SEED, path: Path | None = None) -> tuple[ShortcutAudit, dict]:
    path = path or weights_path(kind, seed)
    if not path.exists():
        print(f"no weights at {path}: training Chroma-VAE ({kind}, seed {seed}) ...", flush=True)
        run(kind, seed, Config(), save=True, out=path)
    metrics = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path))
    cfg = metrics["config"]
    vae = ENCODERS[cfg.get("encoder", "mlp")]((3, 8, 8), cfg["latent_dim"], cfg["shortcut_dim"], cfg["hidden"])
    vae.load_state_dict({n[4:]: t for n, t in tensors.items() if n.startswith("vae.")})
    served = metrics["served_core"]
    state = {n[len(served) + 1 :]: t for n, t in tensors.items() if n.startswith(served + ".")}
    if served.startswith("knn"):
        core = KNNProbe(state["reference"].shape[0], state["reference"].shape[1], metrics[f"z2_{served}"]["k"])
    else:
        core = LinearProbe(state["weight"].shape[0])
    core.load_state_dict(state)
    return ShortcutAudit(vae.eval(), core.eval()).eval(), metrics


def export(model: ShortcutAudit, images: np.ndarray) -> tuple[bytes, dict]:
    onnx_bytes = export_onnx(model, (torch.from_numpy(images[:2]),), INPUTS, OUTPUTS)
    errors = check_parity(model, onnx_bytes, {"image": images})
    return with_optional_labels(onnx_bytes), errors


def with_optional_labels(onnx_bytes: bytes) -> bytes:
    """Add the optional `label` input (0/1 per image) and the `shortcut_only` output: the label is known,
    the core (z2) prediction misses it and the shortcut (z1) prediction gets it. The input defaults to
    -1 ("unknown") through an initializer of the same name, ONNX's way to make an input optional, so a
    request without labels gets `shortcut_only` all false."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    graph.input.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["label_rows", 1]))  # 1 row by default
    graph.initializer.extend([
        numpy_helper.from_array(np.full((1, 1), -1, np.int64), "label"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
    ])
    graph.node.extend([
        helper.make_node("Greater", ["core_probability", "half"], ["core_says_1"]),
        helper.make_node("Greater", ["shortcut_probability", "half"], ["shortcut_says_1"]),
        helper.make_node("Equal", ["label", "one"], ["label_is_1"]),
        helper.make_node("GreaterOrEqual", ["label", "zero"], ["label_known"]),
        helper.make_node("Xor", ["core_says_1", "label_is_1"], ["core_wrong"]),
        helper.make_node("Equal", ["shortcut_says_1", "label_is_1"], ["shortcut_right"]),
        helper.make_node("And", ["label_known", "core_wrong"], ["known_core_wrong"]),
        helper.make_node("And", ["known_core_wrong", "shortcut_right"], ["shortcut_only"]),
    ])
    graph.output.append(helper.make_tensor_value_info("shortcut_only", TensorProto.BOOL, ["batch", 1]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def card(metrics: dict, errors: dict, flips: float) -> str:
    served = metrics["served_core"]
    table = REPORT.read_text().split("\n", 3)[-1] if REPORT.exists() else "(run `python -m models.shortcut.evaluate` for the multi-seed table)"
    s = metrics["split_sizes"]
    return f"""# {NAME}

Chroma-VAE (Yang et al., NeurIPS 2022, arXiv:2211.15231) trained on coloured scikit-learn digits, served as one ONNX graph.

{MODEL.signature()}

The core side served: {served}.

- Data (`models/shortcut/data.py`): sklearn digits, label = digit < 5 with exactly 25 % of labels flipped; colour
  agrees with the noisy label in exactly 90 % of train/validation images and 10 % of test images. Stratified split
  {s['train']} / {s['val']} / {s['test']} (train / validation / test), seeded by the run seed. Served: colour shortcut, seed {SEED}.
- Training: `python -m models.shortcut.train --kind colour --seed 0 --save` (Adam lr {metrics['config']['lr']}, batch
  {metrics['config']['batch_size']}, {metrics['config']['vae_epochs']} VAE epochs, latent {metrics['config']['latent_dim']}, z1 of size
  {metrics['config']['shortcut_dim']}, α = {metrics['config']['alpha']}, β = {metrics['config']['beta']}). Selection: k, C, the served
  z2 classifier and the ERM epoch are chosen by worst-group accuracy on the **validation** split, which is drawn like
  train (90 % colour agreement); test is scored once.
- Served model (seed {SEED}): test worst-group accuracy of the served core {metrics[f'z2_{served}']['test']['worst_group']:.3f}
  (average {metrics[f'z2_{served}']['test']['average']:.3f}); z1 head {metrics['z1']['test']['worst_group']:.3f} ({metrics['z1']['test']['average']:.3f});
  ERM {metrics['erm']['test']['worst_group']:.3f} ({metrics['erm']['test']['average']:.3f}). Fraction of test images flagged `disagree`: {flips:.3f}.
- Export: `python -m export.build --only shortcut`; parity against PyTorch on the whole test split, max abs error
  {', '.join(f'{k} {v:.1e}' for k, v in errors.items())}.
- Reproduce every number: `python -m models.shortcut.evaluate` (5 seeds × 2 shortcut kinds, writes models/shortcut/report/).

## Results over seeds (test split; selection on validation)
{table}

## Against the paper
The paper (and third-party re-runs, per the project's METHODS.md §7) reports Chroma-VAE's z2 classifier far above ERM in
worst-group accuracy on coloured MNIST (28×28, 60k images, conv VAE); we could not confirm its exact numbers offline,
so we compare against ERM and against the 0.75 ceiling that 25 % label noise sets. What differs: 8×8 digits, ~900
training images, an MLP VAE, a 1-dimensional z1, α = 20, β = 1 (picked on validation, seed 0: see
models/shortcut/report/selection_sweep.md).

What we see: z1 does capture the shortcut (the z1 head agrees with the colour on most test images, and the
traversal in models/shortcut/report/traversal_colour.png switches red ↔ green as z1 moves — it also changes
the digit's shape, because the z1 head fits the noisy training labels almost perfectly), and on average over seeds
the z2 linear probe (colour) and both z2 classifiers (patch) beat ERM in worst-group accuracy — but z2 is *not* shortcut-free here (a linear read-out recovers the
colour from z2 on almost every test image), so every z2 classifier stays far below the 0.75 ceiling. kNN on z2,
which third-party work found the robust choice, is not better than the linear probe on the colour benchmark;
it is on the patch benchmark. The served core is whichever validation preferred for this seed ({served}).
"""


def build(root: Path) -> None:
    from export.repository import write_model

    torch.set_num_threads(1)
    model, metrics = load_trained()
    images = make_benchmark(KIND, SEED)["test"]["image"]
    onnx_bytes, errors = export(model, images)
    with torch.no_grad():
        flips = float(model(torch.from_numpy(images))[2].float().mean())
    write_model(root, NAME, CONFIG, {1: ("model.onnx", onnx_bytes)}, card(metrics, errors, flips))
