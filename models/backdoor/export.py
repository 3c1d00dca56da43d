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

from export.served_model import ServedModel, Tensor

NAME = "backdoor_scan"
REPORT = Path(__file__).resolve().parent / "report" / "results.md"
CALIBRATION = Path(__file__).resolve().parent / "weights" / "fused_calibration.json"
ZOO_REPORT = REPORT.with_name("zoo.md")  # the calibration / held-out zoo: ROC and the operating point

MODEL = ServedModel(
    NAME, platform="python", handler="models.backdoor.serving:BackdoorScanHandler", params=ScanParams(), decoupled=True,
    inputs=(
        Tensor("MODEL", "BYTES", (1,), f"a self-contained ONNX file ≤ {MAX_BYTES:,} bytes, one FP32 input [N, C, H, W] (C ∈ 1/3, "
               f"8 ≤ H, W ≤ 256), one FP32 output [N, K]; ops from {sorted(ALLOWED_OPS)}"),
        Tensor("CLEAN_IMAGES", "FP32", (-1, -1, -1, -1), "[N, C, H, W] in [0, 1], 8 ≤ N ≤ 512 (default: 100 held-out 16×16 digits)", optional=True),
    ),
    outputs=(
        Tensor("STAGE", "BYTES", (1,), "the scan's stage, in every streamed response"),
        Tensor("PROGRESS", "FP32", (1,), "0..1, in every streamed response"),
        Tensor("VERDICT", "BYTES", (1,), "\"clean\" or \"backdoored\" (the last response)"),
        Tensor("ANOMALY_INDEX", "FP32", (-1,), "Neural Cleanse's anomaly index per class [K]"),
        Tensor("SUSPECTED_TARGET", "INT64", (1,), "the class with the highest anomaly index (the backdoor target when the verdict is \"backdoored\")"),
        Tensor("TRIGGER_MASK_PNG", "BYTES", (1,), "the reverse-engineered trigger mask, PNG"),
        Tensor("TRIGGER_PATTERN_PNG", "BYTES", (1,), "the reverse-engineered trigger pattern, PNG"),
        Tensor("STRIP", "BYTES", (1,), "STRIP's entropy statistics, JSON"),
        Tensor("REPORT", "BYTES", (1,), "the whole verdict with every detector's numbers, JSON"),
    ),
)
CONFIG = MODEL.config_pbtxt()


def clean_reference() -> np.ndarray:
    return load()["val"]["image"][:100].astype(np.float32)


def card() -> str:
    table = REPORT.read_text() if REPORT.exists() else "(run `python -m models.backdoor.evaluate` for the tables)"
    if ZOO_REPORT.exists():  # demoted one level: a section of the card, its ROC image beside the report
        table += "\n" + ZOO_REPORT.read_text().replace("# ", "## ", 1).replace("](zoo_roc.png)", "](models/backdoor/report/zoo_roc.png)")
    return f"""# {NAME}

Backdoor scanner for uploaded ONNX image classifiers (Neural Cleanse + STRIP + spectral signatures), run as a
job in a separate resource-limited process. See models/backdoor/README.md.

{MODEL.signature()}

{table}
"""


def scanner_settings() -> dict:
    """scanner.json: NC's settings, and the fused verdict's calibration (`python -m models.backdoor.zoo report`), used
    when a scan runs on the platform-held reference images it was measured with."""
    return {"threshold": 2.0, "steps": 200, "fused": json.loads(CALIBRATION.read_text())}


def build(root: Path) -> None:
    from export.repository import write_model

    buf = io.BytesIO()
    np.save(buf, clean_reference(), allow_pickle=False)
    files = {1: {"clean_reference.npy": buf.getvalue(), "scanner.json": json.dumps(scanner_settings()).encode()}}
    write_model(root, NAME, CONFIG, files, card())
