"""The backdoor scanner as the platform's admission check (serve/admission.py):

    STREAMSERVE_ADMISSION_CHECK=models.backdoor.admission:check make serve

Each ONNX model version whose signature is an image classifier (one FP32 [C, H, W] input, one [K] output) is
scanned in the isolated scan process before it is served; a backdoored verdict, or a file the ONNX guard
refuses, keeps it out with the reason. Other models (tensors that are not images, rollouts, handlers) are
admitted without a scan, as are classifiers whose image size has no platform-held clean set.
"""
import numpy as np

from .jobs import DEFAULT_CLEAN, Limits, scan_once


def is_image_classifier(spec) -> bool:
    if spec.platform != "onnxruntime_onnx" or len(spec.inputs) != 1 or len(spec.outputs) < 1:
        return False
    image, scores = spec.inputs[0], spec.outputs[0]
    return image.datatype == "FP32" and len(image.dims) == 3 and len(scores.dims) == 1 and spec.max_batch_size > 0


def check(spec, version: int, limits: Limits = Limits()) -> str | None:
    if not is_image_classifier(spec):
        return None
    event = scan_once(spec.model_file(version).read_bytes(), np.load(DEFAULT_CLEAN, allow_pickle=False), limits)
    where = f"{spec.name} version {version}"
    if event.get("event") == "refused":
        if "does not match the model's input" in event.get("message", ""):
            return None  # no clean reference images of this size: not scanned
        return f"backdoor scan refused {where}: {event['message']}"
    if event.get("event") != "result":
        return f"backdoor scan failed for {where}: {event.get('message')}"
    if event["verdict"] == "backdoored":
        return (f"backdoor scan: {where} looks backdoored (class {event['suspected_target']}, "
                f"anomaly index {event['max_anomaly_index']:.2f} > {event['threshold']})")
    return None
