"""The backdoor scanner as the platform's admission check (serve/admission.py):

    STREAMSERVE_ADMISSION_CHECK=models.backdoor.admission:check make serve

Each ONNX model version whose signature is an image classifier (one FP32 [C, H, W] input, one [K] output) is
scanned in the isolated scan process before it is served; a backdoored verdict, or a file the ONNX guard
refuses, keeps it out with the reason. Other models (tensors that are not images, rollouts, handlers) are
admitted without a scan, as are classifiers whose image size has no platform-held clean set.
"""
import json
from functools import cache

import numpy as np

from .jobs import DEFAULT_CLEAN, Limits, scan_once

FUSED_CALIBRATION = DEFAULT_CLEAN.with_name("fused_calibration.json")  # written by `python -m models.backdoor.zoo report`


def is_image_classifier(spec) -> bool:
    if spec.platform != "onnxruntime_onnx" or len(spec.inputs) != 1 or len(spec.outputs) < 1:
        return False
    image, scores = spec.inputs[0], spec.outputs[0]
    return image.datatype == "FP32" and len(image.dims) == 3 and len(scores.dims) == 1 and spec.max_batch_size > 0


def check(spec, version: int, limits: Limits = Limits()) -> str | None:
    if not is_image_classifier(spec):
        return None
    event = scan_once(spec.model_file(version).read_bytes(), np.load(DEFAULT_CLEAN, allow_pickle=False), limits, _fused())
    where = f"{spec.name} version {version}"
    if event.get("event") == "refused":
        if "does not match the model's input" in event.get("message", ""):
            return None  # no clean reference images of this size: not scanned
        return f"backdoor scan refused {where}: {event['message']}"
    if event.get("event") != "result":
        return f"backdoor scan failed for {where}: {event.get('message')}"
    if event["verdict"] == "backdoored":
        score = event["fused"]["score"] if event.get("verdict_rule") == "fused" else event["max_anomaly_index"]
        return (f"backdoor scan: {where} looks backdoored (class {event['suspected_target']}, "
                f"{event.get('verdict_rule', 'nc_anomaly_index')} {score:.2f} > {event['threshold']:.2f})")
    return None


@cache
def _fused() -> dict:
    """The fused verdict's constants: the admission scan uses the platform-held images they were measured on."""
    return json.loads(FUSED_CALIBRATION.read_text())
