"""Export `backdoor_scan`: a Python-backend (decoupled) model whose version folder holds only data.

Version 1 holds `clean_reference.npy` (the platform-held clean set: the first 100 images of the digits
validation split, [100, 1, 16, 16] float32, written by this builder from scikit-learn's bundled digits) and
`scanner.json` (the scanner settings). The scan itself is models.backdoor.serving:BackdoorScanHandler.
"""
import io
import json
from pathlib import Path

import numpy as np

from models.backdoor.data import load
from models.backdoor.onnx_guard import ALLOWED_OPS, MAX_BYTES
from models.backdoor.serving import ScanParams

NAME = "backdoor_scan"
REPORT = Path(__file__).resolve().parent / "report" / "results.md"

CONFIG = f"""
name: "{NAME}"
backend: "python"
max_batch_size: 0
input [
  {{ name: "MODEL" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "CLEAN_IMAGES" data_type: TYPE_FP32 dims: [ -1, -1, -1, -1 ] optional: true }}
]
output [
  {{ name: "STAGE" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "PROGRESS" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "VERDICT" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "ANOMALY_INDEX" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "SUSPECTED_TARGET" data_type: TYPE_INT64 dims: [ 1 ] }},
  {{ name: "TRIGGER_MASK_PNG" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "TRIGGER_PATTERN_PNG" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "STRIP" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "REPORT" data_type: TYPE_STRING dims: [ 1 ] }}
]
model_transaction_policy {{ decoupled: true }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "handler" value {{ string_value: "models.backdoor.serving:BackdoorScanHandler" }} }}
{ScanParams().pbtxt()}
"""


def clean_reference() -> np.ndarray:
    return load()["val"]["image"][:100].astype(np.float32)


def card() -> str:
    table = REPORT.read_text() if REPORT.exists() else "(run `python -m models.backdoor.evaluate` for the tables)"
    return f"""# {NAME}

Backdoor scanner for uploaded ONNX image classifiers (Neural Cleanse + STRIP + spectral signatures), run as a
job in a separate resource-limited process. See models/backdoor/README.md.

- Input `MODEL` BYTES [1]: a self-contained ONNX file ≤ {MAX_BYTES:,} bytes, one FP32 input [N, C, H, W]
  (C ∈ 1/3, 8 ≤ H, W ≤ 256), one FP32 output [N, K]; ops from {sorted(ALLOWED_OPS)}.
- Input `CLEAN_IMAGES` FP32 [N, C, H, W] in [0, 1], 8 ≤ N ≤ 512 (optional; default: 100 held-out 16×16 digits).
- Streamed outputs: `STAGE`/`PROGRESS`, then `VERDICT` ("clean"/"backdoored"), `ANOMALY_INDEX` [K],
  `SUSPECTED_TARGET` [1], `TRIGGER_MASK_PNG`, `TRIGGER_PATTERN_PNG`, `STRIP` (JSON), `REPORT` (JSON).

{table}
"""


def build(root: Path) -> None:
    from export.repository import write_model

    buf = io.BytesIO()
    np.save(buf, clean_reference(), allow_pickle=False)
    files = {1: {"clean_reference.npy": buf.getvalue(), "scanner.json": json.dumps({"threshold": 2.0, "steps": 200}).encode()}}
    write_model(root, NAME, CONFIG, files, card())
